"""Model structure found by forward hooks.

The input layer found by data flow (:func:`find_input_layer`) and a verified strict chain of
``nn.Linear`` layers (:func:`linear_chain`), shared by the weight-based attributions, edge
scores, ``prune_inputs``, ``optimize_input`` and the internals summaries.

Hooks record copies (``detach().clone()``) of what they see, so an in-place
operation later in the forward pass (``ReLU(inplace=True)``, ``x.mul_()``)
cannot change a recorded activation.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featurelens.data import as_tensor
from featurelens.models._evaluate import call_model
from featurelens.models._output import pick_output
from featurelens.models._state import model_device_dtype, preserve_model

PROBE_ROWS = 64  # rows of the structural checks (the scores themselves use every row)

_TRANSFORMER = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
                nn.TransformerDecoder, nn.Transformer)
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_UNSUPPORTED: tuple[tuple[type[nn.Module] | tuple[type[nn.Module], ...], str], ...] = (
    (_TRANSFORMER, "a transformer layer (attention, residuals, LayerNorm)"),
    (nn.MultiheadAttention, "attention (it mixes tokens)"),
    (_NORMS, "a normalisation over the units of a layer (it mixes units)"),
    (nn.modules.conv._ConvNd, "a convolution (not a per-unit nn.Linear)"),
    ((nn.RNNBase, nn.RNNCellBase), "a recurrent layer (its state mixes time steps)"),
    ((nn.Softmax, nn.LogSoftmax, nn.Softmin), "a softmax (it mixes units)"),
    (nn.Bilinear, "a bilinear layer (products of units)"),
    (nn.Embedding, "an embedding (integer inputs)"),
)


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the needed activation is captured."""


@dataclass
class _Call:
    """One call of a module: for an ``nn.Linear``, copies of its input and output (else None)."""

    name: str
    module: nn.Module
    input: torch.Tensor | None
    output: torch.Tensor | None


def _copy(value: Any) -> torch.Tensor | None:
    """Return a detached copy of a tensor (later in-place operations cannot change it); None otherwise."""
    return value.detach().clone() if isinstance(value, torch.Tensor) else None


def _display(name: str) -> str:
    return "<model>" if name == "" else name


