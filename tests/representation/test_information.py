import numpy as np
import pytest
import scipy.stats
import torch

from featurelens.representation import binned_entropy, knn_entropy, linear_cka


def test_cka_identity_orthogonal_and_scale_invariance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 6))
    b = a @ rng.standard_normal((6, 4)) + 0.5 * rng.standard_normal((200, 4))
    q = scipy.stats.ortho_group.rvs(4, random_state=1)
    base = linear_cka(a, b)
    assert linear_cka(a, a) == pytest.approx(1.0)
    assert linear_cka(torch.from_numpy(a), torch.from_numpy(3.5 * b @ q)) == pytest.approx(base)
    assert linear_cka(a + 7.0, b) == pytest.approx(base)
    assert 0.0 < base < 1.0


def test_cka_against_hsic_formula():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((50, 3)), rng.standard_normal((50, 5))
    h = np.eye(50) - 1 / 50
    kx, ky = h @ x @ x.T @ h, h @ y @ y.T @ h
    ref = np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky))
    assert linear_cka(x, y) == pytest.approx(ref)


def test_binned_entropy_closed_forms():
    a = np.column_stack([np.repeat(np.arange(4.0), 25), np.full(100, 2.0), np.r_[np.zeros(50), np.ones(50)]])
    h = binned_entropy(a, bins=4)
    np.testing.assert_allclose(h, [np.log(4), 0.0, np.log(2)])


def test_knn_entropy_gaussian():
    sigma = 2.0
    x = np.random.default_rng(0).normal(0, sigma, size=(5000, 1))
    assert knn_entropy(x) == pytest.approx(0.5 * np.log(2 * np.pi * np.e * sigma**2), abs=0.05)
    x2 = np.random.default_rng(1).standard_normal((5000, 2))
    assert knn_entropy(x2, k=4) == pytest.approx(np.log(2 * np.pi * np.e), abs=0.08)


def test_errors():
    with pytest.raises(ValueError, match="same number of samples"):
        linear_cka(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="bins must be >= 1"):
        binned_entropy(np.zeros((3, 2)), bins=0)
    with pytest.raises(ValueError, match="duplicates"):
        knn_entropy(np.zeros((10, 1)))
    with pytest.raises(ValueError, match="more than k=3"):
        knn_entropy(np.zeros((3, 1)))
