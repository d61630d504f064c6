"""Read activations with context-scoped forward hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featurelens._validation import check_int
from featurelens.internals._batch import (
    BatchAxis,
    axis_for,
    check_batch_axis,
    locate_batch_axis,
    repeat_rows,
    same_values,
)
from featurelens.internals._modules import ModuleSpec, as_input_tensor, resolve_modules
from featurelens.models import preserve_model

TUPLE_SUFFIX = ".tuple"


def _cat(name: str, parts: list[Any], rows: list[int | None], batch_axis: int | None) -> Any:
    """Join the calls' outputs along their batch axis (one call as is; non-tensors as a list)."""
    if len(parts) == 1:
        return parts[0]
    if not all(isinstance(p, torch.Tensor) for p in parts):
        return None if all(p is None for p in parts) else list(parts)
    if all(p.dim() == 0 for p in parts):
        return torch.stack(parts)
    k = locate_batch_axis(name, [tuple(p.shape) for p in parts], rows, batch_axis=batch_axis)
    return torch.cat(parts, dim=k)


class Activations(Mapping[str, Any]):
    """Read-only mapping ``module name -> activation`` filled by :func:`capture`.

    * ``acts[name]``: a copy of the module's output, taken when the module
      returned (so later in-place operations of the model do not change it);
      a tuple output (e.g. ``nn.MultiheadAttention`` returns ``(out,
      weights)``) stores element 0.
    * ``acts[name + ".tuple"]``: for tuple outputs only, the full tuple, each
      tensor element concatenated over calls like the main entry.
    * Several forward calls inside one ``capture`` block are concatenated
      along the batch axis, in call order: the axis whose size equals the
      number of input rows of each model call (axis 0 of the model's first
      tensor argument), e.g. axis 1 of a sequence-first ``(T, B, U)``
      output; :func:`~featurelens.internals._batch.locate_batch_axis` raises ``ValueError`` when that is
      ambiguous, unless ``batch_axis=`` was given to :func:`capture`. One
      call is returned as is. ``acts.calls[name]`` is the number of calls
      seen. A module that never ran is absent.
    """

    def __init__(self, batch_axis: BatchAxis = None) -> None:
        self._parts: dict[str, list[Any]] = {}
        self._rows: dict[str, list[int | None]] = {}
        self._cache: dict[str, Any] = {}
        self._batch_axis = batch_axis
        self.calls: dict[str, int] = {}

    def _add(self, name: str, value: Any, rows: int | None) -> None:
        self._parts.setdefault(name, []).append(value)
        self._rows.setdefault(name, []).append(rows)
        self._cache.pop(name, None)

    def _check(self, name: str) -> None:
        if name not in self._parts:
            raise KeyError(f"no activation captured for {name!r}; captured: {', '.join(self._parts) or 'none'}")

    def __getitem__(self, name: str) -> Any:
        self._check(name)
        if name not in self._cache:
            parts, rows = self._parts[name], self._rows[name]
            module = name.removesuffix(TUPLE_SUFFIX) if name.endswith(TUPLE_SUFFIX) else name
            given = axis_for(self._batch_axis, module)
            if isinstance(parts[0], tuple):
                self._cache[name] = tuple(
                    _cat(f"{module}[{i}]", [p[i] for p in parts], rows, given if i == 0 else None)
                    for i in range(len(parts[0])))
            else:
                self._cache[name] = _cat(name, parts, rows, given)
        return self._cache[name]

    def calls_of(self, name: str) -> list[Any]:
        """Return the stored output of each call of ``name``, in call order (not concatenated)."""
        self._check(name)
        return list(self._parts[name])

    def rows_of(self, name: str) -> list[int | None]:
        """Input rows of the model call behind each call of ``name`` (``None``: not inside a model call)."""
        self._check(name)
        return list(self._rows[name])

    def batch_axis(self, name: str) -> int:
        """Return the batch axis of ``name``'s outputs.

        :func:`~featurelens.internals._batch.locate_batch_axis` over its calls.
        """
        self._check(name)
        parts = [p for p in self._parts[name] if isinstance(p, torch.Tensor)]
        if len(parts) != len(self._parts[name]):
            raise ValueError(f"the outputs of {name!r} are not all tensors")
        return locate_batch_axis(name, [tuple(p.shape) for p in parts], self._rows[name],
                                 batch_axis=axis_for(self._batch_axis, name))

    def unit_rows(self, name: str) -> torch.Tensor:
        """Return all calls of ``name`` as one ``(rows, units)`` matrix.

        Each call's output ``(..., units)`` is reshaped to ``(prod(...), units)`` in its own
        axis order (batch-major for ``(B, T, U)``, time-major for a sequence-first
        ``(T, B, U)``), concatenated in call order. The units are the last axis.

        Works when calls differ in their middle axes (e.g. a layer applied to
        windows of different lengths), where ``acts[name]`` cannot concatenate.
        """
        self._check(name)
        parts = [p for p in self._parts[name] if isinstance(p, torch.Tensor)]
        if not parts or parts[0].dim() < 2 or len({p.shape[-1] for p in parts}) != 1:
            raise ValueError(f"the outputs of {name!r} are not (batch, ..., units) tensors with one unit count")
        return torch.cat([p.reshape(-1, p.shape[-1]) for p in parts], dim=0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __repr__(self) -> str:
        shapes: dict[str, Any] = {}
        for k in self._parts:
            try:
                v = self[k]
            except ValueError:  # calls that cannot be concatenated: their shapes, one per call
                v = None
            calls = [tuple(p.shape) for p in self._parts[k] if isinstance(p, torch.Tensor)]
            if isinstance(v, torch.Tensor) or calls:
                shapes[k] = tuple(v.shape) if isinstance(v, torch.Tensor) else calls
        return f"Activations({shapes})"


def _store(value: Any, *, detach: bool, to_cpu: bool) -> Any:
    """Copy ``value`` (tensors cloned, or copied to the CPU), so in-place ops of the model cannot change it.

    ``detach=False`` keeps the copy in the autograd graph (``clone`` is differentiable).
    """
    if isinstance(value, torch.Tensor):
        if detach:
            value = value.detach()
        return value.cpu() if to_cpu and value.device.type != "cpu" else value.clone()
    if isinstance(value, (tuple, list)):
        return tuple(_store(v, detach=detach, to_cpu=to_cpu) for v in value)
    return value


class CallRows:
    """Track the number of input rows of the model call in progress.

    :meth:`install` adds a forward pre-hook on ``model`` that reads axis 0
    of its first tensor argument, and a forward hook (run also when the
    forward raises) that pops it; :attr:`rows` is that count inside a model
    call and ``None`` outside one.
    """

    def __init__(self) -> None:
        self._stack: list[int | None] = []

    @property
    def rows(self) -> int | None:
        return self._stack[-1] if self._stack else None

    def _pre(self, _m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
        self._stack.append(int(first.shape[0]) if first is not None and first.dim() > 0 else None)

    def _post(self, *_: Any) -> None:
        if self._stack:
            self._stack.pop()

    def install(self, model: nn.Module) -> list[Any]:
        """Register the two hooks (after any others, so the model's own output hooks see the count)."""
        return [
            model.register_forward_pre_hook(self._pre, with_kwargs=True, prepend=True),
            model.register_forward_hook(self._post, always_call=True),
        ]


@contextlib.contextmanager
def capture(
    model: nn.Module,
    modules: ModuleSpec,
    *,
    detach: bool = True,
    to_cpu: bool = False,
    batch_axis: BatchAxis = None,
) -> Iterator[Activations]:
    """Record the outputs of ``modules`` during the forward passes run in the block.

    Parameters
    ----------
    model : nn.Module
    modules : ModuleSpec
        Anything :func:`resolve_modules` accepts.
    detach : bool
        Store ``tensor.detach().clone()`` (default). With ``False`` the
        stored copies (``tensor.clone()``) stay in the autograd graph, so
        gradients flow through them to the model's inputs and parameters.
    to_cpu : bool
        Move stored tensors to the CPU.
    batch_axis : int, mapping ``module name -> int``, or None
        The batch axis of the outputs, used to concatenate several calls;
        default: located from the number of input rows of each model call
        (:func:`~featurelens.internals._batch.locate_batch_axis`).

    Yields
    ------
    Activations
        ``name -> tensor`` of shape ``(sum of batch sizes, *unit_shape)``
        for batch-first outputs: calls are concatenated along the batch
        axis; tuple outputs store element 0 and the full tuple under
        ``name + ".tuple"``.

    Notes
    -----
    Every stored tensor is a copy made inside the hook, before the rest of
    the forward pass runs: an in-place operation downstream (``ReLU(inplace=True)``,
    ``x.add_(...)``) does not change what was recorded. The model's mode is
    not changed. Hooks are removed on exit, also when the block raises.
    """
    named = resolve_modules(model, modules)
    check_batch_axis(batch_axis, named)
    acts = Activations(batch_axis)
    calls = CallRows()
    handles = []
    try:
        for name, module in named.items():

            def hook(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                acts.calls[name] = acts.calls.get(name, 0) + 1
                if isinstance(out, (tuple, list)):
                    full = _store(out, detach=detach, to_cpu=to_cpu)
                    acts._add(name, full[0], calls.rows)
                    acts._add(name + TUPLE_SUFFIX, full, calls.rows)
                else:
                    acts._add(name, _store(out, detach=detach, to_cpu=to_cpu), calls.rows)

            handles.append(module.register_forward_hook(hook))
        handles.extend(calls.install(model))
        yield acts
    finally:
        for h in handles:
            h.remove()


def iter_batches(x: torch.Tensor, batch_size: int | None) -> Iterator[torch.Tensor]:
    """Slices of ``x`` along dim 0 of at most ``batch_size`` rows (all rows if ``None``)."""
    n = x.shape[0]
    size = n if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    for start in range(0, n, size):
        yield x[start : start + size]


def collect(
    model: nn.Module,
    modules: ModuleSpec,
    X: Any,
    *,
    batch_size: int | None = None,
    batch_axis: BatchAxis = None,
) -> Activations:
    """Stream ``X`` through ``model`` and return copies of the captured activations on the CPU.

    Runs under ``torch.no_grad()`` with every submodule in eval mode (via
    :func:`~featurelens.models.preserve_model`, which restores the mode
    afterwards) in batches of ``batch_size`` rows (all at once if ``None``).
    ``batch_axis`` is passed to :func:`capture`.

    Returns
    -------
    Activations
        ``name -> tensor`` of shape ``(N, *unit_shape)`` for batch-first
        outputs (the batches concatenated along each output's batch axis),
        rows in input order.
    """
    check_batch_axis(batch_axis, resolve_modules(model, modules))
    if batch_size is not None:
        check_int(batch_size, name="batch_size", minimum=1)
    x = as_input_tensor(model, X)
    with preserve_model(model), torch.no_grad(), \
            capture(model, modules, to_cpu=True, batch_axis=batch_axis) as acts:
        for batch in iter_batches(x, batch_size):
            model(batch)
    return acts


@dataclass(frozen=True)
class BatchProbe:
    """What :func:`probe_batch_axis` found.

    The batch axis and unit count of a module's output, its number of calls per forward, and the
    model's output for the probe rows (selected by ``output``).
    """

    axis: int
    units: int
    calls: int
    output: Any


def _splits(one: torch.Tensor, two: torch.Tensor, k: int) -> bool:
    if one.dim() != two.dim() or two.shape[k] != 2 * one.shape[k]:
        return False
    if any(two.shape[i] != one.shape[i] for i in range(one.dim()) if i != k):
        return False
    first, second = two.split(one.shape[k], dim=k)
    return same_values(one, first) and same_values(one, second)


def _check_independent_rows(model: nn.Module, x: torch.Tensor, once: torch.Tensor, twice: torch.Tensor,
                            output: Callable[[Any, int], torch.Tensor]) -> None:
    """``ValueError`` unless stacking the rows twice, and leaving half of them out, leave each row's output as is."""
    n = x.shape[0]
    why = ("its rows interact, but axis 0 of inputs must hold independent samples (wrap a sequence-first "
           "model that takes (T, N, d) so that it takes (N, T, d))")
    if not _splits(once, twice, 0):
        raise ValueError(f"the model's output for {n} input rows stacked twice is not two copies of its "
                         f"output for those rows: {why}")
    if n >= 2:
        with torch.no_grad():
            half = output(model(x[: n // 2]), n // 2)
        if not same_values(once[: n // 2], half):
            raise ValueError(f"the model's output for the first {n // 2} input rows changes when the other "
                             f"{n - n // 2} rows are left out of the batch: {why}")


def probe_batch_axis(
    model: nn.Module,
    name: str,
    module: nn.Module,
    x: torch.Tensor,
    *,
    batch_axis: int | None = None,
    output: Callable[[Any, int], torch.Tensor] | None = None,
) -> BatchProbe:
    """Locate the batch axis of ``module``'s output by running ``x`` once and stacked twice.

    Runs ``model(x)`` and ``model(repeat_rows(x, 2))`` under ``no_grad``
    (the caller sets the mode). With ``output`` (``output(raw, rows) ->
    (rows, ...)`` tensor, e.g. an ``OutputSelector``), rows must not
    interact: the model's output for the stacked rows must be two copies of
    its output for ``x``, and its output for the first half of ``x`` run
    alone must equal those rows' output in the full batch. The batch axis is the axis ``k`` (not the last,
    which holds the units) along which every call's output for the stacked
    rows splits into two copies of its output for ``x``
    (:func:`~featurelens.internals._batch.same_values`): the samples lie
    along ``k`` in input order, whatever the module's layout (``(B, T, U)``,
    a sequence-first ``(T, B, U)``, a batch-major flattening ``(B*T, U)``).
    ``batch_axis`` (negative counts from the end) is checked the same way
    instead of searched for.

    Raises
    ------
    ValueError
        Naming the module and both shapes, when the rows interact, the module
        does not run or returns no ``(..., U)`` tensor, or when no axis
        (several axes) qualify.
    """
    n = x.shape[0]
    with torch.no_grad(), capture(model, module) as once:
        out_once = model(x)
    with torch.no_grad(), capture(model, module) as twice:
        out_twice = model(repeat_rows(x, 2))
    if output is not None:
        out_once = output(out_once, n)
        _check_independent_rows(model, x, out_once, output(out_twice, 2 * n), output)
    ones = once.calls_of(name) if name in once else []
    twos = twice.calls_of(name) if name in twice else []
    if not ones or len(ones) != len(twos) or not all(isinstance(t, torch.Tensor) and t.dim() >= 2
                                                   for t in (*ones, *twos)):
        raise ValueError(f"module {name!r} did not produce a (B, ..., U) tensor output in each forward pass")
    s1, s2 = tuple(ones[0].shape), tuple(twos[0].shape)
    nd = len(s1)
    if batch_axis is not None:
        if not -nd <= batch_axis < nd or batch_axis % nd == nd - 1:
            raise ValueError(f"batch_axis={batch_axis} is out of range for the {nd}-D output of {name!r} "
                             "(the last axis holds the units)")
        k = batch_axis % nd
        if not all(_splits(a, b, k) for a, b in zip(ones, twos, strict=True)):
            raise ValueError(
                f"batch_axis={batch_axis} is not the batch axis of {name!r}: its output has shape {s1} for "
                f"{n} input rows and {s2} for those rows stacked twice, which does not split into "
                f"two copies along axis {k}")
        found = [k]
    else:
        found = [k for k in range(nd - 1) if all(_splits(a, b, k) for a, b in zip(ones, twos, strict=True))]
    if len(found) != 1:
        why = f"axes {found} all do" if found else "no axis does: its values mix samples, e.g. a time-major flattening"
        raise ValueError(
            f"cannot tell the batch axis of {name!r}: its output has shape {s1} for {n} input rows "
            f"and {s2} for those rows stacked twice, and the batch axis must split into two copies of the "
            f"first output ({why}); pass batch_axis=<axis> if one axis holds the samples in input order")
    return BatchProbe(axis=found[0], units=s1[-1], calls=len(ones), output=out_once)
