"""Model internals: read, patch and intervene on activations and weights.

Every function is context-scoped: hooks are removed and weights restored on
exit, also when the block raises.
"""

from featurelens.internals._capture import Activations, capture, collect
from featurelens.internals._internals_report import InternalsReport
from featurelens.internals._modules import resolve_modules
from featurelens.internals._patch import neuron_importance, patch
from featurelens.internals._paths import path_effects
from featurelens.internals._summary import (
    InternalsSummary,
    default_layers,
    gradient_norms,
    layer_summary,
    summarize_internals,
)
from featurelens.internals._sweeps import (
    SweepResult,
    architecture_sweep,
    capacity_sweep,
    scale_sweep,
    token_data,
)
from featurelens.internals._weights import intervene_weights, zero_input_group

__all__ = [
    "Activations",
    "InternalsReport",
    "InternalsSummary",
    "SweepResult",
    "architecture_sweep",
    "capacity_sweep",
    "capture",
    "collect",
    "default_layers",
    "gradient_norms",
    "intervene_weights",
    "layer_summary",
    "neuron_importance",
    "patch",
    "path_effects",
    "resolve_modules",
    "scale_sweep",
    "summarize_internals",
    "token_data",
    "zero_input_group",
]
