"""Exported programs (``torch.export``, ``.pt2``) as hookable modules with checked inputs.

``ExportedProgram.module()`` is one flat graph: its submodules only hold
parameters and never run, so forward hooks on them never fire and layer
names from the original model resolve to nothing. :func:`module_from_program`
uses :func:`torch.export.unflatten` instead, which rebuilds the original
module hierarchy (``layer1``, ``act1``, ``transformer_layers.0.linear1``...):
every submodule that the original ``forward`` called is called again, so
hooks on the same names see the same activations as on the eager model.

Inputs are checked against the program's input spec before the graph runs,
so a table with the wrong number of columns raises a ``ValueError`` naming
the expected and received widths instead of torch's guard failure.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.export.unflatten import InterpreterModule, InterpreterModuleDispatcher, UnflattenedModule
from torch.utils import _pytree as pytree

#: ATen ops whose positional argument at this index is the ``train`` flag
_TRAIN_FLAG = {"dropout": 2, "feature_dropout": 2, "alpha_dropout": 2, "batch_norm": 5}
_MAX_LISTED = 10


@dataclass(frozen=True)
class InputSpec:
    """The shape one user input of an exported program accepts.

    ``dims[i] = (low, high)``: axis ``i`` accepts sizes ``low <= n <= high``
    (``high`` ``None``: unbounded). A static axis has ``low == high``; an axis
    whose size is an expression of other axes (e.g. ``2 * s0``) is
    ``(0, None)`` here and left to torch's own check.
    """

    name: str
    dims: tuple[tuple[int, int | None], ...]

    def describe(self) -> str:
        """Describe the shape as text: ``(n, 4)``; a bounded dynamic axis as ``low..high``."""
        parts = []
        for low, high in self.dims:
            if low == high:
                parts.append(str(low))
            elif low <= 1 and high is None:
                parts.append("n")
            else:
                parts.append(f"{low}..{'inf' if high is None else high}")
        return "(" + ", ".join(parts) + (",)" if len(parts) == 1 else ")")


def _axis_range(size: Any, ranges: dict[Any, Any]) -> tuple[int, int | None]:
    if isinstance(size, int):
        return size, size
    expr = getattr(getattr(size, "node", None), "expr", None)
    vr = ranges.get(expr) if expr is not None else None
    if vr is None:  # an expression of other axes: torch checks it
        return 0, None
    low, high = vr.lower, vr.upper  # sympy integers (numbers.Integral), or torch's int_oo: unbounded
    return (int(low) if isinstance(low, numbers.Integral) else 0,
            int(high) if isinstance(high, numbers.Integral) else None)


def input_specs(program: torch.export.ExportedProgram) -> tuple[InputSpec | None, ...]:
    """One :class:`InputSpec` per user input of ``program`` (``None`` for non-tensor inputs)."""
    ranges = dict(program.range_constraints)
    values = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    specs: list[InputSpec | None] = []
    for name in program.graph_signature.user_inputs:
        val = values.get(name)
        if not isinstance(val, torch.Tensor):
            specs.append(None)
            continue
        specs.append(InputSpec(name, tuple(_axis_range(s, ranges) for s in val.shape)))
    return tuple(specs)


def _mismatch(spec: InputSpec, x: torch.Tensor) -> str | None:
    """Say what is wrong with ``x`` for ``spec`` (``None``: it fits)."""
    if x.dim() != len(spec.dims):
        return f"{len(spec.dims)} axes expected, {x.dim()} received"
    last = x.dim() - 1
    for axis, ((low, high), size) in enumerate(zip(spec.dims, x.shape, strict=True)):
        if low <= size and (high is None or size <= high):
            continue
        if low == high and axis == last and x.dim() >= 2:
            return f"{low} features expected (axis {axis}), {size} received"
        if low == high and axis == 0:
            return (f"axis 0 must be {low}, got {size}: the program was exported with a fixed batch "
                    "size; re-export it with dynamic_shapes=({0: torch.export.Dim('batch')},)")
        if low == high:
            return f"axis {axis} must be {low}, got {size}"
        return f"axis {axis} must be in [{low}, {'inf' if high is None else high}], got {size}"
    return None


class InputCheck:
    """Forward pre-hook (``with_kwargs=True``) checking inputs against an exported program's spec.

    Calls whose argument structure is the exported one are checked tensor by
    tensor; any other structure (keyword arguments, nested inputs in another
    layout) is left to torch. Raises ``ValueError`` naming the source, the
    input, the expected and the received shape.
    """

    def __init__(self, specs: tuple[InputSpec | None, ...], in_spec: Any, source: str) -> None:
        self.specs, self.in_spec, self.source = specs, in_spec, source

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        leaves, structure = pytree.tree_flatten((args, kwargs))
        if structure != self.in_spec:
            if not kwargs and all(isinstance(a, torch.Tensor) for a in args) and len(args) != len(self.specs):
                names = ", ".join(repr(s.name) for s in self.specs if s is not None)
                raise ValueError(f"{self.source} takes {len(self.specs)} input(s) ({names}), "
                                 f"got {len(args)}")
            return
        if len(leaves) != len(self.specs):  # constants flattened differently: torch checks the call
            return
        for spec, x in zip(self.specs, leaves, strict=True):
            if spec is None or not isinstance(x, torch.Tensor):
                continue
            problem = _mismatch(spec, x)
            if problem is not None:
                raise ValueError(f"{self.source} expects input {spec.name!r} of shape {spec.describe()}, "
                                 f"got {tuple(x.shape)}: {problem}")


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def check_eval_mode(program: torch.export.ExportedProgram, *, source: str) -> None:
    """``ValueError`` if dropout or batch norm ran in training mode when ``program`` was captured."""
    bad = sorted(
        node.name
        for node in program.graph.nodes
        if node.op == "call_function"
        and (pos := _TRAIN_FLAG.get(getattr(node.target, "__name__", "").split(".")[0])) is not None
        and len(node.args) > pos
        and node.args[pos] is True
    )
    if bad:
        raise ValueError(
            f"{source} was captured in training mode (dropout or batch-norm in training mode: "
            f"{_listing(bad)}); export the model after model.eval()"
        )


def _codegen(module: nn.Module) -> None:
    """Run the unflattened graphs as generated code, not through ``torch.fx.Interpreter``.

    Same results, about 4x less overhead per call on a small MLP.
    """
    for m in module.modules():
        if hasattr(m, "_run_with_interpreter"):
            m._run_with_interpreter = False


class _SharedNodes(list):
    """The exported input placeholders torch's own input check reads.

    ``node.meta["val"]`` holds fake tensors with symbolic sizes, which ``copy.deepcopy`` cannot
    copy. They describe the program's inputs, identical for every copy, so copies share them.
    """

    def __deepcopy__(self, memo: dict) -> _SharedNodes:
        return self


def module_from_program(program: torch.export.ExportedProgram, *, source: str) -> nn.Module:
    """Build an ``nn.Module`` with the original module hierarchy that checks its inputs.

    Parameters
    ----------
    program : torch.export.ExportedProgram
        Captured in eval mode (``ValueError`` otherwise, see
        :func:`check_eval_mode`).
    source : str
        How messages name the program, e.g. ``"the exported program 'model.pt2'"``.

    Returns
    -------
    nn.Module
        ``torch.export.unflatten(program)`` (an ``UnflattenedModule``; its
        submodules are ``InterpreterModule`` objects at the original dotted
        paths, each recording its original class), with a forward
        pre-hook :class:`InputCheck`. A fixed batch size gives a
        ``UserWarning``.
    """
    check_eval_mode(program, source=source)
    specs = input_specs(program)
    for spec in specs:
        if spec is not None and spec.dims and spec.dims[0][0] == spec.dims[0][1]:
            warnings.warn(
                f"{source} has a fixed batch size of {spec.dims[0][0]} for input {spec.name!r}; export "
                "with dynamic_shapes (e.g. {0: torch.export.Dim('batch')}) to run it on other batch sizes",
                UserWarning,
                stacklevel=4,  # the caller of load_model
            )
    with warnings.catch_warnings():  # torch's notes about its own internals, nothing a user can act on
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node", category=UserWarning)
        module = torch.export.unflatten(program)
    _codegen(module)
    if isinstance(getattr(module, "input_placeholders", None), list):  # so copy.deepcopy(model) works
        module.input_placeholders = _SharedNodes(module.input_placeholders)
    module.register_forward_pre_hook(InputCheck(specs, program.call_spec.in_spec, source), with_kwargs=True)
    return module


def _runs(module: nn.Module) -> bool:
    """Tell whether an unflattened submodule has code.

    A module the original forward never called, such as a ``ModuleList``, has an empty graph and
    an unreliable class record.
    """
    graph = getattr(module, "graph", None)
    return graph is not None and any(node.op != "output" for node in graph.nodes)


def original_class(module: nn.Module) -> type | str:
    """Return the class ``module`` stands for.

    Its own class, or for a submodule of an unflattened exported program the class it had before
    export.

    :func:`torch.export.unflatten` records each submodule's original class
    (from the program's ``nn_module_stack``). For such a submodule that runs,
    this is the ``torch.nn`` class itself when the recorded class is one of
    ``torch.nn``'s (``nn.Linear`` for ``layer1`` of an exported MLP), otherwise
    the recorded qualified name (``"mypkg.models.Block"``; nothing is
    imported). Any other module, or one without a record, gives ``type(module)``.
    """
    if not isinstance(module, (InterpreterModule, InterpreterModuleDispatcher, UnflattenedModule)):
        return type(module)
    recorded = getattr(module, "_ty", None)  # set by torch.export.unflatten
    if not isinstance(recorded, str) or not recorded:
        return type(module)
    if isinstance(module, InterpreterModule) and not _runs(module):
        return type(module)
    cls = getattr(nn, recorded.rsplit(".", 1)[-1], None)
    if isinstance(cls, type) and issubclass(cls, nn.Module) and f"{cls.__module__}.{cls.__qualname__}" == recorded:
        return cls
    return recorded


#: ``torch.nn.modules.<file>`` whose classes map one tensor to one tensor
_SINGLE_TENSOR_FILES = frozenset({
    "linear", "conv", "activation", "normalization", "batchnorm", "instancenorm", "dropout", "flatten",
    "padding", "sparse", "pixelshuffle", "upsampling", "channelshuffle", "pooling", "transformer",
})


def _single_tensor_class(cls: type | str) -> bool:
    """Tell whether ``cls`` is a ``torch.nn`` class whose forward returns one tensor.

    Not attention, not a pooling layer that can return indices.
    """
    if not isinstance(cls, type) or cls is nn.MultiheadAttention:
        return False
    if cls.__module__.removeprefix("torch.nn.modules.") not in _SINGLE_TENSOR_FILES:
        return False
    return "return_indices" not in inspect.signature(cls.__init__).parameters


def _is_tensor_node(node: Any) -> bool:
    return isinstance(node, torch.fx.Node) and isinstance(node.meta.get("val"), torch.Tensor)


def _boundary_problem(module: nn.Module) -> str | None:
    """Say why hooks on an unflattened submodule would not see the original input and output.

    Such a submodule's call signature was not preserved; ``None``: the hooks would see them.
    """
    calls = module.call_modules() if isinstance(module, InterpreterModuleDispatcher) else [module]
    for call in calls:
        if not _runs(call):
            continue
        inputs = [n for n in call.graph.nodes if n.op == "placeholder"]
        out = next(n for n in call.graph.nodes if n.op == "output").args[0]
        if len(inputs) != 1 or not _is_tensor_node(inputs[0]) or not _is_tensor_node(out):
            n_out = len(out) if isinstance(out, (list, tuple)) else 1
            return (f"torch.export passes it {len(inputs)} value(s) and takes back {n_out} (e.g. shape "
                    "values shared between modules) instead of its original input and output")
        kind = original_class(call)
        if not _single_tensor_class(kind):
            name = kind.__name__ if isinstance(kind, type) else kind
            return (f"it is a {name}, which is not a torch.nn layer mapping one tensor to one tensor, and "
                    "the program does not record what it returned")
    return None


def export_boundary_problems(model: nn.Module) -> dict[str, str]:
    """Find the submodules whose hooks would not see the original module's input and output.

    Looks at the submodules of unflattened exported programs inside ``model``; each one found
    comes with the reason.

    :func:`torch.export.unflatten` gives a submodule its original call signature
    only if the program was exported with
    ``preserve_module_call_signature`` naming it. Otherwise its inputs and
    outputs are whatever values cross its boundary in the flat graph: for a
    ``torch.nn`` layer that maps one tensor to one tensor (``Linear``,
    activations, norms, convolutions...) that is exactly its input and output;
    a module that receives or returns other values (shape values of a
    dynamic batch, several tensors), a container or any class outside
    ``torch.nn`` is listed here. Empty for models with no exported program.

    Returns
    -------
    dict[str, str]
        Dotted name (as in ``model.named_modules()``) -> reason.
    """
    named = list(model.named_modules())
    roots = {name: m for name, m in named if isinstance(m, UnflattenedModule)}
    preserved = {
        root: {entry.fqn for entry in getattr(m, "module_call_graph", ()) if entry.fqn and entry.signature}
        for root, m in roots.items()
    }
    problems: dict[str, str] = {}
    for name, m in named:
        if not isinstance(m, (InterpreterModule, InterpreterModuleDispatcher)):
            continue
        owner = max((r for r in roots if r == "" or name.startswith(r + ".")), key=len, default=None)
        fqn = name if not owner else name[len(owner) + 1:]
        if owner is not None and fqn in preserved[owner]:
            continue
        reason = _boundary_problem(m)
        if reason is not None:
            problems[name] = reason
    return problems
