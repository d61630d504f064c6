"""Data and feature model: feature specs, input conversion, loading, splits, synthetic sets."""

from featurelens.data._inputs import as_tensor
from featurelens.data._spec import FeatureSpec, read_groups
from featurelens.data._splits import Splits, split_indices, train_val_test_split
from featurelens.data._synthetic import (
    GroundTruth,
    SyntheticData,
    make_biased,
    make_multifeature,
    make_shifted,
)
from featurelens.data._tables import Table, load_table
from featurelens.data._windows import Windows, sliding_windows

__all__ = [
    "FeatureSpec",
    "GroundTruth",
    "Splits",
    "SyntheticData",
    "Table",
    "Windows",
    "as_tensor",
    "load_table",
    "make_biased",
    "make_multifeature",
    "make_shifted",
    "read_groups",
    "sliding_windows",
    "split_indices",
    "train_val_test_split",
]
