"""Resolve module specifications (paths, globs, types, instances) to named submodules.

Models loaded from ``torch.export`` programs are unflattened
(:func:`torch.export.unflatten`): their submodules are ``InterpreterModule``
objects at the original dotted paths, which record the class they had before
export. :func:`featurelens.models.original_class` reads that record, so type specs
(``nn.Linear``), default layer choices and reports treat them as the
original layers.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from typing import Union

import torch
from torch import fx, nn

from featurelens.models import export_boundary_problems, model_device_dtype, original_class

ModuleSpec = Union[str, type, nn.Module, Sequence["ModuleSpec"]]  # noqa: UP007 - recursive alias


def module_type_name(module: nn.Module) -> str:
    """Class name of :func:`featurelens.models.original_class` (``"Linear"``, ``"Block"``)."""
    kind = original_class(module)
    return kind.__name__ if isinstance(kind, type) else kind.rsplit(".", 1)[-1]


def is_module_type(module: nn.Module, types: type | tuple[type, ...]) -> bool:
    """Apply ``isinstance`` to :func:`featurelens.models.original_class`.

    Also true for an exported submodule that was one of ``types`` before export.
    """
    kind = original_class(module)
    return isinstance(kind, type) and issubclass(kind, types)


def _close(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    if not close:
        close = names[:10]
    return ", ".join(map(repr, close))


def _refuse(name: str, problems: dict[str, str], *, also: int = 0) -> ValueError:
    more = f" (and {also} more matching module(s) alike)" if also else ""
    return ValueError(
        f"module {name!r} of the exported program cannot be hooked: {problems[name]}{more}; re-export "
        f"with torch.export.export(..., preserve_module_call_signature=({name!r},)), or name its "
        "submodules instead"
    )


def _resolve_one(
    model: nn.Module, spec: object, named: dict[str, nn.Module], problems: dict[str, str]
) -> dict[str, nn.Module]:
    names = [n for n in named if n]
    what = module_type_name(model)
    if isinstance(spec, str):
        if any(c in spec for c in "*?["):
            hits = {n: m for n, m in named.items() if n and fnmatch.fnmatchcase(n, spec)}
            if not hits:
                raise ValueError(
                    f"module glob {spec!r} matches no submodule of {what}; close names: {_close(spec, names)}"
                )
        elif spec not in named or spec == "":
            raise ValueError(f"unknown module path {spec!r} in {what}; close names: {_close(spec, names)}")
        else:
            hits = {spec: named[spec]}
    elif isinstance(spec, type) and issubclass(spec, nn.Module):
        hits = {n: m for n, m in named.items() if is_module_type(m, spec)}
        if not hits:
            raise ValueError(f"the model has no submodule of type {spec.__name__}")
    elif isinstance(spec, nn.Module):
        hits = {(n if n else "<model>"): m for n, m in named.items() if m is spec}  # named_modules: no repeats
        if not hits:
            raise ValueError(f"the {type(spec).__name__} instance passed is not a submodule of the model")
    else:
        raise TypeError(
            "module spec must be a dotted path, a glob, an nn.Module type, an nn.Module "
            f"instance or a list of these; got {type(spec).__name__}"
        )
    kept = {n: m for n, m in hits.items() if n not in problems}
    if not kept:  # only modules whose hooks would see other values than the original module's
        refused = [n for n in hits if n in problems]
        raise _refuse(refused[0], problems, also=len(refused) - 1)
    return kept


def hookable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Return ``dict(model.named_modules())`` without the submodules hooks cannot observe.

    Left out are the submodules of exported programs whose hooks would not see the original
    module's input and output (:func:`featurelens.models.export_boundary_problems`).
    """
    problems = export_boundary_problems(model)
    return {n: m for n, m in model.named_modules() if n not in problems}


def _runs_any_holder(graph_module: fx.GraphModule) -> bool:
    """Tell whether the graph runs a child that holds parameters.

    True if the graph calls (``call_module``) such a child, or a module in or around one; a graph
    without such children counts as running them.
    """
    called = {str(n.target) for n in graph_module.graph.nodes if n.op == "call_module"}
    holders = [n for n, m in graph_module.named_children() if any(True for _ in m.parameters())]
    return not holders or any(
        c == h or c.startswith(h + ".") or h.startswith(c + ".") for h in holders for c in called
    )


def check_hookable(model: object) -> None:
    """Check that forward hooks on ``model``'s submodules will run.

    ``TypeError`` unless ``model`` is an ``nn.Module``; ``ValueError`` for models whose
    submodules never run: TorchScript (compiled code calls no forward hooks) and the flat
    ``ExportedProgram.module()`` graph (its submodules only hold parameters).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(
            "model is a TorchScript module: it runs compiled code that calls no forward hooks, so its "
            "activations cannot be read or patched; load the eager model (state_dict with a factory) or "
            "a torch.export program (.pt2) instead"
        )
    if isinstance(model, fx.GraphModule) and not _runs_any_holder(model):
        raise ValueError(
            "model is a torch.fx graph that calls none of its submodules (e.g. ExportedProgram.module()): "
            "they only hold parameters, so no forward hook fires on them; use "
            "torch.export.unflatten(program), as load_model does, to get the original module hierarchy"
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
        * an ``nn.Module`` subclass: every submodule of that type (for an
          unflattened exported program: of that type before export, see
          :func:`featurelens.models.original_class`);
        * an ``nn.Module`` instance that is a submodule of ``model`` (the
          model itself is named ``"<model>"``);
        * a list or tuple of the above (union, first occurrence order).

    Submodules of an exported program whose hooks would not see the original
    module's input and output (:func:`featurelens.models.export_boundary_problems`)
    are left out of glob and type matches, and naming one exactly is an error.

    Returns
    -------
    dict[str, nn.Module]
        Names in ``named_modules()`` order within each item of ``spec``.

    Raises
    ------
    ValueError
        An unknown path, a glob or type matching nothing (the message lists
        close names, found with :mod:`difflib`), an empty list, an exported
        submodule that cannot be hooked (the reason and
        ``preserve_module_call_signature`` are named), or a TorchScript model
        or a flat exported graph (see :func:`check_hookable`).
    TypeError
        ``model`` is not a module, or ``spec`` is of an unsupported type.
    """
    check_hookable(model)
    named = dict(model.named_modules())
    problems = export_boundary_problems(model)
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise ValueError("module spec is an empty list; name at least one module")
    out: dict[str, nn.Module] = {}
    for item in items:
        if isinstance(item, (list, tuple)):
            out.update({k: v for k, v in resolve_modules(model, item).items() if k not in out})
        else:
            out.update({k: v for k, v in _resolve_one(model, item, named, problems).items() if k not in out})
    return out


def resolve_single(model: nn.Module, spec: ModuleSpec, *, name: str = "module") -> tuple[str, nn.Module]:
    """Resolve ``spec`` to exactly one module; ``ValueError`` if it matches several."""
    hits = resolve_modules(model, spec)
    if len(hits) != 1:
        raise ValueError(f"{name} must resolve to exactly one module, got {len(hits)}: {', '.join(hits)}")
    return next(iter(hits.items()))


def as_input_tensor(model: nn.Module, inputs: object) -> torch.Tensor:
    """Convert ``inputs`` to a tensor on the model's device and floating dtype."""
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
