"""Tests for featurelens.dynamics._hmm: inference and EM against hmmlearn and independent loops."""

from __future__ import annotations

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM as RefHMM
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from featurelens.dynamics import GaussianHMM, fit_hmm
from featurelens.dynamics._em import _estep, _stack
from featurelens.dynamics._inference import (
    _Design,
    _fb_log,
    _fb_scaled,
    _log_emission_batch,
)


def _runs(lengths=(120, 90, 120, 60), d=3, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        x = np.cumsum(rng.normal(size=(n, d)), axis=0) * 0.2 + rng.normal(size=(n, d))
        out.append((x - x.mean(0)) / x.std(0))
    return out


def _ref(model: GaussianHMM, n_iter: int) -> RefHMM:
    """hmmlearn with our parameters, no priors (covars_prior=0: its prior is added to every
    covariance entry, which we do not do) and no early stopping."""
    ref = RefHMM(model.n_states, covariance_type=model.covariance_type, n_iter=n_iter, tol=-np.inf,
                 init_params="", covars_prior=0.0)
    ref.startprob_, ref.transmat_ = model.startprob.copy(), model.transmat.copy()
    ref.means_, ref.covars_ = model.means.copy(), model.covars.copy()
    return ref


def _stacked(seqs):
    return np.concatenate(seqs), [len(s) for s in seqs]


@pytest.mark.parametrize("ctype", ["full", "diag"])
@pytest.mark.parametrize("n_iter", [1, 6])
def test_em_matches_hmmlearn_from_same_init(ctype, n_iter):
    seqs = _runs()
    init = fit_hmm(seqs, n_states=3, covariance_type=ctype, n_restarts=1, n_iter=1, random_state=3).restarts[0].initial
    fit = fit_hmm(seqs, n_states=3, covariance_type=ctype, init=init, n_iter=n_iter, tol=None)
    X, lengths = _stacked(seqs)
    ref = _ref(init, n_iter).fit(X, lengths)
    res = fit.restarts[0]
    assert res.n_iter == n_iter
    np.testing.assert_allclose(res.history, ref.monitor_.history, rtol=1e-9)
    np.testing.assert_allclose(res.loglik, ref.score(X, lengths), rtol=1e-9)
    m = fit.model
    np.testing.assert_allclose(m.startprob, ref.startprob_, atol=1e-9)
    np.testing.assert_allclose(m.transmat, ref.transmat_, atol=1e-9)
    np.testing.assert_allclose(m.means, ref.means_, atol=1e-9)
    full = m.covars if ctype == "full" else np.stack([np.diag(c) for c in m.covars])
    np.testing.assert_allclose(full, ref.covars_, atol=1e-9)  # hmmlearn's property is always (K, D, D)
    assert np.diff(np.r_[res.history, res.loglik]).min() > -1e-8  # EM never decreases the likelihood


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_inference_matches_hmmlearn(ctype):
    seqs = _runs(seed=1)
    model = fit_hmm(seqs, n_states=3, covariance_type=ctype, n_restarts=1, n_iter=5, random_state=0).model
    X, lengths = _stacked(seqs)
    ref = _ref(model, 1)
    ref.n_features = X.shape[1]
    np.testing.assert_allclose(model.score(seqs), ref.score(X, lengths), rtol=1e-10)
    per = [ref.score(s) for s in seqs]
    np.testing.assert_allclose(model.score_per_sequence(seqs), per, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate(model.posterior(seqs)), ref.predict_proba(X, lengths), atol=1e-10)
    np.testing.assert_array_equal(np.concatenate(model.decode(seqs)), ref.predict(X, lengths))
    np.testing.assert_allclose(model.bic(seqs), ref.bic(X, lengths), rtol=1e-10)
    np.testing.assert_allclose(model.aic(seqs), ref.aic(X, lengths), rtol=1e-10)


def test_filtered_posterior_matches_plain_loop():
    seqs = _runs(lengths=(40, 25), seed=2)
    model = fit_hmm(seqs, n_states=2, n_restarts=1, n_iter=3, random_state=0).model
    for seq, got in zip(seqs, model.filtered_posterior(seqs), strict=True):
        logb = np.stack([multivariate_normal(model.means[k], model.covars[k]).logpdf(seq) for k in range(2)], 1)
        np.testing.assert_allclose(model.log_emission([seq])[0], logb, rtol=1e-12)
        la = np.log(model.startprob) + logb[0]
        rows = [la]
        for t in range(1, len(seq)):
            la = np.array([logsumexp(la + np.log(model.transmat[:, k])) for k in range(2)]) + logb[t]
            rows.append(la)
        rows = np.array(rows)
        np.testing.assert_allclose(got, np.exp(rows - logsumexp(rows, axis=1, keepdims=True)), atol=1e-12)


def test_scaled_and_log_space_estep_agree_with_unequal_lengths():
    seqs = _runs(lengths=(50, 20, 35), seed=4)
    fit = fit_hmm(seqs, n_states=3, n_restarts=2, n_iter=2, random_state=1)
    params = _stack([r.model for r in fit.restarts])
    design = _Design(seqs, "full")
    logb = _log_emission_batch(design, params[2], params[3], "full")
    g1, x1, l1 = _fb_scaled(logb, design, params[0], params[1], need_stats=True)
    g2, x2, l2 = _fb_log(logb, design, params[0], params[1], need_stats=True)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    np.testing.assert_allclose(g1, g2, atol=1e-10)
    np.testing.assert_allclose(x1, x2, rtol=1e-9)
    for r, res in enumerate(fit.restarts):
        np.testing.assert_allclose(l1[r], res.model.score_per_sequence(seqs), rtol=1e-10)


def test_log_space_fallback_when_scaled_normaliser_underflows():
    # absorbing states (exact zeros in transmat) and an observation 60 sd away from state 0:
    # the scaled recursion underflows to 0, the log-space one does not.
    model = GaussianHMM([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]], [[0.0], [60.0]], [[[1.0]], [[1.0]]])
    seq = np.zeros((5, 1))
    seq[2] = 60.0
    design = _Design([seq], "full")
    params = _stack([model])
    logb = _log_emission_batch(design, params[2], params[3], "full")
    assert _fb_scaled(logb, design, params[0], params[1], need_stats=True) is None
    _, ll = _estep(design, params, "full")
    expected = -0.5 * 5 * np.log(2 * np.pi) - 0.5 * 60.0**2
    np.testing.assert_allclose(ll[0], expected, rtol=1e-12)
    np.testing.assert_allclose(model.score([seq]), expected, rtol=1e-12)
    np.testing.assert_allclose(model.filtered_posterior([seq])[0], np.tile([1.0, 0.0], (5, 1)), atol=1e-15)
    np.testing.assert_allclose(model.posterior([seq])[0], np.tile([1.0, 0.0], (5, 1)), atol=1e-15)


