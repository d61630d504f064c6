"""Representation metrics: spectra, group overlap, superposition, information measures."""

from featurelens.representation._information import binned_entropy, knn_entropy, linear_cka
from featurelens.representation._overlap import average_jacobian, group_overlap, jacobian_overlap
from featurelens.representation._spectrum import (
    Interference,
    Sparsity,
    Spectrum,
    interference,
    sparsity,
    spectrum,
)
from featurelens.representation._superposition import (
    SuperpositionMetrics,
    ToyModelResult,
    superposition_metrics,
    toy_model_experiment,
)

__all__ = [
    "Interference",
    "Sparsity",
    "Spectrum",
    "SuperpositionMetrics",
    "ToyModelResult",
    "average_jacobian",
    "binned_entropy",
    "group_overlap",
    "interference",
    "jacobian_overlap",
    "knn_entropy",
    "linear_cka",
    "sparsity",
    "spectrum",
    "superposition_metrics",
    "toy_model_experiment",
]
