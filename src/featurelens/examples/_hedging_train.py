"""Training the per-step MLP hedger on a risk measure, on fresh paths every epoch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from featurelens._progress import progress_bar
from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.examples._hedging_market import Paths
from featurelens.examples._hedging_rollout import (
    FEATURE_NAMES,
    MARKET_FEATURES,
    HedgingTask,
    entropic_risk,
    expected_shortfall,
    hedge_with_model,
)
from featurelens.models import MLP, preserve_model
from featurelens.models.adversarial import feature_scale, perturb
from featurelens.models.pruning import copy_model

CRITERIA = ("es", "entropic")
#: ``adversary(model, paths) -> offset``: a (detached) perturbation of the scaled inputs, (n, steps, 8)
Adversary = Callable[[nn.Module, Paths], torch.Tensor]


def make_hedger(hidden: Sequence[int] = (32, 32, 32), *, random_state: int = 0) -> MLP:
    """Build the per-step hedging network: ``featurelens.models.MLP(8, hidden, 1)`` (ReLU).

    Maps the 8 scaled features of one step, ``(n, 8)``, to the hedge ``(n,)``; layers are
    named ``layer1`` (input) … ``layer{L}`` (output). Initialised with
    ``torch.manual_seed(random_state)`` inside ``torch.random.fork_rng()`` (the global RNG is
    untouched). With no arguments it is a factory for :func:`featurelens.load_model`
    (``factory="featurelens.examples.hedging:make_hedger"``).
    """
    seed = check_int(random_state, name="random_state", minimum=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MLP(len(FEATURE_NAMES), tuple(hidden), 1)


def hedging_risk(pnl: torch.Tensor, *, criterion: str = "es", alpha: float = 0.1, lam: float = 1.0) -> torch.Tensor:
    """``expected_shortfall(pnl, alpha=alpha)`` or ``entropic_risk(pnl, lam=lam)`` by ``criterion``."""
    criterion = check_option(criterion, name="criterion", options=CRITERIA)
    return expected_shortfall(pnl, alpha=alpha) if criterion == "es" else entropic_risk(pnl, lam=lam)


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train_hedger` trains.

    Attributes
    ----------
    criterion : {"es", "entropic"}
        Minimised risk of the terminal P&L: expected shortfall at ``alpha`` or entropic risk at ``lam``.
    n_paths, epochs : int
        Fresh paths per epoch (one full-batch Adam step per epoch) and number of epochs.
    lr : float
        Adam learning rate.
    adv_weight : float
        With an adversary, the loss is ``(1 − w) · risk(clean) + w · risk(attacked)``
        (Cosentino et al.'s 50/50 mix for ``w = 0.5``).
    """

    criterion: str = "es"
    alpha: float = 0.1
    lam: float = 1.0
    n_paths: int = 2000
    epochs: int = 200
    lr: float = 3e-3
    adv_weight: float = 0.5

    def __post_init__(self) -> None:
        check_option(self.criterion, name="criterion", options=CRITERIA)
        check_float(self.alpha, name="alpha", low=0.0, high=1.0, inclusive=(False, True))
        check_float(self.lam, name="lam", low=0.0, inclusive=(False, True))
        check_int(self.n_paths, name="n_paths", minimum=2)
        check_int(self.epochs, name="epochs", minimum=1)
        check_float(self.lr, name="lr", low=0.0, inclusive=(False, True))
        check_float(self.adv_weight, name="adv_weight", low=0.0, high=1.0)


