"""Layer-wise sparsity and unpruned-weight distributions, masks matched by exact name.

A layer is a module holding a ``weight``: every ``nn.Linear`` and convolution,
and any module pruned with ``torch.nn.utils.prune``. Its mask is the
``weight_mask`` buffer of that very module (found by
:func:`featurelens.models.pruning.pruning_masks` under the exact name
``"<module path>.weight"``). Seed 000 looked masks up with ``name in key``, so
the mask of ``layer10`` was also applied to ``layer1``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens.models._pruning_masks import _DEFAULT_TYPES, _has_weight, _weight_of, pruning_masks

SPARSITY_COLUMNS = ("layer", "n_weights", "n_pruned", "sparsity", "pruned")
WEIGHT_STATS = ("n_weights", "n_unpruned", "mean", "std", "mean_abs", "q05", "median", "q95")


def _weight_layers(model: nn.Module, masks: dict[str, torch.Tensor]) -> list[tuple[str, nn.Module]]:
    """``(exact module path, module)`` of every layer with a weight, in module order
    (``masks``: :func:`pruning_masks` of ``model``)."""
    return [
        (name, m) for name, m in model.named_modules()
        if _has_weight(m) and (isinstance(m, _DEFAULT_TYPES) or f"{name}.weight" in masks)
    ]


def layer_sparsity(model: nn.Module) -> pd.DataFrame:
    """Sparsity of every layer's weight from its pruning mask, plus a ``"total"`` row.

    Columns: ``layer`` (``"<module path>.weight"``), ``n_weights``, ``n_pruned``
    (mask entries equal to 0; 0 for a layer without a mask), ``sparsity =
    n_pruned / n_weights`` and ``pruned`` (whether the layer carries a mask). The
    ``"total"`` row sums over all layers, dense ones included (``pruned`` is true if
    any layer is pruned). Exact zeros of a dense weight are not counted as pruned.
    """
    masks = pruning_masks(model)
    rows = []
    for name, module in _weight_layers(model, masks):
        key = f"{name}.weight"
        n = int(_weight_of(module).numel())
        cut = int((masks[key] == 0).sum()) if key in masks else 0
        rows.append({"layer": key, "n_weights": n, "n_pruned": cut, "sparsity": cut / n if n else 0.0,
                     "pruned": key in masks})
    n_all = sum(r["n_weights"] for r in rows)
    cut_all = sum(r["n_pruned"] for r in rows)
    rows.append({"layer": "total", "n_weights": n_all, "n_pruned": cut_all,
                 "sparsity": cut_all / n_all if n_all else 0.0, "pruned": any(r["pruned"] for r in rows)})
    return pd.DataFrame(rows, columns=list(SPARSITY_COLUMNS))


def unpruned_weights(model: nn.Module) -> np.ndarray:
    """Values of every layer weight that is not pruned, concatenated in module order.

    For a pruned layer the entries whose mask is 1 (their effective value
    ``weight_orig · mask``); for a dense layer every entry (exact zeros included).
    Biases are not weights here. Returns a float64 array.
    """
    masks = pruning_masks(model)
    parts = []
    for name, module in _weight_layers(model, masks):
        w = _weight_of(module).to(torch.float64).reshape(-1)
        mask = masks.get(f"{name}.weight")
        if mask is not None:
            w = w[mask.reshape(-1) != 0]
        parts.append(w.cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros(0)


def weight_stats(weights: np.ndarray, n_weights: int) -> dict[str, float | int]:
    """Summary of the unpruned weights: count, mean, std (ddof=1), mean |w| and quantiles."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0:
        nan = float("nan")
        return {"n_weights": n_weights, "n_unpruned": 0, "mean": nan, "std": nan, "mean_abs": nan,
                "q05": nan, "median": nan, "q95": nan}
    q05, med, q95 = np.quantile(w, [0.05, 0.5, 0.95])
    return {"n_weights": n_weights, "n_unpruned": int(w.size), "mean": float(w.mean()),
            "std": float(w.std(ddof=1)) if w.size > 1 else float("nan"), "mean_abs": float(np.abs(w).mean()),
            "q05": float(q05), "median": float(med), "q95": float(q95)}
