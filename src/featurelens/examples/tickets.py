"""The deep-hedging lottery-ticket study: a dense deep hedger, an 80 %-sparse lottery ticket and a robust ticket.

:func:`run_tickets_study` (CLI: ``featurelens example tickets [--quick]``)

1. trains the dense per-step hedger (:func:`featurelens.examples.hedging.make_hedger`) on a
   Heston market with proportional costs, minimising expected shortfall, and keeps its
   weights after ``rewind_epoch`` epochs;
2. prunes it by iterative magnitude pruning with weight rewinding
   (:func:`featurelens.models.pruning.iterative_magnitude_pruning`, layer-wise, hidden
   layers only, the output layer stays dense) to ``target_sparsity``, retraining each
   round on clean paths — the **ticket**;
3. repeats 2 with adversarial retraining (``0.5 · risk(clean) + 0.5 · risk(FGSM)``, the
   attack on the observed market features in feature-std units,
   :func:`featurelens.examples.hedging.attack_hedger`) — the **robust ticket**;
4. evaluates clean and attacked (FGSM and PGD, white-box against each model) hedging risk
   on fresh paths, with the Black–Scholes delta hedge and the unhedged position as anchors;
5. compares the three networks with :func:`featurelens.compare.compare` on the per-step
   feature rows the dense hedger saw (the study's feature names);
6. saves the three checkpoints, reloads them through :func:`featurelens.load_model` and
   checks that predictions are bit-identical;
7. writes the report with ``featurelens.report.save`` (the study's four comparison figures,
   the risk tables and figures, and the verified checkpoints).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._io import check_output_dir
from featurelens._protocol import html_table, jsonable
from featurelens._validation import check_float, check_int
from featurelens.compare import Comparison, compare
from featurelens.examples.hedging import (
    FEATURE_NAMES,
    HedgingTask,
    Market,
    TrainConfig,
    attack_hedger,
    delta_hedge,
    fit_hedger_,
    hedge_with_model,
    make_hedger,
    no_hedge,
    risk_table,
)
from featurelens.models import load_model
from featurelens.models.pruning import iterative_magnitude_pruning, save_checkpoint, sparsity
from featurelens.report import check_formats, save

FACTORY = "featurelens.examples.hedging:make_hedger"
MODEL_NAMES = ("dense", "ticket", "robust")
#: attribution methods of the comparison (permutation importance needs labels; hedging has none)
METHODS = ("weights", "edge_scores", "integrated_gradients")


@dataclass(frozen=True)
class TicketsConfig:
    """Sizes of the study (see :data:`QUICK` and :data:`DEFAULT`).

    Attributes
    ----------
    n_paths : int
        Fresh training paths per epoch (one full-batch Adam step per epoch).
    dense_epochs, rewind_epoch : int
        Epochs of the dense hedger; the state after ``rewind_epoch`` epochs is the rewind point.
    rounds, round_epochs : int
        IMP rounds (the same fraction of the remaining weights each round) and retraining
        epochs per round.
    target_sparsity : float
        Fraction of the weights of the pruned (hidden) layers removed at the end.
    epsilon : float
        Attack budget in units of each market feature's std (training and evaluation).
    pgd_steps : int
        Steps of the evaluation PGD attack (random start, step ``2.5 ε / steps``).
    n_eval : int
        Fresh evaluation paths (risk tables and attacks).
    n_rows : int
        Per-step feature rows (of the evaluation paths, seen by the dense hedger) passed to ``compare``.
    cost : float
        Proportional transaction-cost rate.
    """

    n_paths: int = 2000
    dense_epochs: int = 300
    rewind_epoch: int = 10
    rounds: int = 4
    round_epochs: int = 100
    target_sparsity: float = 0.8
    epsilon: float = 0.5
    pgd_steps: int = 5
    n_eval: int = 50_000
    n_rows: int = 4000
    cost: float = 1e-3

    def __post_init__(self) -> None:
        """Check every field (counts positive, ``rewind_epoch`` non-negative)."""
        for name in ("n_paths", "dense_epochs", "rounds", "round_epochs", "pgd_steps", "n_eval", "n_rows"):
            check_int(getattr(self, name), name=name, minimum=2 if name in ("n_paths", "n_eval") else 1)
        check_int(self.rewind_epoch, name="rewind_epoch", minimum=0)
        if self.rewind_epoch > self.dense_epochs:
            raise ValueError(f"rewind_epoch ({self.rewind_epoch}) must be <= dense_epochs ({self.dense_epochs})")
        check_float(self.target_sparsity, name="target_sparsity", low=0.0, high=1.0, inclusive=(True, False))
        check_float(self.epsilon, name="epsilon", low=0.0)
        check_float(self.cost, name="cost", low=0.0)


QUICK = TicketsConfig(n_paths=1000, dense_epochs=150, rounds=3, round_epochs=50, pgd_steps=3, n_eval=10_000,
                      n_rows=2000)
DEFAULT = TicketsConfig()


@dataclass(frozen=True)
class TicketsResult:
    """What the study computed; its report is ``featurelens.report.save(result, out)``.

    Attributes
    ----------
    out : Path
        Where :func:`run_tickets_study` wrote the report.
    models : dict of str to nn.Module
        ``dense``, ``ticket``, ``robust``.
    risk : DataFrame
        Clean risk per strategy (the networks, ``"BS delta"``, ``"unhedged"``).
    attacked : DataFrame
        Clean / FGSM / PGD expected shortfall per network and the increases (:meth:`to_frame`).
    sparsity : DataFrame
        Per pruned layer and total, per network.
    comparison : Comparison
        The :func:`featurelens.compare.compare` result.
    reload : dict of str to bool
        Bit-identical predictions after reloading each checkpoint.
    history : dict of str to list of float
        Per-epoch training loss of each network (tickets: all rounds in sequence).
    checkpoints : dict of str to bytes
        The verified checkpoint files (``save_checkpoint`` format), written to ``checkpoints/``.
    numbers : dict
        Every number of ``results.json`` (:meth:`to_dict`).
    seconds : float
        Wall time of the study, report included.
    """

    out: Path
    models: dict[str, nn.Module]
    risk: pd.DataFrame
    attacked: pd.DataFrame
    sparsity: pd.DataFrame
    comparison: Comparison
    reload: dict[str, bool]
    history: dict[str, list[float]]
    checkpoints: dict[str, bytes] = field(repr=False)
    numbers: dict[str, Any] = field(repr=False)
    seconds: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: a copy of :attr:`attacked` (expected shortfall clean and under attack)."""
        return self.attacked.copy()

    def to_dict(self) -> dict[str, Any]:
        """Return a plain-JSON dict of the study's numbers.

        Setup, risk tables, sparsity, IMP history, collapse and reload checks,
        the comparison (:meth:`Comparison.to_dict`) and the stage timings.
        """
        return jsonable(self.numbers, where="tickets")

    def _repr_html_(self) -> str:
        return html_table(self.attacked,
                          title="Deep-hedging lottery tickets: expected shortfall ES_0.1, clean and under attack")