def fit_hedger_(model: nn.Module, task: HedgingTask, config: TrainConfig = TrainConfig(), *,
                adversary: Adversary | None = None, random_state: RandomState = 0,
                progress: bool = False, label: str = "hedger",
                on_epoch: Callable[[int, nn.Module], None] | None = None) -> list[float]:
    """Train ``model`` in place (the trailing underscore says so); returns the per-epoch loss.

    Each epoch draws ``config.n_paths`` fresh paths from ``random_state`` and takes one Adam
    step on the risk of the hedged P&L (see :class:`TrainConfig`). Used as the ``train_fn``
    of iterative magnitude pruning, which owns its copy of the model; everyone else calls
    :func:`train_hedger`, which leaves the given model untouched. Adam is built over the
    parameters that exist now, so after pruning it optimises ``weight_orig`` (masked
    entries get zero gradient through the mask). ``on_epoch(epoch, model)`` is called after
    each step (epoch counted from 1), e.g. to keep an early state for rewinding. Leaves the
    model in eval mode.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    rng = check_random_state(random_state)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    history: list[float] = []
    model.train()
    with progress_bar(f"training {label}", config.epochs, enabled=progress) as advance:
        for _ in range(config.epochs):
            paths = task.market.simulate(config.n_paths, random_state=rng)
            loss = hedging_risk(hedge_with_model(model, task, paths).pnl, criterion=config.criterion,
                                alpha=config.alpha, lam=config.lam)
            if adversary is not None and config.adv_weight > 0:
                offset = adversary(model, paths).detach()
                model.train()
                adv = hedging_risk(hedge_with_model(model, task, paths, offset=offset).pnl,
                                   criterion=config.criterion, alpha=config.alpha, lam=config.lam)
                loss = (1.0 - config.adv_weight) * loss + config.adv_weight * adv
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
            if on_epoch is not None:
                on_epoch(len(history), model)
            advance(info=f"loss {history[-1]:.5f}")
    model.eval()
    return history


def train_hedger(model: nn.Module, task: HedgingTask, config: TrainConfig = TrainConfig(), *,
                 adversary: Adversary | None = None, random_state: RandomState = 0,
                 progress: bool = False) -> tuple[nn.Module, list[float]]:
    """Train a deep copy of ``model`` (see :func:`fit_hedger_`); returns it (eval mode) and the loss history.

    ``model`` itself is not modified; the copy is :func:`featurelens.models.pruning.copy_model`'s,
    so a pruned hedger that has already run a forward pass can be trained too.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    trained = copy_model(model)
    history = fit_hedger_(trained, task, config, adversary=adversary, random_state=random_state,
                          progress=progress)
    return trained, history


def attack_hedger(model: nn.Module, task: HedgingTask, paths: Paths, *, epsilon: float, n_steps: int = 1,
                  random_start: bool = False, features: Sequence[int] = MARKET_FEATURES,
                  criterion: str = "es", alpha: float = 0.1, lam: float = 1.0,
                  random_state: RandomState = 0) -> torch.Tensor:
    """Find a worst-case perturbation of the market features the hedger observes; return the offset.

    The clean run records the scaled inputs ``x`` ``(n, steps, 8)``; the attack is
    :func:`featurelens.models.adversarial.perturb` ascending
    ``hedging_risk(hedge_with_model(model, task, paths, offset=x_adv − x).pnl)`` in the box
    ``|x_adv − x| ≤ epsilon · std`` (``std`` per feature over all paths and steps of ``x``,
    population std) on the columns ``features`` only (default: log(S/K), return, sqrt(v), Δv;
    time to maturity and the hedger's own book — previous hedge, trade volume, cumulative
    P&L — are never perturbed: the book features are recomputed from the perturbed hedges).
    ``n_steps=1`` without random start is FGSM, more steps with ``random_start`` PGD (step
    ``2.5 ε / n_steps``). The market (prices, P&L) is not perturbed: the attack models
    corrupted observations. The model is evaluated in eval mode with frozen parameters;
    its mode and flags are restored.

    Returns
    -------
    Tensor, shape (n_paths, n_steps, 8)
        The offset ``x_adv − x`` to pass as ``hedge_with_model(..., offset=...)``; zero
        outside ``features``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    epsilon = check_float(epsilon, name="epsilon", low=0.0)
    cols = [check_int(f, name="features[i]", minimum=0) for f in features]
    if any(c >= len(FEATURE_NAMES) for c in cols):
        raise ValueError(f"features must index the {len(FEATURE_NAMES)} hedging features, got {list(features)}")
    with preserve_model(model, eval_mode=True, freeze=True):
        with torch.no_grad():
            x = hedge_with_model(model, task, paths).inputs
        mask = torch.zeros(len(FEATURE_NAMES), dtype=torch.bool)
        mask[cols] = True

        def objective(x_adv: torch.Tensor) -> torch.Tensor:
            pnl = hedge_with_model(model, task, paths, offset=x_adv - x).pnl
            return hedging_risk(pnl, criterion=criterion, alpha=alpha, lam=lam)

        x_adv = perturb(objective, x, epsilon=epsilon * feature_scale(x), n_steps=n_steps, random_start=random_start,
                        mask=mask, random_state=random_state)
    return x_adv - x
