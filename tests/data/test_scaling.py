"""Tests for featurelens.data._scaling: per-column z-scores with constant columns set to 0."""

from __future__ import annotations

import numpy as np
from scipy import stats

from featurelens.data import zscore_columns


def test_zscores_match_scipy_and_constant_columns_are_zero():
    rng = np.random.default_rng(0)
    x = np.column_stack([
        rng.normal(3.0, 2.0, 50),
        rng.normal(-1e6, 1e-3, 50),  # tiny spread at a large mean: not constant
        np.full(50, 7.5),  # constant
        np.full(50, 1e6) + np.r_[1e-7, np.zeros(49)],  # spread below 1e-12 * |mean|: constant
    ])
    z, mean, std, constant = zscore_columns(x)
    assert z.shape == x.shape and mean.shape == std.shape == constant.shape == (4,)
    np.testing.assert_allclose(z[:, :2], stats.zscore(x[:, :2], axis=0, ddof=0), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(mean, x.mean(axis=0))
    np.testing.assert_array_equal(std, x.std(axis=0))
    assert constant.tolist() == [False, False, True, True]
    assert (z[:, 2:] == 0).all() and np.isfinite(z).all()
