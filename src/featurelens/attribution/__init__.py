"""Attribution methods behind one entry point, :func:`attribute`, and their result, :class:`Explanation`."""

from featurelens.attribution._api import BACKGROUND_BASELINES, METHODS, attribute, method_options, route_options
from featurelens.attribution._attribution_report import AttributionReport
from featurelens.attribution._baselines import resolve_baselines
from featurelens.attribution._edge_scores import EdgeScores, edge_scores
from featurelens.attribution._explanation import Explanation
from featurelens.attribution._optimize import optimize_input
from featurelens.attribution._problem import Problem, build_problem
from featurelens.attribution._prune_inputs import PrunedInputs, prune_inputs, score_vector
from featurelens.attribution._shapley import MAX_EXACT_PLAYERS, CoalitionGame, coalition_game, coalition_matrix
from featurelens.models import find_input_layer

__all__ = [
    "BACKGROUND_BASELINES",
    "MAX_EXACT_PLAYERS",
    "METHODS",
    "AttributionReport",
    "CoalitionGame",
    "EdgeScores",
    "Explanation",
    "Problem",
    "PrunedInputs",
    "attribute",
    "build_problem",
    "coalition_game",
    "coalition_matrix",
    "edge_scores",
    "find_input_layer",
    "method_options",
    "optimize_input",
    "prune_inputs",
    "resolve_baselines",
    "route_options",
    "score_vector",
]
