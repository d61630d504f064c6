"""Activation patching: replace module outputs inside the forward pass."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._metrics import Metric, get_metric
from featurelens._validation import RandomState, check_int, check_random_state
from featurelens.internals._batch import (
    BatchAxis,
    axis_for,
    check_batch_axis,
    locate_batch_axis,
    repeat_rows,
    same_values,
)
from featurelens.internals._capture import Activations, CallRows, iter_batches, probe_batch_axis
from featurelens.internals._modules import as_input_tensor, resolve_modules, resolve_single
from featurelens.models import OutputSelector, preserve_model

Replacement = Union[str, float, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]  # noqa: UP007
STRATEGIES = ("zero", "mean", "resample")


def _check_neurons(neurons: Any) -> torch.Tensor | None:
    if neurons is None:
        return None
    if isinstance(neurons, numbers.Integral) and not isinstance(neurons, bool):
        neurons = [neurons]
    idx = [check_int(n, name="neurons[i]", minimum=0) for n in neurons]
    if not idx:
        raise ValueError("neurons is empty; pass None to patch every unit")
    return torch.tensor(sorted(set(idx)), dtype=torch.long)


def _reference_for(reference: Any, name: str, strategy: str) -> tuple[list[torch.Tensor], list[int | None]]:
    """Return the reference tensors for ``name`` (one per captured call) and the input rows behind each."""
    if reference is None:
        raise ValueError(
            f"replacement {strategy!r} for {name!r} needs reference= activations "
            "(a tensor, or a mapping such as the Activations from capture/collect)"
        )
    if isinstance(reference, Activations) and name in reference:
        parts, rows = reference.calls_of(name), reference.rows_of(name)
    else:
        ref = reference[name] if isinstance(reference, Mapping) and name in reference else reference
        if isinstance(ref, Mapping):
            raise ValueError(f"reference has no activations for {name!r}; it has {', '.join(ref)}")
        parts, rows = [ref], [None]
    if not all(isinstance(r, torch.Tensor) and r.dim() > 0 and r.numel() > 0 for r in parts):
        raise ValueError(f"reference for {name!r} must be a non-empty tensor with a batch axis")
    return [r.detach() for r in parts], rows


def _check_shape(new: torch.Tensor, act: torch.Tensor, name: str, what: str) -> torch.Tensor:
    if tuple(new.shape) != tuple(act.shape):
        raise ValueError(
            f"{what} for {name!r} has shape {tuple(new.shape)} but the activation has shape {tuple(act.shape)}"
        )
    return new.to(device=act.device, dtype=act.dtype)


class _Reference:
    """Reference activations laid out like the module's output, batched along the located batch axis."""

    def __init__(self, name: str, parts: list[torch.Tensor], rows: list[int | None], axis: int | None) -> None:
        self.name, self.parts, self.rows, self.axis = name, parts, rows, axis
        self._joined: dict[int, torch.Tensor] = {}

    def along(self, act: torch.Tensor, rows: int | None, what: str) -> tuple[int, torch.Tensor]:
        """Return the batch axis ``k`` of ``act`` and the reference concatenated along it."""
        shapes = [tuple(act.shape), *(tuple(p.shape) for p in self.parts)]
        fits = len({len(s) for s in shapes}) == 1 and any(
            len({s[:k] + s[k + 1:] for s in shapes}) == 1 for k in range(act.dim()))
        if not fits:
            raise ValueError(f"{what} for {self.name!r} does not fit: reference shapes {shapes[1:]}, activation "
                             f"shape {shapes[0]}; they must agree on every axis but the batch axis")
        k = locate_batch_axis(self.name, shapes, [rows, *self.rows], batch_axis=self.axis,
                              what="activation and reference")
        if k not in self._joined:
            self._joined[k] = torch.cat(self.parts, dim=k)
        return k, self._joined[k]


