"""Spectrum, correlation and sparsity metrics of an activation matrix.

All functions take activations ``A`` of shape ``(n, k)`` (``n`` samples,
``k`` units) as a ``torch.Tensor`` or ``numpy.ndarray``. Sequence
activations ``(n, T, k)`` are flattened to ``(n * T, k)``: every time step
counts as one sample. Computations run in float64 on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featurelens._validation import check_float
from featurelens.data import as_tensor

#: Share of the variance above which a principal component counts as
#: significant in :attr:`Spectrum.n_significant` (the 1 % rule of the superposition and spurious-correlation notebook).
SIGNIFICANT_VARIANCE = 0.01


def as_matrix(data: Any, *, name: str = "activations", min_rows: int = 1) -> np.ndarray:
    """Return ``data`` as a float64 matrix ``(rows, k)``.

    ``(n, k)`` stays as is, ``(n, T, k)`` becomes ``(n * T, k)``. Inputs are
    checked by :func:`featurelens.data.as_tensor` (``TypeError`` for other
    types, ``ValueError`` for other shapes or NaN/inf); ``ValueError`` for too
    few rows.
    """
    x, _ = as_tensor(data, name=name, dtype=torch.float64, device="cpu")  # checks type, shape, NaN/inf
    arr = x.reshape(-1, x.shape[-1]).numpy()
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} rows and 1 column, got shape {arr.shape}")
    return arr


def _positive(s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Singular values above the numerical rank tolerance ``max(shape) * eps * s_max``."""
    if s.size == 0 or s[0] == 0.0:
        return s[:0]
    return s[s > max(shape) * np.finfo(np.float64).eps * s[0]]


@dataclass(frozen=True)
class Spectrum:
    """Spectral summary of a centred activation matrix (see :func:`spectrum`)."""

    singular_values: np.ndarray
    explained_variance_ratio: np.ndarray
    effective_rank: float
    n_significant: int
    participation_ratio: float
    compression_ratio: float
    spectral_decay: float
    n_samples: int
    n_units: int


def spectrum(activations: Any) -> Spectrum:
    """Singular-value spectrum of the column-centred activations.

    Let ``X = A - mean(A, axis=0)`` (``(n, k)``, sequences flattened), with
    singular values ``s_1 >= ... >= s_q``, ``q = min(n, k)``, and covariance
    eigenvalues ``lambda_i = s_i**2 / (n - 1)``. Singular values below
    ``max(n, k) * eps * s_1`` are numerically zero and reported as 0.

    Returns
    -------
    Spectrum
        ``singular_values`` : ``(q,)`` array, ``s`` in decreasing order.
        ``explained_variance_ratio`` : ``(q,)``, ``s_i**2 / sum(s**2)`` (PCA).
        ``effective_rank`` : ``exp(-sum p_i log p_i)`` with ``p_i = s_i / sum(s)``
        over the non-zero ``s_i`` (Roy & Vetterli 2007); between 1 and the rank.
        ``n_significant`` : number of components whose explained-variance
        ratio (of ``s**2``, as in the superposition and spurious-correlation notebook) exceeds 1 %.
        ``participation_ratio`` : ``(sum lambda)**2 / sum(lambda**2)``.
        ``compression_ratio`` : ``s_1**2 / mean(s**2)`` over all ``q`` values,
        i.e. ``q`` times the first explained-variance ratio (the notebook's
        definition, on the centred matrix); 1 for a flat spectrum, ``q`` for rank 1.
        ``spectral_decay`` : least-squares slope of ``log s_i`` against
        ``i = 0, 1, ...`` over the non-zero singular values only (the notebook fit
        ``log 0`` too); ``nan`` with fewer than two non-zero values.
        A zero matrix (all units constant) gives ``effective_rank = 0``,
        ``n_significant = 0`` and ``nan`` for the ratios.
    """
    a = as_matrix(activations, min_rows=2)
    n, k = a.shape
    x = a - a.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    pos = _positive(s, (n, k))
    if pos.size == 0:
        nan = float("nan")
        return Spectrum(s, np.zeros_like(s), 0.0, 0, nan, nan, nan, n, k)
    s = np.where(s >= pos[-1], s, 0.0)  # numerically zero values reported as exactly 0
    ratio = s**2 / np.sum(s**2)
    p = pos / pos.sum()
    eff = float(np.exp(-np.sum(p * np.log(p))))
    lam = pos**2 / (n - 1)
    pr = float(lam.sum() ** 2 / np.sum(lam**2))
    comp = float(s[0] ** 2 / np.mean(s**2))
    decay = float(np.polyfit(np.arange(pos.size), np.log(pos), 1)[0]) if pos.size >= 2 else float("nan")
    return Spectrum(
        singular_values=s,
        explained_variance_ratio=ratio,
        effective_rank=eff,
        n_significant=int(np.sum(ratio > SIGNIFICANT_VARIANCE)),
        participation_ratio=pr,
        compression_ratio=comp,
        spectral_decay=decay,
        n_samples=n,
        n_units=k,
    )


@dataclass(frozen=True)
class Interference:
    """Mean absolute correlation between units (see :func:`interference`)."""

    mean_abs_correlation: float
    n_units_used: int
    n_constant: int
    constant_units: np.ndarray


def interference(activations: Any) -> Interference:
    """Mean absolute off-diagonal Pearson correlation between units.

    ``mean_{i != j} |corr(A[:, i], A[:, j])|`` over the ``m`` non-constant
    units (population standard deviation ``<= 1e-12 * (1 + max |A[:, i]|)``
    counts as constant; their correlation is undefined, so they are excluded
    and reported in ``constant_units``/``n_constant``). 0 for uncorrelated
    units, 1 when every unit is an affine copy of the others. ``nan`` when
    fewer than two units vary. Unlike the superposition and spurious-correlation notebook, the
    diagonal is not averaged in.
    """
    a = as_matrix(activations, min_rows=2)
    x = a - a.mean(axis=0)
    std = np.sqrt(np.mean(x**2, axis=0))
    const = std <= 1e-12 * (1.0 + np.abs(a).max(axis=0))
    keep = ~const
    m = int(keep.sum())
    idx = np.flatnonzero(const)
    if m < 2:
        return Interference(float("nan"), m, int(const.sum()), idx)
    z = x[:, keep] / std[keep]
    corr = np.clip(z.T @ z / a.shape[0], -1.0, 1.0)
    off = np.abs(corr[~np.eye(m, dtype=bool)])
    return Interference(float(off.mean()), m, int(const.sum()), idx)


@dataclass(frozen=True)
class Sparsity:
    """Activation sparsity (see :func:`sparsity`)."""

    fraction_inactive: float
    fraction_inactive_per_unit: np.ndarray
    dead_units: np.ndarray
    n_dead: int


def sparsity(activations: Any, threshold: float = 0.0) -> Sparsity:
    """Share of inactive activations and dead units.

    An activation is inactive when ``A[r, i] <= threshold``.
    ``fraction_inactive`` is the share over all ``n * k`` entries,
    ``fraction_inactive_per_unit`` the ``(k,)`` share per unit, and a unit is
    dead when it is never above ``threshold`` (``dead_units``: indices).
    """
    thr = check_float(threshold, name="threshold")
    a = as_matrix(activations)
    inactive = a <= thr
    per_unit = inactive.mean(axis=0)
    dead = np.flatnonzero(inactive.all(axis=0))
    return Sparsity(float(inactive.mean()), per_unit, dead, int(dead.size))
