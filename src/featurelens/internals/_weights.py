"""Temporary, exactly restored edits of parameters and buffers."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from featurelens._validation import check_int
from featurelens.internals._modules import resolve_single
from featurelens.models import find_input_layer

Edit = torch.Tensor | float | Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def intervene_weights(model: nn.Module, edits: Mapping[str, Edit]) -> Iterator[nn.Module]:
    """Overwrite parameters or buffers inside the block; restore them bit-identically.

    Parameters
    ----------
    model : nn.Module
    edits : mapping ``name -> tensor | number | callable``
        ``name`` is a key of ``named_parameters()`` or ``named_buffers()``.
        A tensor (broadcast to the parameter's shape) or number is the new
        value; a callable ``f(param) -> tensor`` receives a detached clone of
        the current value and returns the new one, of the same shape.

    Notes
    -----
    Values are written in place with ``copy_`` under ``no_grad`` (the tensor
    objects, their ``requires_grad`` and any optimizer references are kept),
    and the saved clones are copied back on exit, also when the block
    raises, so every parameter is ``torch.equal`` to its value before.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(edits, Mapping) or not edits:
        raise ValueError("edits must be a non-empty mapping {parameter name: new value}")
    tensors = dict(model.named_parameters())
    tensors.update(dict(model.named_buffers()))
    new_values: dict[str, torch.Tensor] = {}
    for name, edit in edits.items():
        if name not in tensors:
            close = difflib.get_close_matches(str(name), list(tensors), n=5, cutoff=0.4)
            raise ValueError(f"unknown parameter or buffer {name!r}; close names: {', '.join(map(repr, close))}")
        p = tensors[name]
        value = edit(p.detach().clone()) if callable(edit) and not isinstance(edit, torch.Tensor) else edit
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = torch.full_like(p, float(value))
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"edit for {name!r} must give a tensor or number, got {type(value).__name__}")
        try:
            value = value.detach().to(device=p.device, dtype=p.dtype).expand(p.shape)
        except RuntimeError as exc:
            raise ValueError(f"edit for {name!r} has shape {tuple(value.shape)}, "
                             f"parameter has shape {tuple(p.shape)}") from exc
        new_values[name] = value
    saved = {name: tensors[name].detach().clone() for name in new_values}
    try:
        with torch.no_grad():
            for name, value in new_values.items():
                tensors[name].copy_(value)
        yield model
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                tensors[name].copy_(value)


@contextlib.contextmanager
def zero_input_group(
    model: nn.Module, X: Any, columns: Sequence[int], *, layer: Any = None
) -> Iterator[nn.Module]:
    """Zero the weight columns of the input layer that read ``columns``, inside the block.

    The input layer is ``layer`` (a spec resolving to one ``nn.Linear``) or
    the one :func:`featurelens.attribution.find_input_layer` finds with ``X``. Inside the block
    ``W[:, columns] = 0`` (``W`` of shape ``(out_features, in_features)``), so
    the group's features cannot reach the model; everything is restored
    bit-identically on exit (:func:`intervene_weights`).
    """
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence) or not columns:
        raise ValueError("columns must be a non-empty sequence of column indices")
    cols = [check_int(c, name="columns[i]", minimum=0) for c in columns]
    if layer is None:
        name, lin = find_input_layer(model, X)
    else:
        name, lin = resolve_single(model, layer, name="layer")
    if not isinstance(lin, nn.Linear):
        raise ValueError(f"layer {name!r} is a {type(lin).__name__}, not an nn.Linear")
    if max(cols) >= lin.in_features:
        raise ValueError(f"columns index {max(cols)} is out of range for {name!r} "
                         f"with {lin.in_features} input features")
    prefix = "" if name == "<model>" else name + "."

    def zero_cols(w: torch.Tensor) -> torch.Tensor:
        w[:, cols] = 0
        return w

    with intervene_weights(model, {prefix + "weight": zero_cols}):
        yield model


