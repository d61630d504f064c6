"""Hedging a European call step by step: 8 features, P&L accounting, risk measures.

The features are those of the deep-hedging lottery-ticket notebook.

Conventions (the same as pfhedge's ``pl``, plus an optional premium):

- the hedge ``δ_k`` (units of the underlier) is chosen at ``t_k`` for ``k = 0 … n−1`` and
  held over ``[t_k, t_{k+1})``; ``δ_{−1} = δ_{−2} = 0`` (the book starts flat);
- proportional costs ``c · |δ_k − δ_{k−1}| · S_k`` are paid on every rebalance including
  the first; the position is not unwound at maturity (no closing cost), as in pfhedge;
- the terminal P&L of the short call is
  ``PnL = premium − max(S_n − K, 0) + Σ_k δ_k (S_{k+1} − S_k) − c Σ_k |δ_k − δ_{k−1}| S_k``
  with zero interest. ``premium = 0`` (the default) is pfhedge's convention: the risk of
  ``−PnL`` is then the price the hedger would ask, and strategies differ by their risk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from featurelens._validation import check_float
from featurelens.examples._hedging_market import Market, Paths, bs_call_delta

#: the deep-hedging lottery-ticket notebook's feature names, in the order of the model's input columns
FEATURE_NAMES = ("log(S/K)", "Return", "sqrt(v)", "Δv", "Time", "δ_prev", "Trade_vol", "cum_PnL")
#: the observed market features (perturbed by attacks); the rest is time or the hedger's own book
MARKET_FEATURES = (0, 1, 2, 3)
_MIN_VOL = 1e-4  # floor of the volatility used by the delta hedge (Heston variance can touch 0)


@dataclass(frozen=True)
class HedgingTask:
    """A short European call on ``market``'s underlier, hedged with proportional costs.

    Parameters
    ----------
    market : Market
    strike : float
        Call strike ``K`` (same units as ``market.s0``).
    cost : float
        Proportional transaction-cost rate ``c`` (``1e-4`` = 1 basis point of the traded value).
    premium : float
        Cash received for the call at ``t_0`` and added to the P&L (default 0, pfhedge's convention).
    """

    market: Market = field(default_factory=Market)
    strike: float = 1.0
    cost: float = 0.0
    premium: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.market, Market):
            raise TypeError(f"market must be a Market, got {type(self.market).__name__}")
        check_float(self.strike, name="strike", low=0.0, inclusive=(False, True))
        check_float(self.cost, name="cost", low=0.0)
        check_float(self.premium, name="premium")

    def feature_scale(self) -> torch.Tensor:
        """Return the fixed divisors that bring the raw features to order one, shape ``(8,)``.

        With ``σ`` the reference volatility (GBM ``sigma``, Heston ``sqrt(theta)``), ``T`` the
        maturity, ``dt`` the step and ``n`` the number of steps: log(S/K) / (σ sqrt(T)),
        return / (σ sqrt(dt)), sqrt(v) / σ, Δv / (ξ σ sqrt(dt)) (Heston; ``σ² sqrt(dt)`` for GBM,
        where Δv is 0), time / T, δ_prev / 1, trade volume / (1 / sqrt(n)) (the typical
        change of a delta per step) and cum P&L / (s0 σ sqrt(T)). The model sees
        ``raw / scale``; the divisors depend only on the task, never on data.
        """
        m = self.market
        vol = m.reference_vol
        dv = m.xi * vol * math.sqrt(m.dt) if m.model == "heston" and m.xi > 0 else vol**2 * math.sqrt(m.dt)
        return torch.tensor([vol * math.sqrt(m.maturity), vol * math.sqrt(m.dt), vol, dv, m.maturity, 1.0,
                             1.0 / math.sqrt(m.n_steps), m.s0 * vol * math.sqrt(m.maturity)])

    def payoff(self, paths: Paths) -> torch.Tensor:
        """``max(S_n − K, 0)``, shape ``(n_paths,)``."""
        return torch.clamp(paths.spot[:, -1] - self.strike, min=0.0)


@dataclass(frozen=True)
class HedgeRun:
    """One strategy on one set of paths.

    Attributes
    ----------
    pnl : Tensor, shape (n_paths,)
        Terminal P&L (see the module docstring).
    hedges : Tensor, shape (n_paths, n_steps)
        ``δ_k``.
    inputs : Tensor, shape (n_paths, n_steps, 8)
        The scaled feature rows the strategy saw at each step (``raw / scale + offset``),
        columns in :data:`FEATURE_NAMES` order.
    """

    pnl: torch.Tensor
    hedges: torch.Tensor
    inputs: torch.Tensor

    def rows(self) -> torch.Tensor:
        """Return the per-step feature rows as a table, shape ``(n_paths · n_steps, 8)`` (path-major)."""
        return self.inputs.reshape(-1, self.inputs.shape[-1])


Decide = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def rollout(task: HedgingTask, paths: Paths, decide: Decide, *, offset: torch.Tensor | None = None) -> HedgeRun:
    """Run a strategy through the paths and account its P&L.

    ``decide(k, x, raw)`` returns ``δ_k`` of shape ``(n_paths,)`` from the scaled inputs ``x``
    (``raw / scale + offset[:, k]``) and the raw features ``raw``, both ``(n_paths, 8)``.
    ``offset`` (``(n_paths, n_steps, 8)``) perturbs what the strategy sees, not the market.
    Differentiable in the strategy's output and in ``offset``.
    """
    spot, var = paths.spot, paths.variance
    n, steps = spot.shape[0], spot.shape[1] - 1
    if offset is not None and tuple(offset.shape) != (n, steps, len(FEATURE_NAMES)):
        raise ValueError(f"offset must have shape {(n, steps, len(FEATURE_NAMES))}, got {tuple(offset.shape)}")
    scale = task.feature_scale().to(dtype=spot.dtype, device=spot.device)
    zeros = torch.zeros(n, dtype=spot.dtype, device=spot.device)
    prev, prev2 = zeros, zeros
    book = zeros + task.premium
    hedges, inputs = [], []
    for k in range(steps):
        ret = torch.log(spot[:, k] / spot[:, k - 1]) if k else zeros
        dv = var[:, k] - var[:, k - 1] if k else zeros
        tau = zeros + (steps - k) * paths.dt
        raw = torch.stack([torch.log(spot[:, k] / task.strike), ret, torch.sqrt(var[:, k]), dv, tau, prev,
                           (prev - prev2).abs(), book], dim=1)
        x = raw / scale if offset is None else raw / scale + offset[:, k]
        delta = decide(k, x, raw).reshape(n)
        book = book + delta * (spot[:, k + 1] - spot[:, k]) - task.cost * (delta - prev).abs() * spot[:, k]
        prev2, prev = prev, delta
        hedges.append(delta)
        inputs.append(x)
    pnl = book - task.payoff(paths)
    return HedgeRun(pnl, torch.stack(hedges, dim=1), torch.stack(inputs, dim=1))


def hedge_with_model(model: nn.Module, task: HedgingTask, paths: Paths, *,
                     offset: torch.Tensor | None = None) -> HedgeRun:
    """Hedge with a per-step network ``model: (n, 8) → (n,)`` or ``(n, 1)`` applied recurrently.

    The model is called once per step on the scaled feature rows; gradients flow
    (wrap in ``torch.no_grad()`` to evaluate). The model's mode is not changed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return rollout(task, paths, lambda k, x, raw: model(x), offset=offset)


def delta_hedge(task: HedgingTask, paths: Paths) -> HedgeRun:
    """Run the Black–Scholes delta hedge ``δ_k = N(d1)`` at the current volatility.

    The volatility is ``sqrt(V_k)`` (GBM: ``sigma``, so this is the textbook hedge; Heston:
    the instantaneous volatility, floored at 1e-4), with the market's drift ignored (r = 0).
    """
    return rollout(task, paths, lambda k, x, raw: bs_call_delta(
        paths.spot[:, k], task.strike, raw[:, 4], raw[:, 2].clamp(min=_MIN_VOL)))


def no_hedge(task: HedgingTask, paths: Paths) -> HedgeRun:
    """Run the unhedged short call: ``δ_k = 0``, so ``PnL = premium − payoff``."""
    return rollout(task, paths, lambda k, x, raw: torch.zeros_like(raw[:, 0]))


def expected_shortfall(pnl: torch.Tensor, *, alpha: float = 0.1) -> torch.Tensor:
    """Compute the expected shortfall of the loss ``−PnL`` at level ``alpha``.

    The mean of the ``m = ceil(alpha · n)`` largest losses (the worst ``alpha`` fraction of
    paths; pfhedge's ``ExpectedShortfall(p)``). Differentiable (a scalar tensor).
    """
    alpha = check_float(alpha, name="alpha", low=0.0, high=1.0, inclusive=(False, True))
    losses = -pnl.reshape(-1)
    m = max(1, math.ceil(alpha * losses.numel() - 1e-9))
    return losses.topk(m).values.mean()


def entropic_risk(pnl: torch.Tensor, *, lam: float = 1.0) -> torch.Tensor:
    """Entropic risk ``(1/lam) log E[exp(−lam · PnL)]``, by log-sum-exp (pfhedge's ``EntropicRiskMeasure(a=lam)``)."""
    lam = check_float(lam, name="lam", low=0.0, inclusive=(False, True))
    x = -lam * pnl.reshape(-1)
    return (torch.logsumexp(x, dim=0) - math.log(x.numel())) / lam


def risk_table(runs: Mapping[str, HedgeRun | torch.Tensor], *, alpha: float = 0.1, lam: float = 1.0) -> pd.DataFrame:
    """ES, entropic risk, mean and std of the P&L for each strategy (rows), in P&L units."""
    rows = {}
    for name, run in runs.items():
        pnl = (run.pnl if isinstance(run, HedgeRun) else run).detach().double()
        rows[name] = {f"ES_{alpha:g}": float(expected_shortfall(pnl, alpha=alpha)),
                      f"entropic_{lam:g}": float(entropic_risk(pnl, lam=lam)),
                      "pnl_mean": float(pnl.mean()), "pnl_std": float(pnl.std())}
    return pd.DataFrame.from_dict(rows, orient="index")
