"""Gaussian hidden Markov models over many sequences: parameters, inference and batched EM.

Notation: ``K`` states, ``D`` features, sequences ``z_1..z_T`` of shape ``(T_i, D)``.
Emissions ``b_k(z) = N(z; mu_k, Sigma_k)``; ``startprob[k] = p(s_1 = k)``;
``transmat[i, j] = p(s_{t+1} = j | s_t = i)``.

Inference is vectorised over sequences (padded to the longest, with a mask). ``posterior``
(smoothed) runs the forward-backward recursions in log space::

    log alpha_t(k) = log b_k(z_t) + log sum_j exp(log alpha_{t-1}(j)) A_jk

with the log-sum-exp evaluated as ``m + log(exp(log alpha_{t-1} - m) @ A)``,
``m = max_j log alpha_{t-1}(j)``; ``decode`` is the Viterbi algorithm in log space.
``score`` and ``filtered_posterior`` use the scaled forward pass below, whose normalised
alpha *is* the filtered posterior, and fall back to the log-space pass if it underflows.

EM (:func:`fit_hmm`) is batched over sequences *and* restarts. Its E-step uses the scaled
recursion (alpha normalised at every step, emissions shifted by their per-step maximum in log
space before exponentiation), which is the same quantity as the log-space recursion; if a
normaliser ever underflows to zero (only possible with exact zeros in the transition matrix)
that E-step is recomputed with the log-space recursion. M-step = maximum likelihood, i.e.
hmmlearn's update with ``startprob_prior = transmat_prior = 1``, ``means_weight = 0`` and
``covars_prior = 0``, followed by the covariance floor (see :func:`fit_hmm`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)

COVARIANCE_TYPES = ("full", "diag")
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- validation


def check_sequences(sequences: Any, *, name: str = "sequences", n_features: int | None = None) -> list[np.ndarray]:
    """Return ``sequences`` as a list of C-contiguous float64 ``(T_i, D)`` arrays.

    Accepts a list/tuple of 2-D arrays, one 2-D array (one sequence) or a 3-D array
    ``(N, T, D)``. Raises ``ValueError`` naming the offending sequence for a wrong number of
    dimensions, an empty sequence, NaN/inf entries or a feature count different from the
    first sequence (or from ``n_features``).
    """
    if isinstance(sequences, np.ndarray):
        if sequences.ndim == 2:
            sequences = [sequences]
        elif sequences.ndim == 3:
            sequences = list(sequences)
        else:
            raise ValueError(f"{name} must be a list of (T, D) arrays or one (N, T, D) array, got an array with shape {sequences.shape}")
    if not isinstance(sequences, (list, tuple)):
        raise TypeError(f"{name} must be a list of (T, D) arrays, got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError(f"{name} is empty; pass at least one (T, D) array")
    out = []
    for i, seq in enumerate(sequences):
        try:
            arr = np.ascontiguousarray(seq, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}[{i}] is not a numeric array: {exc}") from None
        if arr.ndim != 2:
            raise ValueError(f"{name}[{i}] must be 2-D (T, D), got shape {arr.shape}")
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"{name}[{i}] must have at least one step and one feature, got shape {arr.shape}")
        if n_features is None:
            n_features = arr.shape[1]
        elif arr.shape[1] != n_features:
            raise ValueError(f"{name}[{i}] has {arr.shape[1]} features, expected {n_features} (all sequences need the same D)")
        bad = ~np.isfinite(arr)
        if bad.any():
            t, d = np.argwhere(bad)[0]
            raise ValueError(f"{name}[{i}] contains NaN or inf (first at step {t}, feature {d}); drop or impute such runs first")
        out.append(arr)
    return out


def _check_covariance_type(covariance_type: Any) -> str:
    return check_option(covariance_type, name="covariance_type", options=COVARIANCE_TYPES)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True, eq=False)
class GaussianHMM:
    """A fitted (or hand-made) Gaussian HMM; immutable float64 arrays.

    Parameters
    ----------
    startprob : (K,) initial state distribution.
    transmat : (K, K) row-stochastic transition matrix, ``transmat[i, j] = p(j | i)``.
    means : (K, D) state means.
    covars : (K, D, D) for ``"full"`` or (K, D) variances for ``"diag"``; positive definite.
    covariance_type : ``"full"`` or ``"diag"``.
    feature_names : optional D names of the features (columns).

    All inference methods take ``sequences``: a list of ``(T_i, D)`` arrays (z-scored runs).
    """

    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    covars: np.ndarray
    covariance_type: str = "full"
    feature_names: tuple[str, ...] | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ctype = _check_covariance_type(self.covariance_type)
        arrays = {}
        for name in ("startprob", "transmat", "means", "covars"):
            try:
                arr = np.array(getattr(self, name), dtype=np.float64, copy=True)
            except (TypeError, ValueError):
                raise TypeError(f"{name} must be a numeric array") from None
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or inf")
            arr.flags.writeable = False
            arrays[name] = arr
        pi, A, mu, cov = arrays["startprob"], arrays["transmat"], arrays["means"], arrays["covars"]
        if mu.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {mu.shape}")
        k, d = mu.shape
        if k < 1:
            raise ValueError("means must have at least one state (K >= 1)")
        if pi.shape != (k,):
            raise ValueError(f"startprob must have shape ({k},), got {pi.shape}")
        if A.shape != (k, k):
            raise ValueError(f"transmat must have shape ({k}, {k}), got {A.shape}")
        want = (k, d, d) if ctype == "full" else (k, d)
        if cov.shape != want:
            raise ValueError(f"covars must have shape {want} for covariance_type={ctype!r}, got {cov.shape}")
        if (pi < 0).any() or abs(pi.sum() - 1.0) > 1e-8:
            raise ValueError("startprob must be non-negative and sum to 1")
        if (A < 0).any() or np.abs(A.sum(axis=1) - 1.0).max() > 1e-8:
            raise ValueError("transmat rows must be non-negative and sum to 1")
        if ctype == "diag":
            if (cov <= 0).any():
                raise ValueError("covars (diag) must be positive")
        else:
            if np.abs(cov - cov.transpose(0, 2, 1)).max() > 1e-8 * max(1.0, np.abs(cov).max()):
                raise ValueError("covars must be symmetric")
            try:
                np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise ValueError("covars must be positive definite") from None
        names = self.feature_names
        if names is not None:
            names = tuple(str(n) for n in names)
            if len(names) != d:
                raise ValueError(f"feature_names has {len(names)} entries, expected {d}")
        for name, arr in arrays.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "feature_names", names)

    # -- sizes
    @property
    def n_states(self) -> int:
        """Number of hidden states K."""
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        """Number of observed features D."""
        return self.means.shape[1]

    @property
    def n_parameters(self) -> int:
        """Free parameters, as in hmmlearn's ``aic``/``bic``.

        ``(K - 1) + K (K - 1) + K D`` plus ``K D (D + 1) / 2`` (full) or ``K D`` (diag).
        """
        k, d = self.means.shape
        cov = k * d * (d + 1) // 2 if self.covariance_type == "full" else k * d
        return (k - 1) + k * (k - 1) + k * d + cov

    def _precision(self) -> tuple[np.ndarray, np.ndarray]:
        """(K, D, D) precision matrices (inverse covariances) and (K,) log-determinants."""
        if "precision" not in self._cache:
            self._cache["precision"] = _precisions(self.covars[None], self.covariance_type)
        prec, logdet = self._cache["precision"]
        return prec[0], logdet[0]

    # -- inference
    def _check(self, sequences: Any) -> list[np.ndarray]:
        return check_sequences(sequences, n_features=self.n_features)

    def log_emission(self, sequences: Any) -> list[np.ndarray]:
        """Per-sequence ``(T_i, K)`` Gaussian log-densities ``log b_k(z_t)``."""
        return self._emissions(self._check(sequences))

    def _emissions(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        """Log-densities of all rows at once (centred and whitened, no quadratic expansion)."""
        if "whiten" not in self._cache:
            if self.covariance_type == "full":
                chol = np.linalg.cholesky(self.covars)
                w = np.linalg.solve(chol, np.broadcast_to(np.eye(self.n_features), self.covars.shape))
                logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
            else:
                w, logdet = 1.0 / np.sqrt(self.covars), np.log(self.covars).sum(axis=-1)
            self._cache["whiten"] = (w, logdet)
        w, logdet = self._cache["whiten"]
        x = np.concatenate(seqs)
        k, d = self.means.shape
        if self.covariance_type == "full":
            # y[t, k] = W_k (x_t - mu_k) for all states in one product, W_k = L_k^{-1}
            y = (x @ w.reshape(k * d, d).T).reshape(len(x), k, d)
            y -= np.einsum("kde,ke->kd", w, self.means)[None]
        else:
            y = (x[:, None, :] - self.means[None]) * w[None]
        maha = np.einsum("tkd,tkd->tk", y, y)
        out = -0.5 * (d * _LOG_2PI + logdet + maha)
        return np.split(out, np.cumsum([len(q) for q in seqs])[:-1])

    def _filter(self, sequences: Any) -> tuple[list[np.ndarray], np.ndarray]:
        """Filtered posteriors (scaled forward pass, log-space if it underflows) and (N,) LLs."""
        seqs = self._check(sequences)
        logb, valid, lengths = _pad(self._emissions(seqs))
        pi, A = self.startprob[None], self.transmat[None]
        fwd = _forward_scaled(logb, valid, pi, A)
        if fwd is None:
            log_a, ll = _forward_log(logb, valid, pi, A)
            alpha = _softmax(log_a)
        else:
            alpha, _, _, ll = fwd
        return [alpha[:n, 0, i] for i, n in enumerate(lengths)], ll[0]

    def score_per_sequence(self, sequences: Any) -> np.ndarray:
        """Log-likelihood ``log p(z_1:T_i)`` of each sequence, shape (N,)."""
        return self._filter(sequences)[1]

    def score(self, sequences: Any) -> float:
        """Total log-likelihood of all sequences (sum of :meth:`score_per_sequence`)."""
        return float(self.score_per_sequence(sequences).sum())

    def filtered_posterior(self, sequences: Any) -> list[np.ndarray]:
        """Filtered posteriors ``p(s_t = k | z_1:t)``, one ``(T_i, K)`` array per sequence."""
        return self._filter(sequences)[0]

    def posterior(self, sequences: Any) -> list[np.ndarray]:
        """Smoothed posteriors ``p(s_t = k | z_1:T)`` (log-space forward-backward), one
        ``(T_i, K)`` array per sequence."""
        seqs = self._check(sequences)
        logb, valid, lengths = _pad(self._emissions(seqs))
        log_a, _ = _forward_log(logb, valid, self.startprob[None], self.transmat[None])
        log_b = _backward_log(logb, valid, self.transmat[None])
        return [_softmax(log_a[:n, 0, i] + log_b[:n, 0, i]) for i, n in enumerate(lengths)]

    def decode(self, sequences: Any) -> list[np.ndarray]:
        """Most likely state paths (Viterbi, log space), one int ``(T_i,)`` array per sequence."""
        seqs = self._check(sequences)
        logb, valid, lengths = _pad(self._emissions(seqs))
        with np.errstate(divide="ignore"):
            log_pi, log_A = np.log(self.startprob), np.log(self.transmat)
        return _viterbi(logb[:, 0], valid, lengths, log_pi, log_A)

    def aic(self, sequences: Any) -> float:
        """``-2 log L + 2 n_parameters`` on ``sequences``."""
        return -2.0 * self.score(sequences) + 2.0 * self.n_parameters

    def bic(self, sequences: Any) -> float:
        """``-2 log L + n_parameters log N`` with N the total number of time steps (as hmmlearn)."""
        n = sum(len(s) for s in self._check(sequences))
        return -2.0 * self.score(sequences) + self.n_parameters * math.log(n)

    # -- persistence
    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (``.npz`` + JSON metadata; see :mod:`._persist`)."""
        from featurelens.dynamics._persist import save_hmm

        return save_hmm(self, path)

    @classmethod
    def load(cls, path: str | Path) -> GaussianHMM:
        """Read a model written by :meth:`save` (no pickle involved)."""
        from featurelens.dynamics._persist import load_hmm

        return load_hmm(path)


