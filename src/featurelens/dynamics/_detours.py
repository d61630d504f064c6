"""Detour states and convergence: which latent states go with slow training.

Follows Hu et al. (2023), section "detours", with two corrections: two-sided
p-values ``2·T.sf(|t|)`` (the authors' ``2(1 − T.cdf(t))`` exceeds 1 for
negative correlations), and the occupancy regression reports the centred R²
of an OLS fit *with* an intercept plus a cross-validated R² (their "first k
epochs" R² came from an OLS without a constant, which is uncentred and
inflated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)


def convergence_time(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    threshold: float,
    direction: str = "above",
    sustained: bool = False,
) -> tuple[int, bool]:
    """First checkpoint index where a run has converged.

    The authors' definition: the first row ``t`` (0-based checkpoint index)
    with ``values[t] > threshold`` (``direction="above"``, e.g. an eval
    accuracy) or ``values[t] < threshold`` (``"below"``, e.g. a loss).
    With ``sustained=True`` the criterion must also hold at every later row.
    A run that never converges gets ``T`` (its number of rows, the authors'
    ``max_len``) and ``converged=False``; NaN never meets the criterion.

    Returns
    -------
    (index, converged) : (int, bool)
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("values is empty")
    threshold = check_float(threshold, name="threshold")
    check_option(direction, name="direction", options=("above", "below"))
    ok = x > threshold if direction == "above" else x < threshold
    if sustained:
        ok = np.flip(np.logical_and.accumulate(np.flip(ok)))
    hits = np.flatnonzero(ok)
    return (int(hits[0]), True) if hits.size else (int(x.size), False)


def _check_states(states: Sequence[np.ndarray], n_states: int | None) -> tuple[list[np.ndarray], int]:
    if isinstance(states, np.ndarray) or not isinstance(states, Sequence) or not states:
        raise TypeError("states must be a non-empty list of 1-D integer arrays (one Viterbi path per run)")
    paths = []
    for i, s in enumerate(states):
        s = np.asarray(s)
        if s.ndim != 1 or s.size == 0 or not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"states[{i}] must be a non-empty 1-D integer array, got shape {s.shape}, dtype {s.dtype}")
        if s.min() < 0:
            raise ValueError(f"states[{i}] holds a negative state")
        paths.append(s.astype(np.int64))
    top = max(int(s.max()) for s in paths) + 1
    if n_states is None:
        n_states = top
    n_states = check_int(n_states, name="n_states", minimum=1)
    if top > n_states:
        raise ValueError(f"states hold state {top - 1} but n_states is {n_states}")
    return paths, n_states


