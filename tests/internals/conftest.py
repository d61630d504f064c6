from __future__ import annotations

import pytest
import torch

from featurelens.models._reference import MLP, SmallTransformer


@pytest.fixture
def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP(4, (6, 5), 2).double().eval()


@pytest.fixture
def transformer() -> SmallTransformer:
    torch.manual_seed(1)
    return SmallTransformer(3, n_heads=2, n_layers=2, hidden_dim=8, dropout=0.0).double().eval()


@pytest.fixture
def x4() -> torch.Tensor:
    return torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
