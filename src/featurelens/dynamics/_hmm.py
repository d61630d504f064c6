"""Gaussian hidden Markov models over many sequences: the model, its validation and inference.

Notation: ``K`` states, ``D`` features, sequences ``z_1..z_T`` of shape ``(T_i, D)``.
Emissions ``b_k(z) = N(z; mu_k, Sigma_k)``; ``startprob[k] = p(s_1 = k)``;
``transmat[i, j] = p(s_{t+1} = j | s_t = i)``.

Inference is vectorised over sequences (padded to the longest, with a mask). ``posterior``
(smoothed) runs the forward-backward recursions in log space::

    log alpha_t(k) = log b_k(z_t) + log sum_j exp(log alpha_{t-1}(j)) A_jk

with the log-sum-exp evaluated as ``m + log(exp(log alpha_{t-1} - m) @ A)``,
``m = max_j log alpha_{t-1}(j)``; ``decode`` is the Viterbi algorithm in log space.
``score`` and ``filtered_posterior`` use the scaled forward pass, whose normalised
alpha *is* the filtered posterior, and fall back to the log-space pass if it underflows.

The recursions live in :mod:`._inference`; batched EM (:func:`fit_hmm`) in :mod:`._em`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featurelens._validation import check_option
from featurelens.dynamics._inference import (
    _LOG_2PI,
    _backward_log,
    _forward_log,
    _forward_scaled,
    _pad,
    _precisions,
    _softmax,
    _viterbi,
    _whitening,
)
from featurelens.dynamics._persist import ARRAYS, read_hmm_file, write_hmm_file

#: the covariance forms of :class:`GaussianHMM`: a full ``(D, D)`` or a diagonal matrix per state
COVARIANCE_TYPES = ("full", "diag")


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
            raise ValueError(f"{name} must be a list of (T, D) arrays or one (N, T, D) array, "
                             f"got an array with shape {sequences.shape}")
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
            raise ValueError(f"{name}[{i}] has {arr.shape[1]} features, expected {n_features} "
                             "(all sequences need the same D)")
        bad = ~np.isfinite(arr)
        if bad.any():
            t, d = np.argwhere(bad)[0]
            raise ValueError(f"{name}[{i}] contains NaN or inf (first at step {t}, feature {d}); "
                             "drop or impute such runs first")
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
            self._cache["precision"] = _precisions(self.covars, self.covariance_type)
        return self._cache["precision"]

    # -- inference
    def _check(self, sequences: Any) -> list[np.ndarray]:
        return check_sequences(sequences, n_features=self.n_features)

    def log_emission(self, sequences: Any) -> list[np.ndarray]:
        """Per-sequence ``(T_i, K)`` Gaussian log-densities ``log b_k(z_t)``."""
        return self._emissions(self._check(sequences))

    def _emissions(self, seqs: list[np.ndarray]) -> list[np.ndarray]:
        """Log-densities of all rows at once (centred and whitened, no quadratic expansion)."""
        if "whiten" not in self._cache:
            self._cache["whiten"] = _whitening(self.covars, self.covariance_type)
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

    def _padded_emissions(self, sequences: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the checked ``sequences``' log-emissions padded by :func:`._inference._pad`.

        Returns (T, 1, N, K) log-emissions, the mask and the lengths.
        """
        return _pad(self._emissions(self._check(sequences)))

    def _filter(self, sequences: Any) -> tuple[list[np.ndarray], np.ndarray]:
        """Return the filtered posteriors (scaled forward pass, log-space if it underflows) and (N,) LLs."""
        logb, valid, lengths = self._padded_emissions(sequences)
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
        """Return the filtered posteriors ``p(s_t = k | z_1:t)``, one ``(T_i, K)`` array per sequence."""
        return self._filter(sequences)[0]

    def posterior(self, sequences: Any) -> list[np.ndarray]:
        """Return the smoothed posteriors ``p(s_t = k | z_1:T)``, one ``(T_i, K)`` array per sequence.

        Computed by log-space forward-backward.
        """
        logb, valid, lengths = self._padded_emissions(sequences)
        log_a, _ = _forward_log(logb, valid, self.startprob[None], self.transmat[None])
        log_b = _backward_log(logb, valid, self.transmat[None])
        return [_softmax(log_a[:n, 0, i] + log_b[:n, 0, i]) for i, n in enumerate(lengths)]

    def decode(self, sequences: Any) -> list[np.ndarray]:
        """Most likely state paths (Viterbi, log space), one int ``(T_i,)`` array per sequence."""
        logb, valid, lengths = self._padded_emissions(sequences)
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
        """Write the model to ``path`` (``.npz`` + JSON metadata, no pickle; see :mod:`._persist`)."""
        arrays = {name: getattr(self, name) for name in ARRAYS}
        return write_hmm_file(path, arrays, covariance_type=self.covariance_type, feature_names=self.feature_names)

    @classmethod
    def load(cls, path: str | Path) -> GaussianHMM:
        """Read a model written by :meth:`save` (no pickle involved); ``ValueError`` for any other file."""
        arrays, meta = read_hmm_file(path)
        names = meta.get("feature_names")
        return cls(arrays["startprob"], arrays["transmat"], arrays["means"], arrays["covars"],
                   meta["covariance_type"], None if names is None else tuple(names))


def save_hmm(model: GaussianHMM, path: str | Path) -> Path:
    """Write ``model`` to ``path``; the same as ``model.save(path)``, with a type check."""
    if not isinstance(model, GaussianHMM):
        raise TypeError(f"model must be a GaussianHMM, got {type(model).__name__}")
    return model.save(path)


def load_hmm(path: str | Path) -> GaussianHMM:
    """Read a model written by :func:`save_hmm` or :meth:`GaussianHMM.save`; the same as ``GaussianHMM.load``."""
    return GaussianHMM.load(path)