def _check_target(convergence: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(convergence, dtype=np.float64).reshape(-1)
    if y.size != n:
        raise ValueError(f"convergence has {y.size} values but there are {n} runs")
    if not np.isfinite(y).all():
        raise ValueError("convergence holds NaN or inf")
    return y


def occupancy(states: Sequence[np.ndarray], *, n_states: int | None = None,
              first_k: int | None = None) -> np.ndarray:
    """``(n_runs, K)`` number of checkpoints each run spends in each state (first ``first_k`` only)."""
    paths, n_states = _check_states(states, n_states)
    if first_k is not None:
        first_k = check_int(first_k, name="first_k", minimum=1)
        paths = [s[:first_k] for s in paths]
    return np.stack([np.bincount(s, minlength=n_states) for s in paths]).astype(np.float64)


def state_correlations(states: Sequence[np.ndarray], convergence: Sequence[float] | np.ndarray, *,
                       n_states: int | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Per state, the correlation of "run visits the state" with convergence time.

    For each state ``k``, ``v_r = 1`` if run ``r``'s path visits ``k`` at
    least once; ``r_k`` is the Pearson correlation of ``v`` with the
    convergence times (the point-biserial correlation), ``t = r√(n−2)/√(1−r²)``
    and the two-sided ``p = 2·T_{n−2}.sf(|t|)``. States visited by every run
    (``"obligatory"``) or by none (``"unvisited"``) have no variance: r, t and
    p are NaN there. A *detour* state is one with r > 0 and p < ``alpha``
    (visiting it goes with significantly slower convergence), a *shortcut*
    one with r < 0 and p < ``alpha``.

    Returns
    -------
    DataFrame indexed by ``state`` with columns ``n_runs_visiting``,
    ``fraction_visiting``, ``r``, ``t``, ``p_value``, ``mean_convergence_visiting``,
    ``mean_convergence_not_visiting``, ``kind`` (``"obligatory"``, ``"unvisited"``,
    ``"detour"``, ``"shortcut"``, ``"not significant"``; ``"uncorrelated"`` when every run
    converges at the same time).
    """
    counts = occupancy(states, n_states=n_states)
    y = _check_target(convergence, len(counts))
    alpha = check_float(alpha, name="alpha", low=0.0, high=1.0, inclusive=(False, False))
    n = len(y)
    if n < 3:
        raise ValueError(f"state correlations need at least 3 runs, got {n}")
    rows = []
    for k in range(counts.shape[1]):
        v = (counts[:, k] > 0).astype(np.float64)
        m = int(v.sum())
        r = t = p = np.nan
        if m == n:
            kind = "obligatory"
        elif m == 0:
            kind = "unvisited"
        elif np.ptp(y) == 0:
            kind = "uncorrelated"
        else:
            vc, yc = v - v.mean(), y - y.mean()
            r = float(np.clip(vc @ yc / np.sqrt((vc @ vc) * (yc @ yc)), -1.0, 1.0))
            if abs(r) < 1.0:
                t = r * np.sqrt(n - 2) / np.sqrt(1.0 - r * r)
                p = float(2.0 * stats.t.sf(abs(t), df=n - 2))
            else:
                t, p = np.copysign(np.inf, r), 0.0
            kind = "not significant" if not p < alpha else ("detour" if r > 0 else "shortcut")
        rows.append({
            "state": k,
            "n_runs_visiting": m,
            "fraction_visiting": m / n,
            "r": r,
            "t": t,
            "p_value": p,
            "mean_convergence_visiting": float(y[v > 0].mean()) if m else np.nan,
            "mean_convergence_not_visiting": float(y[v == 0].mean()) if m < n else np.nan,
            "kind": kind,
        })
    return pd.DataFrame(rows).set_index("state")


@dataclass(frozen=True)
class OccupancyRegression:
    """OLS of convergence time on time spent per state, with an intercept.

    Attributes
    ----------
    intercept : float
    coef : ndarray ``(K,)``
        Minimum-norm least-squares coefficients (occupancies of equal-length
        runs sum to T, so the design is collinear with the intercept; the fit
        and R² are unaffected).
    r2 : float
        Centred in-sample R² = 1 − SS_res / Σ(y − ȳ)².
    r2_cv : float
        Cross-validated R² = 1 − Σ(y − ŷ_oof)² / Σ(y − ȳ)², with ``ŷ_oof``
        predicted by fits that did not see the run (``n_splits``-fold, shuffled
        with ``random_state``); can be negative.
    rank : int
        Rank of the design matrix ``[1, counts]``.
    n_runs, first_k : int
    """

    intercept: float
    coef: np.ndarray
    r2: float
    r2_cv: float
    rank: int
    n_runs: int
    first_k: int | None
    n_splits: int


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    design = np.column_stack([np.ones(len(x)), x])
    beta, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    return beta, int(rank)


def occupancy_regression(
    states: Sequence[np.ndarray],
    convergence: Sequence[float] | np.ndarray,
    *,
    n_states: int | None = None,
    first_k: int | None = None,
    n_splits: int = 5,
    random_state: RandomState = 0,
) -> OccupancyRegression:
    """Regress convergence time on the checkpoints spent in each state.

    Regressors: :func:`occupancy` over the first ``first_k`` checkpoints (all
    by default); target: the convergence times. See
    :class:`OccupancyRegression` for the definitions of R² and CV R².
    """
    counts = occupancy(states, n_states=n_states, first_k=first_k)
    y = _check_target(convergence, len(counts))
    n = len(y)
    n_splits = check_int(n_splits, name="n_splits", minimum=2)
    if n < max(3, n_splits):
        raise ValueError(f"occupancy regression needs at least max(3, n_splits={n_splits}) runs, got {n}")
    beta, rank = _ols(counts, y)
    sst = float(((y - y.mean()) ** 2).sum())
    fitted = beta[0] + counts @ beta[1:]
    r2 = 1.0 - float(((y - fitted) ** 2).sum()) / sst if sst > 0 else np.nan
    rng = check_random_state(random_state)
    order = rng.permutation(n)
    oof = np.empty(n)
    for fold in np.array_split(order, n_splits):
        train = np.setdiff1d(order, fold)
        b, _ = _ols(counts[train], y[train])
        oof[fold] = b[0] + counts[fold] @ b[1:]
    r2_cv = 1.0 - float(((y - oof) ** 2).sum()) / sst if sst > 0 else np.nan
    return OccupancyRegression(intercept=float(beta[0]), coef=beta[1:], r2=r2, r2_cv=r2_cv, rank=rank,
                               n_runs=n, first_k=first_k, n_splits=n_splits)
