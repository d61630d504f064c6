"""Models: safe loading, output selection, reference architectures, training."""

from featurelens.models._exported import export_boundary_problems, original_class
from featurelens.models._loading import load_model, resolve_factory
from featurelens.models._output import OutputSelector
from featurelens.models._reference import MLP, SmallTransformer
from featurelens.models._state import model_device_dtype, preserve_model
from featurelens.models._training import TrainResult, orthogonality_penalty, train
from featurelens.models._variants import (
    GatedTransformer,
    HierarchicalTransformer,
    ParallelTransformer,
)

__all__ = [
    "MLP",
    "GatedTransformer",
    "HierarchicalTransformer",
    "OutputSelector",
    "ParallelTransformer",
    "SmallTransformer",
    "TrainResult",
    "export_boundary_problems",
    "load_model",
    "model_device_dtype",
    "original_class",
    "orthogonality_penalty",
    "preserve_model",
    "resolve_factory",
    "train",
]
