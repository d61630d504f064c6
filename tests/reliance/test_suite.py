"""Tests for the detector's validation suite: planted ground truth and the acceptance numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from featurelens.reliance import (
    SuiteConfig,
    SuiteResult,
    evaluate_suite,
    make_reliance_suite,
)
from featurelens.reliance._suite import ENVIRONMENT_FACTORS


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


def test_suite_acceptance_auroc_and_no_flags_at_zero_bias():
    """24 cases (reduced sizes; the full suite runs in benchmarks/reliance.py)."""
    cases = make_reliance_suite(n_train=800, n_eval=2400, random_state=0)
    res = evaluate_suite(cases, epochs=20, random_state=0)
    assert isinstance(res, SuiteResult)
    assert res.table["case"].nunique() == len(cases) >= 24
    assert res.table["truth"].sum() == 20 and (~res.table["truth"]).sum() == 52
    assert res.auroc >= 0.95
    assert res.flagged_at_zero_bias == []
    zero = res.table[res.table["bias_strength"] == 0]
    assert not zero["spurious"].any()
    rates = res.flag_rates
    assert rates.loc[True, "mean"] >= 0.6  # sensitivity of the spurious flag
    assert rates.loc[False, "mean"] <= 0.05  # false-positive rate
    assert set(res.reports) == {c.name for c in cases}
    # the sweep recomputes the flags from the recorded evidence: same verdicts at the defaults
    t = res.thresholds
    same = res.sweep(min_reliance=[t.min_reliance], min_spread=[t.min_spread]).iloc[0]
    assert same["sensitivity"] == pytest.approx(rates.loc[True, "mean"])
    assert same["false_positive_rate"] == pytest.approx(rates.loc[False, "mean"])
    assert same["flags_at_zero_bias"] == 0
    loose = res.sweep(min_reliance=[-1.0], min_spread=[0.0], alpha=1.0).iloc[0]
    assert loose["sensitivity"] == 1.0 and loose["false_positive_rate"] > same["false_positive_rate"]
    cal = res.calibration()
    assert cal.loc[(True, "score"), 1.0] == pytest.approx(res.table.loc[res.table["truth"], "score"].max())


def test_custom_fit_and_errors():
    cases = make_reliance_suite(biases=(0.0, 0.9), configs=(SuiteConfig("tabular", 1, 2),),
                                n_train=60, n_eval=300, random_state=3)

    class Oracle(torch.nn.Module):  # uses the spurious group only: relied upon, unstable where biased
        def forward(self, x):
            return (x[:, 2:] ** 2).sum(dim=1) - 2.0

    res = evaluate_suite(cases, fit=lambda case: Oracle(), detect_options={"n_repeats": 2})
    t = res.table.set_index(["bias_strength", "group"])
    assert t.loc[(0.0, "genuine_0"), "reliance_permutation"] == 0.0
    assert t.loc[(0.9, "spurious"), "reliance_permutation"] > t.loc[(0.0, "spurious"), "reliance_permutation"]
    with pytest.raises(ValueError, match="cases must hold at least one SuiteCase"):
        evaluate_suite([])
    with pytest.raises(TypeError, match="cases must hold SuiteCase objects"):
        evaluate_suite([object()])
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
