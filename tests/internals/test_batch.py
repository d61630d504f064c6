"""Locating the batch axis of module outputs."""

from __future__ import annotations

import pytest
import torch

from featurelens.internals._batch import (
    check_batch_axis,
    locate_batch_axis,
    repeat_rows,
    same_values,
)


@pytest.mark.parametrize(
    ("shapes", "rows", "axis"),
    [
        ([(4, 6), (6, 6)], [4, 6], 0),  # batch-first, calls of different sizes
        ([(6, 6), (6, 6)], [6, 6], 0),  # units == batch: the last axis holds units, never the batch
        ([(7, 4, 3), (7, 5, 3)], [4, 5], 1),  # sequence-first (T, B, U)
        ([(7, 4, 3), (7, 4, 3)], [4, 4], 1),
        ([(3, 8), (3, 8)], [3, None], 0),  # a call outside a model call: only its shape counts
        ([(5,), (2,)], [5, 2], 0),  # 1-D outputs
    ],
)
def test_locate_batch_axis(shapes, rows, axis):
    assert locate_batch_axis("m", shapes, rows) == axis


@pytest.mark.parametrize(
    ("shapes", "rows", "kwargs", "match"),
    [
        ([(6, 6, 3), (6, 6, 3)], [6, 6], {}, r"cannot tell the batch axis of 'm'.*axes \[0, 1\] all fit"),
        ([(12, 3), (20, 3)], [4, 5], {}, r"cannot tell the batch axis of 'm'.*no axis holds the batch"),
        ([(2, 3), (2, 3, 1)], [2, 2], {}, "share no batch axis"),
        ([(6, 4, 3), (6, 5, 3)], [4, 5], {"batch_axis": 0}, "batch_axis=0 does not fit"),
        ([(6, 4, 3)], [4], {"batch_axis": -4}, "batch_axis=-4 is out of range"),
    ],
)
def test_locate_batch_axis_errors(shapes, rows, kwargs, match):
    with pytest.raises(ValueError, match=match):
        locate_batch_axis("m", shapes, rows, **kwargs)


def test_batch_axis_given_wins_and_counts_from_the_end():
    assert locate_batch_axis("m", [(6, 6, 3), (6, 6, 3)], [6, 6], batch_axis=-2) == 1
    assert locate_batch_axis("m", [(12, 3), (20, 3)], [4, 5], batch_axis=0) == 0


def test_check_batch_axis():
    check_batch_axis(None, ["a"])
    check_batch_axis(1, ["a"])
    check_batch_axis({"a": 0}, ["a", "b"])
    with pytest.raises(ValueError, match="batch_axis names 'c', which is not among the modules: a, b"):
        check_batch_axis({"c": 0}, ["a", "b"])
    with pytest.raises(TypeError, match="batch_axis must be an int, got float"):
        check_batch_axis(1.0, ["a"])
    with pytest.raises(TypeError, match=r"batch_axis\['a'\] must be an int, got bool"):
        check_batch_axis({"a": True}, ["a"])


def test_same_values_and_repeat_rows():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert same_values(a, a + 1e-5) and not same_values(a, a + 1e-2)
    assert not same_values(a, a[:1])
    assert same_values(torch.arange(3), torch.arange(3)) and not same_values(torch.arange(3), torch.arange(1, 4))
    r = repeat_rows(a, 3)
    assert r.shape == (6, 2) and torch.equal(r[4:], a)
