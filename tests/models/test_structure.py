"""Model structure by forward hooks: input layer, verified Linear chains, copies of what hooks record."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featurelens import attribution
from featurelens.models import find_input_layer, linear_chain


def _chain(inplace: bool, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(0.1, inplace=inplace), nn.Linear(6, 4),
                         nn.ReLU(inplace=inplace), nn.Linear(4, 1)).double()


class _EditsAfterUse(nn.Module):
    """Halves a hidden activation in place after the next layer consumed it (the output is unaffected)."""

    def __init__(self, edit: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.l1, self.l2, self.edit = nn.Linear(3, 5).double(), nn.Linear(5, 1).double(), edit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.l1(x))
        y = self.l2(h)
        if self.edit:
            h.mul_(0.5)
        return y


def _x(n: int = 80) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


@pytest.mark.parametrize("inplace", [False, True])
def test_linear_chain_holds_with_inplace_activations(inplace):
    model = _chain(inplace)
    with torch.no_grad():
        assert [n for n, _ in linear_chain(model, _x())] == ["0", "2", "4"]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_linear_chain_compares_copies_taken_when_the_layer_ran():
    # the recorded input of l2 is a copy: the later h.mul_(0.5) does not make the chain look broken
    with torch.no_grad():
        assert [n for n, _ in linear_chain(_EditsAfterUse(edit=True), _x())] == ["l1", "l2"]


def test_linear_chain_verifies_on_the_first_probe_rows_and_still_rejects_a_residual():
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)) + x)

    with torch.no_grad(), pytest.raises(ValueError, match="residual/skip"):
        linear_chain(Residual().double(), _x(200))


def test_find_input_layer_is_one_function_shared_with_attribution():
    assert attribution.find_input_layer is find_input_layer
    assert find_input_layer(_chain(inplace=True), _x())[0] == "0"


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_compiled_models_are_refused_with_the_reason():
    traced = torch.jit.trace(_chain(inplace=False), _x(4))
    with pytest.raises(ValueError, match=r"it is a TorchScript module, whose layers are no nn\.Linear modules"):
        find_input_layer(traced, _x())
    exported = torch.export.export(_chain(inplace=False), (_x(4),)).module()
    with pytest.raises(ValueError, match=r"it is an exported or traced graph \(torch\.export / torch\.fx\)"):
        find_input_layer(exported, _x())
