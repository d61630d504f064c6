from __future__ import annotations

import pytest
import torch
from torch import nn

from featurelens.internals import capture, collect
from featurelens.internals._capture import probe_batch_axis


def test_capture_values_and_concat(mlp, x4):
    with capture(mlp, ["layer1", "act1"]) as acts:
        mlp(x4[:4])
        mlp(x4[4:])
    assert acts.calls == {"layer1": 2, "act1": 2}
    expected = mlp.layer1(x4)
    assert torch.allclose(acts["layer1"], expected, atol=1e-12, rtol=0)
    assert torch.equal(acts["act1"], torch.relu(acts["layer1"]))
    assert not acts["layer1"].requires_grad
    assert all(len(m._forward_hooks) == 0 for m in mlp.modules())


def test_capture_keeps_graph_when_not_detached(mlp, x4):
    with capture(mlp, "layer1", detach=False) as acts:
        mlp(x4)
    assert acts["layer1"].requires_grad


def test_hooks_removed_on_exception(mlp, x4):
    with pytest.raises(RuntimeError, match="boom"), capture(mlp, nn.Linear):
        mlp(x4)
        raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in mlp.modules())


class Attn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x, x, x, need_weights=True)
        return out


def test_tuple_output():
    torch.manual_seed(0)
    m = Attn().eval()
    x = torch.randn(3, 5, 4)
    with capture(m, "attn") as acts:
        m(x)
        m(x[:2])
    out, w = acts["attn.tuple"]
    assert acts["attn"].shape == (5, 5, 4)
    assert torch.equal(out, acts["attn"])
    assert w.shape == (5, 5, 5)
    assert torch.allclose(w.sum(-1), torch.ones(5, 5), atol=1e-6)


def test_missing_key_message(mlp, x4):
    with capture(mlp, "layer1") as acts:
        pass
    with pytest.raises(KeyError, match="no activation captured for 'layer1'"):
        acts["layer1"]


def test_collect_batches_eval_and_cpu(mlp, x4):
    mlp.train()
    acts = collect(mlp, ["layer2"], x4.numpy(), batch_size=3)
    assert mlp.training
    assert acts.calls["layer2"] == 4
    with torch.no_grad():
        ref = mlp.eval().layer2(torch.relu(mlp.layer1(x4)))
    assert torch.allclose(acts["layer2"], ref, atol=1e-12, rtol=0)
    assert acts["layer2"].device.type == "cpu"


def test_collect_errors(mlp, x4):
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        collect(mlp, "layer1", x4, batch_size=0)
    with pytest.raises(ValueError, match="X is empty"):
        collect(mlp, "layer1", x4[:0])
    with pytest.raises(TypeError, match="X must be a tensor or array-like"):
        collect(mlp, "layer1", object())


def test_calls_of_and_unit_rows_keep_calls_apart(mlp):
    x1 = torch.randn(3, 4, dtype=torch.float64)
    x2 = torch.randn(5, 4, dtype=torch.float64)
    with capture(mlp, "layer1") as acts:
        mlp(x1)
        mlp(x2)
    calls = acts.calls_of("layer1")
    assert [c.shape[0] for c in calls] == [3, 5]
    torch.testing.assert_close(calls[1], mlp.layer1(x2))
    torch.testing.assert_close(acts.unit_rows("layer1"), torch.cat([mlp.layer1(x1), mlp.layer1(x2)]))
    with pytest.raises(KeyError, match="no activation captured for 'act9'"):
        acts.calls_of("act9")


# --- copies, not references: in-place ops downstream must not change what was recorded ---


def test_collect_is_not_overwritten_by_inplace_activation(leaky_inplace, x3):
    got = collect(leaky_inplace, "0", x3)["0"]
    with torch.no_grad():
        want = leaky_inplace[0](x3)
    assert (got - want).abs().max() <= 1e-6
    assert (want < 0).any()  # the LeakyReLU really rewrites these entries


def test_capture_is_not_overwritten_by_add_inplace(add_inplace, x3):
    with torch.no_grad(), capture(add_inplace, "lin") as acts:
        add_inplace(x3[:20])
        add_inplace(x3[20:])
    with torch.no_grad():
        want = add_inplace.lin(x3)
    assert (acts["lin"] - want).abs().max() <= 1e-12
    assert (acts.calls_of("lin")[1] - want[20:]).abs().max() <= 1e-12


def test_capture_without_detach_keeps_gradients_through_the_copy(leaky_inplace, x3):
    x = x3.clone().requires_grad_(True)
    with capture(leaky_inplace, "0", detach=False) as acts:
        leaky_inplace(x)
    (grad,) = torch.autograd.grad(acts["0"].sum(), x)
    # d/dx of sum(W x + b) is the column sums of W, for every row (the LeakyReLU came after the copy)
    want = leaky_inplace[0].weight.detach().sum(0).expand_as(x)
    assert torch.allclose(grad, want, atol=1e-12, rtol=0)
    assert (acts["0"] - leaky_inplace[0](x3)).abs().max() <= 1e-12


class AttnThenInPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x, x, x, need_weights=True)
        return out.mul_(2.0)


def test_tuple_output_is_copied():
    torch.manual_seed(0)
    m = AttnThenInPlace().double().eval()
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        with capture(m, "attn") as acts:
            m(x)
        want, _ = m.attn(x, x, x)
    assert torch.allclose(acts["attn"], want, atol=1e-12, rtol=0)
    assert torch.allclose(acts["attn.tuple"][0], want, atol=1e-12, rtol=0)


# --- calls are concatenated along the batch axis, wherever it is ---


