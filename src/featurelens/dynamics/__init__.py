"""Training dynamics: Gaussian HMMs over per-checkpoint weight metrics of many runs.

Fit and select hidden Markov models over z-scored training runs, decode the latent training
phases, and explain transitions by the exact gradient of the filtered state posterior.
:func:`analyse_runs` runs the whole pipeline; ``featurelens.report.save(analysis, out)``
writes its report.
"""

from featurelens.dynamics._analysis import DynamicsAnalysis, analyse_runs
from featurelens.dynamics._detours import (
    OccupancyRegression,
    convergence_time,
    occupancy,
    occupancy_regression,
    state_correlations,
)
from featurelens.dynamics._drivers import (
    TransitionExplanation,
    explain_transition,
    posterior_gradient,
)
from featurelens.dynamics._em import HMMFit, RestartResult, fit_hmm
from featurelens.dynamics._hmm import COVARIANCE_TYPES, GaussianHMM, load_hmm, save_hmm
from featurelens.dynamics._logging import METRIC_NAMES, MetricsLogger, weight_metrics
from featurelens.dynamics._map import training_map, transition_counts
from featurelens.dynamics._runs import RunSet, load_runs, read_saved_runs, save_runs
from featurelens.dynamics._selection import ModelSelection, recommend_n_states, select_model

__all__ = [
    "COVARIANCE_TYPES",
    "METRIC_NAMES",
    "DynamicsAnalysis",
    "GaussianHMM",
    "HMMFit",
    "MetricsLogger",
    "ModelSelection",
    "OccupancyRegression",
    "RestartResult",
    "RunSet",
    "TransitionExplanation",
    "analyse_runs",
    "convergence_time",
    "explain_transition",
    "fit_hmm",
    "load_hmm",
    "load_runs",
    "occupancy",
    "occupancy_regression",
    "posterior_gradient",
    "read_saved_runs",
    "recommend_n_states",
    "save_hmm",
    "save_runs",
    "select_model",
    "state_correlations",
    "training_map",
    "transition_counts",
    "weight_metrics",
]
