from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.internals import capture, collect, neuron_importance, patch
from featurelens.models import OutputSelector


class WithUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _tail(mlp, h):
    return mlp.layer3(mlp.act2(mlp.layer2(h)))


@pytest.mark.parametrize("j", [0, 3, 5])
def test_zero_neuron_equals_zeroed_outgoing_weights_mlp(mlp, x4, j):
    edited = copy.deepcopy(mlp)
    with torch.no_grad():
        edited.layer2.weight[:, j] = 0
        expected = edited(x4)
        with patch(mlp, {"act1": "zero"}, neurons=[j]):
            got = mlp(x4)
        clean = mlp(x4)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(got, clean)  # the patch is fed back


@pytest.mark.parametrize("j", [0, 7, 31])
def test_zero_neuron_equals_zeroed_outgoing_weights_transformer(transformer, j):
    x = torch.randn(6, 3, dtype=torch.float64)
    edited = copy.deepcopy(transformer)
    with torch.no_grad():
        edited.transformer_layers[0].linear2.weight[:, j] = 0
        expected = edited(x)
        with patch(transformer, {"transformer_layers.0.linear1": "zero"}, neurons=j):
            got = transformer(x)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_value_callable_and_clean_to_corrupted(mlp, x4):
    clean, corrupt = x4[:5], x4[5:]
    with torch.no_grad():
        with capture(mlp, "act1") as acts:
            clean_out = mlp(clean)
        with patch(mlp, {"act1": acts["act1"]}):
            assert torch.allclose(mlp(corrupt), clean_out, atol=1e-12, rtol=0)
        with patch(mlp, {"act1": 0.5}):
            assert torch.allclose(mlp(corrupt), _tail(mlp, torch.full((5, 6), 0.5, dtype=torch.float64)))
        with patch(mlp, {"act1": lambda a: 2 * a}):
            h = 2 * torch.relu(mlp.layer1(corrupt))
            assert torch.allclose(mlp(corrupt), _tail(mlp, h), atol=1e-12, rtol=0)
        with patch(mlp, {"act1": torch.arange(6.0)}, neurons=[1, 2]):
            h = torch.relu(mlp.layer1(corrupt))
            h[:, 1:3] = torch.tensor([1.0, 2.0], dtype=torch.float64)
            assert torch.allclose(mlp(corrupt), _tail(mlp, h), atol=1e-12, rtol=0)


def test_mean_and_resample(mlp, x4):
    ref = collect(mlp, "act1", x4)
    x = x4[:3]
    with torch.no_grad():
        with patch(mlp, {"act1": "mean"}, reference=ref):
            got = mlp(x)
        assert torch.allclose(got, _tail(mlp, ref["act1"].mean(0).expand(3, 6)), atol=1e-12, rtol=0)
        with patch(mlp, {"act1": "resample"}, reference=ref["act1"], random_state=7):
            got = mlp(x)
        rows = np.random.default_rng(7).integers(0, 10, size=3)
        assert torch.allclose(got, _tail(mlp, ref["act1"][rows]), atol=1e-12, rtol=0)


def test_patch_glob_and_tuple_module(transformer):
    x = torch.randn(4, 3, dtype=torch.float64)
    edited = copy.deepcopy(transformer)
    with torch.no_grad():
        for layer in edited.transformer_layers:
            layer.self_attn.out_proj.weight.zero_()
            layer.self_attn.out_proj.bias.zero_()
        expected = edited(x)
        with patch(transformer, {"transformer_layers.*.self_attn": "zero"}):
            with capture(transformer, "transformer_layers.*.self_attn") as acts:
                got = transformer(x)
        clean = transformer(x)
    # hooks registered later (the capture) see the patched value, as downstream modules do
    assert acts["transformer_layers.0.self_attn"].abs().sum() == 0
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(got, clean)