def _make_fn(name: str, rep: Any, reference: Any, rng: np.random.Generator, axis: int | None) -> Callable:
    """``fn(act, rows) -> new output`` for one module (``rows``: input rows of the model call, or None)."""
    if isinstance(rep, str):
        if rep not in STRATEGIES:
            raise ValueError(f"replacement for {name!r} must be one of {', '.join(map(repr, STRATEGIES))}, "
                             f"a number, a tensor or a callable; got {rep!r}")
        if rep == "zero":
            return lambda act, rows: torch.zeros_like(act)
        ref = _Reference(name, *_reference_for(reference, name, rep), axis)
        if rep == "mean":

            def mean_fn(act: torch.Tensor, rows: int | None) -> torch.Tensor:
                k, joined = ref.along(act, rows, "the reference mean")
                return joined.mean(dim=k, keepdim=True).to(device=act.device, dtype=act.dtype).expand(act.shape)

            return mean_fn

        def resample(act: torch.Tensor, rows: int | None) -> torch.Tensor:
            k, joined = ref.along(act, rows, "the resampled reference")
            idx = torch.as_tensor(rng.integers(0, joined.shape[k], size=act.shape[k]), device=joined.device)
            return _check_shape(joined.index_select(k, idx), act, name, "the resampled reference")

        return resample
    if isinstance(rep, numbers.Real) and not isinstance(rep, bool):
        return lambda act, rows: torch.full_like(act, float(rep))
    if isinstance(rep, torch.Tensor):
        value = rep.detach()

        def fixed(act: torch.Tensor, rows: int | None) -> torch.Tensor:
            if value.dim() == act.dim():  # a cached activation: shapes must match exactly
                return _check_shape(value, act, name, "the patched tensor")
            try:
                return value.to(device=act.device, dtype=act.dtype).expand(act.shape)
            except RuntimeError as exc:
                raise ValueError(f"the patched tensor of shape {tuple(value.shape)} does not broadcast "
                                 f"to the activation of {name!r}, shape {tuple(act.shape)}") from exc

        return fixed
    if callable(rep):
        def call(act: torch.Tensor, rows: int | None) -> torch.Tensor:
            new = rep(act)
            if not isinstance(new, torch.Tensor):
                raise ValueError(f"the callable for {name!r} returned {type(new).__name__}, not a tensor")
            return _check_shape(new, act, name, "the callable's result")

        return call
    raise TypeError(f"replacement for {name!r} must be a string, number, tensor or callable; "
                    f"got {type(rep).__name__}")


def _apply(fn: Callable, act: torch.Tensor, rows: int | None, neurons: torch.Tensor | None, name: str) -> torch.Tensor:
    """Compute the patched output: always a fresh tensor, so in-place ops downstream cannot reach a cached value."""
    new = fn(act, rows)
    if neurons is None:
        return new.clone()  # a cached tensor, an expanded mean or a callable's result may be shared
    if act.dim() == 0 or int(neurons.max()) >= act.shape[-1]:
        raise ValueError(f"neurons index {int(neurons.max())} is out of range for {name!r} "
                         f"with {act.shape[-1] if act.dim() else 0} units")
    mask = torch.zeros(act.shape[-1], dtype=torch.bool, device=act.device)
    mask[neurons.to(act.device)] = True
    return torch.where(mask, new, act)


