"""Training losses: label checks against the loss and the per-row / summed batch losses.

Shared by :func:`featurelens.models.train`, the attacks of
:mod:`featurelens.models.adversarial` and the mitigation strategies of
:mod:`featurelens.reliance`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

#: the task losses of :func:`train`: binary cross-entropy on logits, mean squared error, cross-entropy on logits
LOSSES = ("bce", "mse", "ce")
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _labels(y: Any, n: int, loss: str, *, name: str) -> torch.Tensor:
    if isinstance(y, (pd.Series, pd.DataFrame)):
        y = y.to_numpy()
    if not isinstance(y, torch.Tensor):
        arr = np.asarray(y)
        if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.number)):
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        y = torch.from_numpy(np.array(arr, copy=True))
    t = y.detach().cpu()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise TypeError(f"{name} must hold numbers, got dtype {t.dtype}")
    if t.dim() == 2 and t.shape[1] == 1 and loss != "mse":
        t = t[:, 0]
    if t.dim() == 0 or t.shape[0] != n:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but the inputs have {n} rows")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds NaN or inf")
    if loss == "mse":
        return t if t.dim() <= 2 else t.reshape(n, -1)
    if t.dim() != 1:
        raise ValueError(f"loss={loss!r} needs labels of shape (n,), got {name} of shape {tuple(t.shape)}")
    if loss == "bce":
        bad = torch.unique(t[(t != 0) & (t != 1)])
        if bad.numel():
            raise ValueError(
                f"loss='bce' needs 0/1 labels; {name} holds {_values(bad)} "
                "(use loss='ce' for class labels, loss='mse' for regression)"
            )
        return t
    bad = torch.unique(t[t != t.round()]) if t.is_floating_point() else t[:0]
    if bad.numel():
        raise ValueError(f"loss='ce' needs integer class labels; {name} holds {_values(bad)}")
    return t.long()


def _values(t: torch.Tensor) -> str:
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in t[:5].tolist()]
    return ", ".join(vals) + (" …" if t.numel() > 5 else "")


def _task_loss(loss: str, out: torch.Tensor, yb: torch.Tensor, reduction: str) -> torch.Tensor:
    """Loss of one batch per row (``reduction="none"``) or summed over rows (``"sum"``).

    Checks the output against the loss first.
    """
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"train needs a model that returns a tensor, got {type(out).__name__}")
    b = yb.shape[0]
    if loss == "bce":
        if tuple(out.shape) not in ((b,), (b, 1)):
            raise ValueError(f"loss='bce' needs a model output of shape (B,) or (B, 1), got {tuple(out.shape)}")
        return nn.functional.binary_cross_entropy_with_logits(out.reshape(b), yb, reduction=reduction)
    if loss == "ce":
        if out.dim() != 2:
            raise ValueError(f"loss='ce' needs logits of shape (B, K), got {tuple(out.shape)}")
        return nn.functional.cross_entropy(out, yb, reduction=reduction)
    if out.numel() != yb.numel():
        raise ValueError(
            f"loss='mse': the model output {tuple(out.shape)} does not match targets {tuple(yb.shape)}"
        )
    if reduction == "none":
        return ((out.reshape(yb.shape) - yb) ** 2).reshape(b, -1).mean(dim=1)
    per_row = max(1, yb.numel() // max(b, 1))  # mean over the k outputs of a row
    return nn.functional.mse_loss(out.reshape(yb.shape), yb, reduction="sum") / per_row


def row_losses(loss: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-row loss ``(B,)`` of one batch; its sum is the batch loss :func:`train` records.

    Same definitions and shape checks as :func:`train`'s ``loss``: ``"bce"``
    on logits, ``"ce"`` on logits ``(B, K)``, ``"mse"`` averaged over the
    ``k`` outputs of a row.
    """
    return _task_loss(loss, out, y, "none")


def _batch_loss(loss: str, out: torch.Tensor, yb: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of one batch summed over rows, weighted by ``w`` when given."""
    return _task_loss(loss, out, yb, "sum") if w is None else _task_loss(loss, out, yb, "none") @ w
