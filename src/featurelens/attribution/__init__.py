"""Attribution methods behind one entry point, :func:`attribute`, and their result, :class:`Explanation`."""

from featurelens.attribution._api import METHODS, attribute, method_options
from featurelens.attribution._attribution_report import AttributionReport
from featurelens.attribution._baselines import resolve_baselines
from featurelens.attribution._edge_scores import EdgeScores, edge_scores
from featurelens.attribution._explanation import Explanation
from featurelens.attribution._optimize import optimize_input
from featurelens.attribution._prune_inputs import PrunedInputs, prune_inputs, score_vector
from featurelens.models import find_input_layer

__all__ = [
    "METHODS",
    "AttributionReport",
    "EdgeScores",
    "Explanation",
    "PrunedInputs",
    "attribute",
    "edge_scores",
    "find_input_layer",
    "method_options",
    "optimize_input",
    "prune_inputs",
    "resolve_baselines",
    "score_vector",
]
