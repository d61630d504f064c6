"""Models: safe loading, output selection, the evaluation core, model structure, training."""

from featurelens.models._evaluate import call_model, default_batch_size, evaluate, logit_accuracy
from featurelens.models._exported import export_boundary_problems, original_class
from featurelens.models._loading import Factory, load_model, load_state, resolve_factory
from featurelens.models._losses import LOSSES, row_losses
from featurelens.models._orthogonal import orthogonality_penalty
from featurelens.models._output import OutputSelector, pick_output
from featurelens.models._pruning_masks import effective_weight
from featurelens.models._reference import MLP, SmallTransformer
from featurelens.models._state import model_device_dtype, preserve_model, set_eval
from featurelens.models._structure import find_input_layer, linear_chain
from featurelens.models._training import TrainResult, train
from featurelens.models._variants import (
    GatedTransformer,
    HierarchicalTransformer,
    ParallelTransformer,
)

__all__ = [
    "LOSSES",
    "MLP",
    "Factory",
    "GatedTransformer",
    "HierarchicalTransformer",
    "OutputSelector",
    "ParallelTransformer",
    "SmallTransformer",
    "TrainResult",
    "call_model",
    "default_batch_size",
    "effective_weight",
    "evaluate",
    "export_boundary_problems",
    "find_input_layer",
    "linear_chain",
    "load_model",
    "load_state",
    "logit_accuracy",
    "model_device_dtype",
    "original_class",
    "orthogonality_penalty",
    "pick_output",
    "preserve_model",
    "resolve_factory",
    "row_losses",
    "set_eval",
    "train",
]