@contextlib.contextmanager
def patch(
    model: nn.Module,
    replacements: Mapping[Any, Replacement],
    *,
    neurons: Sequence[int] | int | None = None,
    reference: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    random_state: RandomState = 0,
    batch_axis: BatchAxis = None,
) -> Iterator[nn.Module]:
    """Replace module outputs in every forward pass run inside the block.

    Parameters
    ----------
    model : nn.Module
    replacements : mapping ``module spec -> replacement``
        Keys are anything :func:`resolve_modules` accepts (a glob patches every
        match). The output ``a`` (shape ``(B, ..., U)``, or any layout with
        the batch on axis ``k``, e.g. ``(T, B, U)``) is replaced by

        * ``"zero"``: zeros;
        * ``"mean"``: the mean of ``reference`` over its batch axis ``k``,
          broadcast over the batch;
        * ``"resample"``: slices ``i`` of ``reference`` along axis ``k``, drawn
          uniformly with replacement (``random_state``), a fresh draw per
          forward call;
        * a number: that constant;
        * a tensor with ``a.dim()`` dims (e.g. a cached activation of another
          input, for clean → corrupted patching): used as is, its shape must
          equal ``a.shape``; a tensor with fewer dims is broadcast to ``a.shape``;
        * a callable ``f(a) -> tensor`` of ``a.shape``.

        For tuple outputs (``nn.MultiheadAttention``) element 0 is replaced.
        The hook returns a fresh copy of the replacement, so an in-place
        operation downstream (``ReLU(inplace=True)``) never writes into a
        cached tensor or the reference.
    neurons : int or sequence of int, optional
        Indices into the last dim of the output; only these units are
        replaced, the others keep their computed value.
    reference : tensor or mapping name -> tensor, optional
        Activations for ``"mean"`` and ``"resample"`` in the module's own
        layout, e.g. the :class:`Activations` returned by :func:`collect`.
    random_state : None, int or numpy Generator
    batch_axis : int, mapping ``module name -> int``, or None
        The batch axis ``k`` for ``"mean"`` and ``"resample"``; default: the
        axis of the output whose size is the model call's input rows and on
        which alone the reference may differ in size
        (:func:`~featurelens.internals._batch.locate_batch_axis`, ``ValueError``
        when ambiguous).

    Notes
    -----
    The replacement is returned from a forward hook, so downstream modules
    see it. Hooks are removed on exit, also when the block raises. Shape
    mismatches raise ``ValueError`` from the forward call.
    """
    if not isinstance(replacements, Mapping) or not replacements:
        raise ValueError("replacements must be a non-empty mapping {module spec: replacement}")
    idx = _check_neurons(neurons)
    rng = check_random_state(random_state)
    targets: dict[str, tuple[nn.Module, Any]] = {}
    for spec, rep in replacements.items():
        for name, module in resolve_modules(model, spec).items():
            if name in targets:
                raise ValueError(f"module {name!r} is patched twice; give each module one replacement")
            targets[name] = (module, rep)
    check_batch_axis(batch_axis, targets)
    fns = {name: (module, _make_fn(name, rep, reference, rng, axis_for(batch_axis, name)))
           for name, (module, rep) in targets.items()}
    calls = CallRows()
    handles = []
    try:
        for name, (module, fn) in fns.items():

            def hook(_m: nn.Module, _i: Any, out: Any, fn: Callable = fn, name: str = name) -> Any:
                if isinstance(out, tuple):
                    return (_apply(fn, out[0], calls.rows, idx, name), *out[1:])
                return _apply(fn, out, calls.rows, idx, name)

            handles.append(module.register_forward_hook(hook))
        handles.extend(calls.install(model))
        yield model
    finally:
        for h in handles:
            h.remove()


