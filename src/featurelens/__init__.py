"""featurelens: which input features does a PyTorch model rely on, with evidence.

The public API in one place; each name lives in the subpackage of its concern
(``featurelens.data``, ``featurelens.models``, ``featurelens.attribution``,
``featurelens.report``, ``featurelens.examples``).
"""

__version__ = "0.1.0"

from featurelens.attribution import (
    Explanation,
    attribute,
    edge_scores,
    optimize_input,
    prune_inputs,
)
from featurelens.data import (
    FeatureSpec,
    load_table,
    make_biased,
    make_multifeature,
    make_shifted,
    read_groups,
    sliding_windows,
    train_val_test_split,
)
from featurelens.models import MLP, OutputSelector, SmallTransformer, load_model, train
from featurelens.report import save_attribution_report

__all__ = [
    "MLP",
    "Explanation",
    "FeatureSpec",
    "OutputSelector",
    "SmallTransformer",
    "__version__",
    "attribute",
    "edge_scores",
    "load_model",
    "load_table",
    "make_biased",
    "make_multifeature",
    "make_shifted",
    "optimize_input",
    "prune_inputs",
    "read_groups",
    "save_attribution_report",
    "sliding_windows",
    "train",
    "train_val_test_split",
]