def test_batched_restarts_equal_separate_fits():
    seqs = _runs(seed=5)
    inits = [r.initial for r in fit_hmm(seqs, n_states=3, n_restarts=3, n_iter=1, random_state=7).restarts]
    together = fit_hmm(seqs, n_states=3, init=inits, n_iter=15, tol=1e-5)
    for init, res in zip(inits, together.restarts, strict=True):
        alone = fit_hmm(seqs, n_states=3, init=init, n_iter=15, tol=1e-5).restarts[0]
        assert alone.n_iter == res.n_iter and alone.converged == res.converged
        np.testing.assert_allclose(alone.history, res.history, rtol=1e-12)
        np.testing.assert_allclose(alone.model.means, res.model.means, atol=1e-10)
    lls = [r.loglik for r in together.restarts]
    assert together.best_restart == int(np.argmax(lls))
    assert together.model is together.restarts[together.best_restart].model


def test_given_init_model_and_feature_names():
    seqs = _runs(lengths=(40, 40), seed=9)
    init = fit_hmm(seqs, n_states=2, n_restarts=1, n_iter=1, random_state=0).restarts[0].initial
    fit = fit_hmm(seqs, n_states=2, init=init, n_iter=2, tol=None, feature_names=["a", "b", "c"])
    assert fit.model.feature_names == ("a", "b", "c") and fit.restarts[0].initial.feature_names == ("a", "b", "c")
    np.testing.assert_array_equal(fit.restarts[0].initial.means, init.means)