def _seeds(random_state: int) -> dict[str, int]:
    names = ("init", "dense", "ticket", "robust", "adversary", "eval", "attack", "rows", "compare")
    draws = np.random.default_rng(random_state).integers(0, 2**31 - 1, size=len(names))
    return {n: int(d) for n, d in zip(names, draws, strict=True)}


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_models(task: HedgingTask, config: TicketsConfig, *, random_state: int = 0,
                 progress: bool = False) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """Train steps 1–3: the dense hedger, the IMP ticket and the robust ticket (fresh models).

    Returns the models and a log with the loss histories, the IMP sparsity history of both
    tickets and the seconds each stage took.
    """
    seeds = _seeds(random_state)
    train = TrainConfig(n_paths=config.n_paths, epochs=config.dense_epochs)
    retrain = dataclasses.replace(train, epochs=config.round_epochs)
    log: dict[str, Any] = {"seconds": {}, "history": {}}
    rewind: dict[str, torch.Tensor] = {}

    def keep_rewind_point(epoch: int, model: nn.Module) -> None:
        if epoch == config.rewind_epoch:
            rewind.update(_state_copy(model))

    dense = make_hedger(random_state=seeds["init"] % 2**31)
    if config.rewind_epoch == 0:
        rewind.update(_state_copy(dense))
    start = time.perf_counter()
    log["history"]["dense"] = fit_hedger_(dense, task, train, random_state=seeds["dense"], progress=progress,
                                          label="dense hedger", on_epoch=keep_rewind_point)
    log["seconds"]["dense"] = time.perf_counter() - start
    output_layer = [n for n, m in dense.named_modules() if isinstance(m, nn.Linear)][-1]
    adversary_rng = np.random.default_rng(seeds["adversary"])

    def adversary(model: nn.Module, paths: Any) -> torch.Tensor:
        return attack_hedger(model, task, paths, epsilon=config.epsilon, random_state=adversary_rng)

    models: dict[str, nn.Module] = {"dense": dense}
    for name, adv in (("ticket", None), ("robust", adversary)):
        rng = np.random.default_rng(seeds[name])
        histories: list[list[float]] = []

        def train_fn(model: nn.Module, adv: Any = adv, rng: Any = rng, name: str = name,
                     histories: list = histories) -> None:
            histories.append(fit_hedger_(model, task, retrain, adversary=adv, random_state=rng, progress=progress,
                                         label=f"{name} round {len(histories) + 1}"))

        start = time.perf_counter()
        ticket = iterative_magnitude_pruning(dense, train_fn, target_sparsity=config.target_sparsity,
                                             rounds=config.rounds, rewind_to=rewind, scope="layer",
                                             exclude=(output_layer,))
        log["seconds"][name] = time.perf_counter() - start
        log["history"][name] = [v for h in histories for v in h]
        log[f"{name}_imp"] = ticket.history
        models[name] = ticket.model
    return models, log


