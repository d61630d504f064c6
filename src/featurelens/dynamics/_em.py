"""Batched EM for Gaussian HMMs (:func:`fit_hmm`): initialisation, E-step, M-step, restarts.

EM is batched over sequences *and* restarts. Its E-step uses the scaled recursion of
:mod:`._inference` (alpha normalised at every step, emissions shifted by their per-step
maximum in log space before exponentiation), which is the same quantity as the log-space
recursion; if a normaliser ever underflows to zero (only possible with exact zeros in the
transition matrix) that E-step is recomputed with the log-space recursion. M-step = maximum
likelihood, i.e. hmmlearn's update with ``startprob_prior = transmat_prior = 1``,
``means_weight = 0`` and ``covars_prior = 0``, followed by the covariance floor (see
:func:`fit_hmm`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.dynamics._hmm import GaussianHMM, _check_covariance_type, check_sequences
from featurelens.dynamics._inference import (
    _Design,
    _fb_log,
    _fb_scaled,
    _log_emission_batch,
)


def _estep(design: _Design, params: tuple, ctype: str, *, need_stats: bool = True):
    """Sufficient statistics and (R,) total log-likelihoods for stacked parameters."""
    pi, A, mu, cov = params
    logb = _log_emission_batch(design, mu, cov, ctype)
    out = _fb_scaled(logb, design, pi, A, need_stats=need_stats)
    if out is None:
        out = _fb_log(logb, design, pi, A, need_stats=need_stats)
    gamma, xi, ll = out
    if not need_stats:
        return None, ll.sum(axis=-1)
    r, k = mu.shape[:2]
    g = gamma.transpose(0, 2, 1, 3).reshape(-1, r * k)
    stats = {
        "start": gamma[0].sum(axis=1),
        "trans": xi,
        "post": g.sum(axis=0).reshape(r, k),
        "obs": (g.T @ design.x).reshape(r, k, -1),
        "obs2": (g.T @ design.x2).reshape(r, k, -1),
    }
    return stats, ll.sum(axis=-1)


def _floor_covariances(cov: np.ndarray, floor: float, ctype: str) -> np.ndarray:
    """Raise every eigenvalue (full) or variance (diag) below ``floor`` to ``floor``."""
    if ctype == "diag":
        return np.maximum(cov, floor)
    cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
    low = np.linalg.eigvalsh(cov).min(axis=-1) < floor
    if low.any():
        w, v = np.linalg.eigh(cov[low])
        cov = cov.copy()
        cov[low] = (v * np.maximum(w, floor)[..., None, :]) @ np.swapaxes(v, -1, -2)
    return cov


def _mstep(stats: dict, params: tuple, ctype: str, floor: float, d: int) -> tuple:
    """Compute the maximum-likelihood update of the parameters.

    States with (numerically) no posterior mass keep their old mean, covariance and transition row.
    """
    _, A_old, mu_old, cov_old = params
    pi = stats["start"] / stats["start"].sum(axis=-1, keepdims=True)
    rows = stats["trans"].sum(axis=-1, keepdims=True)
    A = np.where(rows > 0, stats["trans"] / np.where(rows > 0, rows, 1.0), A_old)
    post = stats["post"]
    empty = post < 1e-10 * max(1.0, float(post.sum(axis=-1).max()))
    safe = np.where(empty, 1.0, post)
    mu = stats["obs"] / safe[..., None]
    if ctype == "full":
        i0, i1 = np.triu_indices(d)
        second = np.zeros((*mu.shape[:2], d, d))
        second[..., i0, i1] = stats["obs2"]
        second[..., i1, i0] = stats["obs2"]
        cov = second / safe[..., None, None] - mu[..., :, None] * mu[..., None, :]
        cov = _floor_covariances(np.where(empty[..., None, None], cov_old, cov), floor, ctype)
    else:
        cov = stats["obs2"] / safe[..., None] - mu * mu
        cov = _floor_covariances(np.where(empty[..., None], cov_old, cov), floor, ctype)
    mu = np.where(empty[..., None], mu_old, mu)
    return pi, A, mu, cov


@dataclass(frozen=True)
class RestartResult:
    """One EM run.

    ``history[i]`` is the training log-likelihood of the parameters *before* the i-th M-step
    (hmmlearn's ``monitor_.history``); ``loglik`` is that of the final parameters.
    ``converged`` is True when the gain per time step fell below ``tol`` (reaching ``n_iter``
    does not count as converged, unlike hmmlearn).
    """

    initial: GaussianHMM
    model: GaussianHMM
    loglik: float
    n_iter: int
    converged: bool
    history: np.ndarray


@dataclass(frozen=True)
class HMMFit:
    """Result of :func:`fit_hmm`: the best restart by training log-likelihood and all restarts."""

    model: GaussianHMM
    restarts: tuple[RestartResult, ...]
    best_restart: int
    n_timesteps: int


def _stack(models: Sequence[GaussianHMM]) -> tuple:
    return tuple(np.stack([getattr(m, a) for m in models]) for a in ("startprob", "transmat", "means", "covars"))


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 50) -> np.ndarray:
    """k-means++ seeding followed by Lloyd iterations; returns (k, D) centroids."""
    sq = (x * x).sum(axis=1)
    centers = [x[rng.integers(len(x))]]
    dist = ((x - centers[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = dist.sum()
        i = rng.choice(len(x), p=dist / total) if total > 0 else rng.integers(len(x))
        centers.append(x[i])
        dist = np.minimum(dist, ((x - x[i]) ** 2).sum(axis=1))
    c = np.array(centers)
    for _ in range(n_iter):
        labels = (sq[:, None] - 2.0 * x @ c.T + (c * c).sum(axis=1)[None]).argmin(axis=1)
        counts = np.bincount(labels, minlength=k)
        onehot = np.zeros((len(x), k))
        onehot[np.arange(len(x)), labels] = 1.0
        sums = onehot.T @ x
        new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c)
        if np.array_equal(new, c):
            break
        c = new
    return c


def _initial_models(seqs, k, ctype, n_restarts, init, floor, rng, names) -> list[GaussianHMM]:
    """Seeded initialisations (see :func:`fit_hmm`)."""
    x = np.concatenate(seqs)
    if ctype == "full":
        cov0 = _floor_covariances(np.atleast_2d(np.cov(x.T, bias=True))[None], floor, ctype)[0]
        covars = np.repeat(cov0[None], k, axis=0)
    else:
        covars = np.repeat(np.maximum(x.var(axis=0), floor)[None], k, axis=0)
    distinct = np.unique(x, axis=0) if len(x) <= 20000 else x
    if len(distinct) < k:
        raise ValueError(f"n_states={k} exceeds the number of distinct observations ({len(distinct)})")
    models = []
    for _ in range(n_restarts):
        if init == "kmeans":
            sub = x[rng.choice(len(x), size=min(len(x), 4000), replace=False)]
            means = _kmeans(sub, k, rng)
        else:
            means = distinct[rng.choice(len(distinct), size=k, replace=False)]
        startprob = rng.dirichlet(np.ones(k))
        transmat = rng.dirichlet(np.ones(k), size=k)
        models.append(GaussianHMM(startprob, transmat, means, covars, ctype, names))
    return models


def _check_fit_options(d, covariance_type, n_iter, tol, covariance_floor, feature_names) -> tuple:
    """Validate and return (covariance_type, n_iter, tol, floor, feature_names), shared with select_model."""
    ctype = _check_covariance_type(covariance_type)
    n_iter = check_int(n_iter, name="n_iter", minimum=1)
    if tol is not None:
        tol = check_float(tol, name="tol", low=0.0)
    floor = check_float(covariance_floor, name="covariance_floor", low=0.0)
    names = None if feature_names is None else tuple(str(n) for n in feature_names)
    if names is not None and len(names) != d:
        raise ValueError(f"feature_names has {len(names)} entries, expected {d}")
    return ctype, n_iter, tol, floor, names


def fit_hmm(
    sequences: Any,
    *,
    n_states: int,
    covariance_type: str = "full",
    n_restarts: int = 5,
    n_iter: int = 32,
    tol: float | None = 1e-4,
    covariance_floor: float = 1e-3,
    init: str | GaussianHMM | Sequence[GaussianHMM] = "kmeans",
    random_state: RandomState = 0,
    feature_names: Sequence[str] | None = None,
) -> HMMFit:
    """Fit a Gaussian HMM to many sequences by EM, all restarts batched together.

    Parameters
    ----------
    sequences : list of (T_i, D) float arrays (z-scored runs; lengths may differ).
    n_states : number of hidden states K >= 1.
    covariance_type : ``"full"`` (K, D, D) or ``"diag"`` (K, D).
    n_restarts : number of independent initialisations (ignored when ``init`` gives models).
    n_iter : maximum EM iterations per restart (each = one E-step and one M-step).
    tol : stop a restart when its log-likelihood gain per time step,
        ``(history[-1] - history[-2]) / sum(T_i)``, is below ``tol``; ``None`` always runs
        ``n_iter`` iterations. (hmmlearn's ``tol`` is an absolute gain.)
    covariance_floor : after every M-step each covariance eigenvalue (full) or variance
        (diag) below the floor is raised to it; covariances already above it are left exactly
        as estimated. hmmlearn instead adds ``covars_prior`` to every *entry* and uses
        ``min_covar`` only at initialisation.
    init : ``"kmeans"`` (means = k-means centroids of up to 4000 random rows, each restart
        seeded separately), ``"random"`` (means = K distinct random observations), or one
        :class:`GaussianHMM` / a sequence of them used as the initial parameters of the
        restarts. For the two string options start and transition probabilities are drawn
        from a flat Dirichlet and every state gets the pooled covariance of all rows.
    random_state : int, Generator or None; fixes every initialisation.
    feature_names : optional D names stored on the models.

    Returns
    -------
    HMMFit
        ``model`` is the restart with the highest final training log-likelihood.
    """
    k = check_int(n_states, name="n_states", minimum=1)
    seqs = check_sequences(sequences)
    d = seqs[0].shape[1]
    ctype, n_iter, tol, floor, names = _check_fit_options(
        d, covariance_type, n_iter, tol, covariance_floor, feature_names)
    if isinstance(init, GaussianHMM):
        init = [init]
    if isinstance(init, str):
        init = check_option(init, name="init", options=("kmeans", "random"))
        n_restarts = check_int(n_restarts, name="n_restarts", minimum=1)
        rng = check_random_state(random_state)
        inits = _initial_models(seqs, k, ctype, n_restarts, init, floor, rng, names)
    else:
        inits = list(init)
        if not inits or not all(isinstance(m, GaussianHMM) for m in inits):
            raise TypeError("init must be 'kmeans', 'random', a GaussianHMM or a non-empty sequence of them")
        for m in inits:
            if m.n_states != k or m.n_features != d or m.covariance_type != ctype:
                raise ValueError(
                    f"init models must have n_states={k}, n_features={d}, covariance_type={ctype!r}; "
                    f"got {m.n_states}, {m.n_features}, {m.covariance_type!r}"
                )
        if names is not None:
            inits = [dataclasses.replace(m, feature_names=names) for m in inits]
    design = _Design(seqs, ctype)
    return _best_fit(_em(design, inits, ctype, n_iter=n_iter, tol=tol, floor=floor), design.n_timesteps)


def _best_fit(restarts: Sequence[RestartResult], n_timesteps: int) -> HMMFit:
    """Return the :class:`HMMFit` keeping the restart with the highest finite final log-likelihood."""
    final = np.array([r.loglik for r in restarts])
    best = int(np.argmax(np.where(np.isfinite(final), final, -np.inf)))
    return HMMFit(restarts[best].model, tuple(restarts), best, n_timesteps)


_MAX_BATCH_ELEMENTS = 8_000_000  # per (T, R, N, K) work array: 64 MB in float64


def _em_groups(design: _Design, inits: Sequence[GaussianHMM]) -> list[list[int]]:
    """Group the indices of ``inits`` by K, each group cut so a (T, R, N, K) array stays small.

    Models with different K are not padded into one batch: numpy's stacked matmul costs
    grow linearly with the batch, so a padded batch only adds work (measured).
    """
    per = design.tmax * design.n
    groups = []
    for k in sorted({m.n_states for m in inits}):
        idx = [i for i, m in enumerate(inits) if m.n_states == k]
        size = max(1, _MAX_BATCH_ELEMENTS // (per * k))
        groups += [idx[s : s + size] for s in range(0, len(idx), size)]
    return groups


def _em(
    design: _Design, inits: Sequence[GaussianHMM], ctype: str, *, n_iter: int, tol: float | None, floor: float,
    advance: Any = None,
) -> list[RestartResult]:
    """EM for many initial models (any mix of state counts), batched per :func:`_em_groups`.

    ``advance()`` (optional) is called after every EM iteration of every group.
    """
    results: list[RestartResult | None] = [None] * len(inits)
    for group in _em_groups(design, inits):
        out = _em_group(design, [inits[i] for i in group], ctype, n_iter, tol, floor, advance)
        for i, res in zip(group, out, strict=True):
            results[i] = res
    return results


def _em_group(design, inits, ctype, n_iter, tol, floor, advance) -> list[RestartResult]:
    r, d = len(inits), design.d
    params = _stack(inits)
    active = np.ones(r, dtype=bool)
    history: list[list[float]] = [[] for _ in range(r)]
    converged = np.zeros(r, dtype=bool)
    for _ in range(n_iter):
        idx = np.flatnonzero(active)
        sub = tuple(p[idx] for p in params)
        stats, ll = _estep(design, sub, ctype)
        new = _mstep(stats, sub, ctype, floor, d)
        for p, q in zip(params, new, strict=True):
            p[idx] = q
        for j, i in enumerate(idx):
            history[i].append(float(ll[j]))
            h = history[i]
            if tol is not None and len(h) >= 2 and (h[-1] - h[-2]) < tol * design.n_timesteps:
                converged[i] = True
                active[i] = False
        if advance is not None:
            advance()
        if not active.any():
            break
    _, final_ll = _estep(design, params, ctype, need_stats=False)
    out = []
    for i, m in enumerate(inits):
        model = GaussianHMM(*(p[i] for p in params), ctype, m.feature_names)
        out.append(RestartResult(m, model, float(final_ll[i]), len(history[i]), bool(converged[i]),
                                 np.array(history[i])))
    return out
