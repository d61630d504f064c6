import numpy as np
import pytest
import torch

from featurelens.representation import interference, sparsity, spectrum


def _centred_orthonormal(n, r, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, r))
    q, _ = np.linalg.qr(x - x.mean(axis=0))
    return q  # centred (linear combinations of centred columns), orthonormal


def test_rank_r_flat_spectrum_closed_forms():
    n, k, r = 200, 12, 4
    u = _centred_orthonormal(n, r)
    v, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((k, r)))
    a = 3.0 * u @ v.T
    s = spectrum(torch.from_numpy(a))
    assert np.count_nonzero(s.singular_values) == r
    np.testing.assert_allclose(s.singular_values[:r], 3.0, rtol=1e-10)
    assert s.participation_ratio == pytest.approx(r)
    assert s.effective_rank == pytest.approx(r)
    assert s.n_significant == r
    np.testing.assert_allclose(s.explained_variance_ratio[:r], 1 / r)
    assert s.compression_ratio == pytest.approx(min(n, k) / r)  # s1^2 / mean(s^2) over q values
    assert s.spectral_decay == pytest.approx(0.0, abs=1e-10)
    assert (s.n_samples, s.n_units) == (n, k)


def test_centring_removes_the_mean():
    a = _centred_orthonormal(100, 3) @ np.eye(3) + 50.0
    assert np.count_nonzero(spectrum(a).singular_values) == 3


def test_geometric_spectrum_decay_and_participation():
    n, r = 300, 5
    u = _centred_orthonormal(n, r, seed=2)
    sv = 0.5 ** np.arange(r)
    s = spectrum(u * sv)
    assert s.spectral_decay == pytest.approx(np.log(0.5))
    lam = sv**2
    assert s.participation_ratio == pytest.approx(lam.sum() ** 2 / (lam**2).sum())
    p = sv / sv.sum()
    assert s.effective_rank == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert s.n_significant == int(np.sum(lam / lam.sum() > 0.01))


def test_isotropic_gaussian_effective_rank_close_to_k():
    k = 10
    a = np.random.default_rng(0).standard_normal((20000, k))
    s = spectrum(a)
    assert s.effective_rank == pytest.approx(k, rel=0.01)
    assert s.participation_ratio == pytest.approx(k, rel=0.02)


def test_sequences_are_flattened():
    a = np.random.default_rng(0).standard_normal((10, 7, 4))
    np.testing.assert_allclose(spectrum(a).singular_values, spectrum(a.reshape(70, 4)).singular_values)


def test_constant_matrix():
    s = spectrum(np.ones((5, 3)))
    assert s.effective_rank == 0.0 and s.n_significant == 0 and np.isnan(s.participation_ratio)


def test_interference_orthogonal_and_duplicated_units():
    u = _centred_orthonormal(100, 5)
    res = interference(u)
    assert res.mean_abs_correlation == pytest.approx(0.0, abs=1e-12)
    x = np.random.default_rng(0).standard_normal((100, 1))
    dup = np.hstack([x, 2 * x + 1, -x, np.full((100, 1), 3.0)])
    res = interference(dup)
    assert res.mean_abs_correlation == pytest.approx(1.0)
    assert res.n_units_used == 3 and res.n_constant == 1
    assert res.constant_units.tolist() == [3]
    assert np.isnan(interference(np.hstack([x, np.zeros((100, 1))])).mean_abs_correlation)


def test_sparsity():
    a = np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0], [0.5, 0.0, -3.0], [0.0, 0.0, 0.0]])
    res = sparsity(a)
    assert res.fraction_inactive == pytest.approx(9 / 12)
    np.testing.assert_allclose(res.fraction_inactive_per_unit, [0.5, 0.75, 1.0])
    assert res.dead_units.tolist() == [2] and res.n_dead == 1
    assert sparsity(a, threshold=0.75).dead_units.tolist() == [2]
    assert sparsity(a, threshold=1.0).dead_units.tolist() == [1, 2]


def test_errors():
    with pytest.raises(TypeError, match=r"activations must be a torch\.Tensor"):
        spectrum([[1.0, 2.0]])
    with pytest.raises(ValueError, match="shape"):
        spectrum(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2 rows"):
        spectrum(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        interference(np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(TypeError, match="threshold"):
        sparsity(np.zeros((2, 2)), threshold="0")
