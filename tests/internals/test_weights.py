from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from featurelens.attribution import find_input_layer
from featurelens.internals import intervene_weights, zero_input_group


def _snapshot(model):
    return {k: v.detach().clone() for k, v in [*model.named_parameters(), *model.named_buffers()]}


def _assert_identical(model, snap):
    now = dict([*model.named_parameters(), *model.named_buffers()])
    assert now.keys() == snap.keys()
    for k, v in snap.items():
        assert torch.equal(now[k], v), k


class WithBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.bn(x))


def test_edits_apply_and_restore_bit_identically(mlp, x4):
    snap = _snapshot(mlp)
    w = mlp.layer1.weight
    with intervene_weights(mlp, {"layer1.weight": lambda p: p * 1.1 + 1e-3, "layer3.bias": 0.25}):
        assert torch.allclose(mlp.layer1.weight, snap["layer1.weight"] * 1.1 + 1e-3)
        assert torch.equal(mlp.layer3.bias, torch.full((2,), 0.25, dtype=torch.float64))
        assert mlp.layer1.weight is w and w.requires_grad
    _assert_identical(mlp, snap)


def test_restore_on_exception_with_buffers():
    m = WithBN().double()
    m.bn.running_mean.uniform_()
    snap = _snapshot(m)
    with pytest.raises(RuntimeError, match="boom"), intervene_weights(
        m, {"bn.running_mean": torch.ones(3), "lin.weight": torch.zeros(1, 3)}
    ):
        m.train()(torch.randn(4, 3, dtype=torch.float64))  # also mutates running stats in the block
        raise RuntimeError("boom")
    m.eval()
    assert torch.equal(m.bn.running_mean, snap["bn.running_mean"])
    assert torch.equal(m.lin.weight, snap["lin.weight"])


@pytest.mark.parametrize(
    ("edits", "err", "match"),
    [
        ({}, ValueError, "non-empty mapping"),
        ({"layer1.weigth": 0.0}, ValueError, r"unknown parameter or buffer 'layer1.weigth'.*'layer1.weight'"),
        ({"layer1.weight": torch.zeros(3, 3)}, ValueError, r"has shape \(3, 3\), parameter has shape \(6, 4\)"),
        ({"layer1.weight": "zero"}, TypeError, "must give a tensor or number"),
        ({"layer1.weight": lambda p: None}, TypeError, "must give a tensor or number, got NoneType"),
    ],
)
def test_intervene_errors(mlp, edits, err, match):
    snap = _snapshot(mlp)
    with pytest.raises(err, match=match), intervene_weights(mlp, edits):
        pass
    _assert_identical(mlp, snap)


def test_find_input_layer(mlp, transformer, x4):
    assert find_input_layer(mlp, x4)[0] == "layer1"
    # 2-D input reaches input_proj as x.unsqueeze(1); other Linears come first in module order nowhere
    assert find_input_layer(transformer, torch.randn(3, 3))[0] == "input_proj"


class Reordered(nn.Module):
    """The input layer is registered last: module order is not forward order."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(3, 1)
        self.inp = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.inp(x)))


def test_find_input_layer_is_structural():
    assert find_input_layer(Reordered(), torch.randn(2, 4))[0] == "inp"


def test_zero_input_group_equals_zeroed_inputs_in_linear_layer(mlp, x4):
    snap = _snapshot(mlp)
    edited = copy.deepcopy(mlp)
    with torch.no_grad():
        edited.layer1.weight[:, [1, 3]] = 0
        expected = edited(x4)
        with zero_input_group(mlp, x4, [1, 3]):
            got = mlp(x4)
            x0 = x4.clone()
            x0[:, [1, 3]] = 0
            assert torch.allclose(mlp(x0), got, atol=1e-12, rtol=0)  # group columns no longer matter
    assert torch.allclose(got, expected, atol=1e-12, rtol=0)
    _assert_identical(mlp, snap)
    with torch.no_grad(), zero_input_group(mlp, x4, [0], layer="layer1"):
        assert torch.equal(mlp.layer1.weight[:, 0], torch.zeros(6, dtype=torch.float64))


@pytest.mark.parametrize(
    ("columns", "kwargs", "err", "match"),
    [
        ([], {}, ValueError, "columns must be a non-empty sequence"),
        ("ab", {}, ValueError, "columns must be a non-empty sequence"),
        ([4], {}, ValueError, "columns index 4 is out of range for 'layer1' with 4 input features"),
        ([0], {"layer": "act1"}, ValueError, "layer 'act1' is a ReLU, not an nn.Linear"),
        ([0], {"layer": "nope"}, ValueError, "unknown module path 'nope'"),
        ([-1], {}, ValueError, r"columns\[i\] must be >= 0"),
    ],
)
def test_zero_input_group_errors(mlp, x4, columns, kwargs, err, match):
    with pytest.raises(err, match=match), zero_input_group(mlp, x4, columns, **kwargs):
        pass


def test_find_input_layer_errors(x4):
    with pytest.raises(ValueError, match=r"has no nn\.Linear layer"):
        find_input_layer(nn.ReLU(), x4)

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, x):
            return self.lin(2 * x)

    with pytest.raises(ValueError, match=r"no nn\.Linear layer reads the model input"):
        find_input_layer(Scaled(), x4.float())
