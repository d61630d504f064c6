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

    imp = neuron_importance(mlp, "act2", x4, metric=mse, y=y)
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
        ({"metric": "mse"}, ValueError, "metric and y go together"),
        ({"y": [0] * 10}, ValueError, "metric and y go together"),
        ({"metric": "mse", "y": [0.0] * 3}, ValueError, "y has 3 rows"),
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


# --- patched values are fresh copies: in-place ops downstream cannot reach a cache ---


class Const(nn.Module):
    """Returns a fixed tensor (broadcast over the batch if it has a size-1 batch axis)."""

    def __init__(self, value: torch.Tensor, axis: int = 0) -> None:
        super().__init__()
        self.value, self.axis = value, axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(self.value.shape)
        shape[self.axis] = x.shape[self.axis]
        return self.value.expand(shape).clone()


def test_cached_activation_patch_with_inplace_op_downstream(leaky_inplace, x3):
    clean, corrupt = x3[:25], x3[25:]
    with torch.no_grad():
        with capture(leaky_inplace, "0") as acts:
            leaky_inplace(clean)
        cache = acts["0"]
        snapshot = cache.clone()
        edited = copy.deepcopy(leaky_inplace)
        edited[0] = Const(leaky_inplace[0](clean))
        want = edited(corrupt)
        with patch(leaky_inplace, {"0": cache}):
            first, second = leaky_inplace(corrupt), leaky_inplace(corrupt)
    assert (first - want).abs().max() <= 1e-12
    assert (second - want).abs().max() <= 1e-12
    assert torch.equal(cache, snapshot)


def test_mean_patch_with_inplace_op_downstream(leaky_inplace, x3):
    ref = collect(leaky_inplace, "0", x3)
    with torch.no_grad():
        edited = copy.deepcopy(leaky_inplace)
        edited[0] = Const(leaky_inplace[0](x3).mean(0, keepdim=True))
        want = edited(x3[:7])
        with patch(leaky_inplace, {"0": "mean"}, reference=ref):
            got = leaky_inplace(x3[:7])
    assert (got - want).abs().max() <= 1e-12


def test_mean_and_resample_use_the_batch_axis_of_a_sequence_first_layer(encoder):
    model = encoder(ff=3)  # linear1 output (T, B, 3): the batch is axis 1
    x_ref = torch.randn(5, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ref = collect(model, "layer.linear1", x_ref)
    with torch.no_grad():
        layer, xt = model.layer, x_ref.transpose(0, 1)
        a_ref = layer.linear1(layer.norm1(xt + layer.self_attn(xt, xt, xt)[0]))  # (6, 5, 3), by hand
        edited = copy.deepcopy(model)
        edited.layer.linear1 = Const(a_ref.mean(1, keepdim=True), axis=1)
        with patch(model, {"layer.linear1": "mean"}, reference=ref):
            got = model(x)
        assert (got - edited(x)).abs().max() <= 1e-12
        with patch(model, {"layer.linear1": "resample"}, reference=ref["layer.linear1"], random_state=3):
            got = model(x)
        rows = torch.as_tensor(np.random.default_rng(3).integers(0, 5, size=5))
        edited.layer.linear1 = Const(a_ref[:, rows], axis=1)
        assert (got - edited(x)).abs().max() <= 1e-12


def test_mean_patch_ambiguous_batch_axis_raises_and_batch_axis_overrides(encoder):
    model = encoder(ff=3)
    x = torch.randn(6, 6, 4, dtype=torch.float64)  # T == B == reference rows
    ref = collect(model, "layer.linear1", x)["layer.linear1"]
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"cannot tell the batch axis of 'layer\.linear1'.*\(6, 6, 3\)"), \
                patch(model, {"layer.linear1": "mean"}, reference=ref):
            model(x)
        with patch(model, {"layer.linear1": "mean"}, reference=ref, batch_axis=1):
            got = model(x)
        edited = copy.deepcopy(model)
        edited.layer.linear1 = Const(ref.mean(1, keepdim=True), axis=1)
        assert (got - edited(x)).abs().max() <= 1e-12
    with pytest.raises(ValueError, match=r"batch_axis names 'nope'"), \
            patch(model, {"layer.linear1": "mean"}, reference=ref, batch_axis={"nope": 1}):
        pass