def test_sequence_first_calls_concatenate_along_the_batch_axis(encoder):
    model = encoder(ff=3)  # linear1 runs on (T, B, d): its output is (T, B, 3)
    x1 = torch.randn(4, 6, 4, dtype=torch.float64)
    x2 = torch.randn(4, 6, 4, dtype=torch.float64)
    with torch.no_grad(), capture(model, "layer.linear1") as acts:
        model(x1)
        model(x2)
    one, two = acts.calls_of("layer.linear1")
    assert one.shape == (6, 4, 3)
    assert acts.batch_axis("layer.linear1") == 1
    assert torch.equal(acts["layer.linear1"], torch.cat([one, two], dim=1))  # (6, 8, 3), not (12, 4, 3)
    assert acts.rows_of("layer.linear1") == [4, 4]


def test_tuple_elements_each_use_their_own_batch_axis(encoder):
    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 2)  # sequence-first: out (T, B, E), weights (B, T, S)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x.transpose(0, 1)
            return self.attn(q, q, q, need_weights=True)[0].transpose(0, 1)

    torch.manual_seed(0)
    m = Wrap().double().eval()
    x1, x2 = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(3, 5, 4, dtype=torch.float64)
    with torch.no_grad(), capture(m, "attn") as acts:
        m(x1)
        m(x2)
    out, w = acts["attn.tuple"]
    assert out.shape == (5, 5, 4) and w.shape == (5, 5, 5)
    assert torch.equal(out, acts["attn"])
    with torch.no_grad():
        want = m.attn(x2.transpose(0, 1), x2.transpose(0, 1), x2.transpose(0, 1))[1]
    assert torch.allclose(w[2:], want, atol=1e-12, rtol=0)


def test_ambiguous_batch_axis_raises_and_batch_axis_overrides(encoder):
    model = encoder(ff=3)
    x1, x2 = torch.randn(6, 6, 4, dtype=torch.float64), torch.randn(6, 6, 4, dtype=torch.float64)  # T == B
    with torch.no_grad(), capture(model, "layer.linear1") as acts:
        model(x1)
        model(x2)
    with pytest.raises(ValueError, match=r"cannot tell the batch axis of 'layer\.linear1'.*\(6, 6, 3\).*\[6, 6\]"):
        acts["layer.linear1"]
    for axis in (1, {"layer.linear1": 1}):
        with torch.no_grad(), capture(model, "layer.linear1", batch_axis=axis) as fixed:
            model(x1)
            model(x2)
        one, two = fixed.calls_of("layer.linear1")
        assert torch.equal(fixed["layer.linear1"], torch.cat([one, two], dim=1))
    assert collect(model, "layer.linear1", torch.cat([x1, x2]), batch_size=6, batch_axis=1)[
        "layer.linear1"].shape == (6, 12, 3)
    assert "(6, 6, 3)" in repr(acts)  # the repr never raises


@pytest.mark.parametrize(
    ("batch_axis", "err", "match"),
    [
        ({"layer.nope": 1}, ValueError, r"batch_axis names 'layer\.nope'"),
        ("1", TypeError, "batch_axis must be an int"),
        ({"layer.linear1": 1.5}, TypeError, r"batch_axis\['layer\.linear1'\] must be an int"),
    ],
)
def test_batch_axis_errors(encoder, batch_axis, err, match):
    with pytest.raises(err, match=match), capture(encoder(), "layer.linear1", batch_axis=batch_axis):
        pass


def test_batch_axis_that_does_not_fit_is_refused(encoder):
    model = encoder(ff=3)
    with torch.no_grad(), capture(model, "layer.linear1", batch_axis=0) as acts:
        model(torch.randn(2, 6, 4, dtype=torch.float64))
        model(torch.randn(3, 6, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"batch_axis=0 does not fit the outputs of 'layer\.linear1'"):
        acts["layer.linear1"]
    with torch.no_grad(), capture(model, "layer.linear1", batch_axis=3) as acts:
        model(torch.randn(2, 6, 4, dtype=torch.float64))
        model(torch.randn(3, 6, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch_axis=3 is out of range"):
        acts["layer.linear1"]


def test_module_called_outside_the_model_concatenates_on_shape_alone(mlp, x4):
    with torch.no_grad(), capture(mlp, "layer1") as acts:
        mlp.layer1(x4[:3])  # not inside a model call: the rows are unknown
        mlp.layer1(x4[3:])
    assert acts.rows_of("layer1") == [None, None]
    assert torch.allclose(acts["layer1"], mlp.layer1(x4), atol=1e-12, rtol=0)


class BatchMajorFlat(nn.Module):
    """A Linear on the batch-major flattening ``(B * T, d)`` of ``(B, T, d)`` inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return self.lin(x.reshape(b * t, d)).reshape(b, t, 3).sum(1)


def test_probe_batch_axis_finds_the_axis_that_holds_the_samples(encoder):
    model = encoder(ff=3)
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    found = probe_batch_axis(model, "layer.linear1", model.layer.linear1, x)
    assert (found.axis, found.units, found.calls) == (1, 3, 1)
    flat = BatchMajorFlat().double()
    assert probe_batch_axis(flat, "lin", flat.lin, x).axis == 0  # (B*T, U): the samples are blocks of axis 0
    with pytest.raises(ValueError, match=r"module 'layer\.self_attn\.out_proj' did not produce"):
        probe_batch_axis(model, "layer.self_attn.out_proj", model.layer.self_attn.out_proj, x)
    assert all(len(m._forward_hooks) == 0 and len(m._forward_pre_hooks) == 0 for m in model.modules())
