"""Overlap between the subspaces that groups of input features write to.

For a matrix ``M`` of shape ``(p, d)`` whose columns belong to the ``d``
input features (a first-layer weight, or an average Jacobian), group ``g``
spans ``col(M[:, g])``. The overlap of groups ``a`` and ``b`` is the mean
squared cosine of the principal angles ``theta_1 .. theta_r`` between the
two column spaces (``scipy.linalg.subspace_angles``, ``r = min(rank_a,
rank_b)``)::

    overlap(a, b) = (1 / r) * sum_i cos(theta_i)**2 = ||Q_a^T Q_b||_F**2 / r

with ``Q_a``, ``Q_b`` orthonormal bases. It is 0 for orthogonal subspaces,
1 when the smaller subspace lies inside the larger one (hence 1 on the
diagonal), symmetric, and ``nan`` where a group's block is zero (rank 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg
import torch
from torch import nn

from featurelens._validation import check_int
from featurelens.data import FeatureSpec, GroupMembers, default_feature_names
from featurelens.models import model_device_dtype, preserve_model
from featurelens.representation._spectrum import as_matrix


def _spec(groups: Mapping[str, GroupMembers], d: int, feature_names: Sequence[str] | None) -> FeatureSpec:
    names = default_feature_names(d) if feature_names is None else list(feature_names)
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names but the matrix has {d} input columns")
    if not isinstance(groups, Mapping) or len(groups) == 0:
        raise ValueError("groups must be a non-empty mapping of group name to feature names or indices")
    return FeatureSpec(names, groups)


def _overlap_table(blocks: dict[str, np.ndarray]) -> pd.DataFrame:
    """Symmetric DataFrame of mean cos² of principal angles between block column spaces."""
    names = list(blocks)
    bases = {}
    for g, b in blocks.items():
        bases[g] = scipy.linalg.orth(b) if np.any(b != 0) else np.zeros((b.shape[0], 0))
    out = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j in range(i, len(names)):
            qa, qb = bases[a], bases[names[j]]
            if qa.shape[1] == 0 or qb.shape[1] == 0:
                continue
            if i == j:
                out[i, j] = 1.0
                continue
            theta = scipy.linalg.subspace_angles(qa, qb)
            out[i, j] = out[j, i] = float(np.mean(np.cos(theta) ** 2))
    return pd.DataFrame(out, index=pd.Index(names, name="group"), columns=pd.Index(names, name="group"))


def _blocks(m: np.ndarray, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """``m`` is ``(p, T, d)``; group ``g`` gives the ``(p, T * |g|)`` block of its columns."""
    return {g: m[:, :, list(idx)].reshape(m.shape[0], -1) for g, idx in spec.groups.items()}


def group_overlap(
    weight: Any,
    groups: Mapping[str, GroupMembers],
    *,
    feature_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Principal-angle overlap between the column spaces of feature groups in a weight.

    Parameters
    ----------
    weight : torch.Tensor, numpy.ndarray or nn.Linear
        First-layer weight ``W`` of shape ``(out, in)`` (``nn.Linear.weight``
        layout); column ``j`` is the direction input feature ``j`` writes to.
    groups : mapping of str to sequence of (str or int)
        Group name to feature names (needs ``feature_names``) or indices.
    feature_names : sequence of str, optional
        One name per input column; default ``x0 .. x{in-1}``.

    Returns
    -------
    pandas.DataFrame
        ``(n_groups, n_groups)``, index and columns the group names;
        entry ``(a, b)`` is ``mean_i cos(theta_i)**2`` over the principal
        angles between ``col(W[:, a])`` and ``col(W[:, b])`` (module docstring).
    """
    if isinstance(weight, nn.Linear):
        weight = weight.weight
    w = as_matrix(weight, name="weight")
    if isinstance(weight, (np.ndarray, torch.Tensor)) and weight.ndim != 2:
        raise ValueError(f"weight must have shape (out, in), got shape {tuple(weight.shape)}")
    spec = _spec(groups, w.shape[1], feature_names)
    return _overlap_table(_blocks(w[:, None, :], spec))


def average_jacobian(
    model: nn.Module,
    X: Any,
    *,
    layer_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Mean Jacobian ``(1/n) sum_r d f(x_r) / d x_r`` of shape ``(p, *X.shape[1:])``.

    ``f = layer_fn`` (a callable mapping an input batch to a layer's output,
    e.g. ``lambda x: model.net[:2](x)``; default ``model``), its output per
    sample flattened to ``p`` values. Computed with reverse-mode autograd, one
    backward pass per output value and batch of ``batch_size`` rows (default
    256, deliberately below :func:`featurelens.models.default_batch_size`: each row
    keeps a ``(p, d)`` Jacobian in the graph, so the forward-pass row policy would
    hold ``p`` times more memory); this assumes samples do not interact (true in eval mode). The model runs in
    eval mode with frozen parameters; its mode and flags are restored.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if layer_fn is not None and not callable(layer_fn):
        raise TypeError(f"layer_fn must be callable, got {type(layer_fn).__name__}")
    bs = 256 if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    device, dtype = model_device_dtype(model)
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(np.asarray(X, dtype=np.float64))
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor or numpy.ndarray, got {type(X).__name__}")
    if X.ndim not in (2, 3) or X.shape[0] == 0:
        raise ValueError(f"X must have shape (n, d) or (n, T, d) with n >= 1, got {tuple(X.shape)}")
    x_all = X.detach().to(device, dtype)
    fn = model if layer_fn is None else layer_fn
    total: torch.Tensor | None = None
    with preserve_model(model, eval_mode=True, freeze=True):
        for start in range(0, x_all.shape[0], bs):
            x = x_all[start : start + bs].clone().requires_grad_(True)
            with torch.enable_grad():
                out = fn(x)
                if not isinstance(out, torch.Tensor) or out.shape[0] != x.shape[0]:
                    raise ValueError("layer_fn must return a tensor whose first axis is the batch")
                summed = out.reshape(x.shape[0], -1).sum(0)
                rows = [
                    torch.autograd.grad(summed[i], x, retain_graph=i + 1 < summed.numel(), allow_unused=True)[0]
                    for i in range(summed.numel())
                ]
            jac = torch.stack([torch.zeros_like(x) if r is None else r for r in rows]).sum(1)
            total = jac if total is None else total + jac
    assert total is not None
    return (total / x_all.shape[0]).detach().to("cpu", torch.float64).numpy()


def jacobian_overlap(
    model: nn.Module,
    X: Any,
    groups: Mapping[str, GroupMembers],
    *,
    layer_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    feature_names: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """:func:`group_overlap` on the average Jacobian of a layer w.r.t. the inputs.

    ``J = average_jacobian(model, X, layer_fn=layer_fn)`` has shape
    ``(p, d)`` for inputs ``(n, d)``; for sequences ``(n, T, d)`` it is
    ``(p, T, d)`` and group ``g`` spans the ``T * |g|`` columns of its
    features at every time step. Overlaps are then computed exactly as in
    :func:`group_overlap`. For a linear layer ``f(x) = W x + b`` ``J = W``.
    """
    jac = average_jacobian(model, X, layer_fn=layer_fn, batch_size=batch_size)
    m = jac.reshape(jac.shape[0], -1, jac.shape[-1])
    spec = _spec(groups, m.shape[-1], feature_names)
    return _overlap_table(_blocks(m, spec))
