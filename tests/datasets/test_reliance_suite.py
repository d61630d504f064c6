"""Tests for featurelens.datasets._reliance_suite: the detector's validation suite and its planted truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from featurelens.datasets import SuiteConfig, make_reliance_suite
from featurelens.datasets._reliance_suite import ENVIRONMENT_FACTORS


def _sum_sq(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64).reshape(a.shape[0], -1)
    return (a * a).sum(axis=1)


def test_default_suite_shape():
    cases = make_reliance_suite(n_train=60, n_eval=60)
    assert len(cases) == 24
    kinds = {c.config.kind for c in cases}
    assert kinds == {"tabular", "sequence"}
    assert sorted({c.bias_strength for c in cases}) == [0.0, 0.4, 0.55, 0.7, 0.85, 0.95]
    assert {(c.config.n_groups, c.config.group_dim) for c in cases} == {(2, 4), (3, 3), (1, 6), (2, 2)}
    assert len({c.config.label_noise for c in cases}) >= 3
    for c in cases:
        n_feat = (c.config.n_groups + 1) * c.config.group_dim
        if c.config.kind == "sequence":
            assert c.X.shape == (60, c.config.seq_len, n_feat) and c.environments is None
        else:
            assert c.X.shape == (60, n_feat)
            np.testing.assert_array_equal(c.environments, c.true_environments)
        assert c.truth == {g: (g == "spurious" and c.bias_strength > 0) for g in c.groups}
        assert c.environment_strengths == tuple(c.bias_strength * f for f in ENVIRONMENT_FACTORS)


@pytest.mark.parametrize("kind,seq_len", [("tabular", 1), ("sequence", 3)])
def test_planted_relations_hold(kind, seq_len):
    cfg = SuiteConfig(kind, n_groups=2, group_dim=3, label_noise=0.0, seq_len=seq_len)
    (case,) = make_reliance_suite(biases=(0.8,), configs=(cfg,), n_train=30, n_eval=60000, random_state=1)
    x = case.X if kind == "sequence" else case.X[:, None, :]
    genuine, spurious = x[..., :6], x[..., 6:]
    k_g, k_s = 6 * seq_len, 3 * seq_len
    # the genuine label rule holds exactly without label noise
    np.testing.assert_array_equal(case.y, (_sum_sq(genuine) > k_g).astype(np.float32))
    b = _sum_sq(spurious) > k_s
    p_b, p_y = stats.chi2.sf(k_s, k_s), stats.chi2.sf(k_g, k_g)
    p_indep = p_b * p_y + (1 - p_b) * (1 - p_y)
    for e, s in enumerate(case.environment_strengths):
        m = case.true_environments == e
        agree = float((b[m] == (case.y[m] == 1)).mean())
        assert agree == pytest.approx(s + (1 - s) * p_indep, abs=0.015)  # 20000 rows: 6+ binomial SDs
    if kind == "sequence":  # rows in time order, one environment after the other
        assert np.all(np.diff(case.true_environments) >= 0)


def test_label_noise_rate():
    cfg = SuiteConfig("tabular", n_groups=1, group_dim=4, label_noise=0.2)
    (case,) = make_reliance_suite(biases=(0.0,), configs=(cfg,), n_train=30, n_eval=40000, random_state=2)
    clean = _sum_sq(case.X[:, :4]) > 4
    assert float((clean != (case.y == 1)).mean()) == pytest.approx(0.2, abs=0.01)


def test_generator_errors():
    with pytest.raises(ValueError, match=r"SuiteConfig\.kind must be one of"):
        make_reliance_suite(configs=(SuiteConfig("image", 1, 2),))
    with pytest.raises(ValueError, match="seq_len must be 1 for kind='tabular'"):
        make_reliance_suite(configs=(SuiteConfig("tabular", 1, 2, seq_len=3),))
    with pytest.raises(ValueError, match=r"SuiteConfig.label_noise must be in \[0.0, 0.5\]"):
        make_reliance_suite(configs=(SuiteConfig("tabular", 1, 2, label_noise=0.7),))
    with pytest.raises(ValueError, match="biases must hold at least one"):
        make_reliance_suite(biases=())
    with pytest.raises(ValueError, match=r"biases\[i\] must be in"):
        make_reliance_suite(biases=(1.5,))
    with pytest.raises(TypeError, match=r"configs\[0\] must be a SuiteConfig"):
        make_reliance_suite(configs=({"kind": "tabular"},))
    with pytest.raises(ValueError, match="configs must hold at least one SuiteConfig"):
        make_reliance_suite(configs=())
    with pytest.raises(ValueError, match="n_train must be >= 30"):
        make_reliance_suite(n_train=29)
