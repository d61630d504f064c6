"""Short content hashes of models and data, stored with results."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn


def _update_tensor(h: hashlib._Hash, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(str(t.dtype).encode())
    h.update(str(tuple(t.shape)).encode())
    if t.dtype == torch.bfloat16:
        t = t.float()
    h.update(t.numpy().tobytes())


def fingerprint_model(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the class name and every state-dict tensor.

    Two models with the same architecture class and bit-identical parameters
    and buffers have the same fingerprint.
    """
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            _update_tensor(h, t)
    return h.hexdigest()[:16]


def fingerprint_data(x: torch.Tensor | np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    _update_tensor(h, torch.as_tensor(x))
    return h.hexdigest()[:16]