# --------------------------------------------------------------------------- numerics


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _precisions(covars: np.ndarray, ctype: str) -> tuple[np.ndarray, np.ndarray]:
    """Precisions and log-determinants of stacked covariances (..., K, D, D) or (..., K, D)."""
    if ctype == "diag":
        return 1.0 / covars, np.log(covars).sum(axis=-1)
    try:
        chol = np.linalg.cholesky(covars)
    except np.linalg.LinAlgError:
        raise ValueError("a state covariance is not positive definite; raise covariance_floor") from None
    eye = np.broadcast_to(np.eye(covars.shape[-1]), covars.shape)
    linv = np.linalg.solve(chol, eye)
    prec = np.swapaxes(linv, -1, -2) @ linv
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    return prec, logdet


def _pad(per_seq: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack (T_i, K) arrays to (Tmax, 1, N, K) with a (Tmax, N) validity mask."""
    lengths = np.array([len(a) for a in per_seq])
    tmax, n, k = lengths.max(), len(per_seq), per_seq[0].shape[1]
    out = np.zeros((tmax, 1, n, k))
    for i, a in enumerate(per_seq):
        out[: len(a), 0, i] = a
    valid = np.arange(tmax)[:, None] < lengths[None, :]
    return out, valid, lengths


def _logmatmul(log_v: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """``log(exp(log_v) @ mat)`` for (R, N, K) ``log_v`` and (R, K, K) ``mat``, stably."""
    m = log_v.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(log_v - m) @ mat) + m


def _forward_log(logb: np.ndarray, valid: np.ndarray, pi: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-space forward pass.

    logb (T, R, N, K) emission log-densities, valid (T, N) mask (sequences start at t = 0),
    pi (R, K), A (R, K, K). Returns log alpha (T, R, N, K) (padded steps repeat the last
    valid value) and the (R, N) log-likelihoods.
    """
    T = logb.shape[0]
    log_a = np.empty_like(logb)
    with np.errstate(divide="ignore"):
        log_a[0] = np.log(pi)[:, None, :] + logb[0]
    for t in range(1, T):
        new = _logmatmul(log_a[t - 1], A) + logb[t]
        log_a[t] = np.where(valid[t][None, :, None], new, log_a[t - 1])
    m = log_a[-1].max(axis=-1)
    ll = m + np.log(np.exp(log_a[-1] - m[..., None]).sum(axis=-1))
    return log_a, ll


def _backward_log(logb: np.ndarray, valid: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Log-space backward pass; log beta (T, R, N, K), zero at and after each sequence's end."""
    T = logb.shape[0]
    log_b = np.zeros_like(logb)
    At = np.swapaxes(A, -1, -2)
    for t in range(T - 2, -1, -1):
        new = _logmatmul(logb[t + 1] + log_b[t + 1], At)
        log_b[t] = np.where(valid[t + 1][None, :, None], new, 0.0)
    return log_b


def _viterbi(logb: np.ndarray, valid: np.ndarray, lengths: np.ndarray, log_pi: np.ndarray, log_A: np.ndarray) -> list[np.ndarray]:
    """Viterbi paths for logb (T, N, K), vectorised over the N sequences."""
    T, N, K = logb.shape
    delta = log_pi[None, :] + logb[0]
    back = np.zeros((T, N, K), dtype=np.int64)
    for t in range(1, T):
        cand = delta[:, :, None] + log_A[None]  # (N, i, j)
        arg = cand.argmax(axis=1)
        new = np.take_along_axis(cand, arg[:, None, :], axis=1)[:, 0] + logb[t]
        back[t] = arg
        delta = np.where(valid[t][:, None], new, delta)
    paths = []
    for i, n in enumerate(lengths):
        path = np.empty(n, dtype=np.int64)
        path[-1] = delta[i].argmax()
        for t in range(n - 1, 0, -1):
            path[t - 1] = back[t, i, path[t]]
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- batched EM


class _Design:
    """Training sequences laid out once per fit: padded rows (Tmax * N, D) in (t, n) order."""

    def __init__(self, seqs: list[np.ndarray], ctype: str) -> None:
        self.lengths = np.array([len(s) for s in seqs])
        self.n, self.tmax, self.d = len(seqs), int(self.lengths.max()), seqs[0].shape[1]
        self.equal = bool((self.lengths == self.tmax).all())
        self.valid = np.arange(self.tmax)[:, None] < self.lengths[None, :]
        xp = np.zeros((self.tmax, self.n, self.d))
        for i, s in enumerate(seqs):
            xp[: len(s), i] = s
        self.x = xp.reshape(-1, self.d)
        if ctype == "full":
            self.iu = np.triu_indices(self.d)
            self.x2 = self.x[:, self.iu[0]] * self.x[:, self.iu[1]]
        else:
            self.x2 = self.x * self.x
        self.n_timesteps = int(self.lengths.sum())


def _log_emission_batch(design: _Design, mu: np.ndarray, cov: np.ndarray, ctype: str) -> np.ndarray:
    """(T, R, N, K) log-densities for stacked parameters mu (R, K, D), cov (R, K, D, D | D).

    Uses the quadratic expansion ``x'Px - 2 mu'Px + mu'P mu`` so that all restarts and states
    are one matrix product with the precomputed pairwise products of the features.
    """
    r, k, d = mu.shape
    prec, logdet = _precisions(cov, ctype)
    if ctype == "full":
        i0, i1 = design.iu
        w2 = prec[..., i0, i1] * np.where(i0 == i1, 1.0, 2.0)
        pmu = np.einsum("rkde,rke->rkd", prec, mu)
    else:
        w2 = prec
        pmu = prec * mu
    const = (mu * pmu).sum(-1) + logdet + d * _LOG_2PI
    quad = design.x2 @ w2.reshape(r * k, -1).T
    quad += design.x @ (-2.0 * pmu.reshape(r * k, d)).T
    quad += const.reshape(-1)
    quad *= -0.5
    return np.ascontiguousarray(quad.reshape(design.tmax, design.n, r, k).transpose(0, 2, 1, 3))


def _pairs_matmul(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """sum over (t, n) of u[t, r, n, :]' v[t, r, n, :] -> (R, K, K)."""
    r, k = u.shape[1], u.shape[3]
    uu = u.transpose(1, 0, 2, 3).reshape(r, -1, k)
    vv = v.transpose(1, 0, 2, 3).reshape(r, -1, k)
    return np.swapaxes(uu, 1, 2) @ vv


def _forward_scaled(logb: np.ndarray, valid: np.ndarray, pi: np.ndarray, A: np.ndarray):
    """Scaled forward pass for logb (T, R, N, K).

    Returns ``alpha`` (T, R, N, K) normalised per step (= the filtered posterior), the emission
    scale ``b`` (exp of logb shifted by its per-step maximum), the normalisers ``c`` (T, R, N)
    and the (R, N) log-likelihoods; ``None`` if a normaliser underflowed to zero.
    """
    equal = bool(valid.all())
    shift = logb.max(axis=-1, keepdims=True)
    b = np.exp(logb - shift)
    T = b.shape[0]
    alpha = np.empty_like(b)
    c = np.empty(b.shape[:-1])
    np.multiply(pi[:, None, :], b[0], out=alpha[0])
    np.sum(alpha[0], axis=-1, out=c[0])
    alpha[0] /= c[0][..., None]
    vmask = valid[:, None, :]
    invalid = ~vmask
    # in-place updates (out=) keep the per-step Python overhead to four numpy calls
    with np.errstate(divide="ignore", invalid="ignore"):
        for t in range(1, T):
            cur, ct = alpha[t], c[t]
            np.matmul(alpha[t - 1], A, out=cur)
            cur *= b[t]
            np.sum(cur, axis=-1, out=ct)
            cur /= ct[..., None]
            if not equal:  # padded steps carry alpha over with normaliser 1
                np.copyto(cur, alpha[t - 1], where=invalid[t][..., None])
                np.copyto(ct, 1.0, where=invalid[t])
    if not (np.isfinite(c).all() and (c > 0).all()):
        return None
    ll = (np.log(c) + np.where(vmask, shift[..., 0], 0.0)).sum(axis=0)
    return alpha, b, c, ll


def _fb_scaled(logb: np.ndarray, design: _Design, pi: np.ndarray, A: np.ndarray, *, need_stats: bool):
    """Scaled forward-backward. Returns (gamma, xi, ll) or None if a normaliser underflowed."""
    fwd = _forward_scaled(logb, design.valid, pi, A)
    if fwd is None:
        return None
    alpha, b, c, ll = fwd
    if not need_stats:
        return None, None, ll
    T, equal = b.shape[0], design.equal
    vmask = design.valid[:, None, :]
    invalid = ~vmask
    bb = b / c[..., None]
    beta = np.empty_like(b)
    beta[-1] = 1.0
    v = np.empty_like(b[1:])  # v[t - 1] = b_t beta_t / c_t
    At = np.ascontiguousarray(np.swapaxes(A, -1, -2))
    for t in range(T - 2, -1, -1):
        np.multiply(bb[t + 1], beta[t + 1], out=v[t])
        np.matmul(v[t], At, out=beta[t])
        if not equal:
            np.copyto(beta[t], 1.0, where=invalid[t + 1][..., None])
    gamma = alpha * beta
    if not equal:
        gamma *= vmask[..., None]
        v *= vmask[1:, ..., None]
    xi = _pairs_matmul(alpha[:-1], v) * A
    return gamma, xi, ll


def _fb_log(logb: np.ndarray, design: _Design, pi: np.ndarray, A: np.ndarray, *, need_stats: bool):
    """Log-space forward-backward with the same outputs as :func:`_fb_scaled`."""
    log_a, ll = _forward_log(logb, design.valid, pi, A)
    if not need_stats:
        return None, None, ll
    log_b = _backward_log(logb, design.valid, A)
    vmask = design.valid[:, None, :, None]
    gamma = np.exp(log_a + log_b - ll[None, ..., None]) * vmask
    v = logb[1:] + log_b[1:]
    m1 = log_a[:-1].max(axis=-1, keepdims=True)
    m2 = v.max(axis=-1, keepdims=True)
    u = np.exp(log_a[:-1] - m1) * np.exp(m1 + m2 - ll[None, ..., None])
    xi = _pairs_matmul(u, np.exp(v - m2) * vmask[1:]) * A
    return gamma, xi, ll


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
    """Maximum-likelihood update; states with (numerically) no posterior mass keep their old
    mean, covariance and transition row."""
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
    """Validated (covariance_type, n_iter, tol, floor, feature_names) shared with select_model."""
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
    random_state: RandomState = None,
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
    ctype, n_iter, tol, floor, names = _check_fit_options(d, covariance_type, n_iter, tol, covariance_floor, feature_names)
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
    restarts = _em(design, inits, ctype, n_iter=n_iter, tol=tol, floor=floor)
    final = np.array([r.loglik for r in restarts])
    best = int(np.argmax(np.where(np.isfinite(final), final, -np.inf)))
    return HMMFit(restarts[best].model, tuple(restarts), best, design.n_timesteps)


_MAX_BATCH_ELEMENTS = 8_000_000  # per (T, R, N, K) work array: 64 MB in float64


def _em_groups(design: _Design, inits: Sequence[GaussianHMM]) -> list[list[int]]:
    """Indices of ``inits`` grouped by K, each group cut so a (T, R, N, K) array stays small.

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
        out.append(RestartResult(m, model, float(final_ll[i]), len(history[i]), bool(converged[i]), np.array(history[i])))
    return out
