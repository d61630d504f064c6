"""Tests for featurelens.dynamics._selection: split, scores per restart, the recommended K."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featurelens.datasets import make_planted_runs
from featurelens.dynamics import fit_hmm, recommend_n_states, select_model


@pytest.fixture(scope="module")
def selection():
    runs, _, names = make_planted_runs(n_runs=10, n_steps=120, n_features=4, n_phases=3, random_state=2)
    sel = select_model(runs, states=range(1, 5), n_restarts=2, test_fraction=0.2, random_state=0, feature_names=names)
    return runs, sel


def test_table_scores_every_restart_on_the_right_split(selection):
    runs, sel = selection
    assert len(sel.test_runs) == 2 and len(sel.train_runs) == 8
    assert sorted(sel.train_runs + sel.test_runs) == list(range(10))
    train = [runs[i] for i in sel.train_runs]
    test = [runs[i] for i in sel.test_runs]
    t = sel.table
    assert list(t.columns) == ["n_states", "restart", "train_loglik", "test_loglik", "aic", "bic", "test_aic",
                               "test_bic", "n_parameters", "n_iter", "converged", "selected"]
    assert len(t) == 4 * 2 and sorted(set(t["n_states"])) == [1, 2, 3, 4]
    for row in t.itertuples():
        model = sel.fits[row.n_states].restarts[row.restart].model
        np.testing.assert_allclose(row.train_loglik, model.score(train), rtol=1e-10)
        np.testing.assert_allclose(row.test_loglik, model.score(test), rtol=1e-12)
        np.testing.assert_allclose(row.bic, -2 * row.train_loglik + model.n_parameters * math.log(8 * 120))
        np.testing.assert_allclose(row.aic, -2 * row.train_loglik + 2 * model.n_parameters)
        np.testing.assert_allclose(row.test_bic, -2 * row.test_loglik + model.n_parameters * math.log(2 * 120))
    for k, group in t.groupby("n_states"):
        chosen = group.loc[group["selected"]]
        assert len(chosen) == 1 and chosen["train_loglik"].iloc[0] == group["train_loglik"].max()
        assert sel.best[k] is sel.fits[k].restarts[int(chosen["restart"].iloc[0])].model
    assert sel.best[3].feature_names == ("metric_0", "metric_1", "metric_2", "metric_3")


def test_recommends_planted_number_of_phases(selection):
    _, sel = selection
    assert sel.recommended == 3
    assert "90%" in sel.rule and "K=1" in sel.rule
    summary = sel.summary()
    assert list(summary.index) == [1, 2, 3, 4]
    np.testing.assert_allclose(summary["test_loglik_mean"], sel.table.groupby("n_states")["test_loglik"].mean())


def test_recommend_rule_on_the_authors_lenet_curve():
    # best test log-likelihoods by K from the authors' saved MNIST-LeNet notebook (research note §1.2)
    ll = [94058, 117992, 128237, 136466, 141767, 142904, 143988, 145578]
    k, rule = recommend_n_states(dict(zip(range(1, 9), ll, strict=True)))
    assert k == 5 and "best K=8" in rule
    assert recommend_n_states(dict(zip(range(1, 9), ll, strict=True)), gain_fraction=0.5)[0] == 3
    assert recommend_n_states({1: -5.0, 2: -7.0})[0] == 1  # nothing beats the smallest K


def test_reproducible_with_seed():
    runs, _, _ = make_planted_runs(n_runs=4, n_steps=50, n_features=2, n_phases=2, random_state=0)
    a = select_model(runs, states=[1, 2], n_restarts=1, random_state=5)
    b = select_model(runs, states=[2, 1], n_restarts=1, random_state=5)
    assert a.test_runs == b.test_runs
    np.testing.assert_array_equal(a.table["test_loglik"], b.table["test_loglik"])


def test_selection_errors():
    runs, _, _ = make_planted_runs(n_runs=3, n_steps=30, n_features=2, n_phases=2, random_state=0)
    with pytest.raises(ValueError, match="at least 2 runs"):
        select_model(runs[:1], states=[1])
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0.0, 1.0\)"):
        select_model(runs, states=[1], test_fraction=1.0)
    with pytest.raises(ValueError, match="states must be >= 1"):
        select_model(runs, states=[0, 1])
    with pytest.raises(ValueError, match="states is empty"):
        select_model(runs, states=[])
    with pytest.raises(TypeError, match="states must be an iterable of ints"):
        select_model(runs, states=3)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        select_model(runs, states=[1], covariance_type="tied")
    with pytest.raises(ValueError, match="gain_fraction must be in"):
        recommend_n_states({1: 0.0}, gain_fraction=2.0)
    with pytest.raises(ValueError, match="no finite test log-likelihood"):
        recommend_n_states({1: float("nan")})


def test_batched_sweep_equals_separate_fits_from_same_inits(selection):
    # select_model runs all K and restarts in one padded EM batch; each fit must be what
    # fit_hmm computes alone from the same initial parameters
    runs, sel = selection
    train = [runs[i] for i in sel.train_runs]
    for k, fit in sel.fits.items():
        alone = fit_hmm(train, n_states=k, init=[r.initial for r in fit.restarts], n_iter=32, tol=1e-4)
        for a, b in zip(alone.restarts, fit.restarts, strict=True):
            assert a.n_iter == b.n_iter and a.converged == b.converged
            np.testing.assert_allclose(a.history, b.history, rtol=1e-12)
            np.testing.assert_allclose(a.model.means, b.model.means, atol=1e-9)
            np.testing.assert_allclose(a.model.transmat, b.model.transmat, atol=1e-9)


def test_to_frame_and_to_dict_are_the_table(selection):
    _, sel = selection
    frame = sel.to_frame()
    assert frame.equals(sel.table) and frame is not sel.table
    d = sel.to_dict()
    assert d["recommended"] == sel.recommended and d["rule"] == sel.rule
    assert [row["test_loglik"] for row in d["table"]] == sel.table["test_loglik"].tolist()
    assert "recommended K = 3" in sel._repr_html_() and "<table" in sel._repr_html_()
