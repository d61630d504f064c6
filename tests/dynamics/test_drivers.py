"""Tests for featurelens.dynamics._drivers: the posterior gradient against finite differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from featurelens.datasets import make_planted_runs
from featurelens.dynamics import explain_transition, fit_hmm, posterior_gradient


@pytest.fixture(scope="module")
def planted():
    runs, _states, names = make_planted_runs(n_runs=6, n_steps=80, n_features=4, n_phases=3, random_state=0)
    fits = {
        ctype: fit_hmm(runs, n_states=3, covariance_type=ctype, n_restarts=2, random_state=0, feature_names=names).model
        for ctype in ("full", "diag")
    }
    return runs, fits


def _fd(model, seq, t, k, h=1e-5, log=False):
    """Central finite differences of p(s_t = k | z_1:t) (or its log) w.r.t. z_t."""
    out = np.empty(seq.shape[1])
    for d in range(seq.shape[1]):
        vals = []
        for sign in (1, -1):
            z = seq[: t + 1].copy()
            z[t, d] += sign * h
            p = model.filtered_posterior([z])[0][t, k]
            vals.append(np.log(p) if log else p)
        out[d] = (vals[0] - vals[1]) / (2 * h)
    return out


def _steps(model, seq, n=12):
    """The most uncertain steps (largest posterior entropy), where gradients are not ~0."""
    p = model.filtered_posterior([seq])[0]
    ent = -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
    return np.argsort(-ent)[:n]


@pytest.mark.parametrize("ctype", ["full", "diag"])
@pytest.mark.parametrize("log", [False, True])
def test_gradient_equals_central_finite_differences(planted, ctype, log):
    runs, fits = planted
    model = fits[ctype]
    grads = posterior_gradient(model, runs[:2], log=log)
    for seq, g in zip(runs[:2], grads, strict=True):
        assert g.shape == (len(seq), 3, 4)
        steps = _steps(model, seq)
        analytic = np.stack([g[t, k] for t in steps for k in range(3)])
        fd = np.stack([_fd(model, seq, t, k, log=log) for t in steps for k in range(3)])
        scale = np.abs(fd).max()
        assert scale > 1e-3  # the steps chosen are informative
        assert np.abs(analytic - fd).max() <= 1e-6 * scale


def test_gradient_matches_per_step_loop_and_differs_from_seed_formula(planted):
    runs, fits = planted
    model = fits["full"]
    seq = runs[0]
    grad = posterior_gradient(model, [seq])[0]
    p = model.filtered_posterior([seq])[0]
    prec = np.linalg.inv(model.covars)
    worst_seed = 0.0
    for t in range(len(seq)):
        g = np.array([prec[k] @ (model.means[k] - seq[t]) for k in range(3)])
        gbar = p[t] @ g
        for k in range(3):
            np.testing.assert_allclose(grad[t, k], p[t, k] * (g[k] - gbar), atol=1e-10)
            seed = g[k] - np.sum(p[t][:, None] * g)  # the Hu et al. (2023) notebook's scalar normaliser, no p_k
            worst_seed = max(worst_seed, np.abs(seed - grad[t, k]).max())
    assert worst_seed > 0.1


def test_log_gradient_and_raw_units(planted):
    runs, fits = planted
    model = fits["diag"]
    seq = runs[1]
    p = model.filtered_posterior([seq])[0]
    dp = posterior_gradient(model, [seq])[0]
    dlog = posterior_gradient(model, [seq], log=True)[0]
    np.testing.assert_allclose(dp, p[..., None] * dlog, atol=1e-12)
    # raw units: x = m + s z, so dp/dx = dp/dz / s; check by finite differences in x
    s, m = np.array([0.5, 2.0, 10.0, 0.1]), np.array([1.0, -3.0, 0.0, 7.0])
    raw = posterior_gradient(model, [seq], units="raw", scale=s)[0]
    np.testing.assert_allclose(raw, dp / s, atol=1e-14)
    t, k, h = _steps(model, seq, 1)[0], 0, 1e-6
    x = m + s * seq[: t + 1]
    fd = []
    for d in range(4):
        vals = []
        for sign in (1, -1):
            xx = x.copy()
            xx[t, d] += sign * h
            vals.append(model.filtered_posterior([(xx - m) / s])[0][t, k])
        fd.append((vals[0] - vals[1]) / (2 * h))
    np.testing.assert_allclose(raw[t, k], fd, atol=1e-6 * np.abs(fd).max())
    per_run = posterior_gradient(model, runs[:2], units="raw", scale=[s, 2 * s])
    np.testing.assert_allclose(per_run[1], raw / 2, atol=1e-14)


@pytest.mark.parametrize("step", ["last", "first"])
def test_explain_transition_matches_manual_average(planted, step):
    runs, fits = planted
    model = fits["full"]
    paths = model.decode(runs)
    pairs = {(int(a), int(b)) for p in paths for a, b in itertools.pairwise(p) if a != b}
    i, j = sorted(pairs)[0]
    exp = explain_transition(model, runs, i, j, step=step)
    grads = posterior_gradient(model, runs)
    rows = []
    for g, p in zip(grads, paths, strict=True):
        for t in range(len(p) - 1):
            if p[t] == i and p[t + 1] == j:
                rows.append(g[t if step == "last" else t + 1, j])
    mean = np.mean(rows, axis=0)
    order = np.argsort(-np.abs(mean))
    assert exp.n_occurrences == len(rows) == len(exp.occurrences)
    assert exp.features == tuple(model.feature_names[d] for d in order)
    np.testing.assert_allclose(exp.mean_gradient, mean[order], atol=1e-14)
    np.testing.assert_allclose(exp.mean_change, (model.means[j] - model.means[i])[order], atol=1e-14)
    table = exp.to_frame()
    assert list(table["feature"]) == list(exp.features)
    assert np.all(np.diff(np.abs(table["mean_gradient"])) <= 0)
    d = exp.to_dict()
    assert d["n_occurrences"] == len(rows) and [f["feature"] for f in d["features"]] == list(exp.features)
    assert [f["mean_gradient"] for f in d["features"]] == exp.mean_gradient.tolist()
    text = str(exp)
    assert f"transition {i} -> {j}: {len(rows)} occurrences" in text and exp.features[0] in text


def test_explain_transition_with_given_states_and_names(planted):
    runs, fits = planted
    model = fits["diag"]
    states = [np.r_[np.zeros(40, int), np.ones(40, int)] for _ in runs]
    exp = explain_transition(model, runs, 0, 1, states=states, feature_names=list("abcd"), log=True)
    assert exp.n_occurrences == len(runs) and exp.occurrences[0] == (0, 39)
    assert set(exp.features) == set("abcd")
    mean = np.mean([g[39, 1] for g in posterior_gradient(model, runs, log=True)], axis=0)
    np.testing.assert_allclose(np.sort(np.abs(exp.mean_gradient)), np.sort(np.abs(mean)), atol=1e-14)


def test_driver_errors(planted):
    runs, fits = planted
    model = fits["full"]
    with pytest.raises(TypeError, match="model must be a GaussianHMM"):
        posterior_gradient("model.npz", runs)
    with pytest.raises(ValueError, match="units must be one of 'z', 'raw'"):
        posterior_gradient(model, runs, units="pct")
    with pytest.raises(ValueError, match="units='raw' needs scale"):
        posterior_gradient(model, runs, units="raw")
    with pytest.raises(ValueError, match="scale has 1 entries, expected one per sequence"):
        posterior_gradient(model, runs[:2], units="raw", scale=[np.ones(4)])
    with pytest.raises(ValueError, match="scale must be positive"):
        posterior_gradient(model, runs[:1], units="raw", scale=np.zeros(4))
    with pytest.raises(ValueError, match=r"scale must have shape \(4,\)"):
        posterior_gradient(model, runs[:2], units="raw", scale=np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"sequences\[0\] has 2 features, expected 4"):
        posterior_gradient(model, [np.zeros((5, 2))])
    with pytest.raises(ValueError, match="j=3 is not a state of this model"):
        explain_transition(model, runs, 0, 3)
    with pytest.raises(ValueError, match="i and j must differ"):
        explain_transition(model, runs, 1, 1)
    with pytest.raises(ValueError, match="step must be one of 'last', 'first'"):
        explain_transition(model, runs, 0, 1, step="middle")
    with pytest.raises(ValueError, match="transition 0 -> 1 never occurs"):
        explain_transition(model, runs[:1], 0, 1, states=[np.zeros(80, int)])
    with pytest.raises(ValueError, match="states must hold one state path per sequence"):
        explain_transition(model, runs[:2], 0, 1, states=[np.zeros(80, int)])
    with pytest.raises(ValueError, match="feature_names has 2 entries, expected 4"):
        explain_transition(model, runs, 0, 1, feature_names=["a", "b"])
