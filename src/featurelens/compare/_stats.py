"""Rank correlations and importance shifts between models."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def rank_correlations(shares: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Spearman's rho and Kendall's tau-b between the importance of every pair of models.

    ``shares``: tidy rows ``model, method, feature, share``. For each method and each
    pair ``(a, b)`` of ``models`` (in the given order, ``a`` before ``b``) the
    correlation is taken over the features (``scipy.stats.spearmanr``: Pearson
    correlation of average ranks; ``scipy.stats.kendalltau``: tau-b, ties
    corrected). When either importance vector is constant (e.g. all zero) the
    correlation is undefined and reported as NaN.
    """
    rows = []
    for method, block in shares.groupby("method", sort=False):
        wide = block.pivot(index="feature", columns="model", values="share")
        for a, b in itertools.combinations(models, 2):
            x, y = wide[a].to_numpy(np.float64), wide[b].to_numpy(np.float64)
            if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
                rho = tau = float("nan")
            else:
                rho = float(stats.spearmanr(x, y).statistic)
                tau = float(stats.kendalltau(x, y).statistic)
            rows.append({"method": method, "model_a": a, "model_b": b, "spearman": rho, "kendall": tau})
    return pd.DataFrame(rows, columns=["method", "model_a", "model_b", "spearman", "kendall"])


def top_shifts(differences: pd.DataFrame, n_top: int) -> pd.DataFrame:
    """Return the ``n_top`` features gaining and losing the most importance per model and method.

    ``differences``: tidy rows ``model, method, feature, difference``. Gains are the
    largest strictly positive differences, losses the most negative strictly negative
    ones (a model that changes nothing has neither). Ties keep feature order.
    """
    rows = []
    for (model, method), block in differences.groupby(["model", "method"], sort=False):
        d = block.set_index("feature")["difference"]
        gains = d[d > 0].sort_values(ascending=False, kind="stable").head(n_top)
        losses = d[d < 0].sort_values(ascending=True, kind="stable").head(n_top)
        for direction, part in (("gain", gains), ("loss", losses)):
            for rank, (feature, value) in enumerate(part.items(), start=1):
                rows.append({"model": model, "method": method, "direction": direction, "rank": rank,
                             "feature": feature, "difference": float(value)})
    return pd.DataFrame(rows, columns=["model", "method", "direction", "rank", "feature", "difference"])
