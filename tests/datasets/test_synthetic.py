"""Tests for featurelens.datasets._synthetic: the biased/shifted/multifeature generators and their ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from featurelens.data import FeatureSpec
from featurelens.datasets import (
    GroundTruth,
    SyntheticData,
    make_biased,
    make_multifeature,
    make_shifted,
)

N = 20_000
TOL = 0.02  # > 5 binomial standard deviations at N = 20 000
P_G = stats.chi2.sf(50, 50)  # P(genuine label = 1), default sizes
P_B = stats.chi2.sf(10, 10)  # P(bias label = 1)


def _sum_sq(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) ** 2).sum(axis=1)


def _labels(data: SyntheticData, n_genuine: int = 50, group_dim: int = 10):
    g = (_sum_sq(data.X[:, :n_genuine]) > n_genuine).astype(np.float32)
    b = (_sum_sq(data.X[:, n_genuine:]) > group_dim).astype(np.float32)
    return g, b


def test_multifeature_layout_and_rule():
    data = make_multifeature(N, random_state=0)
    assert data.X.shape == (N, 50) and data.X.dtype == np.float32
    assert data.y.shape == (N,) and data.y.dtype == np.float32
    assert set(np.unique(data.y).tolist()) == {0.0, 1.0}
    assert data.feature_names[:3] == ["genuine_0_0", "genuine_0_1", "genuine_0_2"]
    assert data.feature_names[-1] == "genuine_4_9"
    assert list(data.groups) == [f"genuine_{k}" for k in range(5)]
    assert data.groups["genuine_2"] == [f"genuine_2_{j}" for j in range(10)]
    # the label is exactly the stated rule applied to the returned X
    np.testing.assert_array_equal(data.y, (_sum_sq(data.X) > 50).astype(np.float32))
    truth = data.ground_truth
    assert truth.spurious_group is None and truth.bias_strength == 0.0 and truth.shift is None
    assert truth.genuine_groups == [f"genuine_{k}" for k in range(5)]
    assert "> 50 (its expectation)" in truth.label_rule
    assert len(data) == N


def test_multifeature_is_standard_normal_and_balanced():
    data = make_multifeature(N, random_state=1)
    assert abs(data.X.mean()) < 0.01 and abs(data.X.std() - 1.0) < 0.01
    # positive rate is P(chi2_50 > 50) = 0.473 (the notebook's k/2 threshold gave 0.998)
    assert abs(data.y.mean() - P_G) < TOL
    assert abs(data.y.mean() - 0.5) < 0.05
    assert stats.chi2.sf(25, 50) > 0.99
    small = make_multifeature(N, n_groups=2, group_dim=3, random_state=1)
    assert small.X.shape == (N, 6)
    assert abs(small.y.mean() - stats.chi2.sf(6, 6)) < TOL


def test_spec_and_to_frame():
    data = make_biased(10, n_groups=2, group_dim=3, random_state=0)
    spec = data.spec()
    assert isinstance(spec, FeatureSpec) and spec.is_partition
    assert spec.group_names == ("genuine_0", "genuine_1", "spurious")
    assert spec.groups["spurious"] == (6, 7, 8)
    frame = data.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == [*data.feature_names, "label"]
    np.testing.assert_array_equal(frame["label"].to_numpy(), data.y)
    np.testing.assert_array_equal(frame[data.feature_names].to_numpy(), data.X)


def test_biased_layout_and_ground_truth():
    data = make_biased(100, bias_strength=0.7, random_state=0)
    assert data.X.shape == (100, 60)
    assert data.feature_names[-10:] == [f"spurious_{j}" for j in range(10)]
    assert list(data.groups)[-1] == "spurious"
    truth = data.ground_truth
    assert isinstance(truth, GroundTruth)
    assert truth.spurious_group == "spurious" and truth.bias_strength == 0.7
    d = truth.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"spurious_group", "bias_strength", "genuine_groups", "label_rule", "shift"}
    assert "with probability 0.7" in d["label_rule"] and "> 10 (its expectation)" in d["label_rule"]


@pytest.mark.parametrize("s", [0.5, 0.8, 0.95])
def test_biased_agreement_rate(s):
    data = make_biased(N, bias_strength=s, random_state=2)
    g, b = _labels(data)
    # where both labels agree the mixture cannot change y
    np.testing.assert_array_equal(data.y[g == b], b[g == b])
    # where they disagree y copies the bias label with probability s
    assert abs((data.y[g != b] == b[g != b]).mean() - s) < 0.03
    p_agree = P_B * P_G + (1 - P_B) * (1 - P_G)
    assert abs((data.y == b).mean() - (s + (1 - s) * p_agree)) < TOL
    assert abs(b.mean() - P_B) < TOL
    assert abs(np.corrcoef(g, b)[0, 1]) < 0.03  # the two groups are independent


def test_biased_extremes():
    data = make_biased(2000, bias_strength=1.0, random_state=0)
    np.testing.assert_array_equal(data.y, _labels(data)[1])
    data = make_biased(2000, bias_strength=0.0, random_state=0)
    np.testing.assert_array_equal(data.y, _labels(data)[0])


def test_shifted_independent():
    data = make_shifted(N, bias_strength=0.9, mode="independent", random_state=3)
    g, b = _labels(data)
    np.testing.assert_array_equal(data.y, g)  # labels are the genuine labels
    assert abs(np.corrcoef(b, data.y)[0, 1]) < 0.03
    assert abs(b.mean() - P_B) < TOL
    q = _sum_sq(data.X[:, 50:])
    assert stats.kstest(q, stats.chi2(10).cdf).pvalue > 0.01
    truth = data.ground_truth
    assert truth.shift == "independent" and truth.bias_strength == 0.0
    assert truth.spurious_group == "spurious"


@pytest.mark.parametrize("s", [0.5, 0.8])
def test_shifted_reversed_rate(s):
    data = make_shifted(N, bias_strength=s, mode="reversed", random_state=4)
    g, b = _labels(data)
    np.testing.assert_array_equal(data.y, g)
    p_disagree = P_B * (1 - P_G) + (1 - P_B) * P_G  # P(b = 1 - y) for an unconditioned draw
    assert abs((b == 1 - data.y).mean() - (s + (1 - s) * p_disagree)) < TOL
    assert np.corrcoef(b, data.y)[0, 1] < -0.4
    truth = data.ground_truth
    assert truth.shift == "reversed" and truth.bias_strength == s


def test_shifted_reversed_conditional_law_is_exact():
    data = make_shifted(N, bias_strength=1.0, mode="reversed", random_state=5)
    sp = data.X[:, 50:].astype(np.float64)
    q = _sum_sq(sp)
    y = data.y
    np.testing.assert_array_equal((q > 10).astype(np.float32), 1 - y)  # exactly reversed
    chi2 = stats.chi2(10)
    f_k = chi2.cdf(10)
    # Q | bias label 0 ~ chi2_10 truncated to (0, 10]; Q | bias label 1 ~ truncated to (10, inf)
    lower = q[y == 1]
    upper = q[y == 0]
    assert stats.kstest(lower, lambda t: np.clip(chi2.cdf(t) / f_k, 0, 1)).pvalue > 0.01
    assert stats.kstest(upper, lambda t: np.clip((chi2.cdf(t) - f_k) / (1 - f_k), 0, 1)).pvalue > 0.01
    # directions are uniform on the sphere: mean 0, E[u_j^2] = 1/k, E[u_j u_l] = 0
    u = sp / np.sqrt(q)[:, None]
    assert np.abs(u.mean(axis=0)).max() < 0.01
    second = u.T @ u / len(u)
    np.testing.assert_allclose(np.diag(second), 0.1, atol=0.01)
    assert np.abs(second - np.diag(np.diag(second))).max() < 0.01


@pytest.mark.parametrize("maker", [make_multifeature, make_biased, make_shifted])
def test_seeded_reproducibility(maker):
    a, b, c = maker(50, random_state=7), maker(50, random_state=7), maker(50, random_state=8)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    d = maker(50, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(a.X, d.X)


def test_reversed_is_reproducible_and_small_sizes():
    a = make_shifted(30, n_groups=1, group_dim=1, mode="reversed", random_state=0)
    b = make_shifted(30, n_groups=1, group_dim=1, mode="reversed", random_state=0)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.X.shape == (30, 2) and a.feature_names == ["genuine_0_0", "spurious_0"]


def test_sample_data_is_frozen():
    data = make_multifeature(5, random_state=0)
    with pytest.raises(AttributeError):
        data.y = data.y  # type: ignore[misc]
    with pytest.raises(AttributeError):
        data.ground_truth.bias_strength = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("maker", "kwargs", "exc", "match"),
    [
        (make_multifeature, {"n_samples": 0}, ValueError, "n_samples must be >= 1, got 0"),
        (make_multifeature, {"n_samples": 10.0}, TypeError, "n_samples must be an int, got float"),
        (make_multifeature, {"n_groups": 0}, ValueError, "n_groups must be >= 1, got 0"),
        (make_biased, {"group_dim": 0}, ValueError, "group_dim must be >= 1, got 0"),
        (make_biased, {"group_dim": True}, TypeError, "group_dim must be an int, got bool"),
        (make_biased, {"bias_strength": 1.5}, ValueError, r"bias_strength must be in \[0.0, 1.0\], got 1.5"),
        (make_biased, {"bias_strength": -0.1}, ValueError, "bias_strength must be in"),
        (make_shifted, {"bias_strength": float("nan")}, ValueError, "bias_strength must be finite"),
        (make_shifted, {"bias_strength": "0.8"}, TypeError, "bias_strength must be a number, got str"),
        (make_shifted, {"mode": "flipped"}, ValueError, "mode must be one of 'independent', 'reversed'; got 'flipped'"),
        (make_shifted, {"random_state": "x"}, TypeError, "random_state must be None, a non-negative int"),
        (make_multifeature, {"random_state": -3}, ValueError, "random_state must be a non-negative int, got -3"),
    ],
)
def test_argument_errors(maker, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        maker(**kwargs)
