"""Reference architectures: a plain MLP and a small transformer classifier.

The transformer is the one of the superposition and spurious-correlation notebook.

Both return raw scores (regression values or logits), never probabilities:
train them with ``BCEWithLogitsLoss``/``CrossEntropyLoss`` (see
:func:`featurelens.models.train`) and explain probabilities with
``link="sigmoid"`` or ``link="softmax"`` of :class:`~featurelens.models.OutputSelector`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from featurelens._validation import check_float, check_int, check_option

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _squeeze_single(out: torch.Tensor, out_features: int) -> torch.Tensor:
    return out.squeeze(-1) if out_features == 1 else out


class MLP(nn.Sequential):
    """Fully connected network with named layers.

    The Linear layers are named ``layer1``, ``layer2``, …, ``layer{L}`` in
    forward order (``layer1`` is the input layer, ``layer{L}`` the output
    layer); each hidden layer is followed by ``act{i}`` and, when
    ``dropout > 0``, ``drop{i}``. Modules can therefore be addressed by exact
    path (``model.get_submodule("layer1")``) and by index (``model[0]``).

    Parameters
    ----------
    in_features : int
        Number of input features ``d``.
    hidden : sequence of int
        Widths of the hidden layers; ``()`` gives a linear model.
    out_features : int
        Number of outputs ``K``.
    activation : {"relu", "tanh", "gelu"}
        Non-linearity after every hidden layer.
    dropout : float
        Dropout probability after every activation, in ``[0, 1)``.

    Notes
    -----
    Input: ``(B, in_features)``. Output: ``(B,)`` when ``out_features == 1``,
    else ``(B, out_features)``. Other input shapes raise ``ValueError``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (64, 64),
        out_features: int = 1,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        in_features = check_int(in_features, name="in_features", minimum=1)
        out_features = check_int(out_features, name="out_features", minimum=1)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise TypeError(f"hidden must be a sequence of ints, got {type(hidden).__name__}")
        widths = [check_int(h, name="hidden[i]", minimum=1) for h in hidden]
        activation = check_option(activation, name="activation", options=ACTIVATIONS)
        dropout = check_float(dropout, name="dropout", low=0.0, high=1.0, inclusive=(True, False))
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        sizes = [in_features, *widths, out_features]
        for i, (a, b) in enumerate(pairwise(sizes), start=1):
            layers[f"layer{i}"] = nn.Linear(a, b)
            if i < len(sizes) - 1:
                layers[f"act{i}"] = ACTIVATIONS[activation]()
                if dropout > 0:
                    layers[f"drop{i}"] = nn.Dropout(dropout)
        super().__init__(layers)
        self.in_features = in_features
        self.out_features = out_features

    __jit_unused_properties__ = ["input_layer"]  # noqa: RUF012 - TorchScript reads this class attribute

    @property
    def input_layer(self) -> nn.Linear:
        """The Linear layer that reads the inputs (``layer1``)."""
        return self.layer1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_features)`` to ``(B,)`` or ``(B, out_features)``."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP expects input of shape (B, {self.in_features}), got {list(x.shape)}"
            )
        for layer in self:
            x = layer(x)
        return _squeeze_single(x, self.out_features)


class SmallTransformer(nn.Module):
    """Transformer-encoder classifier from the superposition and spurious-correlation notebook, returning logits.

    ``input_proj`` (Linear ``input_dim → hidden_dim``) embeds every token,
    ``transformer_layers`` (a ``ModuleList`` of ``n_layers``
    ``nn.TransformerEncoderLayer(d_model=hidden_dim, nhead=n_heads,
    dim_feedforward=4 * hidden_dim, dropout=dropout, batch_first=True)``)
    mixes them, the tokens are mean-pooled and ``output_proj`` (Linear
    ``hidden_dim → out_features``) gives the scores. There is no positional
    encoding, so the model is invariant to the order of the ``T`` tokens.

    Parameters
    ----------
    input_dim : int
        Features per token ``d``.
    n_heads : int
        Attention heads; must divide ``hidden_dim``.
    n_layers : int
        Number of encoder layers.
    hidden_dim : int
        Model width.
    dropout : float
        Dropout inside the encoder layers, in ``[0, 1)``.
    out_features : int
        Number of outputs ``K``.

    Notes
    -----
    Input: a tabular row batch ``(B, d)`` is one token per row (as in the
    notebook); a sequence batch ``(B, T, d)`` is ``T`` tokens. Output: logits of
    shape ``(B,)`` when ``out_features == 1``, else ``(B, out_features)``.

    The notebook applied ``sigmoid`` inside ``forward`` and trained with
    ``BCELoss``; computing the loss from logits (``BCEWithLogitsLoss``) is
    numerically stable for confident predictions, and attributions of
    logits are additive on the log-odds scale. To explain probabilities,
    use ``link="sigmoid"`` in featurelens.
    """

    def __init__(
        self,
        input_dim: int,
        *,
        n_heads: int = 4,
        n_layers: int = 2,
        hidden_dim: int = 64,
        dropout: float = 0.1,
        out_features: int = 1,
    ) -> None:
        super().__init__()
        input_dim = check_int(input_dim, name="input_dim", minimum=1)
        n_heads = check_int(n_heads, name="n_heads", minimum=1)
        n_layers = check_int(n_layers, name="n_layers", minimum=1)
        hidden_dim = check_int(hidden_dim, name="hidden_dim", minimum=1)
        out_features = check_int(out_features, name="out_features", minimum=1)
        dropout = check_float(dropout, name="dropout", low=0.0, high=1.0, inclusive=(True, False))
        if hidden_dim % n_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by n_heads={n_heads}")
        self.input_dim = input_dim
        self.out_features = out_features
        self.input_proj = nn.Linear(input_dim, hidden_dim)
        self.transformer_layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=hidden_dim,
                nhead=n_heads,
                dim_feedforward=4 * hidden_dim,
                dropout=dropout,
                batch_first=True,
            )
            for _ in range(n_layers)
        )
        self.output_proj = nn.Linear(hidden_dim, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, d)`` or ``(B, T, d)`` to logits ``(B,)`` or ``(B, out_features)``."""
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"SmallTransformer expects input of shape (B, {self.input_dim}) or "
                f"(B, T, {self.input_dim}), got {list(x.shape)}"
            )
        h = self.input_proj(x.unsqueeze(1) if x.dim() == 2 else x)
        for layer in self.transformer_layers:
            h = layer(h)
        return _squeeze_single(self.output_proj(h.mean(dim=1)), self.out_features)