def test_seeded_fits_are_reproducible_and_seeds_differ():
    seqs = _runs(seed=6)
    a = fit_hmm(seqs, n_states=3, n_restarts=2, n_iter=4, random_state=11)
    b = fit_hmm(seqs, n_states=3, n_restarts=2, n_iter=4, random_state=11)
    c = fit_hmm(seqs, n_states=3, n_restarts=2, n_iter=4, random_state=12, init="random")
    for ra, rb in zip(a.restarts, b.restarts, strict=True):
        np.testing.assert_array_equal(ra.model.means, rb.model.means)
        np.testing.assert_array_equal(ra.history, rb.history)
    assert not np.allclose(a.restarts[0].initial.means, a.restarts[1].initial.means)
    assert not np.allclose(a.restarts[0].initial.means, c.restarts[0].initial.means)


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_covariance_floor_bounds_degenerate_states(ctype):
    rng = np.random.default_rng(0)
    # feature 1 is exactly constant within each of two well separated clusters
    seq = np.concatenate([np.c_[rng.normal(size=60), np.zeros(60)], np.c_[rng.normal(size=60) + 8, np.ones(60)]])
    fit = fit_hmm([seq], n_states=2, covariance_type=ctype, n_restarts=2, n_iter=10, covariance_floor=0.05,
                  random_state=0)
    cov = fit.model.covars
    eig = np.linalg.eigvalsh(cov) if ctype == "full" else cov
    assert eig.min() >= 0.05 - 1e-12
    assert np.isfinite(fit.model.score([seq]))


def test_tol_stops_early_and_marks_converged():
    seqs = _runs(seed=8)
    fit = fit_hmm(seqs, n_states=1, n_restarts=1, n_iter=30, tol=1e-6, random_state=0)
    res = fit.restarts[0]
    # with one state the first M-step reaches the maximum: the second iteration gains nothing
    assert res.converged and res.n_iter == 2
    x = np.concatenate(seqs)
    np.testing.assert_allclose(fit.model.means[0], x.mean(0), atol=1e-12)
    np.testing.assert_allclose(fit.model.covars[0], np.cov(x.T, bias=True), atol=1e-12)


def test_n_parameters_counts():
    full = GaussianHMM(np.full(3, 1 / 3), np.full((3, 3), 1 / 3), np.zeros((3, 4)), np.tile(np.eye(4), (3, 1, 1)))
    diag = GaussianHMM(np.full(3, 1 / 3), np.full((3, 3), 1 / 3), np.zeros((3, 4)), np.ones((3, 4)), "diag")
    assert full.n_parameters == 2 + 6 + 12 + 30
    assert diag.n_parameters == 2 + 6 + 12 + 12


