"""Tests for importance over time windows and per subgroup, and metrics per subgroup."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from featurelens.attribution import attribute
from featurelens.reliance import (
    WindowImportance,
    importance_by_subgroup,
    importance_over_windows,
    metrics_by_subgroup,
)

GROUPS = {"a": [0], "b": [1, 2]}


def _linear(weights=(2.0, -1.0, 0.5)) -> nn.Linear:
    model = nn.Linear(3, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weights], dtype=torch.float64))
        model.bias.fill_(0.1)
    return model


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = (x @ np.array([2.0, -1.0, 0.5]) + rng.standard_normal(n) > 0).astype(np.float64)
    return x, y


def test_windows_trend_and_dispersion_closed_form():
    # column a is constant c_w inside window w, so ablation to 0 moves f by exactly 2 * c_w
    c = np.array([1.0, 1.5, 2.5, 3.0])
    x, _ = _data(n=80)
    x[:, 0] = np.repeat(c, 20)
    res = importance_over_windows(_linear(), x, groups=GROUPS, window=20, method="ablation", baselines=0.0,
                                  target=0)
    assert isinstance(res, WindowImportance)
    a = res.table[res.table["group"] == "a"]
    np.testing.assert_allclose(a["importance"], 2 * c, atol=1e-12)
    assert list(a["start"]) == [0, 20, 40, 60] and list(a["stop"]) == [20, 40, 60, 80]
    s = res.summary.set_index("group").loc["a"]
    slope = np.polyfit(np.arange(4), 2 * c, 1)[0]
    assert s["trend"] == pytest.approx(slope) and s["n_windows"] == 4
    assert s["std"] == pytest.approx(np.std(2 * c, ddof=1))
    assert s["cv"] == pytest.approx(np.std(2 * c, ddof=1) / np.mean(2 * c))
    assert s["mean"] == pytest.approx(np.mean(2 * c))


def test_windows_permutation_matches_a_direct_loop_with_overlap():
    x, y = _data(n=300)
    model = _linear()
    res = importance_over_windows(model, x, y, groups=GROUPS, window=100, stride=50, n_repeats=3,
                                  target=0, random_state=7)
    assert sorted(res.table["window"].unique()) == [0, 1, 2, 3, 4]
    rng = np.random.default_rng(7)
    for w, start in enumerate(range(0, 201, 50)):
        exp = attribute(model, x[start:start + 100], method="permutation", groups=GROUPS, target=0,
                        y=y[start:start + 100], n_repeats=3, random_state=rng)
        got = res.table[res.table["window"] == w].set_index("group")
        np.testing.assert_allclose(got["importance"], exp.importance()[["a", "b"]], atol=1e-12)
        np.testing.assert_allclose(got["std_error"], exp.importance_std_error()[["a", "b"]], atol=1e-12)


def test_importance_by_subgroup_uses_one_baseline_for_all():
    x, y = _data(n=300, seed=1)
    sub = np.where(np.arange(300) % 3 == 0, "public", "private")
    model = _linear()
    res = importance_by_subgroup(model, x, y, groups=GROUPS, subgroups=sub, method="ablation", target=0)
    assert list(res.columns) == ["subgroup", "n", "group", "importance", "std_error"]
    for label in ("private", "public"):
        m = sub == label
        exp = attribute(model, x[m], method="ablation", groups=GROUPS, target=0, baselines="mean",
                        background=x)
        got = res[res["subgroup"] == label].set_index("group")
        np.testing.assert_allclose(got["importance"], exp.importance()[["a", "b"]], atol=1e-12)
        assert (got["n"] == m.sum()).all()
    perm = importance_by_subgroup(model, x, y, groups=GROUPS, subgroups=pd.Series(sub), target=0,
                                  n_repeats=2, random_state=0)
    assert (perm.groupby("subgroup")["importance"].idxmax().map(perm["group"]) == "a").all()


def test_metrics_by_subgroup_match_sklearn():
    x, y = _data(n=500, seed=2)
    model = _linear()
    sub = np.array(["medicare", "private", "self-pay", "tiny"])[np.r_[np.arange(495) % 3, [3] * 5]]
    res = metrics_by_subgroup(model, x, y, subgroups=sub, metrics=("auc", "accuracy", "log_loss"),
                              link="sigmoid", target=0)
    assert list(res["subgroup"]) == ["medicare", "private", "self-pay", "(all)"]  # "tiny" < min_size
    with torch.no_grad():
        p = torch.sigmoid(model(torch.from_numpy(x)))[:, 0].numpy()
    for _, row in res.iterrows():
        m = np.ones(500, bool) if row["subgroup"] == "(all)" else sub == row["subgroup"]
        assert row["n"] == m.sum()
        assert row["auc"] == pytest.approx(roc_auc_score(y[m], p[m]), abs=1e-12)
        assert row["accuracy"] == pytest.approx(((p[m] >= 0.5) == y[m]).mean(), abs=1e-12)
        assert row["positive_rate"] == pytest.approx(y[m].mean())
        assert row["mean_output"] == pytest.approx(p[m].mean())
    one_class = metrics_by_subgroup(model, x, np.r_[np.ones(250), y[250:]],
                                    subgroups=np.repeat(["early", "late"], 250), target=0)
    assert np.isnan(one_class.set_index("subgroup").loc["early", "auc"])


def test_stability_errors():
    x, y = _data(n=100)
    model = _linear()
    with pytest.raises(ValueError, match="give 1 complete window"):
        importance_over_windows(model, x, y, groups=GROUPS, window=60, target=0)
    with pytest.raises(ValueError, match="method must be one of"):
        importance_over_windows(model, x, y, groups=GROUPS, window=20, method="shap", target=0)
    with pytest.raises(ValueError, match="metric= applies to method='permutation' only"):
        importance_over_windows(model, x, y, groups=GROUPS, window=20, method="ablation", metric="auc")
    with pytest.raises(ValueError, match="y has 99 rows but X has 100"):
        importance_over_windows(model, x, y[:99], groups=GROUPS, window=20, target=0)
    with pytest.raises(ValueError, match="groups is required"):
        importance_over_windows(model, x, y, groups=None, window=20, target=0)
    with pytest.raises(ValueError, match=r"window 0 \(rows 0..19\): metric 'auc' needs both classes"):
        importance_over_windows(model, x, np.r_[np.ones(20), y[20:]], groups=GROUPS, window=20,
                                metric="auc", target=0)
    with pytest.raises(ValueError, match="subgroups must hold one label per row"):
        importance_by_subgroup(model, x, y, groups=GROUPS, subgroups=np.zeros(3), target=0)
    with pytest.raises(ValueError, match="no subgroup has at least min_size=10 rows"):
        metrics_by_subgroup(model, x, y, subgroups=np.arange(100), target=0)
    with pytest.raises(ValueError, match="metrics\\[i\\] must be one of"):
        metrics_by_subgroup(model, x, y, subgroups=np.zeros(100), metrics=("f1",), target=0)
    with pytest.raises(TypeError, match="metrics must be a non-empty sequence"):
        metrics_by_subgroup(model, x, y, subgroups=np.zeros(100), metrics="auc", target=0)
