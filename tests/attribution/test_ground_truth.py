"""Planted ground truth: f = x0² + 0.3·x1 + 0.1·x2³ + 0·x3 on [−1, 1]⁴.

The function of pykan's feature-attribution tutorial.

A trained MLP must be explained as x0 > x1 > x2 > x3, with x3 under 2 % of the total, by
integrated gradients, exact Shapley values and permutation importance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurelens.attribution import attribute
from featurelens.models import MLP, train


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3000, 4)).astype(np.float32)
    y = (x[:, 0] ** 2 + 0.3 * x[:, 1] + 0.1 * x[:, 2] ** 3).astype(np.float32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(4, hidden=(32, 32), activation="tanh")
    train(model, x[:2400], y[:2400], loss="mse", validation_data=(x[2400:], y[2400:]), epochs=150,
          train_batch_size=64, lr=3e-3, patience=15, random_state=0)
    return model, x[2400:], y[2400:]


def _check_ranking(importance):
    share = importance.abs() / importance.abs().sum()
    assert list(importance.sort_values(ascending=False).index) == ["x0", "x1", "x2", "x3"], importance
    assert share["x3"] < 0.02, share


def test_model_learned_the_function(fitted):
    model, x, y = fitted
    with torch.no_grad():
        mse = float(((model(torch.as_tensor(x)) - torch.as_tensor(y)) ** 2).mean())
    assert mse < 2e-3


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("integrated_gradients", {"n_steps": 32}),
        ("shapley", {"baselines": "background"}),
        ("permutation", {"metric": "mse", "n_repeats": 5}),
    ],
)
def test_methods_recover_the_planted_ranking(fitted, method, options):
    model, x, y = fitted
    if method == "shapley":
        options = {**options, "background": x[:100]}
    if method == "permutation":
        options = {**options, "y": y}
    e = attribute(model, x, method=method, random_state=0, **options)
    _check_ranking(e.importance())
