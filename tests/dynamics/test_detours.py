"""Detour statistics against scipy, numpy lstsq and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import cross_val_predict

from featurelens.dynamics._detours import (
    convergence_time,
    occupancy,
    occupancy_regression,
    state_correlations,
)


def _planted(n_runs=30, seed=0):
    """Runs 0 -> (2 with prob. 0.4: the detour) -> 1 -> 3; the detour adds 20 checkpoints."""
    rng = np.random.default_rng(seed)
    paths, conv = [], []
    for _ in range(n_runs):
        a, b = rng.integers(5, 15), rng.integers(5, 15)
        detour = rng.integers(10, 30) if rng.random() < 0.4 else 0
        path = np.concatenate([np.zeros(a, int), np.full(detour, 2), np.ones(b, int), np.full(10, 3)])
        paths.append(path)
        conv.append(a + detour + b + rng.normal(scale=2.0))
    return paths, np.array(conv)


def test_convergence_time_definitions():
    acc = [0.1, 0.5, 0.95, 0.8, 0.97, 0.99]
    assert convergence_time(acc, threshold=0.9) == (2, True)
    assert convergence_time(acc, threshold=0.9, sustained=True) == (4, True)
    assert convergence_time(acc, threshold=0.995) == (6, False)
    loss = np.array([2.0, 1.0, np.nan, 0.4, 0.3])
    assert convergence_time(loss, threshold=0.5, direction="below") == (3, True)
    assert convergence_time(loss, threshold=0.5, direction="below", sustained=True) == (3, True)
    with pytest.raises(ValueError, match="direction must be one of"):
        convergence_time(acc, threshold=0.9, direction="up")
    with pytest.raises(ValueError, match="values is empty"):
        convergence_time([], threshold=0.9)
    with pytest.raises(ValueError, match="threshold must be finite"):
        convergence_time(acc, threshold=float("nan"))


def test_state_correlations_match_scipy_and_find_the_detour():
    paths, conv = _planted()
    table = state_correlations(paths, conv, n_states=5)
    assert table.loc[0, "kind"] == "obligatory" and np.isnan(table.loc[0, "r"])
    assert table.loc[4, "kind"] == "unvisited" and table.loc[4, "n_runs_visiting"] == 0
    visits = np.array([float((p == 2).any()) for p in paths])
    ref = stats.pearsonr(visits, conv)
    pb = stats.pointbiserialr(visits.astype(bool), conv)
    assert table.loc[2, "r"] == pytest.approx(ref.statistic, rel=1e-12)
    assert table.loc[2, "r"] == pytest.approx(pb.statistic, rel=1e-12)
    assert table.loc[2, "p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert table.loc[2, "kind"] == "detour" and table.loc[2, "r"] > 0.8 and table.loc[2, "p_value"] < 1e-6
    assert table.loc[2, "mean_convergence_visiting"] == pytest.approx(conv[visits > 0].mean())


def test_negative_correlation_has_two_sided_p_below_one():
    # the authors' 2 * (1 - cdf(t)) exceeds 1 for t < 0; 2 * sf(|t|) does not
    paths = [np.array([0, 1]), np.array([0, 1]), np.array([0]), np.array([0]), np.array([0, 1]), np.array([0])]
    conv = np.array([1.0, 2.0, 5.0, 6.0, 1.5, 4.0])
    table = state_correlations(paths, conv)
    ref = stats.pearsonr([1, 1, 0, 0, 1, 0], conv)
    assert table.loc[1, "r"] < 0 and table.loc[1, "kind"] == "shortcut"
    assert table.loc[1, "p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert 0 < table.loc[1, "p_value"] < 1
    # the same correlation at a stricter level is not significant
    strict = state_correlations(paths, conv, alpha=ref.pvalue / 2)
    assert strict.loc[1, "kind"] == "not significant" and strict.loc[1, "r"] == table.loc[1, "r"]
    with pytest.raises(ValueError, match="alpha must be in"):
        state_correlations(paths, conv, alpha=1.0)


def test_occupancy_regression_matches_lstsq_and_sklearn():
    paths, conv = _planted(n_runs=25, seed=1)
    counts = occupancy(paths, n_states=4)
    assert counts[0].sum() == len(paths[0])
    reg = occupancy_regression(paths, conv, n_states=4, n_splits=5, random_state=3)
    design = np.column_stack([np.ones(len(conv)), counts])
    beta = np.linalg.lstsq(design, conv, rcond=None)[0]
    np.testing.assert_allclose(np.r_[reg.intercept, reg.coef], beta, rtol=1e-9, atol=1e-9)
    sk = LinearRegression().fit(counts, conv)
    assert reg.r2 == pytest.approx(sk.score(counts, conv), rel=1e-10)
    assert reg.r2 > 0.9  # convergence is the sum of the occupancies plus noise
    order = np.random.default_rng(3).permutation(len(conv))
    folds = [(np.setdiff1d(order, f), f) for f in np.array_split(order, 5)]
    oof = cross_val_predict(LinearRegression(), counts, conv, cv=folds)
    ref_cv = 1 - ((conv - oof) ** 2).sum() / ((conv - conv.mean()) ** 2).sum()
    assert reg.r2_cv == pytest.approx(ref_cv, rel=1e-8)
    assert reg.rank == 4  # state 3 lasts 10 checkpoints in every run: collinear with the intercept
    early = occupancy_regression(paths, conv, n_states=4, first_k=8)
    assert early.first_k == 8 and early.r2 < reg.r2


def test_errors():
    paths, conv = _planted(n_runs=6)
    with pytest.raises(ValueError, match="convergence has 5 values but there are 6 runs"):
        state_correlations(paths, conv[:5])
    with pytest.raises(ValueError, match="convergence holds NaN"):
        state_correlations(paths, np.r_[conv[:5], np.nan])
    with pytest.raises(ValueError, match="states hold state 3 but n_states is 2"):
        occupancy(paths, n_states=2)
    with pytest.raises(TypeError, match="states must be a non-empty list"):
        occupancy([])
    with pytest.raises(ValueError, match=r"states\[0\] must be a non-empty 1-D integer array"):
        occupancy([np.array([0.5, 1.0])])
    with pytest.raises(ValueError, match="at least 3 runs"):
        state_correlations(paths[:2], conv[:2])
    with pytest.raises(ValueError, match=r"at least max\(3, n_splits=10\) runs"):
        occupancy_regression(paths, conv, n_splits=10)
    with pytest.raises(ValueError, match="first_k must be >= 1"):
        occupancy(paths, first_k=0)
