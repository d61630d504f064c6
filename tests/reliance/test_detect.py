"""Tests for featurelens.reliance.detect_spurious on data with planted ground truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from featurelens.datasets import SuiteConfig, make_reliance_suite
from featurelens.reliance import (
    SpuriousReport,
    Thresholds,
    detect_spurious,
    fit_suite_model,
)
from featurelens.reliance._detect import wasserstein_shift


@pytest.fixture(scope="module")
def biased():
    """A tabular case with bias 0.9 in environment 0 (0.63, 0.36 in the others) and its trained MLP."""
    (case,) = make_reliance_suite(
        biases=(0.9,), configs=(SuiteConfig("tabular", n_groups=1, group_dim=4, label_noise=0.1),),
        n_train=800, n_eval=2400, random_state=5,
    )
    return case, fit_suite_model(case, epochs=20, random_state=0)


def test_flags_the_planted_spurious_group_only(biased):
    case, model = biased
    model.train()  # left as found: mode and weights
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rep = detect_spurious(model, case.X, case.y, groups=case.groups, feature_names=case.feature_names,
                          environments=case.environments, random_state=0)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(rep, SpuriousReport) and rep.environments == "user"
    assert rep.metric == "auc" and rep.relation_metric == "auc"
    t = rep.table.set_index("group")
    assert rep.flagged == ["spurious"]
    assert bool(t.loc["genuine_0", "relied_upon"]) and not bool(t.loc["genuine_0", "unstable"])
    assert t.loc["spurious", "heterogeneity_p"] < 1e-6 < t.loc["genuine_0", "heterogeneity_p"]
    assert t.loc["spurious", "score"] >= 1 > t.loc["genuine_0", "score"]
    # the relation per environment follows the planted strengths 0.9 > 0.63 > 0.36
    rel = [r["relation"] for r in rep.evidence["spurious"]["relation_by_environment"]]
    assert rel[0] > rel[1] > rel[2] > 0.5
    spread = t.loc["spurious", "relation_max"] - t.loc["spurious", "relation_min"]
    assert t.loc["spurious", "relation_spread"] == pytest.approx(spread)
    i2 = max(0.0, 1 - t.loc["spurious", "heterogeneity_df"] / t.loc["spurious", "heterogeneity_q"])
    assert t.loc["spurious", "excess_spread"] == pytest.approx(spread * i2)
    # the spurious group alone predicts the label; its features are shifted between classes
    assert t.loc["spurious", "probe_score"] > 0.6
    assert t.loc["spurious", "wasserstein_mean"] > 0.05
    assert len(rep.evidence["spurious"]["permutation_scores"]) == 5
    assert any("heterogeneity p-value" in r for r in rep.evidence["spurious"]["reasons"])
    json.dumps(rep.to_dict(), allow_nan=False)


def test_strict_thresholds_flag_nothing(biased):
    case, model = biased
    rep = detect_spurious(model, case.X[:900], case.y[:900], groups=case.groups,
                          feature_names=case.feature_names, environments=case.environments[:900],
                          thresholds=Thresholds(min_reliance=0.5), n_repeats=2, random_state=0)
    assert rep.flagged == [] and not rep.table["relied_upon"].any()
    assert rep.thresholds.min_reliance == 0.5


def test_bootstrap_and_window_modes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.standard_normal(300) > 0).astype(np.float32)
    model = nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 0.0, 0.0]]))
        model.bias.zero_()
    groups = {"signal": [0], "noise": [1, 2]}
    frame = pd.DataFrame(x, columns=["s", "n1", "n2"])
    by_name = detect_spurious(model, frame, y, groups={"signal": ["s"], "noise": ["n1", "n2"]},
                              n_bootstrap=8, n_repeats=3, random_state=0)
    rep = detect_spurious(model, x, y, groups=groups, n_bootstrap=8, n_repeats=3, random_state=0)
    pd.testing.assert_frame_equal(by_name.table, rep.table)  # names or indices: same numbers
    assert rep.environments == "bootstrap"
    t = rep.table.set_index("group")
    assert np.isnan(t.loc["signal", "heterogeneity_p"]) and t.loc["signal", "heterogeneity_i2"] == 1.0
    assert len(rep.evidence["signal"]["relation_by_environment"]) == 8
    assert t.loc["noise", "reliance_permutation"] == 0.0  # the model ignores these columns
    assert t.loc["noise", "reliance_ablation"] == 0.0
    assert bool(t.loc["signal", "relied_upon"])
    seq = np.repeat(x[:, None, :], 4, axis=1)  # (n, T, d)

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, s):
            return self.lin(s.mean(dim=1)).squeeze(-1)

    rep = detect_spurious(Pool(), seq, y, groups=groups, n_windows=3, n_repeats=2, random_state=0)
    assert rep.environments == "windows"
    envs = rep.evidence["signal"]["relation_by_environment"]
    assert [e["n"] for e in envs] == [100, 100, 100]


def test_continuous_labels_use_correlation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 2)).astype(np.float32)
    y = (2 * x[:, 0] + rng.standard_normal(400)).astype(np.float32)
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 0.0]]))
        model.bias.zero_()
    env = np.repeat(["site B", "site A"], 200)
    rep = detect_spurious(model, x, y, groups={"a": [0], "b": [1]}, environments=env, target=0,
                          probe="linear", n_repeats=2, random_state=0)
    t = rep.table.set_index("group")
    assert rep.relation_metric == "r" and rep.metric == "mse"
    assert t.loc["a", "probe_score"] == pytest.approx(0.8, abs=0.06)  # R^2 = 4 / 5
    assert t.loc["a", "reliance_permutation"] > 1.0 and t.loc["b", "reliance_permutation"] == 0.0
    assert rep.flagged == []
    envs = rep.evidence["a"]["relation_by_environment"]
    assert [e["environment"] for e in envs] == ["site A", "site B"] and [e["n"] for e in envs] == [200, 200]
    assert envs[0]["relation"] == pytest.approx(envs[1]["relation"], abs=0.1)  # same relation at both sites
    json.dumps(rep.to_dict(), allow_nan=False)


def test_wasserstein_shift_closed_form():
    base = np.linspace(-1, 1, 101)
    x = np.concatenate([base, base + 0.5])[:, None].repeat(2, axis=1)
    x[:, 1] = 3.0  # constant feature
    y = np.r_[np.zeros(101), np.ones(101)]
    w = wasserstein_shift(x, y, "binary")
    assert w[0] == pytest.approx(0.5 / x[:, 0].std())
    assert w[1] == 0.0
    seq = np.stack([x, x], axis=1)  # all time steps count as values of the row
    w_seq = wasserstein_shift(seq, y, "binary")
    ref = wasserstein_distance(seq[y == 1, :, 0].ravel(), seq[y == 0, :, 0].ravel()) / seq[..., 0].std()
    assert w_seq[0] == pytest.approx(ref)


def test_detect_errors(biased):
    case, model = biased
    kw = {"groups": case.groups, "feature_names": case.feature_names}
    x, y = case.X[:200], case.y[:200]
    with pytest.raises(ValueError, match="environments must hold one label per row"):
        detect_spurious(model, x, y, environments=np.zeros(10), **kw)
    with pytest.raises(ValueError, match="at least 2 different environments"):
        detect_spurious(model, x, y, environments=np.zeros(200), **kw)
    with pytest.raises(ValueError, match="environments must be None, 'windows', 'bootstrap'"):
        detect_spurious(model, x, y, environments="sites", **kw)
    with pytest.raises(ValueError, match="y has 199 rows but X has 200"):
        detect_spurious(model, x, y[:199], **kw)
    with pytest.raises(ValueError, match="groups is required"):
        detect_spurious(model, x, y, groups=None, feature_names=case.feature_names)
    with pytest.raises(TypeError, match="thresholds must be a Thresholds"):
        detect_spurious(model, x, y, thresholds={"alpha": 0.1}, **kw)
    with pytest.raises(ValueError, match=r"min_reliance must be in \(0.0, None\]"):
        Thresholds(min_reliance=0.0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0.0, 1.0\]"):
        Thresholds(alpha=2.0)
    with pytest.raises(TypeError, match="min_spread must be a number"):
        Thresholds(min_spread="wide")
    with pytest.raises(ValueError, match="n_repeats must be >= 2"):
        detect_spurious(model, x, y, n_repeats=1, **kw)
    with pytest.raises(ValueError, match="single class"):
        detect_spurious(model, x, np.ones(200), **kw)
    with pytest.raises(ValueError, match="missing values"):
        detect_spurious(model, x, y, environments=np.r_[np.zeros(199), np.nan], **kw)
