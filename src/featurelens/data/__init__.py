"""Data handling: feature specs, input conversion, tables, windows, splits, finance features.

Synthetic data sets with planted ground truth are in :mod:`featurelens.datasets`.
"""

from featurelens.data._finance import FinanceData, finance_windows, ohlcv_features, rsi, sma
from featurelens.data._inputs import as_tensor, resolve_names
from featurelens.data._ohlcv import check_ohlcv, last_trading_day_of_month, read_ohlcv
from featurelens.data._scaling import zscore_columns
from featurelens.data._spec import FeatureSpec, GroupMembers, default_feature_names, read_groups
from featurelens.data._splits import Splits, split_indices, train_val_test_split
from featurelens.data._tables import CSV_SUFFIXES, PARQUET_SUFFIXES, Table, load_table, read_frame
from featurelens.data._windows import Windows, sequence_windows, sliding_windows

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "FeatureSpec",
    "FinanceData",
    "GroupMembers",
    "Splits",
    "Table",
    "Windows",
    "as_tensor",
    "check_ohlcv",
    "default_feature_names",
    "finance_windows",
    "last_trading_day_of_month",
    "load_table",
    "ohlcv_features",
    "read_frame",
    "read_groups",
    "read_ohlcv",
    "resolve_names",
    "rsi",
    "sequence_windows",
    "sliding_windows",
    "sma",
    "split_indices",
    "train_val_test_split",
    "zscore_columns",
]
