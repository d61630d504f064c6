"""Forward/backward recursions, Viterbi and Gaussian log-emissions for Gaussian HMMs.

Shapes follow :mod:`._hmm`: ``T`` steps, ``R`` stacked parameter sets (restarts), ``N``
sequences padded to the longest (with a (T, N) validity mask), ``K`` states, ``D`` features.

The log-space forward pass evaluates::

    log alpha_t(k) = log b_k(z_t) + log sum_j exp(log alpha_{t-1}(j)) A_jk

with the log-sum-exp as ``m + log(exp(log alpha_{t-1} - m) @ A)``,
``m = max_j log alpha_{t-1}(j)``. The scaled recursion (alpha normalised at every step,
emissions shifted by their per-step maximum in log space before exponentiation) computes the
same quantity; its normalised alpha is the filtered posterior. It returns ``None`` when a
normaliser underflows to zero (only possible with exact zeros in the transition matrix), and
callers then fall back to the log-space recursion.
"""

from __future__ import annotations

import math

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- one parameter set


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _whitening(covars: np.ndarray, ctype: str) -> tuple[np.ndarray, np.ndarray]:
    """Whitening ``W`` (``W' W = Sigma^{-1}``) and log-determinants of stacked covariances.

    ``W = L^{-1}`` (Cholesky ``Sigma = L L'``) of shape (..., K, D, D) for ``"full"``,
    ``1 / sqrt(Sigma)`` of shape (..., K, D) for ``"diag"``.
    """
    if ctype == "diag":
        return 1.0 / np.sqrt(covars), np.log(covars).sum(axis=-1)
    try:
        chol = np.linalg.cholesky(covars)
    except np.linalg.LinAlgError:
        raise ValueError("a state covariance is not positive definite; raise covariance_floor") from None
    linv = np.linalg.solve(chol, np.broadcast_to(np.eye(covars.shape[-1]), covars.shape))
    return linv, 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)


def _precisions(covars: np.ndarray, ctype: str) -> tuple[np.ndarray, np.ndarray]:
    """Precisions and log-determinants of stacked covariances (..., K, D, D) or (..., K, D)."""
    if ctype == "diag":
        return 1.0 / covars, np.log(covars).sum(axis=-1)
    linv, logdet = _whitening(covars, ctype)
    return np.swapaxes(linv, -1, -2) @ linv, logdet


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


def _viterbi(
    logb: np.ndarray, valid: np.ndarray, lengths: np.ndarray, log_pi: np.ndarray, log_A: np.ndarray
) -> list[np.ndarray]:
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


# --------------------------------------------------------------------------- batched over restarts


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
    """Sum over (t, n) of u[t, r, n, :]' v[t, r, n, :] -> (R, K, K)."""
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
