"""Training dynamics: Gaussian HMMs over per-checkpoint weight metrics of many runs.

Fit and select hidden Markov models over z-scored training runs, decode the latent training
phases, and explain transitions by the exact gradient of the filtered state posterior.
"""

from featurelens.dynamics._hmm import GaussianHMM, HMMFit, RestartResult, fit_hmm

__all__ = [
    "GaussianHMM",
    "HMMFit",
    "RestartResult",
    "fit_hmm",
]
