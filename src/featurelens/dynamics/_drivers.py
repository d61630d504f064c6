"""Transition drivers: the exact gradient of the filtered state posterior w.r.t. the observation.

For a Gaussian HMM the filtered posterior is ``p_t(k) = p(s_t = k | z_1:t) = softmax_k(log
alpha_t(k))`` with ``log alpha_t(k) = log b_k(z_t) + log sum_j alpha_{t-1}(j) A_jk``. Holding
``z_1:t-1`` fixed, ``z_t`` enters only through ``log b_k(z_t)``, whose gradient is
``g_k = Sigma_k^{-1} (mu_k - z_t)``. Through the softmax::

    d p_t(k) / d z_t     = p_t(k) (g_k - gbar),   gbar = sum_j p_t(j) g_j   (a D-vector)
    d log p_t(k) / d z_t = g_k - gbar

The notebook of Latent State Models of Training Dynamics (Hu et al., 2023) and the authors' code
subtracted the scalar ``sum_j sum_d p_j g_j[d]`` from every feature and dropped the factor ``p_k``;
neither is a derivative of the posterior.

Raw units: runs are z-scored per run and feature, ``z = (x - m) / s``, so
``d p / d x = (d p / d z) / s`` (element-wise per feature, with that run's ``s``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from featurelens._protocol import html_table, jsonable
from featurelens._validation import check_int, check_option
from featurelens.dynamics._hmm import GaussianHMM, check_sequences


def _check_model(model: Any) -> GaussianHMM:
    if not isinstance(model, GaussianHMM):
        raise TypeError(f"model must be a GaussianHMM, got {type(model).__name__}")
    return model


def _check_scale(scale: Any, n_runs: int, d: int) -> list[np.ndarray]:
    if scale is None:
        raise ValueError("units='raw' needs scale: the per-feature standard deviations used to z-score each run")
    if isinstance(scale, (list, tuple)):
        arrs = [np.asarray(s, dtype=np.float64) for s in scale]
        if len(arrs) != n_runs:
            raise ValueError(f"scale has {len(arrs)} entries, expected one per sequence ({n_runs})")
    else:
        arr = np.asarray(scale, dtype=np.float64)
        if arr.ndim == 1:
            arrs = [arr] * n_runs
        elif arr.ndim == 2 and arr.shape[0] == n_runs:
            arrs = list(arr)
        else:
            raise ValueError(f"scale must have shape ({d},) or ({n_runs}, {d}), got {arr.shape}")
    for s in arrs:
        if s.shape != (d,):
            raise ValueError(f"scale must hold {d} values per sequence, got shape {s.shape}")
        if not (np.isfinite(s).all() and (s > 0).all()):
            raise ValueError("scale must be positive and finite")
    return arrs


def posterior_gradient(
    model: GaussianHMM,
    sequences: Any,
    *,
    log: bool = False,
    units: str = "z",
    scale: Any = None,
) -> list[np.ndarray]:
    """Gradient of the filtered posterior with respect to the current observation.

    Parameters
    ----------
    model : a :class:`GaussianHMM`.
    sequences : list of (T_i, D) z-scored arrays.
    log : if True return ``d log p_t(k) / d z_t = g_k - gbar`` instead of
        ``d p_t(k) / d z_t = p_t(k) (g_k - gbar)`` (see the module docstring).
    units : ``"z"`` (per z-score unit) or ``"raw"`` (per raw metric unit; needs ``scale``).
    scale : for ``units="raw"``: the z-scoring standard deviations, shape (D,) for all runs,
        (N, D) or a list of N (D,) arrays (one per run).

    Returns
    -------
    list of (T_i, K, D) arrays: entry ``[t, k, d]`` is the derivative of state ``k``'s filtered
    posterior at step ``t`` with respect to feature ``d`` of ``z_t`` (``z_1:t-1`` held fixed).
    """
    model = _check_model(model)
    units = check_option(units, name="units", options=("z", "raw"))
    seqs = check_sequences(sequences, n_features=model.n_features)
    scales = _check_scale(scale, len(seqs), model.n_features) if units == "raw" else None
    prec, _ = model._precision()
    mu = model.means
    z = np.concatenate(seqs)
    p = np.concatenate(model.filtered_posterior(seqs))
    if model.covariance_type == "full":
        # g[t, k] = P_k (mu_k - z_t), all states in one product (P_k symmetric)
        k, d = mu.shape
        g = (z @ prec.reshape(k * d, d).T).reshape(len(z), k, d)
        np.subtract(np.einsum("kde,ke->kd", prec, mu)[None], g, out=g)
    else:
        g = prec[None] * (mu[None] - z[:, None, :])
    gbar = np.einsum("tk,tkd->td", p, g)
    g -= gbar[:, None, :]
    if not log:
        g *= p[..., None]
    if scales is not None:
        g /= np.repeat(np.stack(scales), [len(q) for q in seqs], axis=0)[:, None, :]
    return np.split(g, np.cumsum([len(q) for q in seqs])[:-1])


@dataclass(frozen=True)
class TransitionExplanation:
    """Features ranked by the mean gradient of the destination state's filtered posterior.

    ``mean_gradient[r]`` is the mean over occurrences of ``d p_t(j) / d z_t[feature r]``
    (or of ``log p_t(j)`` when ``log``) at the step given by ``step``; ``mean_change[r]`` is
    ``means[j] - means[i]`` for the same feature. Rows are sorted by ``|mean_gradient|``,
    largest first.
    """

    source: int
    destination: int
    step: str
    log: bool
    units: str
    n_occurrences: int
    occurrences: tuple[tuple[int, int], ...]
    features: tuple[str, ...]
    mean_gradient: np.ndarray
    mean_change: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per feature, largest |mean gradient| first: ``rank, feature, mean_gradient, mean_change``."""
        return pd.DataFrame(
            {
                "rank": np.arange(1, len(self.features) + 1),
                "feature": list(self.features),
                "mean_gradient": self.mean_gradient,
                "mean_change": self.mean_change,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict: the transition, the settings, the occurrences and the rows of :meth:`to_frame`."""
        return jsonable({"from": self.source, "to": self.destination, "step": self.step, "log": self.log,
                         "units": self.units, "n_occurrences": self.n_occurrences,
                         "occurrences": [list(o) for o in self.occurrences],
                         "features": self.to_frame().to_dict(orient="records")}, where="transition")

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), title=f"Transition {self.source} → {self.destination}: "
                          f"{self.n_occurrences} occurrences (gradient at the {self.step} step, {self.units} units)")

    def __str__(self) -> str:
        what = "d log p" if self.log else "d p"
        at = "last step in the source state" if self.step == "last" else "first step in the destination state"
        lines = [
            f"transition {self.source} -> {self.destination}: {self.n_occurrences} occurrences",
            f"{what}(s_t = {self.destination} | z_1:t) / d z_t at the {at} ({self.units} units), mean over occurrences",
            f"{'rank':>4}  {'feature':<24} {'mean gradient':>14} {'mean change':>12}",
        ]
        for r, (f, g, c) in enumerate(zip(self.features, self.mean_gradient, self.mean_change, strict=True), 1):
            lines.append(f"{r:>4}  {f:<24} {g:>14.6g} {c:>12.4f}")
        return "\n".join(lines)


def explain_transition(
    model: GaussianHMM,
    sequences: Any,
    i: int,
    j: int,
    *,
    step: str = "last",
    feature_names: Sequence[str] | None = None,
    log: bool = False,
    units: str = "z",
    scale: Any = None,
    states: Sequence[np.ndarray] | None = None,
) -> TransitionExplanation:
    """Which features drive the transition ``i -> j`` of the decoded state paths.

    Occurrences are the pairs ``(path[t] = i, path[t + 1] = j)`` of the Viterbi paths (or of
    ``states`` if given). At each occurrence the gradient of the destination state's filtered
    posterior ``p(s = j | z_1:u)`` with respect to ``z_u`` is taken at ``u = t``
    (``step="last"``: the last step in ``i``, the authors' convention) or ``u = t + 1``
    (``step="first"``: the first step in ``j``), averaged over all occurrences, and the
    features are ranked by the absolute mean. ``mean_change`` is ``means[j] - means[i]``.
    """
    model = _check_model(model)
    k = model.n_states
    i = check_int(i, name="i", minimum=0)
    j = check_int(j, name="j", minimum=0)
    for name, v in (("i", i), ("j", j)):
        if v >= k:
            raise ValueError(f"{name}={v} is not a state of this model (states are 0..{k - 1})")
    if i == j:
        raise ValueError(f"i and j must differ (got {i} -> {j}); a transition changes state")
    step = check_option(step, name="step", options=("last", "first"))
    seqs = check_sequences(sequences, n_features=model.n_features)
    names = feature_names if feature_names is not None else model.feature_names
    names = tuple(f"x{d}" for d in range(model.n_features)) if names is None else tuple(map(str, names))
    if len(names) != model.n_features:
        raise ValueError(f"feature_names has {len(names)} entries, expected {model.n_features}")
    paths = model.decode(seqs) if states is None else [np.asarray(s) for s in states]
    if len(paths) != len(seqs) or any(len(p) != len(s) for p, s in zip(paths, seqs, strict=True)):
        raise ValueError("states must hold one state path per sequence, with the sequence's length")
    hits = [np.flatnonzero((p[:-1] == i) & (p[1:] == j)) for p in paths]
    runs = [r for r, h in enumerate(hits) if len(h)]
    if not runs:
        raise ValueError(f"transition {i} -> {j} never occurs in the decoded state paths")
    sub_scale = None
    if units == "raw":  # per-run scales follow the runs kept
        arrs = _check_scale(scale, len(seqs), model.n_features)
        sub_scale = [arrs[r] for r in runs]
    grads = posterior_gradient(model, [seqs[r] for r in runs], log=log, units=units, scale=sub_scale)
    shift = 0 if step == "last" else 1
    occurrences, rows = [], []
    for r, g in zip(runs, grads, strict=True):
        for t in hits[r] + shift:
            occurrences.append((r, int(t)))
            rows.append(g[t, j])
    mean = np.mean(rows, axis=0)
    order = np.argsort(-np.abs(mean), kind="stable")
    change = model.means[j] - model.means[i]
    return TransitionExplanation(
        i, j, step, bool(log), units, len(rows), tuple(occurrences),
        tuple(names[d] for d in order), mean[order], change[order],
    )
