"""Per-layer summaries, gradient norms and the one-call internals overview."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from featurelens.internals import (
    collect,
    default_layers,
    gradient_norms,
    layer_summary,
    summarize_internals,
)
from featurelens.models import MLP, HierarchicalTransformer, SmallTransformer
from featurelens.representation import (
    group_overlap,
    interference,
    jacobian_overlap,
    sparsity,
    spectrum,
)


@pytest.fixture
def x8():
    return torch.randn(40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def test_default_layers_mlp(mlp):
    assert default_layers(mlp) == ["layer1", "act1", "layer2", "act2", "layer3"]


def test_layer_summary_equals_metrics_on_captured_activations(mlp, x8):
    table = layer_summary(mlp, x8, max_rows=None)
    assert list(table.index) == ["layer1", "act1", "layer2", "act2", "layer3"]
    acts = collect(mlp, "act1", x8)["act1"].numpy()
    sp, inter, spars = spectrum(acts), interference(acts), sparsity(acts)
    row = table.loc["act1"]
    assert row["units"] == 6 and row["samples"] == 40
    assert row["effective_rank"] == pytest.approx(sp.effective_rank, rel=1e-12)
    assert row["participation_ratio"] == pytest.approx(sp.participation_ratio, rel=1e-12)
    assert row["n_significant"] == sp.n_significant
    assert row["interference"] == pytest.approx(inter.mean_abs_correlation, rel=1e-12)
    assert row["fraction_inactive"] == pytest.approx(spars.fraction_inactive)
    assert row["dead_units"] == spars.n_dead


def test_layer_summary_subsample_is_seeded(mlp, x8):
    a = layer_summary(mlp, x8, max_rows=10, random_state=1)
    b = layer_summary(mlp, x8, max_rows=10, random_state=1)
    c = layer_summary(mlp, x8, max_rows=10, random_state=2)
    assert a.equals(b) and not a.equals(c)
    assert (a["samples"] == 10).all()


def test_layer_summary_flattens_tokens_and_handles_uneven_windows():
    torch.manual_seed(0)
    model = HierarchicalTransformer(3, window=2, hidden_dim=8, n_heads=2, dropout=0.0).double().eval()
    x = torch.randn(7, 5, 3, dtype=torch.float64)  # 5 tokens: windows of 2, 2 and 1
    table = layer_summary(model, x, modules=["input_proj", "local_layer"], max_rows=None)
    assert table.loc["input_proj", "samples"] == 35
    assert table.loc["local_layer", "samples"] == 35  # two calls, (14, 2, 8) and (7, 1, 8)


def test_layer_summary_errors(mlp, x8):
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        layer_summary("model", x8)
    with pytest.raises(ValueError, match="max_rows"):
        layer_summary(mlp, x8, max_rows=1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        layer_summary(mlp, x8[:1])
    with pytest.raises(ValueError, match=r"at least 2 units"):
        layer_summary(MLP(4, (), 1).double(), x8)
    with pytest.raises(ValueError, match="unknown module path"):
        layer_summary(mlp, x8, modules="layer9")


def test_gradient_norms_equal_backward(mlp, x8):
    y = torch.arange(40) % 2
    table = gradient_norms(mlp, x8, y, loss="ce", batch_size=7)
    ref = copy.deepcopy(mlp)
    torch.nn.functional.cross_entropy(ref(x8), y).backward()
    for name in ("layer1", "layer2", "layer3"):
        m = ref.get_submodule(name)
        want = torch.sqrt(m.weight.grad.pow(2).sum() + m.bias.grad.pow(2).sum()).item()
        assert table.loc[name, "grad_norm"] == pytest.approx(want, rel=1e-10)
        assert table.loc[name, "parameters"] == m.weight.numel() + m.bias.numel()
    assert all(p.grad is None for p in mlp.parameters())


def test_gradient_norms_errors(mlp, x8):
    with pytest.raises(ValueError, match="loss must be one of"):
        gradient_norms(mlp, x8, torch.zeros(40), loss="hinge")
    with pytest.raises(ValueError, match="y has 3 rows"):
        gradient_norms(mlp, x8, torch.zeros(3), loss="ce")
    with pytest.raises(ValueError, match=r"y in \[0, 1\]"):
        gradient_norms(MLP(4, (3,), 1).double(), x8, torch.full((40,), 2.0))


def test_summarize_internals_transformer(transformer):
    x = torch.randn(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    groups = {"a": [0], "b": [1, 2]}
    s = summarize_internals(transformer, x, groups=groups, max_rows=None, jacobian_rows=30)
    assert set(s.overlap) == {"input weights (input_proj)", "Jacobian (transformer_layers.1)"}
    want = group_overlap(transformer.input_proj.weight, groups)
    np.testing.assert_allclose(s.overlap["input weights (input_proj)"].to_numpy(), want.to_numpy(), rtol=1e-12)
    layer_fn = lambda z: transformer.transformer_layers[1](transformer.transformer_layers[0](  # noqa: E731
        transformer.input_proj(z.unsqueeze(1))))
    jac = jacobian_overlap(transformer, x, groups, layer_fn=layer_fn)
    np.testing.assert_allclose(s.overlap["Jacobian (transformer_layers.1)"].to_numpy(), jac.to_numpy(), atol=1e-10)
    assert s.attention is not None and len(s.attention) == 4  # 2 modules x 2 heads
    d = s.to_dict()
    assert d["layers"][0]["layer"] == "input_proj"
    assert d["overlap"]["input weights (input_proj)"]["groups"] == ["a", "b"]


def test_summarize_internals_without_groups_and_errors(mlp, x8):
    s = summarize_internals(mlp, x8)
    assert s.overlap == {} and s.attention is None
    with pytest.raises(ValueError, match=r"unknown module path"):
        summarize_internals(mlp, x8, groups={"a": [0], "b": [1]}, jacobian_layer="nope")
    with pytest.raises(ValueError, match="jacobian_rows"):
        summarize_internals(mlp, x8, jacobian_rows=0)


def test_summarize_internals_demo_like_model_picks_last_block():
    torch.manual_seed(0)
    model = SmallTransformer(6, hidden_dim=8, n_heads=2, n_layers=3).eval()
    x = torch.randn(20, 6)
    s = summarize_internals(model, x, groups={"g": [0, 1, 2], "h": [3, 4, 5]}, jacobian_rows=8)
    assert "Jacobian (transformer_layers.2)" in s.overlap


def test_layer_summary_reads_the_output_before_an_inplace_activation(leaky_inplace, x3):
    table = layer_summary(leaky_inplace, x3, modules=["0"], max_rows=None)
    with torch.no_grad():
        a = leaky_inplace[0](x3).numpy()
    sp, inter, spars = spectrum(a), interference(a), sparsity(a)
    row = table.loc["0"]
    assert row["effective_rank"] == pytest.approx(sp.effective_rank, rel=1e-10)
    assert row["spectral_decay"] == pytest.approx(sp.spectral_decay, rel=1e-10)
    assert row["interference"] == pytest.approx(inter.mean_abs_correlation, rel=1e-10)
    assert row["fraction_inactive"] == pytest.approx(spars.fraction_inactive)


def test_jacobian_overlap_of_a_sequence_first_layer_is_per_sample(encoder):
    model = encoder(ff=5)  # linear1 runs on (T, B, d): the Jacobian layer's batch is axis 1
    x = torch.randn(6, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(8))  # T == B
    groups = {"a": [0, 1], "b": [2, 3]}
    s = summarize_internals(model, x, groups=groups, jacobian_layer="layer.linear1", max_rows=None)
    layer = model.layer

    def by_hand(z):  # linear1's output, batch first, computed without hooks
        zt = z.transpose(0, 1)
        return layer.linear1(layer.norm1(zt + layer.self_attn(zt, zt, zt, need_weights=False)[0])).transpose(0, 1)

    want = jacobian_overlap(model, x, groups, layer_fn=by_hand)
    np.testing.assert_allclose(s.overlap["Jacobian (layer.linear1)"].to_numpy(), want.to_numpy(), atol=1e-10)


class RowwiseConv(torch.nn.Module):
    """Calls its Conv1d on one unbatched (C, L) row at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.conv(row) for row in x]).sum(-1)


def test_layer_summary_refuses_an_unbatched_conv1d_output():
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Conv1d layer 'conv' returned shapes \[\(3, 3\).*\(n, channels, length\)"):
        layer_summary(RowwiseConv().double(), x, modules=["conv"])
