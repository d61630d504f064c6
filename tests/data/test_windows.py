"""Tests for featurelens.data._windows: sliding_windows, sequence_windows and Windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from featurelens.data import FeatureSpec, Windows, sequence_windows, sliding_windows


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
    # the superposition and spurious-correlation study:
    # for i in range(lookback, n): X.append(data[i-lookback:i]); y.append(label[i])
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
        (_data(), {"a": 1}, {"lookback": 2}, TypeError,
         "y must be a numpy.ndarray, torch.Tensor, pandas Series or list, got dict"),
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


def _by_id_loop(x, y, ids, lookback):
    """Reference: group rows by id in a Python dict (file order), keep the last ``lookback`` rows of each."""
    order: dict = {}
    for i, key in enumerate(ids.tolist()):
        order.setdefault(key, []).append(i)
    rows = [v[-lookback:] for v in order.values()]
    return np.array([x[r] for r in rows]), np.array([y[r[-1]] for r in rows]), np.array([r[-1] for r in rows])


def test_sequence_windows_by_id_equal_a_loop():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 7, size=15)
    ids = rng.permutation(np.repeat(np.arange(100, 115), lengths))  # interleaved sequences of 3 to 6 rows
    x = rng.normal(size=(ids.size, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=ids.size).astype(np.float32)
    w = sequence_windows(x, y, lookback=3, ids=ids)
    X_ref, y_ref, last = _by_id_loop(x, y, ids, 3)
    np.testing.assert_array_equal(w.X, X_ref)
    np.testing.assert_array_equal(w.y, y_ref)
    np.testing.assert_array_equal(w.end_index, last)
    np.testing.assert_array_equal(w.label_index, last)
    assert w.X.dtype == np.float32 and (w.lookback, w.horizon, w.stride) == (3, 0, None)


def test_sequence_windows_take_the_last_rows_in_file_order():
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    y = np.array([0, 0, 1, 1, 0, 1, 0], dtype=np.float32)
    ids = pd.Series(["b", "b", "b", "a", "a", "a", "a"])
    w = sequence_windows(x, y, lookback=2, ids=ids)
    np.testing.assert_array_equal(w.X, [[x[1], x[2]], [x[5], x[6]]])  # sequence "b" first: file order
    np.testing.assert_array_equal(w.y, [1, 0])
    np.testing.assert_array_equal(w.end_index, [2, 6])
    full = sequence_windows(x[:6], y[:6], ids=ids[:6])  # equal lengths: every row of each sequence
    np.testing.assert_array_equal(full.X, [x[0:3], x[3:6]])
    assert full.lookback == 3 and sequence_windows(x, ids=ids, lookback=1).y is None


def test_sequence_windows_of_one_series_are_windows_labelled_by_their_last_row():
    x, y = _data(), np.arange(12)
    w = sequence_windows(x, y, lookback=4)
    ref = sliding_windows(x, y, lookback=4, horizon=0)
    np.testing.assert_array_equal(w.X, ref.X)
    np.testing.assert_array_equal(w.y, y[3:])
    np.testing.assert_array_equal(w.end_index, np.arange(3, 12))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "lookback is required without ids"),
        ({"ids": np.repeat([0, 1, 2], [4, 4, 3])}, r"sequences have 3 to 4 rows; give a lookback \(at most 3\)"),
        ({"ids": np.repeat([0, 1, 2], [4, 4, 3]), "lookback": 4}, r"lookback \(4\) exceeds the shortest sequence, "
                                                                  "which has 3 rows"),
        ({"ids": np.zeros(5)}, r"ids must hold one sequence id per row of X \(11\), got shape \(5,\)"),
        ({"ids": np.r_[np.zeros(5), np.nan, np.ones(5)]}, r"ids has missing values \(first at row 5\)"),
        ({"ids": np.zeros(11), "lookback": 0}, "lookback must be >= 1, got 0"),
    ],
)
def test_sequence_windows_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sequence_windows(_data(11), np.arange(11), **kwargs)
