"""Tests for the detector on its validation suite: the acceptance numbers and the evaluation helpers."""

from __future__ import annotations

import pytest
import torch

from featurelens.datasets import SuiteConfig, make_reliance_suite
from featurelens.reliance import SuiteResult, evaluate_suite


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