# --- neuron_importance on layers whose output does not have the batch on axis 0 ---


def _edited_importance(model, layer, x, units):
    """mean |Δ output| of an edited copy whose unit j of ``layer`` is 0 (row j of its weight and bias j)."""
    with torch.no_grad():
        base = model(x)
        out = []
        for j in range(units):
            edited = copy.deepcopy(model)
            lin = edited.get_submodule(layer)
            lin.weight[j] = 0
            lin.bias[j] = 0
            out.append((edited(x) - base).abs().mean().item())
    return np.array(out)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize(("T", "ff"), [(8, 4), (6, 3), (5, 3)])
def test_neuron_importance_transformer_layer_equals_edited_copy(encoder, batch_first, T, ff):
    model = encoder(ff=ff, batch_first=batch_first)
    x = torch.randn(5, T, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    got = neuron_importance(model, "layer.linear1", x)
    want = _edited_importance(model, "layer.linear1", x, ff)
    np.testing.assert_allclose(got.to_numpy(), want, atol=1e-6, rtol=0)
    assert (want > 1e-3).all()
    split = neuron_importance(model, "layer.linear1", x, batch_size=2)
    np.testing.assert_allclose(split.to_numpy(), want, atol=1e-6, rtol=0)


def test_neuron_importance_refuses_a_sequence_first_model_fed_time_on_axis_0(encoder):
    layer = encoder(ff=3).layer  # the layer itself takes (T, B, d): axis 0 of its inputs is time
    x = torch.randn(6, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with pytest.raises(ValueError, match=r"first 3 input rows changes when the other 3 rows are left out.*"
                                         r"rows interact.*wrap a sequence-first model"):
        neuron_importance(layer, "linear1", x)  # stacking or splitting time steps changes what attention sees


def test_neuron_importance_batch_axis_overrides_and_is_checked(encoder):
    model = encoder(ff=3)
    x = torch.randn(5, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    want = _edited_importance(model, "layer.linear1", x, 3)
    for axis in (1, -2):
        got = neuron_importance(model, "layer.linear1", x, batch_axis=axis)
        np.testing.assert_allclose(got.to_numpy(), want, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"batch_axis=0 is not the batch axis of 'layer\.linear1'.*\(6, 5, 3\).*"
                                         r"\(6, 10, 3\)"):
        neuron_importance(model, "layer.linear1", x, batch_axis=0)
    with pytest.raises(ValueError, match=r"batch_axis=2 is out of range for the 3-D output of 'layer\.linear1'"):
        neuron_importance(model, "layer.linear1", x, batch_axis=2)
    with pytest.raises(TypeError, match="batch_axis must be an int"):
        neuron_importance(model, "layer.linear1", x, batch_axis="1")


class TimeMajor(nn.Module):
    """A Linear applied to the rows of a time-major flattening ``(T * B, d)``: no axis holds the samples."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.head = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.lin(x.transpose(0, 1).reshape(t * b, d))
        return self.head(h).reshape(t, b).sum(0)


def test_neuron_importance_raises_when_the_batch_axis_cannot_be_told():
    torch.manual_seed(0)
    model = TimeMajor().double().eval()
    x = torch.randn(5, 6, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"cannot tell the batch axis of 'lin': its output has shape \(30, 3\) for 5 "
                                         r"input rows and \(60, 3\)"):
        neuron_importance(model, "lin", x)
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0 for m in model.modules())


class MixRows(nn.Module):
    """Subtracts the batch mean: the output of a row depends on the other rows."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return h - h.mean(0) + x[:1, :3]


def test_neuron_importance_refuses_interacting_rows():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="its rows interact"):
        neuron_importance(MixRows().double().eval(), "lin", torch.randn(6, 4, dtype=torch.float64))
