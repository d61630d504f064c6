"""Short content hashes of models and data, stored with results."""

from __future__ import annotations

import hashlib
import weakref

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


_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def _state_key(state: dict) -> tuple:
    """Identity of every state tensor's storage and version: changes whenever a tensor is replaced or edited."""
    return tuple(
        (name, t.data_ptr(), t._version, t.dtype, tuple(t.shape), t.device)
        if isinstance(t, torch.Tensor) else (name, t)
        for name, t in state.items()
    )


def fingerprint_model(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of the class name and every state-dict tensor.

    Two models with the same architecture class and bit-identical parameters
    and buffers have the same fingerprint. The hash is cached per model and
    recomputed when any state tensor is replaced or modified in place
    (tracked by storage pointer and autograd version counter), so repeated
    analyses of one model do not rehash its weights.
    """
    state = model.state_dict()
    key = _state_key(state)
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in state.items():
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            _update_tensor(h, t)
    digest = h.hexdigest()[:16]
    try:
        _CACHE[model] = (key, digest)
    except TypeError:  # a module that cannot be weakly referenced: no cache
        pass
    return digest


def fingerprint_data(x: torch.Tensor | np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    _update_tensor(h, torch.as_tensor(x))
    return h.hexdigest()[:16]
