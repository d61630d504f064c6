"""Compare checkpoints: feature reliance, its shifts, sparsity and weights (the deep-hedging lottery-ticket notebook's analyses).

:func:`compare` explains several models on the same inputs with several attribution
methods and returns a :class:`Comparison` (tidy tables, figures, text).
Pruning and lottery tickets live in :mod:`featurelens.models.pruning`.
"""

from featurelens.compare._compare import DEFAULT_METHODS, Comparison, compare
from featurelens.compare._report import write_comparison_report
from featurelens.compare._sparsity import layer_sparsity, unpruned_weights
from featurelens.compare._stats import rank_correlations

__all__ = [
    "DEFAULT_METHODS",
    "Comparison",
    "compare",
    "layer_sparsity",
    "rank_correlations",
    "unpruned_weights",
    "write_comparison_report",
]
