"""Leave a model as it was found: mode, requires_grad, device, dtype, hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter or buffer.

    Models without floating tensors are taken to live on the CPU in float32.
    """
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def set_eval(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode, also where ``eval()`` is not supported.

    Programs loaded with ``torch.export`` raise ``NotImplementedError`` from
    ``eval()``: their graph has the mode it was exported in baked in, so only
    the ``training`` flags are cleared.
    """
    try:
        model.eval()
    except NotImplementedError:
        for m in model.modules():
            m.training = False
    return model


def _hook_counts(model: nn.Module) -> list[tuple[int, int, int, int]]:
    counts = []
    for m in model.modules():
        counts.append(
            (
                len(getattr(m, "_forward_hooks", {})),
                len(getattr(m, "_forward_pre_hooks", {})),
                len(getattr(m, "_backward_hooks", {})),
                len(getattr(m, "_backward_pre_hooks", {})),
            )
        )
    return counts


@contextlib.contextmanager
def preserve_model(model: nn.Module, *, eval_mode: bool = True, freeze: bool = False) -> Iterator[nn.Module]:
    """Context manager that restores the model's mode and ``requires_grad`` flags.

    Parameters
    ----------
    model : nn.Module
    eval_mode : bool
        Put every submodule in eval mode inside the block (dropout off,
        batch-norm running statistics used), so attributions are deterministic.
    freeze : bool
        Set ``requires_grad=False`` on every parameter inside the block, so
        gradient methods do not accumulate parameter gradients.

    On exit, also on an exception, the ``training`` flag of every submodule
    and the ``requires_grad`` flag of every parameter are restored. Raises
    ``RuntimeError`` if the block left hooks behind (a featurelens bug).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    hooks = _hook_counts(model)
    try:
        if eval_mode and any(training for _, training in modes):
            set_eval(model)
        if freeze:
            for p, rg in flags:
                if rg:
                    p.requires_grad_(False)
        yield model
    finally:  # restore only what differs: Module.__setattr__ is slow and this runs on every call
        for m, training in modes:
            if m.training != training:
                m.training = training
        for p, rg in flags:
            if p.requires_grad != rg:
                p.requires_grad_(rg)
    if _hook_counts(model) != hooks:
        raise RuntimeError("an analysis left hooks on the model; this is a featurelens bug")
