"""The superposition and spurious-correlation notebook's transformer variants.

Shapes, compositions, the hierarchical model's last window.
"""

from __future__ import annotations

import pytest
import torch

from featurelens.models import GatedTransformer, HierarchicalTransformer, ParallelTransformer


def _x(*shape):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cls", [ParallelTransformer, HierarchicalTransformer, GatedTransformer])
def test_shapes_and_tabular_equals_one_token(cls):
    torch.manual_seed(0)
    m = cls(3, hidden_dim=8, n_heads=2, dropout=0.0).double().eval()
    x = _x(5, 3)
    assert m(x).shape == (5,)
    torch.testing.assert_close(m(x), m(x.unsqueeze(1)))
    m2 = cls(3, hidden_dim=8, n_heads=2, dropout=0.0, out_features=3)
    assert m2(_x(5, 4, 3).float()).shape == (5, 3)


def test_parallel_is_the_concatenation_of_branches():
    torch.manual_seed(0)
    m = ParallelTransformer(3, n_branches=3, hidden_dim=8, n_heads=2, dropout=0.0).double().eval()
    x = _x(4, 5, 3)
    h = m.input_proj(x)
    z = torch.cat([m.branches[i](h) for i in range(3)], dim=-1).mean(1)
    torch.testing.assert_close(m(x), m.output_proj(z).squeeze(-1))


def test_hierarchical_windows_attend_locally_and_last_window_counts():
    torch.manual_seed(0)
    m = HierarchicalTransformer(3, window=2, hidden_dim=8, n_heads=2, dropout=0.0).double().eval()
    x = _x(4, 5, 3)
    h = m.input_proj(x)
    local = torch.cat([m.local_layer(h[:, 0:2]), m.local_layer(h[:, 2:4]), m.local_layer(h[:, 4:5])], dim=1)
    want = m.output_proj(m.global_layer(local).mean(1)).squeeze(-1)
    torch.testing.assert_close(m(x), want)
    x2 = x.clone()
    x2[:, 4] += 1.0  # the notebook dropped the last, shorter window: its tokens never reached the output
    assert (m(x2) - m(x)).abs().min() > 0


def test_gated_with_open_gate_is_the_content_path():
    torch.manual_seed(0)
    m = GatedTransformer(3, hidden_dim=8, n_heads=2, dropout=0.0).double().eval()
    with torch.no_grad():
        m.gate_proj.weight.zero_()
        m.gate_proj.bias.fill_(60.0)  # sigmoid(60) == 1 in float64 up to 1e-26
    x = _x(4, 5, 3)
    want = m.output_proj(m.content_layer(m.input_proj(x)).mean(1)).squeeze(-1)
    torch.testing.assert_close(m(x), want)


@pytest.mark.parametrize("cls", [ParallelTransformer, HierarchicalTransformer, GatedTransformer])
def test_errors(cls):
    with pytest.raises(ValueError, match="divisible by n_heads"):
        cls(3, hidden_dim=10, n_heads=4)
    with pytest.raises(ValueError, match="input_dim"):
        cls(0)
    m = cls(3, hidden_dim=8, n_heads=2)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 3\)"):
        m(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="dropout"):
        cls(3, dropout=1.0)


def test_variant_specific_errors():
    with pytest.raises(ValueError, match="n_branches"):
        ParallelTransformer(3, n_branches=0)
    with pytest.raises(ValueError, match="window"):
        HierarchicalTransformer(3, window=0)
