"""Tests for featurelens.data._splits: split_indices and train_val_test_split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from featurelens.data import Splits, sliding_windows, split_indices, train_val_test_split


def test_sizes_disjoint_and_cover():
    tr, va, te = split_indices(100, random_state=0)
    assert (len(tr), len(va), len(te)) == (60, 20, 20)
    allidx = np.concatenate([tr, va, te])
    assert len(set(allidx.tolist())) == 100
    assert sorted(allidx.tolist()) == list(range(100))
    assert tr.dtype == va.dtype == te.dtype == np.int64


@pytest.mark.parametrize(
    ("n", "fractions", "sizes"),
    [
        (10, (0.6, 0.2, 0.2), (6, 2, 2)),
        (7, (0.5, 0.25, 0.25), (4, 1, 2)),  # b1 = floor(3.5 + .5) = 4, b2 = floor(5.25 + .5) = 5
        (3, (1 / 3, 1 / 3, 1 / 3), (1, 1, 1)),
        (5, (0.8, 0.0, 0.2), (4, 0, 1)),
        (5, (1.0, 0.0, 0.0), (5, 0, 0)),
        (1001, (0.7, 0.15, 0.15), (701, 150, 150)),
    ],
)
def test_exact_sizes(n, fractions, sizes):
    parts = split_indices(n, fractions=fractions, shuffle=False)
    assert tuple(len(p) for p in parts) == sizes


def test_same_seed_same_split_and_generator():
    a = split_indices(50, random_state=3)
    b = split_indices(50, random_state=3)
    c = split_indices(50, random_state=4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    d = split_indices(50, random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], d[0])


def test_chronological_order():
    tr, va, te = split_indices(10, shuffle=False)
    assert tr.tolist() == list(range(6))
    assert va.tolist() == [6, 7] and te.tolist() == [8, 9]


def test_gap_purges_boundaries():
    tr, va, te = split_indices(20, fractions=(0.5, 0.25, 0.25), shuffle=False, gap=2)
    assert tr.tolist() == list(range(10))
    assert va.tolist() == [12, 13, 14]
    assert te.tolist() == [17, 18, 19]
    tr, va, te = split_indices(10, fractions=(0.7, 0.0, 0.3), shuffle=False, gap=1)
    assert tr.tolist() == list(range(7)) and va.size == 0 and te.tolist() == [8, 9]


def test_gap_makes_windowed_splits_share_no_rows():
    n, lookback, horizon = 50, 5, 1
    w = sliding_windows(np.arange(n, dtype=float)[:, None], np.arange(n), lookback=lookback, horizon=horizon)
    (tr_x, tr_y, tr_end), (va_x, _, _), _ = train_val_test_split(
        w.X, w.y, w.end_index, shuffle=False, gap=lookback - 1 + horizon
    )
    rows_used_by_train = set(tr_x.ravel().tolist()) | set(tr_y.tolist())
    assert rows_used_by_train.isdisjoint(set(va_x.ravel().tolist()))
    assert (np.diff(tr_end) > 0).all()


def test_types_preserved_and_rows_aligned():
    n = 20
    X = np.arange(n * 2).reshape(n, 2)
    t = torch.arange(n)
    df = pd.DataFrame({"a": np.arange(n)}, index=[f"r{i}" for i in range(n)])
    s = pd.Series(np.arange(n), name="y")
    lst = list(range(n))
    out = train_val_test_split(X, t, df, s, lst, random_state=0)
    assert isinstance(out, Splits)
    assert out.train is out[0] and out.test is out[2]
    for part in out:
        px, pt, pdf, ps, pl = part
        assert isinstance(px, np.ndarray) and isinstance(pt, torch.Tensor)
        assert isinstance(pdf, pd.DataFrame) and isinstance(ps, pd.Series) and isinstance(pl, list)
        np.testing.assert_array_equal(px[:, 0] // 2, pt.numpy())
        np.testing.assert_array_equal(pdf["a"].to_numpy(), pt.numpy())
        assert list(pdf.index) == [f"r{i}" for i in pt.tolist()]  # index labels kept
        np.testing.assert_array_equal(ps.to_numpy(), pt.numpy())
        assert pl == pt.tolist()
    assert sorted(np.concatenate([p[0][:, 0] // 2 for p in out]).tolist()) == list(range(n))


def test_parts_are_copies():
    X = np.zeros((10, 2))
    (tr,), _, _ = train_val_test_split(X, shuffle=False)
    tr[:] = 1.0
    assert (X == 0).all()


def test_single_array_unpacking():
    (tr,), (va,), (te,) = train_val_test_split(np.arange(10), shuffle=False, fractions=(0.5, 0.3, 0.2))
    assert tr.tolist() == [0, 1, 2, 3, 4] and va.tolist() == [5, 6, 7] and te.tolist() == [8, 9]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"fractions": (0.5, 0.5)}, ValueError,
         r"fractions must be three numbers \(train, val, test\), got \(0.5, 0.5\)"),
        ({"fractions": "abc"}, ValueError, "fractions must be three numbers"),
        ({"fractions": (0.7, -0.1, 0.4)}, ValueError, r"fractions\[1\] \(val\) must be in \[0.0, 1.0\], got -0.1"),
        ({"fractions": (1.5, 0.0, -0.5)}, ValueError, r"fractions\[0\] \(train\) must be in \[0.0, 1.0\], got 1.5"),
        ({"fractions": (0.6, 0.2, "x")}, TypeError, r"fractions\[2\] \(test\) must be a number, got str"),
        ({"fractions": (0.6, 0.2, float("nan"))}, ValueError, r"fractions\[2\] \(test\) must be finite"),
        ({"fractions": (0.0, 0.5, 0.5)}, ValueError, r"fractions\[0\] \(train\) must be > 0"),
        ({"fractions": (0.6, 0.2, 0.3)}, ValueError, r"fractions must sum to 1, got \(0.6, 0.2, 0.3\)"),
        ({"shuffle": "yes"}, TypeError, "shuffle must be a bool, got str"),
        ({"random_state": -1}, ValueError, "random_state must be a non-negative int"),
        ({"gap": -1, "shuffle": False}, ValueError, "gap must be >= 0, got -1"),
        ({"gap": 2}, ValueError, "gap only makes sense for a chronological split; pass shuffle=False"),
    ],
)
def test_argument_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        train_val_test_split(np.arange(10), **kwargs)


def test_fraction_sum_tolerance():
    split_indices(10, fractions=(0.6, 0.2, 0.2 + 5e-10))
    with pytest.raises(ValueError, match="must sum to 1"):
        split_indices(10, fractions=(0.6, 0.2, 0.2 + 1e-8))


def test_empty_split_errors():
    with pytest.raises(ValueError, match=r"the test split of 2 rows with fraction 0.2 is empty; use more rows"):
        train_val_test_split(np.arange(2))
    with pytest.raises(ValueError,
                       match=r"the val split of 10 rows with fraction 0.2 is empty after dropping gap=2 rows"):
        train_val_test_split(np.arange(10), shuffle=False, gap=2)
    with pytest.raises(ValueError, match="n_samples must be >= 1, got 0"):
        split_indices(0)


def test_array_errors_name_the_argument():
    with pytest.raises(TypeError, match="needs at least one array"):
        train_val_test_split()
    with pytest.raises(ValueError, match=r"arrays\[1\] has 9 rows but arrays\[0\] has 10"):
        train_val_test_split(np.arange(10), np.arange(9))
    with pytest.raises(ValueError, match=r"arrays\[2\] has 3 rows but arrays\[0\] has 10"):
        train_val_test_split(np.arange(10), torch.arange(10), [1, 2, 3])
    with pytest.raises(TypeError, match=r"arrays\[1\] must be a numpy.ndarray, torch.Tensor, "
                                        r"pandas DataFrame/Series or list, got tuple"):
        train_val_test_split(np.arange(10), (1, 2))
    with pytest.raises(ValueError, match=r"arrays\[0\] is a 0-d scalar"):
        train_val_test_split(np.array(3.0))
    with pytest.raises(ValueError, match="arrays have no rows to split"):
        train_val_test_split(np.zeros((0, 2)), [])
