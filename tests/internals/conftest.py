from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from featurelens.models import MLP, SmallTransformer


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


class Encoder(nn.Module):
    """Batch-first inputs ``(B, T, d)`` through one ``nn.TransformerEncoderLayer``.

    With ``batch_first=False`` (PyTorch's default) the layer runs on
    ``(T, B, d)``, so its submodules' outputs have the batch on axis 1.
    """

    def __init__(self, d: int = 4, heads: int = 2, ff: int = 3, *, batch_first: bool = False) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=ff, dropout=0.0, batch_first=batch_first)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_first:
            return self.layer(x)
        return self.layer(x.transpose(0, 1)).transpose(0, 1)


class InPlaceAfter(nn.Module):
    """``lin`` then an in-place ``add_`` on its output in the user's forward, then ``head``."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 5)
        self.head = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        h.add_(1.0)
        return self.head(h)


@pytest.fixture
def encoder() -> Callable[..., Encoder]:
    def make(d: int = 4, heads: int = 2, ff: int = 3, *, batch_first: bool = False, seed: int = 0) -> Encoder:
        torch.manual_seed(seed)
        return Encoder(d, heads, ff, batch_first=batch_first).double().eval()

    return make


@pytest.fixture
def leaky_inplace() -> nn.Sequential:
    """Linear → LeakyReLU(inplace=True) → Linear: the activation overwrites the first Linear's output."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(0.1, inplace=True), nn.Linear(6, 1)).double().eval()


@pytest.fixture
def add_inplace() -> InPlaceAfter:
    torch.manual_seed(0)
    return InPlaceAfter().double().eval()


@pytest.fixture
def x3() -> torch.Tensor:
    return torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
