"""featurelens: which input features does a PyTorch model rely on, with evidence.

The most used names in one place; each lives in the subpackage of its concern
(``featurelens.data``, ``featurelens.models``, ``featurelens.attribution``,
``featurelens.internals``, ``featurelens.representation``, ``featurelens.reliance``,
``featurelens.compare``, ``featurelens.dynamics``, ``featurelens.report``,
``featurelens.examples``), where the rest of the API is.
"""

from featurelens._version import __version__
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
from featurelens.dynamics import MetricsLogger, load_runs, select_model, weight_metrics
from featurelens.internals import summarize_internals
from featurelens.models import MLP, OutputSelector, SmallTransformer, load_model, train
from featurelens.reliance import detect_spurious, mitigate, robustness_curve
from featurelens.report import save_attribution_report

__all__ = [
    "MLP",
    "Explanation",
    "FeatureSpec",
    "MetricsLogger",
    "OutputSelector",
    "SmallTransformer",
    "__version__",
    "attribute",
    "detect_spurious",
    "edge_scores",
    "load_model",
    "load_runs",
    "load_table",
    "make_biased",
    "make_multifeature",
    "make_shifted",
    "mitigate",
    "optimize_input",
    "prune_inputs",
    "read_groups",
    "robustness_curve",
    "save_attribution_report",
    "select_model",
    "sliding_windows",
    "summarize_internals",
    "train",
    "train_val_test_split",
    "weight_metrics",
]