def evaluate_risk(models: dict[str, nn.Module], task: HedgingTask, config: TicketsConfig, *,
                  random_state: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, torch.Tensor]:
    """Step 4: risk tables on ``config.n_eval`` fresh paths.

    Returns the clean risk table (the networks, ``"BS delta"`` and ``"unhedged"``), the
    attacked expected-shortfall table (columns ``clean``, ``FGSM``, ``PGD``, and the
    increases ``FGSM − clean``, ``PGD − clean``; each network attacked white-box with
    budget ``config.epsilon`` std), and the per-step feature rows the dense hedger saw
    ``(n_eval · n_steps, 8)``.
    """
    seeds = _seeds(random_state)
    paths = task.market.simulate(config.n_eval, random_state=seeds["eval"])
    runs: dict[str, Any] = {}
    with torch.no_grad():
        for name, model in models.items():
            runs[name] = hedge_with_model(model, task, paths)
        runs["BS delta"] = delta_hedge(task, paths)
        runs["unhedged"] = no_hedge(task, paths)
    clean = risk_table(runs, alpha=0.1, lam=1.0)
    rows = {}
    for i, (name, model) in enumerate(models.items()):
        out = {"clean": clean.loc[name, "ES_0.1"]}
        for label, steps, start in (("FGSM", 1, False), ("PGD", config.pgd_steps, True)):
            offset = attack_hedger(model, task, paths, epsilon=config.epsilon, n_steps=steps, random_start=start,
                                   random_state=seeds["attack"] + i)
            with torch.no_grad():
                attacked = hedge_with_model(model, task, paths, offset=offset).pnl
            out[label] = float(risk_table({name: attacked}).iloc[0]["ES_0.1"])
        rows[name] = out
    attacked = pd.DataFrame.from_dict(rows, orient="index")
    attacked["FGSM − clean"] = attacked["FGSM"] - attacked["clean"]
    attacked["PGD − clean"] = attacked["PGD"] - attacked["clean"]
    return clean, attacked, runs["dense"].rows()


def sparsity_table(models: dict[str, nn.Module]) -> pd.DataFrame:
    """Per pruned layer and total sparsity of each model (``model`` column added)."""
    frames = [sparsity(m).assign(model=name) for name, m in models.items()]
    return pd.concat(frames, ignore_index=True)[["model", "layer", "n_weights", "n_pruned", "sparsity"]]


def save_and_reload(models: dict[str, nn.Module], out: Path, X: torch.Tensor,
                    metadata: dict[str, Any]) -> dict[str, bool]:
    """Save each model to ``directory/<name>.pt``; reload with ``load_model``; compare predictions bit for bit."""
    same = {}
    for name, model in models.items():
        path = save_checkpoint(model, out / f"{name}.pt", metadata={**metadata, "model": name})
        reloaded = load_model(path, factory=FACTORY)
        with torch.no_grad():
            same[name] = bool(torch.equal(model(X), reloaded(X)))
    return same


def _records(table: pd.DataFrame, index: str) -> list[dict[str, Any]]:
    return jsonable(table.rename_axis(index).reset_index().to_dict(orient="records"))