@pytest.mark.parametrize(
    ("reps", "kwargs", "err", "match"),
    [
        ({}, {}, ValueError, "non-empty mapping"),
        ({"act1": "ones"}, {}, ValueError, "must be one of 'zero', 'mean', 'resample'"),
        ({"act1": "mean"}, {}, ValueError, "needs reference="),
        ({"act1": object()}, {}, TypeError, "must be a string, number, tensor or callable"),
        ({"act1": "zero"}, {"neurons": []}, ValueError, "neurons is empty"),
        ({"act1": "zero"}, {"neurons": [-1]}, ValueError, r"neurons\[i\] must be >= 0"),
        ({"act1": "zero", "act*": 1.0}, {}, ValueError, "patched twice"),
        ({"nope": "zero"}, {}, ValueError, "unknown module path"),
        ({"act1": "mean"}, {"reference": {"layer1": torch.zeros(2, 6)}}, ValueError, "no activations for 'act1'"),
    ],
)
def test_patch_setup_errors(mlp, reps, kwargs, err, match):
    with pytest.raises(err, match=match), patch(mlp, reps, **kwargs):
        pass


@pytest.mark.parametrize(
    ("reps", "kwargs", "match"),
    [
        ({"act1": torch.zeros(3, 6)}, {}, r"patched tensor for 'act1' has shape \(3, 6\)"),
        ({"act1": torch.zeros(4)}, {}, "does not broadcast"),
        ({"act1": lambda a: a[:, :2]}, {}, "the callable's result"),
        ({"act1": lambda a: 1.0}, {}, "returned float, not a tensor"),
        ({"act1": "zero"}, {"neurons": [6]}, "neurons index 6 is out of range"),
        ({"act1": "mean"}, {"reference": torch.zeros(2, 5)}, "reference mean"),
    ],
)
def test_patch_forward_errors_remove_hooks(mlp, x4, reps, kwargs, match):
    with pytest.raises(ValueError, match=match), patch(mlp, reps, **kwargs):
        mlp(x4)
    assert all(len(m._forward_hooks) == 0 for m in mlp.modules())


def _loop_importance(model, name, x, n_units):
    with torch.no_grad():
        base = model(x)
        out = []
        for j in range(n_units):
            with patch(model, {name: "zero"}, neurons=[j]):
                out.append((model(x) - base).abs().mean().item())
    return np.array(out)


@pytest.mark.parametrize("batch_size", [None, 7, 25])
def test_neuron_importance_matches_loop(mlp, x4, batch_size):
    imp = neuron_importance(mlp, "act1", x4, batch_size=batch_size)
    assert list(imp.index) == list(range(6)) and imp.index.name == "unit"
    np.testing.assert_allclose(imp.to_numpy(), _loop_importance(mlp, "act1", x4, 6), atol=1e-12)
    assert (imp > 0).any()


def test_neuron_importance_transformer(transformer):
    x = torch.randn(5, 3, dtype=torch.float64)
    imp = neuron_importance(transformer, "transformer_layers.0.linear1", x, batch_size=12)
    assert len(imp) == 32
    np.testing.assert_allclose(
        imp.to_numpy(), _loop_importance(transformer, "transformer_layers.0.linear1", x, 32), atol=1e-10)


def test_neuron_importance_metric(mlp, x4):
    y = torch.randn(10, 2, dtype=torch.float64)

    def mse(t, p):
        return float(((t - p) ** 2).mean())

    imp = neuron_importance(mlp, "act2", x4, metric=mse, labels=y)
    with torch.no_grad():
        ref = mse(y, mlp(x4))
        for j in range(5):
            with patch(mlp, {"act2": "zero"}, neurons=j):
                assert imp[j] == pytest.approx(mse(y, mlp(x4)) - ref, abs=1e-12)
    sel = neuron_importance(mlp, "act2", x4, output=OutputSelector(target=1))
    assert sel.shape == (5,)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"metric": "mse"}, ValueError, "metric and labels go together"),
        ({"labels": [0] * 10}, ValueError, "metric and labels go together"),
        ({"metric": "mse", "labels": [0.0] * 3}, ValueError, "labels has 3 rows"),
        ({"output": "all"}, TypeError, "output must be an OutputSelector"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ],
)
def test_neuron_importance_errors(mlp, x4, kwargs, err, match):
    with pytest.raises(err, match=match):
        neuron_importance(mlp, "act1", x4, **kwargs)


def test_neuron_importance_module_errors(mlp, x4):
    with pytest.raises(ValueError, match="exactly one module, got 2"):
        neuron_importance(mlp, "act*", x4)
    with pytest.raises(ValueError, match="did not produce"):
        neuron_importance(WithUnused(), "unused", x4.float())