@contextlib.contextmanager
def _recording(modules: Sequence[tuple[str, nn.Module]]) -> Iterator[list[_Call]]:
    """Record every call of ``modules``.

    Name, module and, for ``nn.Linear`` calls, copies of the first positional input and of the
    output taken when the call returns.
    """
    calls: list[_Call] = []
    handles = []

    def hook_for(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if isinstance(module, nn.Linear):
                calls.append(_Call(name, module, _copy(args[0]) if args else None, _copy(output)))
            else:
                calls.append(_Call(name, module, None, None))

        return hook

    try:
        for name, m in modules:
            try:
                handles.append(m.register_forward_hook(hook_for(name)))
            except (RuntimeError, AttributeError, NotImplementedError) as exc:
                raise ValueError(
                    f"cannot attach forward hooks to module {_display(name)!r} "
                    f"({type(m).__name__}); structural scores need a Python nn.Module, not "
                    f"TorchScript or an exported program: {exc}"
                ) from exc
        yield calls
    finally:
        for h in handles:
            h.remove()


def _compiled_note(model: nn.Module) -> str:
    """Why a compiled model shows no ``nn.Linear`` modules ("" for a plain ``nn.Module``)."""
    if isinstance(model, torch.jit.ScriptModule):
        kind = "a TorchScript module"
    elif isinstance(model, torch.fx.GraphModule):
        kind = "an exported or traced graph (torch.export / torch.fx)"
    else:
        return ""
    return (f"; it is {kind}, whose layers are no nn.Linear modules: the weight-based methods "
            "need the Python nn.Module (a state dict with its factory), or use a perturbation or "
            "gradient method")


def run_model(model: nn.Module, x: torch.Tensor, output: int | None) -> torch.Tensor:
    """``pick_output(call_model(model, x), output)``."""
    return pick_output(call_model(model, x), output)


def _reads_input(a: torch.Tensor, x: torch.Tensor) -> bool:
    """Tell whether ``a`` equals ``x`` bit for bit, up to size-1 axes added or removed (e.g. ``x.unsqueeze(1)``).

    The last axis must be the same, so the Linear's weight columns are the input features.
    """
    if a is x:
        return True
    return (
        a.shape[-1:] == x.shape[-1:] and a.numel() == x.numel() and a.dtype == x.dtype
        and a.device == x.device and [s for s in a.shape if s != 1] == [s for s in x.shape if s != 1]
        and torch.equal(a.reshape(x.shape), x)
    )


def linear_readers(calls: Sequence[_Call], x: torch.Tensor) -> list[_Call]:
    """Return the calls of ``nn.Linear`` modules whose input is ``x`` itself or a size-1-axis view of it."""
    found: dict[str, _Call] = {}
    for c in calls:
        a = c.input
        if not isinstance(c.module, nn.Linear) or not isinstance(a, torch.Tensor):
            continue
        if _reads_input(a, x):
            found.setdefault(c.name, c)
    return list(found.values())


def _perturbed(x: torch.Tensor) -> torch.Tensor:
    """``x`` plus seeded noise of half each column's std (1 for constant columns)."""
    flat = x.reshape(-1, x.shape[-1])
    sd = flat.std(dim=0) if flat.shape[0] > 1 else torch.ones_like(flat[0])
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return x + 0.5 * sd * noise.to(device=x.device, dtype=x.dtype)


def _check_stage(model: nn.Module, x_alt: torch.Tensor, prev: _Call, consumer: _Call | None,
                 clean: torch.Tensor, output: int | None) -> None:
    """Check that ``clean`` is an elementwise function of ``prev``'s output alone.

    ``clean`` is the consumer's input, or the model output: it must be unchanged when everything
    upstream changes but ``prev``'s output is held fixed, and have a diagonal Jacobian with
    respect to it.
    """
    leaf = prev.output.detach().clone().requires_grad_(True)
    captured: dict[str, torch.Tensor] = {}

    def capture(module: nn.Module, args: tuple) -> None:
        captured["a"] = args[0]
        raise _Stop

    # the model computes on a copy of the leaf, so an in-place operation downstream
    # (ReLU(inplace=True)) does not modify a leaf that requires grad; gradients reach the leaf
    handles = [prev.module.register_forward_hook(lambda m, args, out: leaf.clone())]
    if consumer is not None:
        handles.append(consumer.module.register_forward_pre_hook(capture))
    try:
        with torch.enable_grad():
            try:
                a = run_model(model, x_alt, output)
            except _Stop:
                a = captured["a"]
    finally:
        for h in handles:
            h.remove()
    where = (f"between nn.Linear {prev.name!r} and nn.Linear {consumer.name!r}" if consumer is not None
             else f"after the last nn.Linear {prev.name!r}")
    if not isinstance(a, torch.Tensor) or not a.requires_grad:
        raise ValueError(f"{where}: the activations do not depend on the output of {prev.name!r}")
    if consumer is not None and a.shape != leaf.shape:
        raise ValueError(
            f"{where} the activations change shape from {tuple(leaf.shape)} to {tuple(a.shape)}; "
            "only elementwise operations may sit between the Linear layers of an edge-score chain"
        )
    tiny = torch.finfo(clean.dtype).tiny
    scale = float(clean.detach().abs().max()) if clean.numel() else 0.0
    if a.shape != clean.shape or not torch.allclose(a.detach(), clean, rtol=1e-4, atol=1e-6 * scale + tiny):
        raise ValueError(
            f"{where} the activations depend on more than the output of {prev.name!r} (a residual/skip "
            "connection, a concatenation or a branch); edge scores need a strictly sequential chain "
            "in which each Linear consumes the previous layer's (activated) output"
        )
    if a.numel() != leaf.numel():
        return  # a reduction after the last Linear (e.g. pooling over time steps)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(device=a.device, dtype=a.dtype)
    (g1,) = torch.autograd.grad(a, leaf, v, retain_graph=True)
    (g0,) = torch.autograd.grad(a, leaf, torch.ones_like(a))
    diag = g0 * v.reshape(leaf.shape)
    tol = 1e-4 * float(g0.abs().max()) * float(v.abs().max()) + tiny
    if not torch.allclose(g1, diag, rtol=0, atol=tol):
        raise ValueError(
            f"{where} the operations mix units or rows (e.g. softmax, a normalisation over units, "
            "a matrix product outside nn.Linear); edge scores need elementwise operations"
            + ("" if consumer is not None else "; to score the logits pass the model without its final operation")
        )


def linear_chain(model: nn.Module, X: torch.Tensor, *, output: int | None = None) -> list[tuple[str, nn.Linear]]:
    """Return the ``nn.Linear`` layers of ``model`` in data-flow order, verified to form a strict chain.

    Verified with forward hooks on the first ``PROBE_ROWS`` (64) rows of ``X``
    (a tensor on the model's device and dtype; the caller sets the model's
    mode and gradient flags): no unsupported module runs (attention,
    transformer layers, LayerNorm/GroupNorm/RMSNorm, convolutions, RNNs,
    softmax); every Linear runs once; the first one reads the model input
    itself (equal to it bit for bit, up to size-1 axes); and each later
    Linear's input, as well as the model output (element ``output`` of a
    tuple-returning model), is an elementwise function of the previous
    Linear's output alone (unchanged when the model input is perturbed but
    that output is held fixed, and with a diagonal Jacobian).

    Returns
    -------
    list of (str, nn.Linear)
        Exact module paths and modules, first (input) layer first.

    Raises
    ------
    ValueError
        Saying what breaks the chain.
    """
    X = X[:PROBE_ROWS]
    named = list(model.named_modules())
    with _recording(named) as calls, torch.no_grad():
        out = run_model(model, X, output)
    for c in sorted(calls, key=lambda c: c.name.count(".") + (c.name != "")):  # outermost first
        for kind, why in _UNSUPPORTED:
            if isinstance(c.module, kind):
                raise ValueError(
                    f"edge scores are undefined for this model: module {_display(c.name)!r} "
                    f"({type(c.module).__name__}) is {why}; they need a chain of nn.Linear layers "
                    "joined by elementwise activations (Dropout and BatchNorm1d in eval mode allowed)"
                )
    lin = [c for c in calls if isinstance(c.module, nn.Linear)]
    if not lin:
        raise ValueError(
            "no nn.Linear layer ran in the model's forward pass; edge scores need nn.Linear layers"
            + _compiled_note(model)
        )
    repeated = [n for n, k in Counter(c.name for c in lin).items() if k > 1]
    if repeated:
        raise ValueError(
            f"nn.Linear {repeated[0]!r} runs {Counter(c.name for c in lin)[repeated[0]]} times in one "
            "forward pass (shared weights or a loop over time steps); each layer must run once "
            "(apply per-time-step layers to the whole (n, T, d) tensor)"
        )
    readers = linear_readers(lin, X)
    if len(readers) > 1:
        raise ValueError(
            "the model input feeds several nn.Linear layers: "
            f"{', '.join(repr(c.name) for c in readers)}; edge scores need a single input layer"
        )
    if not readers or readers[0].name != lin[0].name:
        raise ValueError(
            f"the first nn.Linear to run, {lin[0].name!r}, does not read the model input unchanged "
            "(the model transforms or reshapes its inputs first); edge scores need the input "
            "layer to read the inputs themselves"
        )
    x_alt = _perturbed(X)
    for prev, cons in itertools.pairwise(lin):
        _check_stage(model, x_alt, prev, cons, cons.input, output)
    _check_stage(model, x_alt, lin[-1], None, out, output)
    return [(c.name, c.module) for c in lin]


def locate_input_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Linear]:
    """:func:`find_input_layer` on the tensor ``x`` as given (no conversion, mode unchanged)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            "the model has no nn.Linear layer, so it has no input layer to read weights from" + _compiled_note(model)
        )
    with _recording(linears) as calls, torch.no_grad():
        call_model(model, x)
    readers = linear_readers(calls, x)
    if len(readers) == 1:
        return readers[0].name, readers[0].module
    if readers:
        raise ValueError(
            "the model input feeds several nn.Linear layers: "
            f"{', '.join(repr(c.name) for c in readers)}; the input layer is ambiguous"
        )
    ran = list(dict.fromkeys(c.name for c in calls))
    ran_txt = ", ".join(map(repr, ran)) if ran else "none ran"
    raise ValueError(
        f"no nn.Linear layer reads the model input (shape {tuple(x.shape)}) unchanged (Linear layers "
        f"that ran: {ran_txt}); the model transforms or reshapes its inputs before its first "
        "Linear layer, so no weight column belongs to one input feature"
    )


def find_input_layer(model: nn.Module, X: Any) -> tuple[str, nn.Linear]:
    """Find the ``nn.Linear`` layer that reads the model input, by data flow.

    The model is run (in eval mode, without gradients; its mode is restored) on
    up to 64 rows of ``X`` with forward hooks on every ``nn.Linear``; the
    input layer is the one whose forward input *is* the input tensor or equals
    it bit for bit up to size-1 axes (e.g. a row turned into one token by
    ``x.unsqueeze(1)``, as in ``SmallTransformer``), with the feature axis last
    in both. Module order and names play no part
    (the deep-hedging lottery-ticket notebook took "the first Linear by module order", which need not be the
    input layer). A Linear applied to ``(n, T, d)`` sequences (per time step)
    qualifies.

    Parameters
    ----------
    model : nn.Module
    X : Tensor, ndarray or DataFrame
        ``(n, d)`` or ``(n, T, d)`` rows the model accepts.

    Returns
    -------
    (name, module) : tuple of str and nn.Linear
        The module's exact path in ``model.named_modules()`` and the module.

    Raises
    ------
    ValueError
        If no Linear reads the input unchanged (the model transforms or reshapes
        it first), or several do (the candidates are named).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device, dtype = model_device_dtype(model)
    x, _ = as_tensor(X, name="X", dtype=dtype, device=device)
    with preserve_model(model, eval_mode=True):
        return locate_input_layer(model, x[:PROBE_ROWS])
