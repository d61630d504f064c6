"""Sparsity tables of the compared models, also for TorchScript files (traced from pruned models)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from featurelens.compare import compare, layer_sparsity, unpruned_weights
from featurelens.models.pruning import magnitude_prune

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")


class Ten(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer1 = nn.Linear(4, 6)
        self.layer10 = nn.Linear(6, 6)
        self.head = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.layer10(torch.relu(self.layer1(x))))).squeeze(-1)


def _x(n: int = 50) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def eager_and_scripted(tmp_path_factory):
    """Eager models and the same models traced to TorchScript, saved and loaded back."""
    dense = Ten()
    eager = {"dense": dense, "ticket": magnitude_prune(dense, amount=0.8, layers=["layer10"]),
             "robust": magnitude_prune(Ten(1), amount=0.5, layers=["layer1"])}
    scripted = {}
    for name, m in eager.items():
        path = tmp_path_factory.mktemp("ts") / f"{name}.pt"
        torch.jit.save(torch.jit.trace(m, _x(3)), str(path))
        scripted[name] = torch.jit.load(str(path))
    return eager, scripted


def test_scripted_models_give_the_eager_sparsity_table_and_weights(eager_and_scripted):
    eager, scripted = eager_and_scripted
    for name, m in eager.items():
        want = layer_sparsity(m)
        pd.testing.assert_frame_equal(layer_sparsity(scripted[name]), want)
        np.testing.assert_array_equal(unpruned_weights(scripted[name]), unpruned_weights(m))
        assert want["layer"].tolist() == ["layer1.weight", "layer10.weight", "head.weight", "total"]
    table = layer_sparsity(scripted["ticket"]).set_index("layer")
    assert table.loc["layer10.weight", "n_pruned"] == round(0.8 * 36) and bool(table.loc["layer10.weight", "pruned"])
    assert table.loc["total", "n_weights"] == 24 + 36 + 6 and not table.loc["layer1.weight", "pruned"]


def test_compare_runs_on_torchscript_models(eager_and_scripted):
    eager, scripted = eager_and_scripted
    x = _x(60)
    got = compare(scripted, x, methods=("permutation",), random_state=0)
    want = compare(eager, x, methods=("permutation",), random_state=0)
    pd.testing.assert_frame_equal(got.sparsity, want.sparsity)
    pd.testing.assert_frame_equal(got.weight_summary, want.weight_summary)
    np.testing.assert_allclose(got.importance["share"], want.importance["share"], rtol=1e-6)


def test_a_model_that_is_one_linear_layer_names_its_weight_exactly():
    table = layer_sparsity(nn.Linear(3, 2))
    assert table["layer"].tolist() == ["weight", "total"] and table["n_weights"].tolist() == [6, 6]
