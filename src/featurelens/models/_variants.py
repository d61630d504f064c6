"""Transformer architecture variants: parallel, hierarchical and gated.

The three variants of the superposition and spurious-correlation notebook.

All three share :class:`~featurelens.models.SmallTransformer`'s interface: the
input is ``(B, d)`` (one token) or ``(B, T, d)``, it is projected to
``hidden_dim`` by ``input_proj``, passes the variant's encoder layers
(``nn.TransformerEncoderLayer``, ``batch_first=True``, feed-forward width
``4 * hidden_dim``), is mean-pooled over tokens and mapped to logits by
``output_proj`` — ``(B,)`` for one output, else ``(B, out_features)``.

Differences from the notebook, on purpose: its default width (768) and
8 heads are replaced by small defaults that train on two CPU cores; the
outputs are logits (the notebook applied ``sigmoid``; see
:class:`~featurelens.models.SmallTransformer`); the hierarchical model's last,
shorter window is processed too (the notebook silently dropped it, so tokens at
the end of a sequence whose length is not a multiple of the window never
reached the output).
"""

from __future__ import annotations

import torch
from torch import nn

from featurelens._validation import check_float, check_int
from featurelens.models._reference import _squeeze_single


def _encoder(hidden_dim: int, n_heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        d_model=hidden_dim, nhead=n_heads, dim_feedforward=4 * hidden_dim, dropout=dropout, batch_first=True
    )


class _Variant(nn.Module):
    """Shared checks, input projection and readout."""

    def __init__(self, input_dim: int, *, n_heads: int, hidden_dim: int, dropout: float, out_features: int,
                 readout_dim: int | None = None) -> None:
        super().__init__()
        self.input_dim = check_int(input_dim, name="input_dim", minimum=1)
        n_heads = check_int(n_heads, name="n_heads", minimum=1)
        self.hidden_dim = check_int(hidden_dim, name="hidden_dim", minimum=1)
        self.out_features = check_int(out_features, name="out_features", minimum=1)
        self.dropout = check_float(dropout, name="dropout", low=0.0, high=1.0, inclusive=(True, False))
        if hidden_dim % n_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.input_proj = nn.Linear(input_dim, hidden_dim)
        self.output_proj = nn.Linear(readout_dim or hidden_dim, out_features)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, {self.input_dim}) or "
                f"(B, T, {self.input_dim}), got {list(x.shape)}"
            )
        return self.input_proj(x.unsqueeze(1) if x.dim() == 2 else x)

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        return _squeeze_single(self.output_proj(h.mean(dim=1)), self.out_features)


class ParallelTransformer(_Variant):
    """``n_branches`` encoder layers applied side by side to the same tokens.

    ``h = input_proj(x)``; ``z = concat_b branch_b(h)`` along features
    (``n_branches * hidden_dim``); logits ``output_proj(mean_t z)``.
    Branches are ``branches.0`` … ``branches.{n_branches-1}``.
    """

    def __init__(self, input_dim: int, *, n_branches: int = 4, n_heads: int = 4, hidden_dim: int = 32,
                 dropout: float = 0.1, out_features: int = 1) -> None:
        n_branches = check_int(n_branches, name="n_branches", minimum=1)
        super().__init__(input_dim, n_heads=n_heads, hidden_dim=hidden_dim, dropout=dropout,
                         out_features=out_features, readout_dim=hidden_dim * n_branches)
        self.branches = nn.ModuleList(_encoder(hidden_dim, n_heads, dropout) for _ in range(n_branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, d)`` or ``(B, T, d)`` to logits."""
        h = self._tokens(x)
        return self._readout(torch.cat([branch(h) for branch in self.branches], dim=-1))


class HierarchicalTransformer(_Variant):
    """A local encoder within windows of ``window`` tokens, then a global encoder.

    Tokens ``[0, w), [w, 2w), …`` are encoded separately by ``local_layer``
    (attention only within a window; the last window may be shorter), the
    windows are concatenated back in order and ``global_layer`` attends over
    all tokens; logits from the mean over tokens.
    """

    def __init__(self, input_dim: int, *, window: int = 2, n_heads: int = 4, hidden_dim: int = 32,
                 dropout: float = 0.1, out_features: int = 1) -> None:
        super().__init__(input_dim, n_heads=n_heads, hidden_dim=hidden_dim, dropout=dropout,
                         out_features=out_features)
        self.window = check_int(window, name="window", minimum=1)
        self.local_layer = _encoder(hidden_dim, n_heads, dropout)
        self.global_layer = _encoder(hidden_dim, n_heads, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, d)`` or ``(B, T, d)`` to logits."""
        h = self._tokens(x)
        b, t, c = h.shape
        w = min(self.window, t)
        full = (t // w) * w
        parts = [self.local_layer(h[:, :full].reshape(b * (full // w), w, c)).reshape(b, full, c)]
        if full < t:
            parts.append(self.local_layer(h[:, full:]))
        return self._readout(self.global_layer(torch.cat(parts, dim=1)))


class GatedTransformer(_Variant):
    """Content encoder multiplied by a learned sigmoid gate.

    ``h = input_proj(x)``; ``z = content_layer(h) * sigmoid(gate_proj(gate_layer(h)))``
    (elementwise); logits ``output_proj(mean_t z)``.
    """

    def __init__(self, input_dim: int, *, n_heads: int = 4, hidden_dim: int = 32, dropout: float = 0.1,
                 out_features: int = 1) -> None:
        super().__init__(input_dim, n_heads=n_heads, hidden_dim=hidden_dim, dropout=dropout,
                         out_features=out_features)
        self.content_layer = _encoder(hidden_dim, n_heads, dropout)
        self.gate_layer = _encoder(hidden_dim, n_heads, dropout)
        self.gate_proj = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, d)`` or ``(B, T, d)`` to logits."""
        h = self._tokens(x)
        return self._readout(self.content_layer(h) * torch.sigmoid(self.gate_proj(self.gate_layer(h))))