def _zero_blocks(units: int, axis: int, j0: int, c: int, device: torch.device) -> Callable:
    """Build a hook function: split the output into ``c`` blocks along ``axis``; zero unit ``j0 + i`` in block ``i``."""
    keep = torch.ones(c, units, dtype=torch.bool, device=device)
    keep[torch.arange(c), torch.arange(j0, j0 + c)] = False

    def zero_block(act: torch.Tensor) -> torch.Tensor:
        moved = act.movedim(axis, 0)
        view = moved.reshape(c, moved.shape[0] // c, *moved.shape[1:])
        mask = keep.reshape(c, *([1] * (view.dim() - 2)), units)
        return torch.where(mask, view, view.new_zeros(())).reshape(moved.shape).movedim(0, axis)

    return zero_block


def neuron_importance(
    model: nn.Module,
    module: Any,
    X: Any,
    *,
    metric: str | Callable | Metric | None = None,
    y: Any = None,
    output: OutputSelector | None = None,
    batch_size: int | None = None,
    batch_axis: int | None = None,
) -> pd.Series:
    """Effect on the model output of zero-patching each unit of ``module``'s output.

    For unit ``j`` (index into the last dim of the output), ``f_j`` is the
    selected model output with that unit set to 0 (at every position) and
    ``f`` the unpatched one.

    * without ``metric``: ``importance_j = mean_{rows, outputs} |f_j(x) − f(x)|``;
    * with ``metric`` and ``y``: ``metric.degradation(m(f), m(f_j))``
      (positive = worse; :func:`featurelens._metrics.get_metric`; a callable
      is a loss ``fn(y_true, y_pred)``). Single-output predictions are passed
      as ``(N,)``.

    Vectorised: the inputs (samples on axis 0) are stacked once per chunk
    of units and one hook zeroes unit ``j`` in block ``j`` of the module's
    batch axis, so one forward serves many units. The batch axis of the
    module's output is located by running a few rows once and stacked
    twice (:func:`~featurelens.internals._capture.probe_batch_axis`): axis 1
    of a sequence-first ``(T, B, U)`` output, for example. That probe also
    checks that stacked rows do not interact, and, when ``batch_size``
    splits the inputs, that splitting leaves the outputs unchanged.
    ``batch_size`` bounds the rows per forward (default 4096; the probe runs
    at most 18). Runs in eval mode under ``no_grad``; ``output`` defaults to
    ``OutputSelector(target="all")``.

    Parameters
    ----------
    batch_axis : int, optional
        The batch axis of the module's output, instead of locating it (it is
        checked the same way).

    Returns
    -------
    pandas.Series
        Indexed by unit ``0..U-1`` (index name ``"unit"``).

    Raises
    ------
    ValueError
        When the batch axis cannot be told (naming the module and the shapes
        seen), the rows interact, or arguments are invalid.
    """
    name, mod = resolve_single(model, module)
    if (metric is None) != (y is None):
        raise ValueError("metric and y go together: pass both, or neither for mean |Δ output|")
    m = get_metric(metric) if metric is not None else None
    budget = 4096 if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    given = None if batch_axis is None else check_int(batch_axis, name="batch_axis")
    selector = output if output is not None else OutputSelector(target="all")
    if not isinstance(selector, OutputSelector):
        raise TypeError(f"output must be an OutputSelector or None, got {type(selector).__name__}")
    x = as_input_tensor(model, X)
    n = x.shape[0]
    y = None if y is None else torch.as_tensor(np.asarray(y))
    if y is not None and y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows but X has {n}")
    rows = min(n, budget)
    k = min(n, 8)  # probe rows
    if n > rows and k == rows:
        k += 1  # batched unlike base's first batch, so comparing the two checks that splitting is harmless
    with preserve_model(model), torch.no_grad():
        probe = probe_batch_axis(model, name, mod, x[:k], batch_axis=given,
                                 output=lambda raw, r: selector(raw, r).reshape(r, -1))
        base = torch.cat([selector(model(b), b.shape[0]).reshape(b.shape[0], -1)
                          for b in iter_batches(x, budget)])
        if n > rows and not same_values(probe.output, base[:k]):
            raise ValueError(
                f"the model's output for the first {k} input rows changes when they are run in batches of "
                f"{rows} rows: its rows interact; pass batch_size >= {n} or X whose axis 0 holds "
                "independent samples")
        units, axis = probe.units, probe.axis
        chunk = max(1, budget // rows)
        patched = torch.empty(units, n, base.shape[1], dtype=base.dtype)
        for start in range(0, n, rows):
            xb = x[start : start + rows]
            b = xb.shape[0]
            for j0 in range(0, units, chunk):
                c = min(chunk, units - j0)
                with patch(model, {name: _zero_blocks(units, axis, j0, c, xb.device)}):
                    out = selector(model(repeat_rows(xb, c)), c * b)
                patched[j0 : j0 + c, start : start + b] = out.reshape(c, b, -1).cpu()
    base = base.cpu()
    if m is None:
        values = (patched - base.unsqueeze(0)).abs().mean(dim=(1, 2)).numpy()
        series_name = "mean_abs_delta"
    else:
        squeeze = (lambda p: p[:, 0]) if base.shape[1] == 1 else (lambda p: p)
        ref = m.fn(y, squeeze(base))
        values = np.array([m.degradation(ref, m.fn(y, squeeze(patched[j]))) for j in range(units)])
        series_name = f"{m.name}_degradation"
    return pd.Series(values, index=pd.RangeIndex(units, name="unit"), name=series_name)
