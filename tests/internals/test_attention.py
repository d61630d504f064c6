from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featurelens.internals.attention import (
    attention_statistics,
    attention_weights,
    record_attention,
)
from featurelens.models import SmallTransformer


@pytest.fixture
def seq() -> torch.Tensor:
    return torch.randn(6, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def _hand_weights(mha: nn.MultiheadAttention, h: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_head)) per head from in_proj, for batch-first self-attention."""
    n, t, d = h.shape
    heads = mha.num_heads
    q, k, _ = F.linear(h, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
    q = q.reshape(n, t, heads, d // heads).transpose(1, 2)
    k = k.reshape(n, t, heads, d // heads).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)


def test_shapes_names_and_probabilities(transformer: SmallTransformer, seq: torch.Tensor) -> None:
    w = attention_weights(transformer, seq)
    assert list(w) == ["transformer_layers.0.self_attn", "transformer_layers.1.self_attn"]
    for p in w.values():
        assert p.shape == (6, 2, 5, 5)
        assert torch.allclose(p.sum(-1), torch.ones(6, 2, 5, dtype=p.dtype))
    # heads differ: not averaged over heads
    assert not torch.allclose(w["transformer_layers.0.self_attn"][:, 0], w["transformer_layers.0.self_attn"][:, 1])


def test_matches_hand_recomputation(transformer: SmallTransformer, seq: torch.Tensor) -> None:
    w = attention_weights(transformer, seq)
    with torch.no_grad():
        h0 = transformer.input_proj(seq)
        h1 = transformer.transformer_layers[0](h0)
    for i, h in enumerate((h0, h1)):
        expected = _hand_weights(transformer.transformer_layers[i].self_attn, h)
        torch.testing.assert_close(w[f"transformer_layers.{i}.self_attn"], expected, atol=1e-5, rtol=0)


def test_float32_fast_path_model_matches_hand(seq: torch.Tensor) -> None:
    torch.manual_seed(4)
    model = SmallTransformer(3, n_heads=4, n_layers=1, hidden_dim=16, dropout=0.0).eval()
    x = seq.float()
    w = attention_weights(model, x)["transformer_layers.0.self_attn"]
    with torch.no_grad():
        expected = _hand_weights(model.transformer_layers[0].self_attn, model.input_proj(x))
    torch.testing.assert_close(w, expected, atol=1e-5, rtol=0)


def test_glob_exact_and_batching(transformer: SmallTransformer, seq: torch.Tensor) -> None:
    full = attention_weights(transformer, seq)
    one = attention_weights(transformer, seq, modules="transformer_layers.1.self_attn", batch_size=4)
    assert list(one) == ["transformer_layers.1.self_attn"]
    torch.testing.assert_close(one["transformer_layers.1.self_attn"], full["transformer_layers.1.self_attn"])
    glob = attention_weights(transformer, seq, modules="transformer_layers.*.self_attn")
    assert list(glob) == list(full)
    with pytest.raises(TypeError, match="MultiheadAttention"):
        attention_weights(transformer, seq, modules="transformer_layers.0.linear1")
    with pytest.raises(ValueError, match="unknown module path"):
        attention_weights(transformer, seq, modules="nope")


@pytest.mark.parametrize("mode", ["train", "no_fastpath"])
def test_outputs_bit_identical_under_recording(transformer: SmallTransformer, seq: torch.Tensor, mode: str) -> None:
    # the recording hooks force the (unfused) slow path; compare with the same path unhooked
    old = torch.backends.mha.get_fastpath_enabled()
    try:
        if mode == "train":
            transformer.train()  # dropout=0.0, so deterministic; training disables the fused path
        else:
            torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad():
            plain = transformer(seq)
            with record_attention(transformer) as rec:
                hooked = transformer(seq)
            again = transformer(seq)
    finally:
        torch.backends.mha.set_fastpath_enabled(old)
    assert torch.equal(plain, hooked)
    assert torch.equal(plain, again)
    assert [r[0].shape for r in rec.values()] == [(6, 2, 5, 5)] * 2


def test_fused_path_outputs_close(seq: torch.Tensor) -> None:
    torch.manual_seed(4)
    model = SmallTransformer(3, n_heads=4, n_layers=2, hidden_dim=16, dropout=0.0).eval()
    x = seq.float()
    with torch.no_grad():
        plain = model(x)
        with record_attention(model):
            hooked = model(x)
    torch.testing.assert_close(plain, hooked, atol=1e-5, rtol=1e-5)


def test_model_left_as_found(transformer: SmallTransformer, seq: torch.Tensor) -> None:
    transformer.train()
    params = [p.detach().clone() for p in transformer.parameters()]
    attention_weights(transformer, seq)
    assert all(m.training for m in transformer.modules())
    assert all(torch.equal(a, b) for a, b in zip(params, transformer.parameters(), strict=True))
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in transformer.modules())
    with pytest.raises(ValueError, match="SmallTransformer expects"):
        attention_weights(transformer, torch.randn(2, 5, 7, dtype=torch.float64))
    assert all(not m._forward_pre_hooks for m in transformer.modules())
    assert all(m.training for m in transformer.modules())


def test_masks_and_seq_first_module() -> None:
    torch.manual_seed(5)
    mha = nn.MultiheadAttention(4, 2).double()  # seq-first (T, n, d)

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = mha

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = x.transpose(0, 1)
            pad = torch.zeros(x.shape[0], x.shape[1], dtype=torch.bool)
            pad[:, -1] = True
            out, _ = self.attn(t, t, t, key_padding_mask=pad, need_weights=False, is_causal=False)
            return out.transpose(0, 1)

    x = torch.randn(3, 4, 4, dtype=torch.float64)
    w = attention_weights(Wrap(), x)["attn"]
    assert w.shape == (3, 2, 4, 4)
    assert torch.all(w[..., -1] == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 4, dtype=torch.float64))


def test_causal_hint_without_mask() -> None:
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True).double().eval()

    class Causal(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=x.dtype)
            return self.layer(x, src_mask=mask, is_causal=True)

    w = attention_weights(Causal(), torch.randn(2, 4, 4, dtype=torch.float64))["layer.self_attn"]
    assert torch.all(w.triu(1) == 0)
    torch.testing.assert_close(w[..., 0, 0], torch.ones(2, 2, dtype=torch.float64))


def test_statistics_uniform() -> None:
    t = 4
    p = torch.full((3, 2, 5, t), 1.0 / t, dtype=torch.float64)
    df = attention_statistics({"m": p})
    assert list(df.index) == [("m", 0), ("m", 1)]
    np.testing.assert_allclose(df["entropy"], math.log(t))
    np.testing.assert_allclose(df["max_entropy"], math.log(t))
    np.testing.assert_allclose(df["sparsity"], 0.0)
    assert df["head_diversity"].isna().all()


def test_statistics_one_hot_and_identical_heads() -> None:
    t = 5
    rng = np.random.default_rng(0)
    idx = rng.integers(0, t, size=(4, 1, 3))
    head = np.eye(t)[idx]  # (4, 1, 3, t) one-hot
    p = np.concatenate([head, head], axis=1)
    df = attention_statistics({"a": p})
    np.testing.assert_allclose(df["entropy"], 0.0, atol=1e-12)
    np.testing.assert_allclose(df["sparsity"], (t - 1) / t)
    np.testing.assert_allclose(df["head_diversity"], 1.0)


def test_statistics_anti_and_uncorrelated_heads() -> None:
    # head 1 = 1 - head 0 over T=2 keys: correlation -1, |.| = 1
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])[None, None]
    p = np.concatenate([a, a[..., ::-1]], axis=1)
    assert attention_statistics({"x": p})["head_diversity"].iloc[0] == pytest.approx(1.0)
    # one constant head among three: left out of the pairs
    u = np.full_like(a, 0.5)
    df = attention_statistics({"x": np.concatenate([a, u, a], axis=1)})
    assert df["head_diversity"].iloc[0] == pytest.approx(1.0)
    entropy0 = -(a * np.log(a)).sum(-1).mean()
    assert df["entropy"].iloc[0] == pytest.approx(entropy0)
    assert df["sparsity"].iloc[1] == 0.0


def test_statistics_not_resoftmaxed(transformer: SmallTransformer, seq: torch.Tensor) -> None:
    w = attention_weights(transformer, seq)
    df = attention_statistics(w)
    p = w["transformer_layers.0.self_attn"].numpy()
    expected = -(p * np.log(p)).sum(-1).mean(axis=(0, 2))
    np.testing.assert_allclose(df.loc["transformer_layers.0.self_attn", "entropy"], expected)
    assert (df["entropy"] <= df["max_entropy"] + 1e-12).all()


def test_statistics_validation() -> None:
    with pytest.raises(ValueError, match="averaged over heads"):
        attention_statistics({"m": np.full((2, 3, 3), 1 / 3)})
    with pytest.raises(ValueError, match="not probabilities"):
        attention_statistics({"m": np.ones((1, 1, 2, 2))})  # logits/scores, not softmax output
    with pytest.raises(ValueError, match="NaN"):
        attention_statistics({"m": np.full((1, 1, 2, 2), np.nan)})
    with pytest.raises(ValueError, match="threshold"):
        attention_statistics({"m": np.full((1, 1, 2, 2), 0.5)}, threshold=2.0)
    with pytest.raises(ValueError, match="non-empty"):
        attention_statistics({})


def test_sequence_first_attention_weights_are_batch_first() -> None:
    """A batch_first=False layer sees (T, B, d); its weights are still (B, heads, T, T), row b = sample b."""
    torch.manual_seed(2)
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0).double().eval()  # batch_first=False

    class SeqFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x.transpose(0, 1)).transpose(0, 1)

    x = torch.randn(6, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    w = attention_weights(SeqFirst(), x, batch_size=4)["layer.self_attn"]  # calls of 4 and 2 rows
    assert w.shape == (6, 2, 5, 5)
    torch.testing.assert_close(w, _hand_weights(layer.self_attn, x), atol=1e-12, rtol=0)
