"""Tests for featurelens.datasets._planted: training runs with planted phases."""

from __future__ import annotations

import numpy as np
import pytest

from featurelens.datasets import make_planted_runs


def test_generator_layout_and_reproducibility():
    runs, states, names = make_planted_runs(n_runs=5, n_steps=60, n_features=3, n_phases=3, random_state=1)
    again, states2, _ = make_planted_runs(n_runs=5, n_steps=60, n_features=3, n_phases=3, random_state=1)
    other, _, _ = make_planted_runs(n_runs=5, n_steps=60, n_features=3, n_phases=3, random_state=2)
    assert names == ("metric_0", "metric_1", "metric_2")
    for x, y, s, s2 in zip(runs, again, states, states2, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(s, s2)
        assert x.shape == (60, 3) and s.shape == (60,)
        np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(x.std(0), 1.0, atol=1e-12)
        assert np.all(np.diff(s) >= 0) and set(s) == {0, 1, 2}  # left to right, every phase
        assert np.bincount(s).min() >= 60 // 12
    assert not np.allclose(runs[0], other[0])
    assert len({tuple(np.bincount(s)) for s in states}) > 1  # run-specific durations


def test_raw_runs_keep_phase_means_apart():
    runs, states, _ = make_planted_runs(n_runs=3, n_steps=400, n_features=4, n_phases=2, separation=6.0,
                                        run_jitter=0.0, standardize=False, random_state=0)
    x, s = np.concatenate(runs), np.concatenate(states)
    gap = np.linalg.norm(x[s == 1].mean(0) - x[s == 0].mean(0))
    assert 5.0 < gap < 7.0


def test_generator_errors():
    with pytest.raises(ValueError, match="n_steps must be >= 8"):
        make_planted_runs(n_runs=2, n_steps=5, n_features=2, n_phases=4)
    with pytest.raises(ValueError, match="n_phases must be >= 1"):
        make_planted_runs(n_runs=2, n_steps=50, n_features=2, n_phases=0)
    with pytest.raises(TypeError, match="n_runs must be an int"):
        make_planted_runs(n_runs=2.0, n_steps=50, n_features=2, n_phases=2)
    with pytest.raises(ValueError, match="separation must be in"):
        make_planted_runs(n_runs=2, n_steps=50, n_features=2, n_phases=2, separation=-1.0)
