"""Reference architectures: layer names, shapes, dtypes, determinism, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featurelens.models import MLP, SmallTransformer


def test_mlp_layer_names_and_order():
    model = MLP(3, (4, 5), 2, dropout=0.1)
    names = [name for name, _ in model.named_children()]
    assert names == ["layer1", "act1", "drop1", "layer2", "act2", "drop2", "layer3"]
    assert model.input_layer is model.layer1 is model[0]
    assert (model.layer1.in_features, model.layer3.out_features) == (3, 2)
    assert [n for n, _ in MLP(3, ()).named_children()] == ["layer1"]


@pytest.mark.parametrize(("activation", "cls"), [("relu", nn.ReLU), ("tanh", nn.Tanh), ("gelu", nn.GELU)])
def test_mlp_activation(activation, cls):
    assert isinstance(MLP(3, (4,), activation=activation).act1, cls)


def test_mlp_output_shapes():
    x = torch.randn(7, 3)
    assert MLP(3, (4,))(x).shape == (7,)
    assert MLP(3, (4,), 5)(x).shape == (7, 5)


def test_mlp_linear_model_is_affine():
    model = MLP(3, ())
    x = torch.randn(6, 3)
    expected = x @ model.layer1.weight[0] + model.layer1.bias[0]
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("shape", [(4, 2, 3), (4, 5), (3,)])
def test_mlp_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match=r"MLP expects input of shape \(B, 3\)"):
        MLP(3, (4,))(torch.randn(*shape))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_features": 0}, ValueError, "in_features must be >= 1"),
        ({"hidden": "64"}, TypeError, "hidden must be a sequence"),
        ({"hidden": (4, 0)}, ValueError, r"hidden\[i\] must be >= 1"),
        ({"out_features": 1.5}, TypeError, "out_features must be an int"),
        ({"activation": "sigmoid"}, ValueError, "activation must be one of"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0.0, 1.0\)"),
    ],
)
def test_mlp_argument_errors(kwargs, error, match):
    args = {"in_features": 3, "hidden": (4,), "out_features": 1, **kwargs}
    with pytest.raises(error, match=match):
        MLP(args.pop("in_features"), args.pop("hidden"), args.pop("out_features"), **args)


@pytest.mark.parametrize(
    "make", [lambda: MLP(3, (8, 8), dropout=0.2), lambda: SmallTransformer(3, hidden_dim=8, n_heads=2)]
)
def test_deterministic_construction_and_float64(make):
    torch.manual_seed(11)
    a = make()
    torch.manual_seed(11)
    b = make()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    model = a.double().eval()
    out = model(torch.randn(5, 3, dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (5,)


def test_transformer_structure_matches_seed():
    model = SmallTransformer(6, n_heads=2, n_layers=3, hidden_dim=8, dropout=0.25, out_features=1)
    assert isinstance(model.input_proj, nn.Linear) and model.input_proj.in_features == 6
    assert isinstance(model.transformer_layers, nn.ModuleList) and len(model.transformer_layers) == 3
    layer = model.transformer_layers[0]
    assert isinstance(layer, nn.TransformerEncoderLayer)
    assert layer.linear1.out_features == 32 and layer.self_attn.num_heads == 2
    assert layer.self_attn.batch_first and layer.dropout.p == 0.25
    assert model.output_proj.in_features == 8
    assert model.get_submodule("transformer_layers.1.self_attn") is model.transformer_layers[1].self_attn


def test_transformer_shapes_tabular_and_sequence():
    torch.manual_seed(0)
    model = SmallTransformer(5, hidden_dim=8, n_heads=2).eval()
    assert model(torch.randn(4, 5)).shape == (4,)
    assert model(torch.randn(4, 7, 5)).shape == (4,)
    wide = SmallTransformer(5, hidden_dim=8, n_heads=2, out_features=3).eval()
    assert wide(torch.randn(4, 5)).shape == (4, 3)
    assert wide(torch.randn(4, 7, 5)).shape == (4, 3)


def test_transformer_row_is_one_token_and_tokens_are_unordered():
    torch.manual_seed(0)
    model = SmallTransformer(5, hidden_dim=8, n_heads=2).double().eval()
    x = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(model(x), model(x.unsqueeze(1)))
    seq = torch.randn(4, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(model(seq), model(seq[:, torch.randperm(6)]))


def test_transformer_returns_logits_not_probabilities():
    model = SmallTransformer(5, hidden_dim=8, n_heads=2).eval()
    with torch.no_grad():
        model.output_proj.bias.fill_(5.0)
        model.output_proj.weight.zero_()
    torch.testing.assert_close(model(torch.randn(3, 5)), torch.full((3,), 5.0))


@pytest.mark.parametrize("shape", [(4,), (4, 6), (2, 3, 4, 5)])
def test_transformer_rejects_bad_input(shape):
    model = SmallTransformer(5, hidden_dim=8, n_heads=2)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 5\) or \(B, T, 5\)"):
        model(torch.randn(*shape))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hidden_dim": 10, "n_heads": 4}, ValueError, "hidden_dim=10 must be divisible by n_heads=4"),
        ({"n_layers": 0}, ValueError, "n_layers must be >= 1"),
        ({"dropout": -0.1}, ValueError, "dropout must be in"),
        ({"out_features": 0}, ValueError, "out_features must be >= 1"),
        ({"n_heads": 2.0}, TypeError, "n_heads must be an int"),
    ],
)
def test_transformer_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SmallTransformer(5, **kwargs)


def test_reference_models_are_scriptable():
    import warnings

    from featurelens.models import MLP, SmallTransformer

    x = torch.randn(3, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for model in (MLP(4).eval(), SmallTransformer(4, hidden_dim=8, n_heads=2).eval()):
            scripted = torch.jit.script(model)
            torch.testing.assert_close(scripted(x), model(x))
