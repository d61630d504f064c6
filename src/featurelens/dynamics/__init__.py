"""Training dynamics: Gaussian HMMs over per-checkpoint weight metrics of many runs.

Fit and select hidden Markov models over z-scored training runs, decode the latent training
phases, and explain transitions by the exact gradient of the filtered state posterior.
"""

from featurelens.dynamics._drivers import (
    TransitionExplanation,
    explain_transition,
    posterior_gradient,
)
from featurelens.dynamics._hmm import GaussianHMM, HMMFit, RestartResult, fit_hmm
from featurelens.dynamics._persist import load_hmm, save_hmm
from featurelens.dynamics._planted import make_planted_runs
from featurelens.dynamics._selection import ModelSelection, recommend_n_states, select_model

__all__ = [
    "GaussianHMM",
    "HMMFit",
    "ModelSelection",
    "RestartResult",
    "TransitionExplanation",
    "explain_transition",
    "fit_hmm",
    "load_hmm",
    "make_planted_runs",
    "posterior_gradient",
    "recommend_n_states",
    "save_hmm",
    "select_model",
]
