"""Model internals: read, patch and intervene on activations and weights.

Every function is context-scoped: hooks are removed and weights restored on
exit, also when the block raises.
"""

from featurelens.internals._capture import Activations, capture, collect
from featurelens.internals._modules import resolve_modules
from featurelens.internals._patch import neuron_importance, patch
from featurelens.internals._paths import path_effects
from featurelens.internals._weights import intervene_weights, zero_input_group

__all__ = [
    "Activations",
    "capture",
    "collect",
    "intervene_weights",
    "neuron_importance",
    "patch",
    "path_effects",
    "resolve_modules",
    "zero_input_group",
]
