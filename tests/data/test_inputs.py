"""Tests for featurelens.data._inputs: as_tensor, check_finite, resolve_names."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from featurelens.data import as_tensor
from featurelens.data._inputs import check_finite, resolve_names


def test_ndarray_float64_kept_others_float32():
    x64 = np.arange(6, dtype=np.float64).reshape(3, 2)
    t, names = as_tensor(x64)
    assert t.dtype == torch.float64 and names is None
    np.testing.assert_array_equal(t.numpy(), x64)
    t, _ = as_tensor(np.arange(6, dtype=np.int64).reshape(3, 2))
    assert t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), np.arange(6).reshape(3, 2))
    t, _ = as_tensor(np.array([[True, False]]))
    assert t.dtype == torch.float32 and t.tolist() == [[1.0, 0.0]]


def test_explicit_dtype_and_three_dims():
    x = np.ones((2, 3, 4), dtype=np.float32)
    t, _ = as_tensor(x, dtype=torch.float64)
    assert t.dtype == torch.float64 and t.shape == (2, 3, 4)


def test_ndims_other_than_default_on_request():
    assert as_tensor(np.ones((1, 2, 3, 4)), ndims=(4,))[0].dim() == 4
    with pytest.raises(ValueError, match=r"must have shape 4-D, got shape \(2, 2\)"):
        as_tensor(np.ones((2, 2)), ndims=(4,))


def test_tensor_input_is_detached():
    x = torch.ones(3, 2, requires_grad=True)
    t, names = as_tensor(x)
    assert not t.requires_grad and names is None
    t, _ = as_tensor(torch.tensor([[1, 0]], dtype=torch.bool))
    assert t.dtype == torch.float32 and t.tolist() == [[1.0, 0.0]]
    t, _ = as_tensor(torch.tensor([[1, 2]]))
    assert t.dtype == torch.float32


def test_dataframe_names_and_values():
    df = pd.DataFrame({"a": [1, 2], "b": [True, False], "c": np.array([0.5, 1.5], dtype=np.float32)})
    t, names = as_tensor(df)
    assert names == ["a", "b", "c"]
    assert t.dtype == torch.float32
    assert t.tolist() == [[1.0, 1.0, 0.5], [2.0, 0.0, 1.5]]
    t, _ = as_tensor(pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2]}))
    assert t.dtype == torch.float64
    t, _ = as_tensor(pd.DataFrame({"a": pd.array([1, 2], dtype="Int64")}))
    assert t.tolist() == [[1.0], [2.0]]


def test_dataframe_gives_writable_tensor_without_warning():
    # pandas >= 3 (copy-on-write) returns read-only arrays from DataFrame.to_numpy
    df = pd.DataFrame({"a": np.zeros(3, dtype=np.float32)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t, _ = as_tensor(df)
    t += 1
    assert (df["a"] == 0).all()


def test_read_only_array_is_not_written_through():
    src = np.zeros((3, 2), dtype=np.float32)
    src.flags.writeable = False
    t, _ = as_tensor(src)
    t += 1
    assert (src == 0).all()


def test_writable_float32_array_is_shared_not_copied():
    src = np.zeros((3, 2), dtype=np.float32)
    t, _ = as_tensor(src)
    assert t.data_ptr() == src.ctypes.data


@pytest.mark.parametrize(
    ("data", "kwargs", "exc", "match"),
    [
        ([[1.0, 2.0]], {}, TypeError,
         "inputs must be a torch.Tensor, numpy.ndarray or pandas.DataFrame/Series, got list"),
        (pd.Series(["a", "b"]), {"ndims": (1,), "name": "labels"}, TypeError,
         "labels must hold numbers or bools, got a Series of dtype"),
        (pd.Series([1.0, 2.0]), {}, ValueError, r"inputs must have shape \(n, d\) or \(n, T, d\), got shape \(2,\)"),
        (pd.DataFrame({"a": [1.0], "city": ["x"], "t": pd.to_datetime(["2020-01-01"])}), {"name": "X"},
         TypeError, "X has non-numeric column\\(s\\) 'city', 't'; encode or drop them"),
        (pd.DataFrame({"z": np.array([1 + 2j])}), {}, TypeError, "non-numeric column\\(s\\) 'z'"),
        (np.array([["a", "b"]]), {}, TypeError, "inputs must hold numbers, got an array of dtype <U1"),
        (np.array([[1 + 1j]]), {}, TypeError, "dtype complex128"),
        (torch.ones(1, 1, dtype=torch.complex64), {}, TypeError,
         "inputs must be real-valued, got dtype torch.complex64"),
        (np.ones(3), {}, ValueError, r"inputs must have shape \(n, d\) or \(n, T, d\), got shape \(3,\)"),
        (np.ones((2, 2)), {"ndims": (3,), "name": "seq"}, ValueError,
         r"seq must have shape \(n, T, d\), got shape \(2, 2\)"),
        (np.ones((0, 3)), {}, ValueError, "inputs has no rows"),
        (pd.DataFrame({"a": []}, dtype=float), {}, ValueError, "inputs has no rows"),
        (np.ones((2, 0)), {}, ValueError, "inputs has no feature columns"),
        (np.ones((2, 2)), {"dtype": torch.int64}, TypeError, "dtype must be a floating torch.dtype .* got torch.int64"),
        (np.ones((2, 2)), {"dtype": np.float32}, TypeError, "dtype must be a floating torch.dtype"),
    ],
)
def test_as_tensor_errors(data, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        as_tensor(data, **kwargs)


def test_nan_and_inf_name_columns():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, 1.0], "c": [1.0, np.inf]})
    with pytest.raises(ValueError, match=r"X holds NaN or inf in column\(s\) 'b', 'c'$"):
        as_tensor(df, name="X")
    with pytest.raises(ValueError, match=r"inputs holds NaN or inf in column\(s\) index 1$"):
        as_tensor(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="holds NaN or inf in column"):
        as_tensor(pd.DataFrame({"a": pd.array([1, None], dtype="Int64")}))
    x = np.full((2, 3, 8), np.nan)
    with pytest.raises(ValueError, match=r"index 0, index 1, index 2, index 3, index 4 \(and 3 more\)"):
        as_tensor(x)


def test_series_labels():
    t, names = as_tensor(pd.Series([True, False, True]), name="labels", ndims=(1, 2))
    assert names is None and t.dtype == torch.float32 and t.tolist() == [1.0, 0.0, 1.0]
    t, _ = as_tensor(pd.Series([0.5, 1.5]), ndims=(1,))
    assert t.dtype == torch.float64
    t, _ = as_tensor(pd.Series(pd.array([1, 0], dtype="Int64")), ndims=(1,))
    assert t.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"labels holds NaN or inf at row\(s\) 1, 3$"):
        as_tensor(pd.Series([0.0, np.nan, 1.0, np.inf]), name="labels", ndims=(1,))
    with pytest.raises(ValueError, match=r"y holds NaN or inf at row\(s\) 0, 1, 2, 3, 4 \(and 2 more\)"):
        as_tensor(np.full(7, np.nan), name="y", ndims=(1,))


def test_check_finite_skips_integer_tensors():
    check_finite(torch.ones(2, 2, dtype=torch.int64), name="x")
    with pytest.raises(ValueError, match="w holds NaN or inf in column\\(s\\) 'q'"):
        check_finite(torch.tensor([[0.0, float("nan")]]), name="w", names=["p", "q"])


def test_resolve_names():
    assert resolve_names(2, data_names=None, feature_names=None) == ["x0", "x1"]
    assert resolve_names(2, data_names=["a", "b"], feature_names=None) == ["a", "b"]
    assert resolve_names(2, data_names=["a", "b"], feature_names=["p", 7]) == ["p", "7"]
    with pytest.raises(ValueError, match="feature_names has 3 names but the inputs have 2 features"):
        resolve_names(2, data_names=None, feature_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="cols has 1 names"):
        resolve_names(2, data_names=None, feature_names=["a"], name="cols")
    with pytest.raises(TypeError, match="feature_names must be a list of names, not the single str 'ab'"):
        resolve_names(2, data_names=None, feature_names="ab")


def test_huge_finite_values_pass_even_when_their_sum_overflows():
    x = torch.full((4, 3), 3e38)
    t, _ = as_tensor(x)
    assert torch.equal(t, x)
    x[1, 2] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf in column"):
        as_tensor(x)


def test_values_that_overflow_the_target_dtype_are_named_not_called_nan():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": [0.5, 1e300, -1e300], "d": [1.0, 2.0, 1e39]})
    with pytest.raises(ValueError, match=r"inputs holds values beyond ±3.4e\+38, which overflow float32 in "
                                         r"column\(s\) 'c', 'd'; rescale") as info:
        as_tensor(frame, dtype=torch.float32)
    assert "NaN" not in str(info.value)
    with pytest.raises(ValueError, match=r"labels holds values beyond .* overflow float32 at row\(s\) 1"):
        as_tensor(np.array([0.0, 1e300]), name="labels", dtype=torch.float32, ndims=(1,))
    t, _ = as_tensor(frame)  # float64 holds them
    assert t.dtype == torch.float64 and float(t[1, 1]) == 1e300
    with pytest.raises(ValueError, match=r"holds NaN or inf in column\(s\) 'a'"):  # real inf stays inf
        as_tensor(frame.assign(a=[np.inf, 1.0, 2.0]), dtype=torch.float32)
