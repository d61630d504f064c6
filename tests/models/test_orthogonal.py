"""Orthogonality-regularised ("disentangled") training and its effect on group overlap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurelens.datasets import make_biased
from featurelens.models import MLP, orthogonality_penalty, train
from featurelens.representation import group_overlap


def test_penalty_closed_forms():
    q, _ = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64))
    assert float(orthogonality_penalty([q])) == pytest.approx(0.0, abs=1e-20)  # (6, 4): columns orthonormal
    assert float(orthogonality_penalty([q.T])) == pytest.approx(0.0, abs=1e-20)  # (4, 6): rows orthonormal
    w = 2 * torch.eye(3, dtype=torch.float64)
    assert float(orthogonality_penalty([w, w])) == pytest.approx(2 * 3 * 9.0)  # each (4 - 1)^2 on 3 diagonal entries


def _fit(penalty: float):
    data = make_biased(1500, n_groups=3, group_dim=4, random_state=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(16, hidden=(32,))
    kw = {"orthogonal_penalty": penalty, "orthogonal_layers": ["layer1"]} if penalty else {}
    train(model, data.X, data.y, epochs=15, lr=3e-3, random_state=0, patience=None, **kw)
    return model, data


def test_disentangled_training_separates_input_groups():
    standard, data = _fit(0.0)
    disentangled, _ = _fit(1.0)
    pen_std = float(orthogonality_penalty([standard.layer1.weight.detach()]))
    pen_dis = float(orthogonality_penalty([disentangled.layer1.weight.detach()]))
    assert pen_dis < 0.05 * pen_std
    groups = {g: [data.feature_names.index(f) for f in cols] for g, cols in data.groups.items()}
    off = ~np.eye(len(groups), dtype=bool)
    ov_std = group_overlap(standard.layer1.weight.detach(), groups).to_numpy()[off].mean()
    ov_dis = group_overlap(disentangled.layer1.weight.detach(), groups).to_numpy()[off].mean()
    assert ov_dis < 0.5 * ov_std


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"orthogonal_penalty": -1.0}, ValueError, "orthogonal_penalty must be in"),
        ({"orthogonal_penalty": 1.0, "orthogonal_layers": ["nope"]}, ValueError, "no module 'nope'"),
        ({"orthogonal_penalty": 1.0, "orthogonal_layers": ["act1"]}, ValueError, "has no 2-D weight"),
        ({"orthogonal_penalty": 1.0, "orthogonal_layers": "layer1"}, TypeError, "not a single str"),
        ({"orthogonal_layers": ["layer1"]}, ValueError, "needs orthogonal_penalty > 0"),
    ],
)
def test_orthogonal_errors(kwargs, exc, match):
    model = MLP(3, hidden=(4,))
    with pytest.raises(exc, match=match):
        train(model, np.zeros((10, 3)), np.zeros(10), epochs=1, **kwargs)
