"""Tests for featurelens.data._windows: sliding_windows and Windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from featurelens.data import FeatureSpec, Windows, sliding_windows


def _data(n: int = 12, d: int = 3) -> np.ndarray:
    return np.arange(n * d, dtype=np.float64).reshape(n, d)


def test_windows_equal_explicit_slices():
    X = _data()
    y = np.arange(12) * 10
    w = sliding_windows(X, y, lookback=4)
    assert isinstance(w, Windows)
    assert w.X.shape == (8, 4, 3) and w.y.shape == (8,)  # starts 0..7, label rows 4..11
    for i in (0, 3, 7):
        np.testing.assert_array_equal(w.X[i], X[i : i + 4])
        assert w.y[i] == y[i + 4]  # horizon=1: the row after the window
        assert w.end_index[i] == i + 3 and w.label_index[i] == i + 4
    assert w.X.dtype == np.float64 and w.end_index.dtype == np.int64
    assert (w.lookback, w.horizon, w.stride) == (4, 1, 1)
    assert len(w) == 8


def test_matches_the_spurious_correlation_study_loop():
    # the superposition and spurious-correlation study: for i in range(lookback, n): X.append(data[i-lookback:i]); y.append(label[i])
    rng = np.random.default_rng(0)
    data, label = rng.normal(size=(30, 5)), rng.integers(0, 2, size=30)
    lookback = 7
    X_ref = np.array([data[i - lookback : i] for i in range(lookback, 30)])
    y_ref = np.array([label[i] for i in range(lookback, 30)])
    w = sliding_windows(data, label, lookback=lookback)
    np.testing.assert_array_equal(w.X, X_ref)
    np.testing.assert_array_equal(w.y, y_ref)


def test_horizon_zero_and_two_and_stride():
    X, y = _data(), np.arange(12)
    w0 = sliding_windows(X, y, lookback=3, horizon=0)
    assert len(w0) == 10
    np.testing.assert_array_equal(w0.y, w0.end_index)  # label of the window's last row
    w2 = sliding_windows(X, y, lookback=3, horizon=2, stride=3)
    # starts 0, 3, 6 (start 9 would need label row 13)
    np.testing.assert_array_equal(w2.end_index, [2, 5, 8])
    np.testing.assert_array_equal(w2.y, [4, 7, 10])
    np.testing.assert_array_equal(w2.X[2], X[6:9])


def test_without_labels_every_window_is_kept():
    w = sliding_windows(_data(), lookback=4, horizon=5)
    assert w.y is None and w.label_index is None
    assert len(w) == 9
    np.testing.assert_array_equal(w.X[-1], _data()[8:12])
    w = sliding_windows(_data(), lookback=12)
    assert w.X.shape == (1, 12, 3)


def test_result_is_a_writable_copy():
    X = _data()
    w = sliding_windows(X, lookback=2)
    w.X[0, 0, 0] = -1.0
    assert X[0, 0] == 0.0
    assert w.X.flags.c_contiguous and w.X.flags.writeable


def test_dataframe_tensor_and_bool_labels():
    df = pd.DataFrame({"sma": np.arange(6.0), "vol": np.arange(6) * 2})
    y = pd.Series([True, False, True, True, False, True])
    w = sliding_windows(df, y, lookback=2)
    assert w.feature_names == ["sma", "vol"]
    assert w.X.dtype == np.float64  # a float64 column keeps float64 (as_tensor rule)
    np.testing.assert_array_equal(w.X[1], [[1.0, 2.0], [2.0, 4.0]])
    np.testing.assert_array_equal(w.y, [1, 1, 0, 1])
    assert w.spec() == FeatureSpec(["sma", "vol"])
    wt = sliding_windows(torch.arange(12.0).reshape(6, 2), torch.arange(6), lookback=3, horizon=0)
    assert wt.feature_names == ["x0", "x1"]
    np.testing.assert_array_equal(wt.y, [2, 3, 4, 5])
    x, yt = wt.to_tensors()
    assert x.shape == (4, 3, 2) and x.dtype == torch.float32 and yt.dtype == torch.float32
    x, yt = wt.to_tensors(torch.float64, y_dtype=torch.long)
    assert x.dtype == torch.float64 and yt.tolist() == [2, 3, 4, 5]
    assert sliding_windows(df, lookback=2).to_tensors()[1] is None


def test_multi_column_labels():
    y = np.arange(20).reshape(10, 2)
    w = sliding_windows(_data(10), y, lookback=3)
    np.testing.assert_array_equal(w.y, y[3:])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    d=st.integers(1, 4),
    lookback=st.integers(1, 25),
    horizon=st.integers(0, 5),
    stride=st.integers(1, 4),
)
def test_property_every_window_is_its_slice(n, d, lookback, horizon, stride):
    X = _data(n, d)
    y = np.arange(n)
    if lookback > n or lookback + horizon > n:
        with pytest.raises(ValueError):
            sliding_windows(X, y, lookback=lookback, horizon=horizon, stride=stride)
        return
    w = sliding_windows(X, y, lookback=lookback, horizon=horizon, stride=stride)
    starts = list(range(0, n - lookback - horizon + 1, stride))
    assert len(w) == len(starts)
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(w.X[i], X[s : s + lookback])
        assert w.y[i] == s + lookback - 1 + horizon
    assert (w.label_index < n).all()


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "exc", "match"),
    [
        (_data(), None, {"lookback": 0}, ValueError, "lookback must be >= 1, got 0"),
        (_data(), None, {"lookback": 2.0}, TypeError, "lookback must be an int, got float"),
        (_data(), None, {"lookback": 13}, ValueError, r"lookback \(13\) exceeds the number of rows of X \(12\)"),
        (_data(), None, {"lookback": 2, "horizon": -1}, ValueError, "horizon must be >= 0, got -1"),
        (_data(), None, {"lookback": 2, "stride": 0}, ValueError, "stride must be >= 1, got 0"),
        (np.arange(5.0), None, {"lookback": 2}, ValueError, r"X must have shape \(n, d\), got shape \(5,\)"),
        (np.ones((4, 2, 2)), None, {"lookback": 2}, ValueError, r"X must have shape \(n, d\), got shape \(4, 2, 2\)"),
        (np.array([[1.0, np.nan]] * 3), None, {"lookback": 2}, ValueError, "X holds NaN or inf in column"),
        (np.array([["a"]] * 3), None, {"lookback": 2}, TypeError, "X must hold numbers"),
        (_data(), np.arange(11), {"lookback": 2}, ValueError, "y has 11 labels but X has 12 rows"),
        (_data(), np.array(1.0), {"lookback": 2}, ValueError, "y must have one label per row, got a scalar"),
        (_data(), {"a": 1}, {"lookback": 2}, TypeError, "y must be a numpy.ndarray, torch.Tensor, pandas Series or list, got dict"),
        (_data(), np.array(["a"] * 12), {"lookback": 2}, TypeError, "y must hold numbers or bools, got dtype <U1"),
        (_data(), np.r_[np.ones(5), np.nan, np.inf, np.ones(5)], {"lookback": 2}, ValueError,
         r"y holds NaN or inf in 2 row\(s\), first at row 5"),
        (_data(), np.arange(12), {"lookback": 10, "horizon": 3}, ValueError,
         r"no window has a label: lookback \+ horizon = 13 exceeds the 12 rows of X"),
    ],
)
def test_errors(X, y, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sliding_windows(X, y, **kwargs)
