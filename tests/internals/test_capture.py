from __future__ import annotations

import pytest
import torch
from torch import nn

from featurelens.internals import capture, collect


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
    with pytest.raises(ValueError, match="inputs is empty"):
        collect(mlp, "layer1", x4[:0])
    with pytest.raises(TypeError, match="inputs must be a tensor or array-like"):
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
