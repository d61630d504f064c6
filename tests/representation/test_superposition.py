import numpy as np
import pytest
import torch

from featurelens.representation import superposition_metrics, toy_model_experiment


def test_antipodal_pair_plus_orthogonal_feature():
    w = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    m = superposition_metrics(w)
    np.testing.assert_allclose(m.feature_norms, [1, 1, 1])
    np.testing.assert_allclose(m.interference, [1, 1, 0])
    np.testing.assert_allclose(m.feature_dimensionality, [0.5, 0.5, 1.0])
    assert m.dimensions_per_feature == pytest.approx(2 / 3)
    assert m.n_represented == 3


def test_pentagon_dimensionality_and_dropped_feature():
    ang = 2 * np.pi * np.arange(5) / 5
    w = np.vstack([np.cos(ang), np.sin(ang)])
    w = np.hstack([w, np.zeros((2, 1))])
    m = superposition_metrics(torch.from_numpy(w))
    np.testing.assert_allclose(m.feature_dimensionality[:5], 2 / 5)
    assert m.feature_dimensionality[5] == 0.0 and m.interference[5] == 0.0
    assert m.n_represented == 5


def test_global_scale_invariance_of_dimensionality():
    w = np.random.default_rng(0).standard_normal((3, 7))
    np.testing.assert_allclose(
        superposition_metrics(w).feature_dimensionality,
        superposition_metrics(3.0 * w).feature_dimensionality,
    )


def test_sparse_toy_model_is_in_superposition():
    res = toy_model_experiment(n_features=20, n_hidden=5, sparsity=0.95, n_steps=1000, random_state=0)
    assert res.W.shape == (5, 20) and res.b.shape == (20,)
    assert res.metrics.dimensions_per_feature < 1
    assert res.metrics.n_represented > 5
    assert np.isfinite(res.loss)


def test_dense_toy_model_represents_about_n_hidden_features():
    res = toy_model_experiment(n_features=20, n_hidden=5, sparsity=0.0, n_steps=1000, random_state=0)
    assert res.metrics.n_represented <= 6
    # the most important features are the represented ones
    assert set(np.flatnonzero(res.metrics.feature_norms > 0.5)) <= set(range(6))


def test_toy_model_seeded_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a = toy_model_experiment(n_features=6, n_hidden=2, n_steps=20, train_batch_size=32, random_state=3)
    b = toy_model_experiment(n_features=6, n_hidden=2, n_steps=20, train_batch_size=32, random_state=3)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(a.W, b.W)


def test_errors():
    with pytest.raises(ValueError, match="sparsity"):
        toy_model_experiment(sparsity=1.0, n_steps=1)
    with pytest.raises(TypeError, match="n_features"):
        toy_model_experiment(n_features=2.5)
    with pytest.raises(ValueError, match="weight must have shape"):
        superposition_metrics(np.zeros((2, 2, 2)))
