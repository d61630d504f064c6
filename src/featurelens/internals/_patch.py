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
from featurelens.internals._capture import capture, iter_batches
from featurelens.internals._modules import as_input_tensor, resolve_modules, resolve_single
from featurelens.models._output import OutputSelector
from featurelens.models._state import preserve_model

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


def _reference_for(reference: Any, name: str, strategy: str) -> torch.Tensor:
    if reference is None:
        raise ValueError(
            f"replacement {strategy!r} for {name!r} needs reference= activations "
            "(a tensor, or a mapping such as the Activations from capture/collect)"
        )
    ref = reference[name] if isinstance(reference, Mapping) and name in reference else reference
    if isinstance(ref, Mapping):
        raise ValueError(f"reference has no activations for {name!r}; it has {', '.join(ref)}")
    if not isinstance(ref, torch.Tensor) or ref.dim() == 0 or ref.shape[0] == 0:
        raise ValueError(f"reference for {name!r} must be a non-empty tensor with a batch axis")
    return ref.detach()


def _check_shape(new: torch.Tensor, act: torch.Tensor, name: str, what: str) -> torch.Tensor:
    if tuple(new.shape) != tuple(act.shape):
        raise ValueError(
            f"{what} for {name!r} has shape {tuple(new.shape)} but the activation has shape {tuple(act.shape)}"
        )
    return new.to(device=act.device, dtype=act.dtype)


def _make_fn(name: str, rep: Any, reference: Any, rng: np.random.Generator) -> Callable:
    if isinstance(rep, str):
        if rep not in STRATEGIES:
            raise ValueError(f"replacement for {name!r} must be one of {', '.join(map(repr, STRATEGIES))}, "
                             f"a number, a tensor or a callable; got {rep!r}")
        if rep == "zero":
            return torch.zeros_like
        ref = _reference_for(reference, name, rep)
        if rep == "mean":
            mean = ref.mean(dim=0)

            def mean_fn(act: torch.Tensor) -> torch.Tensor:
                return _check_shape(mean, act[0], name, "the reference mean").expand(act.shape)

            return mean_fn

        def resample(act: torch.Tensor) -> torch.Tensor:
            rows = torch.as_tensor(rng.integers(0, ref.shape[0], size=act.shape[0]), device=ref.device)
            return _check_shape(ref[rows], act, name, "the resampled reference")

        return resample
    if isinstance(rep, numbers.Real) and not isinstance(rep, bool):
        return lambda act: torch.full_like(act, float(rep))
    if isinstance(rep, torch.Tensor):
        value = rep.detach()

        def fixed(act: torch.Tensor) -> torch.Tensor:
            if value.dim() == act.dim():  # a cached activation: shapes must match exactly
                return _check_shape(value, act, name, "the patched tensor")
            try:
                return value.to(device=act.device, dtype=act.dtype).expand(act.shape)
            except RuntimeError as exc:
                raise ValueError(f"the patched tensor of shape {tuple(value.shape)} does not broadcast "
                                 f"to the activation of {name!r}, shape {tuple(act.shape)}") from exc

        return fixed
    if callable(rep):
        def call(act: torch.Tensor) -> torch.Tensor:
            new = rep(act)
            if not isinstance(new, torch.Tensor):
                raise ValueError(f"the callable for {name!r} returned {type(new).__name__}, not a tensor")
            return _check_shape(new, act, name, "the callable's result")

        return call
    raise TypeError(f"replacement for {name!r} must be a string, number, tensor or callable; "
                    f"got {type(rep).__name__}")


