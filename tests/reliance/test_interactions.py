"""Tests for featurelens.reliance._interactions: joint-ablation contrasts and the Shapley interaction index."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.models import MLP
from featurelens.reliance import interaction_matrix, shapley_interactions
from featurelens.reliance._interactions import shapley_interaction_weights

GROUPS4 = {"a": [0], "b": [1, 2], "c": [3], "d": [4]}


class Double(nn.Module):
    """A parameter-free module evaluated in float64 (its buffer sets the dtype)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("dtype_anchor", torch.zeros(1, dtype=torch.float64))


class Additive(Double):
    """f(x) = sum of one non-linear function per group of GROUPS4: no interactions."""

    def forward(self, x):
        return torch.sin(x[:, 0]) + x[:, 1] * x[:, 2] + x[:, 3] ** 3 - torch.exp(0.3 * x[:, 4])


class Product(Double):
    """f(x) = x0 * x1 + 2 x3 + x3 * x4 (groups a-b and c-d interact)."""

    def forward(self, x):
        return x[:, 0] * x[:, 1] + 2 * x[:, 3] + x[:, 3] * x[:, 4]


def _x(n=40, d=5, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)))


def test_additive_model_has_no_interactions():
    x = _x()
    for fn in (interaction_matrix, shapley_interactions):
        for baselines in (None, "mean"):
            kw = {"background": x} if baselines == "mean" else {}
            m = fn(Additive(), x, groups=GROUPS4, baselines=baselines, reduce="mean_abs", **kw)
            np.testing.assert_allclose(m.to_numpy(), 0.0, atol=1e-12)


def test_product_closed_form_and_symmetry():
    x = _x()
    x0x1 = float((x[:, 0] * x[:, 1]).mean())
    x3x4 = float((x[:, 3] * x[:, 4]).mean())
    for fn in (interaction_matrix, shapley_interactions):
        m = fn(Product(), x, groups=GROUPS4)  # baseline 0: both equal x_i x_j per row
        expected = np.zeros((4, 4))
        expected[0, 1] = expected[1, 0] = x0x1
        expected[2, 3] = expected[3, 2] = x3x4
        np.testing.assert_allclose(m.to_numpy(), expected, atol=1e-12)
        assert list(m.index) == list(m.columns) == ["a", "b", "c", "d"]
    abs_m = interaction_matrix(Product(), x, groups=GROUPS4, reduce="mean_abs")
    assert abs_m.loc["a", "b"] == pytest.approx(float((x[:, 0] * x[:, 1]).abs().mean()))


def _brute_force_sii(f, x, baseline, members, i, j):
    """Grabisch's Shapley interaction index for one row by looping over subsets."""
    g = len(members)

    def v(coalition):
        z = baseline.clone()
        for k in coalition:
            z[members[k]] = x[members[k]]
        return float(f(z.unsqueeze(0))[0])

    others = [k for k in range(g) if k not in (i, j)]
    total = 0.0
    for r in range(len(others) + 1):
        for s in itertools.combinations(others, r):
            w = math.factorial(r) * math.factorial(g - r - 2) / math.factorial(g - 1)
            s = list(s)
            total += w * (v([*s, i, j]) - v([*s, i]) - v([*s, j]) + v(s))
    return total


@pytest.mark.parametrize("groups", [
    {"a": [0, 1], "b": [2], "c": [3, 4]},
    {"a": [0], "b": [1, 2], "c": [3], "d": [4]},
])
def test_shapley_interactions_match_brute_force_on_a_random_mlp(groups):
    torch.manual_seed(0)
    model = MLP(5, hidden=(8, 8), activation="tanh").double()
    x = _x(n=6, seed=1)
    base = x.mean(dim=0)
    m = shapley_interactions(model, x, groups=groups, baselines=base)
    members = list(groups.values())
    names = list(groups)
    with torch.no_grad():
        for i, j in itertools.combinations(range(len(names)), 2):
            ref = np.mean([_brute_force_sii(model, x[r], base, members, i, j) for r in range(x.shape[0])])
            assert m.loc[names[i], names[j]] == pytest.approx(ref, abs=1e-10)
            assert m.loc[names[j], names[i]] == m.loc[names[i], names[j]]


def test_interaction_matrix_matches_direct_contrast():
    torch.manual_seed(1)
    model = MLP(5, hidden=(8,)).double()
    x = _x(n=10, seed=2)
    m = interaction_matrix(model, x, groups=GROUPS4, baselines=0.5)
    members = list(GROUPS4.values())

    def ablate(ks):
        z = x.clone()
        for k in ks:
            z[:, members[k]] = 0.5
        return model(z)

    with torch.no_grad():
        for i, j in itertools.combinations(range(4), 2):
            ref = (model(x) - ablate([i]) - ablate([j]) + ablate([i, j])).mean()
            assert m.iloc[i, j] == pytest.approx(float(ref), abs=1e-12)
    assert np.all(np.diag(m.to_numpy()) == 0)


def test_two_player_indices_coincide_and_weights_cancel():
    w = shapley_interaction_weights(4)
    assert w.shape == (16, 6)
    np.testing.assert_allclose(w.sum(dim=0).numpy(), 0.0, atol=1e-15)
    torch.manual_seed(2)
    model = MLP(5, hidden=(6,)).double()
    x = _x(n=8, seed=3)
    groups = {"p": [0, 1], "q": [2, 3, 4]}
    a = interaction_matrix(model, x, groups=groups)
    b = shapley_interactions(model, x, groups=groups)
    assert a.loc["p", "q"] == pytest.approx(b.loc["p", "q"], abs=1e-12)


def test_sequence_inputs_and_model_left_as_found():
    class Seq(Double):
        def forward(self, x):  # (n, T, 3): interaction between features 0 and 1 summed over time
            return (x[..., 0] * x[..., 1]).sum(dim=1) + x[..., 2].sum(dim=1)

    x = torch.from_numpy(np.random.default_rng(4).standard_normal((7, 4, 3)))
    model = Seq().train()
    m = interaction_matrix(model, x, groups={"u": [0], "v": [1], "w": [2]})
    assert model.training
    assert m.loc["u", "v"] == pytest.approx(float((x[..., 0] * x[..., 1]).sum(dim=1).mean()))
    assert m.loc["u", "w"] == pytest.approx(0.0, abs=1e-12)


def test_interaction_errors():
    x = _x()
    with pytest.raises(ValueError, match="reduce must be one of"):
        interaction_matrix(Product(), x, groups=GROUPS4, reduce="max")
    with pytest.raises(ValueError, match="at least 2 groups"):
        shapley_interactions(Product(), x, groups={"a": [0]})
    with pytest.raises(ValueError, match="at least 2 groups"):
        interaction_matrix(Product(), x, groups={"a": [0]})
    with pytest.raises(ValueError, match="disjoint feature groups"):
        interaction_matrix(Product(), x, groups={"a": [0, 1], "b": [1]})
    with pytest.raises(ValueError, match="at most 14 groups"):
        shapley_interactions(Product(), _x(d=15), groups={f"g{k}": [k] for k in range(15)})
    with pytest.raises(ValueError, match="target='all' is not supported"):
        interaction_matrix(MLP(5, out_features=2).double(), x, groups=GROUPS4, target="all")
