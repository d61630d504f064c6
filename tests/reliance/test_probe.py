"""Tests for featurelens.reliance._probe: cross-validated probes and the relation per environment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from featurelens.reliance import cross_val_probe
from featurelens.reliance._probe import (
    auc_standard_error,
    heterogeneity,
    label_kind,
    probe_inputs,
    relation_by_environment,
)


def test_label_kind_and_probe_inputs():
    assert label_kind(np.array([0.0, 1.0, 1.0])) == "binary"
    assert label_kind(np.array([0.0, 0.5, 2.0])) == "continuous"
    x = np.arange(24, dtype=np.float64).reshape(2, 4, 3)
    z = probe_inputs(x)
    # x[i, t, j] = 12 i + 3 t + j: over t = 0..3 the values are b, b+3, b+6, b+9 with b = 12 i + j,
    # so mean = b + 4.5, population std = 3 * sqrt(1.25) (deviations +-4.5, +-1.5), last = b + 9
    b = 12.0 * np.arange(2)[:, None] + np.arange(3)[None, :]
    assert z.shape == (2, 9)
    np.testing.assert_allclose(z[:, 0:3], b + 4.5)
    np.testing.assert_allclose(z[:, 3:6], np.full((2, 3), 3.0 * np.sqrt(1.25)))
    np.testing.assert_allclose(z[:, 6:9], b + 9.0)
    np.testing.assert_array_equal(probe_inputs(x[:, 0, :]), x[:, 0, :])


def test_probe_sees_a_last_step_signal_that_mean_and_std_hide():
    # windows of 5 consecutive weekdays (0 = Monday): every window holds each weekday once, so the
    # per-feature mean (2) and std (sqrt 2) are the same for all rows; the label is "the window ends
    # on a Friday", flipped for 10 % of rows (the finance example's calendar shortcut)
    rng = np.random.default_rng(3)
    n, t = 2000, 5
    start = rng.integers(0, 5, n)
    dow = (start[:, None] + np.arange(t)[None, :]) % 5
    noise = rng.standard_normal((n, t))
    x = np.stack([dow.astype(np.float64), noise], axis=2)  # (n, T, 2)
    y = (dow[:, -1] == 4).astype(float)
    y = np.where(rng.random(n) < 0.1, 1 - y, y)
    new = cross_val_probe(x, y, random_state=0)
    old_summary = np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1)  # the former (n, 2k) summary
    old = cross_val_probe(old_summary, y, random_state=0)
    # Bayes AUC with 10 % flips: P(Friday | y=1) = 0.9 * 0.2 / (0.9 * 0.2 + 0.1 * 0.8) = 0.692,
    # P(Friday | y=0) = 0.1 * 0.2 / (0.1 * 0.2 + 0.9 * 0.8) = 0.027; AUC = 0.5 + (0.692 - 0.027) / 2 = 0.83
    p1 = 0.9 * 0.2 / (0.9 * 0.2 + 0.1 * 0.8)
    p0 = 0.1 * 0.2 / (0.1 * 0.2 + 0.9 * 0.8)
    assert new.score == pytest.approx(0.5 + (p1 - p0) / 2, abs=0.03)
    assert new.score > 0.75
    assert abs(old.score - 0.5) < 0.04


def test_quadratic_probe_sees_magnitudes_linear_does_not():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1500, 2))
    y = (x[:, 0] ** 2 > 1).astype(float)  # a relation carried by |x0| only
    quad = cross_val_probe(x, y, probe="quadratic", random_state=0)
    lin = cross_val_probe(x, y, probe="linear", random_state=0)
    mlp = cross_val_probe(x[:500], y[:500], probe="mlp", n_folds=3, random_state=0)
    assert quad.metric == "auc" and quad.score > 0.97
    assert abs(lin.score - 0.5) < 0.06
    assert mlp.score > 0.9
    # the pooled score is the AUC of the out-of-fold scores
    assert quad.score == pytest.approx(roc_auc_score(y, quad.oof), abs=1e-12)
    assert quad.fold_scores.shape == (5,)
    noise = cross_val_probe(rng.standard_normal((1500, 3)), y, random_state=0)
    assert abs(noise.score - 0.5) < 0.05


def test_regression_probe_r2_matches_signal_share():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 1))
    y = 2.0 * x[:, 0] + rng.standard_normal(4000)  # R^2 = 4 / (4 + 1) = 0.8
    res = cross_val_probe(x, y, probe="linear", random_state=0)
    assert res.metric == "r2"
    assert res.score == pytest.approx(0.8, abs=0.03)


def test_auc_standard_error_matches_monte_carlo():
    # scores N(1, 1) for positives vs N(0, 1) for negatives: AUC = Phi(1 / sqrt 2)
    rng = np.random.default_rng(2)
    n_pos, n_neg = 150, 250
    s = np.concatenate([rng.normal(1, 1, (300, n_pos)), rng.normal(0, 1, (300, n_neg))], axis=1)
    ranks = stats.rankdata(s, axis=1)
    aucs = (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    true_auc = stats.norm.cdf(1 / np.sqrt(2))
    assert np.mean(aucs) == pytest.approx(true_auc, abs=0.01)
    assert auc_standard_error(true_auc, n_pos, n_neg) == pytest.approx(np.std(aucs), rel=0.15)


def test_relation_by_environment_keeps_direction_and_q_matches_formula():
    rng = np.random.default_rng(3)
    n = 900
    env = np.repeat([0, 1, 2], n // 3)
    y = rng.integers(0, 2, n).astype(float)
    sign = np.where(env == 2, -1.0, 1.0)  # the relation reverses in environment 2
    scores = sign * (y - 0.5) + rng.standard_normal(n)
    table = relation_by_environment(scores, y, env)
    for e in range(3):
        m = env == e
        assert table.loc[e, "relation"] == pytest.approx(roc_auc_score(y[m], scores[m]), abs=1e-12)
        n1, n0 = int(y[m].sum()), int((1 - y[m]).sum())
        assert table.loc[e, "std_error"] == pytest.approx(auc_standard_error(table.loc[e, "relation"], n1, n0))
    assert table.loc[2, "relation"] < 0.4 < 0.6 < table.loc[0, "relation"]
    q, df, p = heterogeneity(table, "binary")
    w = 1 / table["std_error"].to_numpy() ** 2
    a = table["relation"].to_numpy()
    q_ref = float((w * (a - (w * a).sum() / w.sum()) ** 2).sum())
    assert (q, df) == (pytest.approx(q_ref), 2)
    assert p == pytest.approx(stats.chi2.sf(q_ref, 2)) and p < 1e-6


def test_continuous_relation_uses_fisher_z():
    rng = np.random.default_rng(4)
    env = np.repeat([0, 1], 500)
    y = rng.standard_normal(1000)
    scores = y + rng.standard_normal(1000)
    table = relation_by_environment(scores, y, env)
    assert table.loc[0, "relation"] == pytest.approx(np.corrcoef(scores[:500], y[:500])[0, 1])
    assert table.loc[0, "std_error"] == pytest.approx(1 / np.sqrt(497))
    q, df, p = heterogeneity(table, "continuous")
    z = np.arctanh(table["relation"].to_numpy())
    assert q == pytest.approx(((z - z.mean()) ** 2).sum() * 497)
    assert df == 1 and 0 <= p <= 1


def test_heterogeneity_needs_two_environments():
    one = pd.DataFrame({"environment": [0], "n": [10], "relation": [0.7], "std_error": [0.05]})
    q, df, p = heterogeneity(one, "binary")
    assert np.isnan(q) and np.isnan(p) and df == 0


def test_probe_errors():
    x = np.zeros((20, 2))
    y = np.r_[np.zeros(10), np.ones(10)]
    with pytest.raises(ValueError, match="probe must be one of"):
        cross_val_probe(x, y, probe="forest")
    with pytest.raises(ValueError, match="n_folds must be >= 2"):
        cross_val_probe(x, y, n_folds=1)
    with pytest.raises(ValueError, match="single class"):
        cross_val_probe(x, np.ones(20))
    with pytest.raises(ValueError, match="at least n_folds=5 rows of each class"):
        cross_val_probe(x, np.r_[np.zeros(17), np.ones(3)])