def _apply(fn: Callable, act: torch.Tensor, neurons: torch.Tensor | None, name: str) -> torch.Tensor:
    new = fn(act)
    if neurons is None:
        return new
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
    random_state: RandomState = None,
) -> Iterator[nn.Module]:
    """Replace module outputs in every forward pass run inside the block.

    Parameters
    ----------
    model : nn.Module
    replacements : mapping ``module spec -> replacement``
        Keys are anything :func:`resolve_modules` accepts (a glob patches every
        match). The output ``a`` (shape ``(B, ..., U)``) is replaced by

        * ``"zero"``: zeros;
        * ``"mean"``: ``reference.mean(dim=0)`` broadcast over the batch;
        * ``"resample"``: ``reference[i]`` for rows ``i`` drawn uniformly with
          replacement (``random_state``), a fresh draw per forward call;
        * a number: that constant;
        * a tensor with ``a.dim()`` dims (e.g. a cached activation of another
          input, for clean → corrupted patching): used as is, its shape must
          equal ``a.shape``; a tensor with fewer dims is broadcast to ``a.shape``;
        * a callable ``f(a) -> tensor`` of ``a.shape``.

        For tuple outputs (``nn.MultiheadAttention``) element 0 is replaced.
    neurons : int or sequence of int, optional
        Indices into the last dim of the output; only these units are
        replaced, the others keep their computed value.
    reference : tensor or mapping name -> tensor, optional
        Activations (first axis = samples) for ``"mean"`` and ``"resample"``,
        e.g. the :class:`Activations` returned by :func:`collect`.
    random_state : None, int or numpy Generator

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
    fns: dict[str, tuple[nn.Module, Callable]] = {}
    for spec, rep in replacements.items():
        for name, module in resolve_modules(model, spec).items():
            if name in fns:
                raise ValueError(f"module {name!r} is patched twice; give each module one replacement")
            fns[name] = (module, _make_fn(name, rep, reference, rng))
    handles = []
    try:
        for name, (module, fn) in fns.items():

            def hook(_m: nn.Module, _i: Any, out: Any, fn: Callable = fn, name: str = name) -> Any:
                if isinstance(out, tuple):
                    return (_apply(fn, out[0], idx, name), *out[1:])
                return _apply(fn, out, idx, name)

            handles.append(module.register_forward_hook(hook))
        yield model
    finally:
        for h in handles:
            h.remove()


def neuron_importance(
    model: nn.Module,
    module: Any,
    inputs: Any,
    *,
    metric: str | Callable | Metric | None = None,
    labels: Any = None,
    output: OutputSelector | None = None,
    batch_size: int | None = None,
) -> pd.Series:
    """Effect on the model output of zero-patching each unit of ``module``'s output.

    For unit ``j`` (index into the last dim of the output), ``f_j`` is the
    selected model output with that unit set to 0 and ``f`` the unpatched one.

    * without ``metric``: ``importance_j = mean_{rows, outputs} |f_j(x) − f(x)|``;
    * with ``metric`` and ``labels``: ``metric.degradation(m(f), m(f_j))``
      (positive = worse; :func:`featurelens._metrics.get_metric`; a callable
      is a loss ``fn(y_true, y_pred)``). Single-output predictions are passed
      as ``(N,)``.

    Vectorised: the inputs are stacked once per chunk of units and one hook
    zeroes unit ``j`` in block ``j`` of rows, so one forward serves many units.
    ``batch_size`` bounds the rows per forward (default 4096). Runs in eval
    mode under ``no_grad``; ``output`` defaults to
    ``OutputSelector(target="all")``.

    Returns
    -------
    pandas.Series
        Indexed by unit ``0..U-1`` (index name ``"unit"``).
    """
    name, mod = resolve_single(model, module)
    if (metric is None) != (labels is None):
        raise ValueError("metric and labels go together: pass both, or neither for mean |Δ output|")
    m = get_metric(metric) if metric is not None else None
    budget = 4096 if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    selector = output if output is not None else OutputSelector(target="all")
    if not isinstance(selector, OutputSelector):
        raise TypeError(f"output must be an OutputSelector or None, got {type(selector).__name__}")
    x = as_input_tensor(model, inputs)
    n = x.shape[0]
    y = None if labels is None else torch.as_tensor(np.asarray(labels))
    if y is not None and y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} rows but inputs has {n}")
    with preserve_model(model), torch.no_grad():
        with capture(model, mod) as acts:
            base = torch.cat([selector(model(b), b.shape[0]).reshape(b.shape[0], -1)
                              for b in iter_batches(x, budget)])
        if name not in acts or not isinstance(acts[name], torch.Tensor) or acts[name].dim() < 2:
            raise ValueError(f"module {name!r} did not produce a (B, ..., U) tensor output")
        units = acts[name].shape[-1]
        rows = min(n, budget)
        chunk = max(1, budget // rows)
        patched = torch.empty(units, n, base.shape[1], dtype=base.dtype)
        for start in range(0, n, rows):
            xb = x[start : start + rows]
            b = xb.shape[0]
            for j0 in range(0, units, chunk):
                c = min(chunk, units - j0)
                keep = torch.ones(c, units, dtype=torch.bool, device=xb.device)
                keep[torch.arange(c), torch.arange(j0, j0 + c)] = False

                def zero_block(act: torch.Tensor, keep: torch.Tensor = keep, c: int = c) -> torch.Tensor:
                    view = act.reshape(c, act.shape[0] // c, *act.shape[1:])
                    mask = keep.reshape(c, *([1] * (view.dim() - 2)), units)
                    return torch.where(mask, view, view.new_zeros(())).reshape(act.shape)

                with patch(model, {name: zero_block}):
                    out = selector(model(xb.repeat(c, *([1] * (xb.dim() - 1)))), c * b)
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
