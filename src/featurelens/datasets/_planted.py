"""Synthetic training runs with planted phases, for checking that an HMM recovers them."""

from __future__ import annotations

import numpy as np

from featurelens._validation import RandomState, check_float, check_int, check_random_state
from featurelens.data import zscore_columns


def make_planted_runs(
    *,
    n_runs: int = 20,
    n_steps: int = 200,
    n_features: int = 6,
    n_phases: int = 4,
    separation: float = 3.0,
    run_jitter: float = 0.3,
    standardize: bool = True,
    random_state: RandomState = 0,
) -> tuple[list[np.ndarray], list[np.ndarray], tuple[str, ...]]:
    """Return runs that pass through ``n_phases`` phases in order (0, 1, ..., n_phases - 1).

    Generative model: phase ``p`` has a mean ``m_p`` (``m_0`` ~ N(0, I) and consecutive
    means differ by a random direction of length ``separation``, so phases form a trajectory
    like a training run's metrics) and its own correlated noise ``L_p eps`` with
    ``L_p = I + 0.3 N(0, 1) / sqrt(D)`` (unit scale). Each run has its own phase durations
    (flat-Dirichlet fractions of ``n_steps``, at least ``max(2, n_steps // (4 n_phases))``
    steps per phase) and its own means ``m_p + run_jitter * N(0, I)``.

    Parameters
    ----------
    n_runs, n_steps, n_features, n_phases : sizes; every run has ``n_steps`` steps.
    separation : distance between consecutive phase means, in noise units.
    run_jitter : standard deviation of the run-specific offsets of the phase means.
    standardize : z-score every run per feature (population std) with
        :func:`featurelens.data.zscore_columns`, as ``featurelens.dynamics.load_runs`` does.
    random_state : int, Generator or None.

    Returns
    -------
    runs : list of (n_steps, n_features) float64 arrays.
    states : list of (n_steps,) int arrays, the planted phase of every step.
    feature_names : ``("metric_0", ...)``.
    """
    n_runs = check_int(n_runs, name="n_runs", minimum=1)
    n_phases = check_int(n_phases, name="n_phases", minimum=1)
    n_features = check_int(n_features, name="n_features", minimum=1)
    n_steps = check_int(n_steps, name="n_steps", minimum=2 * n_phases)
    separation = check_float(separation, name="separation", low=0.0)
    run_jitter = check_float(run_jitter, name="run_jitter", low=0.0)
    rng = check_random_state(random_state)
    d = n_features
    steps = rng.normal(size=(n_phases, d))
    steps *= separation / np.linalg.norm(steps, axis=1, keepdims=True)
    steps[0] = rng.normal(size=d)
    means = np.cumsum(steps, axis=0)
    chol = np.eye(d) + 0.3 * rng.normal(size=(n_phases, d, d)) / np.sqrt(d)
    min_len = max(2, n_steps // (4 * n_phases))
    runs, states = [], []
    for _ in range(n_runs):
        spare = n_steps - min_len * n_phases
        lengths = min_len + np.floor(rng.dirichlet(np.ones(n_phases)) * spare).astype(int)
        lengths[-1] += n_steps - lengths.sum()
        labels = np.repeat(np.arange(n_phases), lengths)
        run_means = means + run_jitter * rng.normal(size=means.shape)
        noise = np.einsum("tde,te->td", chol[labels], rng.normal(size=(n_steps, d)))
        x = run_means[labels] + noise
        if standardize:
            x = zscore_columns(x)[0]
        runs.append(x)
        states.append(labels)
    return runs, states, tuple(f"metric_{i}" for i in range(d))
