"""Data and feature model: feature specs, input conversion, loading, splits, synthetic sets."""

from featurelens.data._ehr import EHRData, make_ehr
from featurelens.data._finance import FinanceData, finance_windows, ohlcv_features, rsi, sma
from featurelens.data._inputs import as_tensor
from featurelens.data._ohlcv import RegimeParams, check_ohlcv, make_ohlcv, read_ohlcv
from featurelens.data._spec import FeatureSpec, read_groups
from featurelens.data._splits import Splits, split_indices, train_val_test_split
from featurelens.data._synthetic import (
    GroundTruth,
    SyntheticData,
    make_biased,
    make_multifeature,
    make_shifted,
)
from featurelens.data._tables import Table, load_table, read_frame
from featurelens.data._windows import Windows, sequence_windows, sliding_windows

__all__ = [
    "EHRData",
    "FeatureSpec",
    "FinanceData",
    "GroundTruth",
    "RegimeParams",
    "Splits",
    "SyntheticData",
    "Table",
    "Windows",
    "as_tensor",
    "check_ohlcv",
    "finance_windows",
    "load_table",
    "make_biased",
    "make_ehr",
    "make_multifeature",
    "make_ohlcv",
    "make_shifted",
    "ohlcv_features",
    "read_frame",
    "read_groups",
    "read_ohlcv",
    "rsi",
    "sequence_windows",
    "sliding_windows",
    "sma",
    "split_indices",
    "train_val_test_split",
]
