"""Compare checkpoints: feature reliance, its shifts, sparsity and weights.

These are the deep-hedging lottery-ticket notebook's analyses.

:func:`compare` explains several models on the same inputs with several attribution
methods and returns a :class:`Comparison` of tidy tables (the deep-hedging
lottery-ticket study's comparison of a dense network and its tickets, for any
models). Its report (HTML, figures, CSV tables, ``results.json``) is
``featurelens.report.save(comparison, out)``. Pruning and lottery tickets live in
:mod:`featurelens.models.pruning`.
"""

from featurelens.compare._compare import DEFAULT_METHODS, Comparison, compare
from featurelens.compare._sparsity import layer_sparsity, unpruned_weights
from featurelens.compare._stats import rank_correlations

__all__ = [
    "DEFAULT_METHODS",
    "Comparison",
    "compare",
    "layer_sparsity",
    "rank_correlations",
    "unpruned_weights",
]