def test_model_arrays_are_read_only_copies():
    means = np.zeros((2, 2))
    model = GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), means, np.ones((2, 2)), "diag")
    means[0, 0] = 5.0
    assert model.means[0, 0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        model.means[0, 0] = 1.0


def test_sequence_errors():
    model = GaussianHMM([1.0], [[1.0]], [[0.0, 0.0]], [[1.0, 1.0]], "diag")
    good = np.zeros((5, 2))
    with pytest.raises(ValueError, match=r"sequences\[1\] contains NaN"):
        model.score([good, np.array([[0.0, np.nan]])])
    with pytest.raises(ValueError, match=r"sequences\[0\] must be 2-D"):
        model.score([np.zeros(5)])
    with pytest.raises(ValueError, match=r"sequences\[1\] has 3 features, expected 2"):
        fit_hmm([good, np.zeros((5, 3))], n_states=1)
    with pytest.raises(ValueError, match=r"sequences\[0\] has 3 features, expected 2"):
        model.decode([np.zeros((4, 3))])
    with pytest.raises(ValueError, match="sequences is empty"):
        fit_hmm([], n_states=1)
    with pytest.raises(TypeError, match="sequences must be a list"):
        fit_hmm("runs.csv", n_states=1)
    with pytest.raises(ValueError, match=r"sequences\[0\] must have at least one step"):
        model.score([np.zeros((0, 2))])


def test_fit_argument_errors():
    seqs = _runs(lengths=(30, 30))
    with pytest.raises(ValueError, match="n_states must be >= 1"):
        fit_hmm(seqs, n_states=0)
    with pytest.raises(TypeError, match="n_states must be an int"):
        fit_hmm(seqs, n_states=2.5)
    with pytest.raises(ValueError, match="covariance_type must be one of 'full', 'diag'"):
        fit_hmm(seqs, n_states=2, covariance_type="tied")
    with pytest.raises(ValueError, match="init must be one of"):
        fit_hmm(seqs, n_states=2, init="spectral")
    with pytest.raises(ValueError, match="covariance_floor must be in"):
        fit_hmm(seqs, n_states=2, covariance_floor=-1.0)
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        fit_hmm(seqs, n_states=2, n_iter=0)
    with pytest.raises(ValueError, match="feature_names has 2 entries, expected 3"):
        fit_hmm(seqs, n_states=2, feature_names=["a", "b"])
    with pytest.raises(ValueError, match="exceeds the number of distinct observations"):
        fit_hmm([np.zeros((6, 2))], n_states=2)
    other = GaussianHMM([1.0], [[1.0]], np.zeros((1, 3)), np.ones((1, 3)), "diag")
    with pytest.raises(ValueError, match="init models must have n_states=2"):
        fit_hmm(seqs, n_states=2, init=other)
    with pytest.raises(TypeError, match="init must be 'kmeans', 'random', a GaussianHMM"):
        fit_hmm(seqs, n_states=2, init=[1, 2])


def test_parameter_errors():
    eye = np.tile(np.eye(2), (2, 1, 1))
    with pytest.raises(ValueError, match="startprob must be non-negative and sum to 1"):
        GaussianHMM([0.7, 0.7], np.full((2, 2), 0.5), np.zeros((2, 2)), eye)
    with pytest.raises(ValueError, match="transmat rows must be non-negative and sum to 1"):
        GaussianHMM([0.5, 0.5], [[0.5, 0.5], [0.9, 0.2]], np.zeros((2, 2)), eye)
    with pytest.raises(ValueError, match="transmat must have shape"):
        GaussianHMM([0.5, 0.5], np.full((3, 3), 1 / 3), np.zeros((2, 2)), eye)
    with pytest.raises(ValueError, match="covars must have shape"):
        GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), np.zeros((2, 2)), eye, "diag")
    with pytest.raises(ValueError, match="covars must be positive definite"):
        GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), np.zeros((2, 2)), np.tile([[1.0, 2.0], [2.0, 1.0]], (2, 1, 1)))
    with pytest.raises(ValueError, match="covars must be symmetric"):
        GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), np.zeros((2, 2)), np.tile([[1.0, 0.5], [0.0, 1.0]], (2, 1, 1)))
    with pytest.raises(ValueError, match=r"covars \(diag\) must be positive"):
        GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), np.zeros((2, 2)), np.zeros((2, 2)), "diag")
    with pytest.raises(ValueError, match="means contains NaN"):
        GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), np.full((2, 2), np.nan), eye)
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianHMM([1.0], [[1.0]], np.zeros(2), np.ones((1, 2)), "diag")
    with pytest.raises(ValueError, match="feature_names has 1 entries, expected 2"):
        GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), np.zeros((2, 2)), eye, feature_names=["a"])
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GaussianHMM([0.5, 0.5], np.full((2, 2), 0.5), np.zeros((2, 2)), eye, "spherical")
