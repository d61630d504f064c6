"""Resolve module specifications (paths, globs, types, instances) to named submodules."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from typing import Union

import torch
from torch import nn

ModuleSpec = Union[str, type, nn.Module, Sequence["ModuleSpec"]]  # noqa: UP007 - recursive alias


def _close(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    if not close:
        close = names[:10]
    return ", ".join(map(repr, close))


def _resolve_one(model: nn.Module, spec: object, named: dict[str, nn.Module]) -> dict[str, nn.Module]:
    names = [n for n in named if n]
    if isinstance(spec, str):
        if any(c in spec for c in "*?["):
            hits = {n: m for n, m in named.items() if n and fnmatch.fnmatchcase(n, spec)}
            if not hits:
                raise ValueError(
                    f"module glob {spec!r} matches no submodule of {type(model).__name__}; "
                    f"close names: {_close(spec, names)}"
                )
            return hits
        if spec not in named or spec == "":
            raise ValueError(
                f"unknown module path {spec!r} in {type(model).__name__}; close names: {_close(spec, names)}"
            )
        return {spec: named[spec]}
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        hits = {n: m for n, m in named.items() if isinstance(m, spec)}
        if not hits:
            raise ValueError(f"the model has no submodule of type {spec.__name__}")
        return hits
    if isinstance(spec, nn.Module):
        for n, m in named.items():
            if m is spec:
                return {n if n else "<model>": m}
        raise ValueError(f"the {type(spec).__name__} instance passed is not a submodule of the model")
    raise TypeError(
        "module spec must be a dotted path, a glob, an nn.Module type, an nn.Module "
        f"instance or a list of these; got {type(spec).__name__}"
    )


def check_hookable(model: object) -> None:
    """``TypeError`` unless ``model`` is an ``nn.Module``; ``ValueError`` for TorchScript modules,
    whose compiled code calls no forward hooks."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(
            "model is a TorchScript module: it runs compiled code that calls no forward hooks, so its "
            "activations cannot be read or patched; load the eager model (state_dict with a factory) instead"
        )


def resolve_modules(model: nn.Module, spec: ModuleSpec) -> dict[str, nn.Module]:
    """Resolve ``spec`` to an ordered ``{dotted_name: module}`` mapping.

    Parameters
    ----------
    model : nn.Module
        The model whose ``named_modules()`` are searched.
    spec : str, type, nn.Module or list of these
        * an exact dotted path (``"transformer_layers.0.linear1"``);
        * a glob matched with :func:`fnmatch.fnmatchcase` against every name
          of ``named_modules()`` (``"transformer_layers.*.linear2"``);
        * an ``nn.Module`` subclass: every submodule of that type;
        * an ``nn.Module`` instance that is a submodule of ``model`` (the
          model itself is named ``"<model>"``);
        * a list or tuple of the above (union, first occurrence order).

    Returns
    -------
    dict[str, nn.Module]
        Names in ``named_modules()`` order within each item of ``spec``.

    Raises
    ------
    ValueError
        An unknown path, a glob or type matching nothing (the message lists
        close names, found with :mod:`difflib`), an empty list, or a
        TorchScript model (its compiled code calls no hooks).
    TypeError
        ``model`` is not a module, or ``spec`` is of an unsupported type.
    """
    check_hookable(model)
    named = dict(model.named_modules())
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise ValueError("module spec is an empty list; name at least one module")
    out: dict[str, nn.Module] = {}
    for item in items:
        if isinstance(item, (list, tuple)):
            out.update({k: v for k, v in resolve_modules(model, item).items() if k not in out})
        else:
            out.update({k: v for k, v in _resolve_one(model, item, named).items() if k not in out})
    return out


def resolve_single(model: nn.Module, spec: ModuleSpec, *, name: str = "module") -> tuple[str, nn.Module]:
    """Resolve ``spec`` to exactly one module; ``ValueError`` if it matches several."""
    hits = resolve_modules(model, spec)
    if len(hits) != 1:
        raise ValueError(f"{name} must resolve to exactly one module, got {len(hits)}: {', '.join(hits)}")
    return next(iter(hits.items()))


def as_input_tensor(model: nn.Module, inputs: object) -> torch.Tensor:
    """``inputs`` as a tensor on the model's device and floating dtype."""
    from featurelens.models._state import model_device_dtype

    device, dtype = model_device_dtype(model)
    if hasattr(inputs, "to_numpy") and hasattr(inputs, "columns"):  # a pandas DataFrame
        inputs = inputs.to_numpy(dtype="float64")
    if isinstance(inputs, torch.Tensor):
        x = inputs.detach()
    else:
        try:
            x = torch.as_tensor(inputs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"X must be a tensor or array-like, got {type(inputs).__name__}") from exc
    if x.dim() == 0:
        raise ValueError(f"X must have a batch axis, got a scalar of shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("X is empty (0 rows)")
    return x.to(device=device, dtype=dtype)