def study_numbers(*, task: HedgingTask, config: TicketsConfig, random_state: int, risk: pd.DataFrame,
                  attacked: pd.DataFrame, sparsity: pd.DataFrame, comparison: Comparison, reload: dict[str, bool],
                  log: dict[str, Any], output_spread: dict[str, float], seconds: float) -> dict[str, Any]:
    """Return every number of the report.

    Setup, risk tables, sparsity, IMP history, the collapse check
    (smallest kept fraction of any pruned layer, std of the hedge over the compared rows), reload
    check, the comparison and the stage timings.
    """
    pruned = sparsity[sparsity["layer"] != "total"]
    collapse = {
        name: {"smallest_kept_fraction": float((1 - pruned[pruned["model"] == name]["sparsity"]).min())
               if (pruned["model"] == name).any() else 1.0,
               "output_std_on_rows": output_spread[name]}
        for name in output_spread
    }
    return {
        "random_state": random_state,
        "config": dataclasses.asdict(config),
        "task": {"market": dataclasses.asdict(task.market), "strike": task.strike, "cost": task.cost,
                 "premium": task.premium, "option": "short European call, hedged in the underlier"},
        "features": list(FEATURE_NAMES),
        "risk": _records(risk, "strategy"),
        "attacked": _records(attacked, "model"),
        "sparsity": jsonable(sparsity.to_dict(orient="records")),
        "imp_history": {k.removesuffix("_imp"): jsonable(v.to_dict(orient="records"))
                        for k, v in log.items() if k.endswith("_imp")},
        "collapse_check": collapse,
        "reload_bit_identical": dict(reload),
        "comparison": comparison.to_dict(),
        "seconds": {**{k: float(v) for k, v in log["seconds"].items()}, "total": seconds},
    }


def run_tickets_study(out: str | os.PathLike, *, quick: bool = False, config: TicketsConfig | None = None,
                      random_state: int = 0, formats: Sequence[str] = ("png",), force: bool = False,
                      progress: bool = False) -> TicketsResult:
    """Run the whole study and write its report to ``out`` (see the module docstring).

    Parameters
    ----------
    out : path
        Output directory, written atomically (an existing one only with ``force``).
    quick : bool
        Use :data:`QUICK` (minutes on one CPU thread) instead of :data:`DEFAULT`.
    config : TicketsConfig, optional
        Explicit sizes (overrides ``quick``).
    random_state : int
        Seeds initialisation, every path set, the attacks and the row sample.
    formats : sequence of {"png", "pdf", "svg"}
        Figure formats (PNG is always written, for the page; the original study saved PDFs).

    Returns
    -------
    TicketsResult
    """
    start = time.perf_counter()
    check_output_dir(out, force=force)
    seed = check_int(random_state, name="random_state", minimum=0)
    formats = check_formats(formats)
    if config is None:
        config = QUICK if quick else DEFAULT
    if not isinstance(config, TicketsConfig):
        raise TypeError(f"config must be a TicketsConfig, got {type(config).__name__}")
    task = HedgingTask(Market("heston"), strike=1.0, cost=config.cost)
    models, log = train_models(task, config, random_state=seed, progress=progress)
    t0 = time.perf_counter()
    clean, attacked, rows = evaluate_risk(models, task, config, random_state=seed)
    log["seconds"]["evaluation"] = time.perf_counter() - t0
    pick = np.random.default_rng(_seeds(seed)["rows"]).choice(rows.shape[0], size=min(config.n_rows, rows.shape[0]),
                                                             replace=False)
    inputs = rows[torch.as_tensor(np.sort(pick))]
    t0 = time.perf_counter()
    comparison = compare(models, inputs, methods=METHODS, reference="ticket", feature_names=list(FEATURE_NAMES),
                         method_options={"integrated_gradients": {"baselines": "mean", "background": inputs}},
                         random_state=_seeds(seed)["compare"])
    log["seconds"]["compare"] = time.perf_counter() - t0
    table = sparsity_table(models)
    with tempfile.TemporaryDirectory(prefix="featurelens-tickets-") as tmp:
        reload = save_and_reload(models, Path(tmp), inputs, {"factory": FACTORY, "random_state": seed})
        checkpoints = {name: (Path(tmp) / f"{name}.pt").read_bytes() for name in models}
    with torch.no_grad():
        spread = {name: float(m(inputs).std()) for name, m in models.items()}
    numbers = study_numbers(task=task, config=config, random_state=seed, risk=clean, attacked=attacked, sparsity=table,
                            comparison=comparison, reload=reload, log=log, output_spread=spread,
                            seconds=time.perf_counter() - start)
    result = TicketsResult(Path(out), models, clean, attacked, table, comparison, reload, log["history"],
                           checkpoints, numbers)
    save(result, out, force=force, formats=formats)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)

__all__ = [
    "DEFAULT",
    "FACTORY",
    "METHODS",
    "MODEL_NAMES",
    "QUICK",
    "TicketsConfig",
    "TicketsResult",
    "evaluate_risk",
    "run_tickets_study",
    "save_and_reload",
    "sparsity_table",
    "study_numbers",
    "train_models",
]
