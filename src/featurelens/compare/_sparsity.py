"""Layer-wise sparsity and unpruned-weight distributions of the compared models.

The tables come from :mod:`featurelens.models.pruning` (one sparsity table for the
library, masks matched by exact parameter name, TorchScript modules included); this
module only summarises the unpruned weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from featurelens.models.pruning import sparsity, unpruned_weights

__all__ = ["WEIGHT_STATS", "layer_sparsity", "unpruned_weights", "weight_stats"]

WEIGHT_STATS = ("n_weights", "n_unpruned", "mean", "std", "mean_abs", "q05", "median", "q95")


def layer_sparsity(model: nn.Module) -> pd.DataFrame:
    """Sparsity of every layer's weight, ``featurelens.models.pruning.sparsity(model, dense_layers=True)``.

    Columns: ``layer`` (``"<module path>.weight"``), ``n_weights``, ``n_pruned``
    (mask entries equal to 0; 0 for a layer without a mask), ``sparsity =
    n_pruned / n_weights`` and ``pruned`` (whether the layer carries a mask). The
    ``"total"`` row sums over all layers, dense ones included (``pruned`` is true if
    any layer is pruned). Exact zeros of a dense weight are not counted as pruned.
    """
    return sparsity(model, dense_layers=True)


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
