"""Sparsity tables and unpruned-weight values of (possibly TorchScript) models.

Masks are matched by exact name.

A layer is a module holding a ``weight``: every ``nn.Linear`` and convolution (also as a
TorchScript module, recognised by its original class name), and any module pruned with
``torch.nn.utils.prune``. Its mask is the ``weight_mask`` buffer of that very module (found
by :func:`~featurelens.models.pruning.pruning_masks` under the exact name
``"<module path>.weight"``), never looked up by substring (``layer1`` must not match
``layer10``). Private implementation of :mod:`featurelens.models.pruning`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens.models._pruning_masks import (
    _PARAM,
    _has_weight,
    _is_layer_type,
    _module_masks,
    _param_name,
    effective_weight,
    pruning_masks,
)

SPARSITY_COLUMNS = ("layer", "n_weights", "n_pruned", "sparsity", "pruned")


def _with_total(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (rows of :func:`sparsity`, no total) with its ``"total"`` row appended."""
    n, p = int(table["n_weights"].sum()), int(table["n_pruned"].sum())
    total: dict[str, object] = {"layer": "total", "n_weights": n, "n_pruned": p, "sparsity": p / n if n else 0.0}
    total["pruned"] = bool(table["pruned"].any())
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def _weight_layers(model: nn.Module, masks: dict[str, torch.Tensor]) -> list[tuple[str, nn.Module]]:
    """Return ``(exact weight name, module)`` of every layer with a weight, in module order.

    Every ``nn.Linear`` and convolution, and any module whose weight is pruned (``masks``:
    :func:`pruning_masks` of ``model``).
    """
    return [
        (_param_name(name, _PARAM), m) for name, m in model.named_modules()
        if _has_weight(m) and (_is_layer_type(m) or _param_name(name, _PARAM) in masks)
    ]


def sparsity(model: nn.Module, *, dense_layers: bool = False) -> pd.DataFrame:
    """Layer-wise and overall sparsity of ``model`` from its pruning masks.

    One row per parameter, in module order, and a last ``"total"`` row summing
    over them. Columns: ``layer`` (exact parameter name, e.g.
    ``"layer1.weight"``), ``n_weights`` (entries), ``n_pruned`` (mask entries
    equal to 0), ``sparsity = n_pruned / n_weights`` (0 for no entries) and
    ``pruned`` (the parameter carries a ``torch.nn.utils.prune`` mask; total:
    any does). Exact zeros of a parameter without a mask are not counted as
    pruned.

    Parameters
    ----------
    model : nn.Module
        An ``nn.Module`` or a TorchScript module traced or scripted from one.
    dense_layers : bool
        ``False``: only the pruned parameters (a dense model gives only a
        ``"total"`` row with 0 weights and sparsity 0). ``True``: also the
        ``weight`` of every ``nn.Linear`` and convolution without a mask
        (``n_pruned = 0``), so the total covers every layer weight, as in
        :func:`featurelens.compare.layer_sparsity`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    rows = []
    for mod_name, module in model.named_modules():
        masks = _module_masks(module)
        if dense_layers and _PARAM not in masks and _is_layer_type(module) and _has_weight(module):
            n = int(effective_weight(module).numel())
            rows.append({"layer": _param_name(mod_name, _PARAM), "n_weights": n, "n_pruned": 0,
                         "sparsity": 0.0, "pruned": False})
        for base, mask in masks.items():
            n, cut = int(mask.numel()), int((mask == 0).sum())
            rows.append({"layer": _param_name(mod_name, base), "n_weights": n, "n_pruned": cut,
                         "sparsity": cut / n if n else 0.0, "pruned": True})
    return _with_total(pd.DataFrame(rows, columns=list(SPARSITY_COLUMNS)))


def unpruned_weights(model: nn.Module) -> np.ndarray:
    """Values of every layer weight that is not pruned, concatenated in module order.

    Layers as in :func:`sparsity` with ``dense_layers=True``. For a pruned
    layer the entries whose mask is 1 (their effective value ``weight_orig ·
    mask``); for a dense layer every entry (exact zeros included). Biases are
    not weights here. Returns a float64 array.
    """
    masks = pruning_masks(model)
    parts = []
    for name, module in _weight_layers(model, masks):
        w = effective_weight(module).to(torch.float64).reshape(-1)
        mask = masks.get(name)
        if mask is not None:
            w = w[mask.reshape(-1) != 0]
        parts.append(w.cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros(0)
