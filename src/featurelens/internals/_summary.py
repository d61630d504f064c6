"""Per-layer summaries of a model: representation metrics, gradient norms, one-call overview.

These put the representation metrics of :mod:`featurelens.representation`
and the attention statistics of :mod:`featurelens.internals.attention` side
by side for every layer of a model; the ``featurelens internals`` command,
the demo report and the sweeps are built on them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._protocol import FrameResult, jsonable
from featurelens._validation import RandomState, check_int, check_option, check_random_state
from featurelens.data import GroupMembers
from featurelens.internals._capture import capture, collect, iter_batches, probe_batch_axis
from featurelens.internals._modules import (
    ModuleSpec,
    as_input_tensor,
    check_hookable,
    hookable_modules,
    is_module_type,
    module_type_name,
    resolve_single,
)
from featurelens.internals.attention import attention_statistics, attention_weights
from featurelens.models import find_input_layer, preserve_model
from featurelens.representation import group_overlap, interference, jacobian_overlap, sparsity, spectrum

#: module types summarised by default (their outputs are the layer representations)
LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.RNNBase, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
    nn.MultiheadAttention, nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.LeakyReLU,
)
LOSSES = ("bce", "ce", "mse")


def default_layers(model: nn.Module) -> list[str]:
    """Dotted names of the submodules of :data:`LAYER_TYPES`, in module order.

    Submodules of a selected ``nn.TransformerEncoderLayer`` (its attention,
    feed-forward Linears, activation) are included as well, so a transformer
    is summarised inside each block too.
    """
    check_hookable(model)
    return [name for name, m in hookable_modules(model).items() if name and is_module_type(m, LAYER_TYPES)]


def _subsample(x: torch.Tensor, max_rows: int | None, rng: np.random.Generator) -> torch.Tensor:
    if max_rows is None or x.shape[0] <= max_rows:
        return x
    idx = np.sort(rng.choice(x.shape[0], size=max_rows, replace=False))
    return x[torch.as_tensor(idx, device=x.device)]


def layer_summary(
    model: nn.Module,
    X: Any,
    *,
    modules: ModuleSpec | None = None,
    max_rows: int | None = 2000,
    batch_size: int | None = None,
    dead_threshold: float = 0.0,
    random_state: RandomState = 0,
) -> pd.DataFrame:
    """Representation metrics of every layer's output, one row per layer.

    Parameters
    ----------
    model : nn.Module
    X : tensor or array-like
        ``(n, d)`` or ``(n, T, d)`` rows the model accepts.
    modules : ModuleSpec or None
        Layers to summarise (exact path, glob, type, instance or a list);
        ``None``: :func:`default_layers`.
    max_rows : int or None
        Input rows used, drawn without replacement with ``random_state``
        (``None``: all). SVDs cost ``O(rows * units**2)``.
    batch_size : int or None
        Rows per forward pass.
    dead_threshold : float
        Unit outputs with ``|a| <= dead_threshold`` count as inactive
        (:func:`featurelens.representation.sparsity`).
    random_state : int, Generator or None
        Seed of the row subsample.

    Returns
    -------
    pandas.DataFrame
        Index ``layer`` (dotted module path), columns ``type``, ``units``
        (size of the last axis), ``samples`` (rows of the activation matrix:
        inputs × tokens, token axes are flattened into rows),
        ``effective_rank``, ``n_significant`` (the superposition and spurious-correlation notebook's 1 % count),
        ``participation_ratio``, ``compression_ratio``, ``spectral_decay``
        (all from :func:`~featurelens.representation.spectrum` on the
        centred activations), ``interference`` (mean |off-diagonal
        correlation|, :func:`~featurelens.representation.interference`),
        ``fraction_inactive`` and ``dead_units``
        (:func:`~featurelens.representation.sparsity`). Layers whose output
        has fewer than 2 units (e.g. a single logit) are left out; a module
        with a tuple output (attention, RNN) is summarised on element 0.
    """
    spec = default_layers(model) if modules is None else modules
    if max_rows is not None:
        max_rows = check_int(max_rows, name="max_rows", minimum=2)
    rng = check_random_state(random_state)
    if not spec:
        raise ValueError(f"{type(model).__name__} has no submodule of the summarised types; pass modules=")
    x = _subsample(as_input_tensor(model, X), max_rows, rng)
    if x.shape[0] < 2:
        raise ValueError(f"X must have at least 2 rows, got {x.shape[0]}")
    acts = collect(model, spec, x, batch_size=batch_size)
    types = {n: module_type_name(m) for n, m in model.named_modules()}
    rows = []
    for name in acts:
        parts = [p for p in acts.calls_of(name) if isinstance(p, torch.Tensor)]
        if not parts or parts[0].dim() < 2 or parts[0].shape[-1] < 2:
            continue
        if types.get(name) == "Conv1d":  # (n, C, L): channels are the units, positions extra samples
            if any(p.dim() != 3 for p in parts):
                raise ValueError(f"Conv1d layer {name!r} returned shapes {[tuple(p.shape) for p in parts]}; "
                                 "a batched Conv1d output is (n, channels, length)")
            a = torch.cat([p.transpose(1, 2).reshape(-1, p.shape[1]) for p in parts])
        else:
            a = acts.unit_rows(name)
        m = a.to(torch.float64).numpy()
        sp, inter, spars = spectrum(m), interference(m), sparsity(m, dead_threshold)
        rows.append({
            "layer": name, "type": types.get(name, "?"), "units": m.shape[1], "samples": m.shape[0],
            "effective_rank": sp.effective_rank, "n_significant": sp.n_significant,
            "participation_ratio": sp.participation_ratio, "compression_ratio": sp.compression_ratio,
            "spectral_decay": sp.spectral_decay, "interference": inter.mean_abs_correlation,
            "fraction_inactive": spars.fraction_inactive, "dead_units": spars.n_dead,
        })
    if not rows:
        raise ValueError("none of the selected layers has an output with at least 2 units")
    return pd.DataFrame(rows).set_index("layer")


def _loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "ce" and (out.dim() != 2 or y.min() < 0 or y.max() >= out.shape[-1]):
        raise ValueError(
            f"loss='ce' needs class logits (n, K) and y in [0, K); got output shape "
            f"{list(out.shape)} and y in [{int(y.min())}, {int(y.max())}]"
        )
    if loss == "bce" and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"loss='bce' needs y in [0, 1], got values in [{float(y.min())}, {float(y.max())}]")
    if loss == "bce":
        return nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), y.reshape(-1).to(out.dtype))
    if loss == "ce":
        return nn.functional.cross_entropy(out, y.reshape(-1).long())
    return nn.functional.mse_loss(out.reshape(y.shape), y.to(out.dtype))


def gradient_norms(
    model: nn.Module, X: Any, y: Any, *, loss: str = "bce", batch_size: int | None = None
) -> pd.DataFrame:
    """L2 norm of the loss gradient with respect to each module's own parameters.

    The loss is the mean over all rows of ``loss`` (``"bce"``: binary
    cross-entropy on logits, ``"ce"``: cross-entropy on class logits,
    ``"mse"``); gradients are accumulated over batches with weights
    ``rows / n`` so the result equals the full-batch gradient. The model runs
    in eval mode (no dropout); computed with ``torch.autograd.grad``, so no
    ``.grad`` field is touched and mode and flags are restored.

    Returns
    -------
    pandas.DataFrame
        Index ``module`` (modules that own parameters directly), columns
        ``parameters`` (count) and ``grad_norm`` (``sqrt(sum_p ||dL/dp||**2)``
        over the module's own parameters), ``grad_norm_per_parameter``
        (``grad_norm / sqrt(parameters)``, the RMS gradient entry).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    loss = check_option(loss, name="loss", options=LOSSES)
    x = as_input_tensor(model, X)
    y = torch.as_tensor(np.asarray(y)).to(x.device)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} rows but X has {x.shape[0]}")
    owners = [(n, m, list(m.parameters(recurse=False))) for n, m in model.named_modules()]
    owners = [(n or "<model>", m, p) for n, m, p in owners if p]
    params = [p for _, _, ps in owners for p in ps]
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters")
    total = [torch.zeros_like(p) for p in params]
    n = x.shape[0]
    with preserve_model(model, eval_mode=True), torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        start = 0
        for xb in iter_batches(x, batch_size):
            yb = y[start:start + xb.shape[0]]
            start += xb.shape[0]
            grads = torch.autograd.grad(_loss(model(xb), yb, loss) * (xb.shape[0] / n), params, allow_unused=True)
            for t, g in zip(total, grads, strict=True):
                if g is not None:
                    t += g
    rows, i = [], 0
    for name, _m, ps in owners:
        g = total[i:i + len(ps)]
        i += len(ps)
        count = sum(p.numel() for p in ps)
        norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in g)))
        rows.append({"module": name, "parameters": count, "grad_norm": norm,
                     "grad_norm_per_parameter": norm / np.sqrt(count)})
    return pd.DataFrame(rows).set_index("module")


@dataclass(frozen=True)
class InternalsSummary(FrameResult):
    """What ``featurelens internals`` reports (see :func:`summarize_internals`).

    Attributes
    ----------
    layers : pandas.DataFrame
        One row per layer (indexed by its dotted name): ``type``, ``units``,
        ``samples`` and the representation metrics of :func:`layer_summary`.
    overlap : dict of str to DataFrame
        Square group x group overlap matrices (see :func:`summarize_internals`).
    attention : DataFrame or None
        Per (module, head) attention statistics, ``None`` without attention.
    notes : tuple of str
        Why an analysis was skipped.
    """

    layers: pd.DataFrame
    overlap: dict[str, pd.DataFrame] = field(default_factory=dict)
    attention: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready contents (NaN as ``None``)."""

        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            out = df.reset_index().astype(object).where(df.reset_index().notna(), None)
            return out.to_dict(orient="records")

        return jsonable({
            "layers": records(self.layers),
            "overlap": {k: {"groups": list(v.index), "matrix": v.to_numpy().tolist()} for k, v in self.overlap.items()},
            "attention": None if self.attention is None else records(self.attention),
            "notes": list(self.notes),
        }, where="internals")

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: :attr:`layers` (a copy), one row per layer."""
        return self.layers.copy()

    def _html_title(self) -> str:
        return f"InternalsSummary: {len(self.layers)} layers"


def _jacobian_layer(model: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> str | None:
    """Return the last summarised layer (in forward order) with >= 2 outputs that is not the model output."""
    with preserve_model(model), torch.no_grad(), capture(model, list(layers)) as acts:
        out = model(x[:2])
    rows = min(2, x.shape[0])  # per-sample size = numel / rows, whatever the layer's batch axis
    order = [n for n in acts if acts.calls.get(n) == 1 and isinstance(acts[n], torch.Tensor) and acts[n].dim() >= 2
             and acts[n].numel() // rows >= 2 and acts[n].shape != out.shape]
    top = [n for n in order if not any(n != o and n.startswith(o + ".") for o in order)]
    return top[-1] if top else None


def summarize_internals(
    model: nn.Module,
    X: Any,
    *,
    groups: Mapping[str, GroupMembers] | None = None,
    feature_names: Sequence[str] | None = None,
    modules: ModuleSpec | None = None,
    jacobian_layer: str | None = None,
    max_rows: int | None = 2000,
    jacobian_rows: int = 256,
    random_state: RandomState = 0,
) -> InternalsSummary:
    """Per-layer representation metrics, input-group overlap and attention statistics.

    Parameters
    ----------
    model : nn.Module
    X : tensor or array-like
        ``(n, d)`` or ``(n, T, d)`` rows.
    groups : mapping of str to members, optional
        Input feature groups (names or indices of the last axis). With
        groups, ``overlap`` holds the principal-angle overlap matrix
        (:func:`~featurelens.representation.group_overlap`) of the groups'
        columns in the input layer's weight (found by data flow) under
        ``"input weights (<layer>)"`` and in the average Jacobian of
        ``jacobian_layer`` (:func:`~featurelens.representation.jacobian_overlap`)
        under ``"Jacobian (<layer>)"``.
    feature_names : sequence of str, optional
        Names of the last input axis (default ``x0 ..``).
    modules : ModuleSpec or None
        Layers for :func:`layer_summary`.
    jacobian_layer : str or None
        Exact path of the layer whose output's Jacobian is used; default: the
        last outermost summarised layer with at least 2 outputs that is not
        the model output (e.g. ``transformer_layers.1`` of a SmallTransformer).
    max_rows, jacobian_rows : int
        ``max_rows`` input rows are drawn once (``None``: all) and used for
        the layer metrics and the attention statistics; the average
        Jacobian uses ``jacobian_rows`` of them.
    random_state : int, Generator or None
        Seed of the row subsamples.
    """
    check_hookable(model)
    rng = check_random_state(random_state)
    jacobian_rows = check_int(jacobian_rows, name="jacobian_rows", minimum=1)
    if max_rows is not None:
        max_rows = check_int(max_rows, name="max_rows", minimum=2)
    x = _subsample(as_input_tensor(model, X), max_rows, rng)  # one sample of rows for every metric
    layers = layer_summary(model, x, modules=modules, max_rows=None)
    notes: list[str] = []
    overlap: dict[str, pd.DataFrame] = {}
    if groups is not None:
        try:
            name, lin = find_input_layer(model, x)
        except ValueError as exc:
            notes.append(f"no input-weight overlap: {exc}")
        else:
            overlap[f"input weights ({name})"] = group_overlap(lin.weight, groups, feature_names=feature_names)
        target = jacobian_layer or _jacobian_layer(model, x, default_layers(model))
        if target is None:
            notes.append("no Jacobian overlap: no hidden layer with at least 2 outputs")
        else:
            target, _ = resolve_single(model, target, name="jacobian_layer")
            overlap[f"Jacobian ({target})"] = jacobian_overlap(
                model, _subsample(x, jacobian_rows, rng), groups,
                layer_fn=_layer_fn(model, target, x[:2]), feature_names=feature_names,
            )
    attention = None
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        attention = attention_statistics(attention_weights(model, x))
    return InternalsSummary(layers=layers, overlap=overlap, attention=attention, notes=tuple(notes))


def _layer_fn(model: nn.Module, name: str, probe: torch.Tensor):
    """Build a function ``x -> output of module name`` (tuple outputs: element 0).

    The batch is moved to axis 0 and the whole model runs; the layer's batch axis is located on
    the ``probe`` rows (:func:`~featurelens.internals._capture.probe_batch_axis`), so a
    sequence-first ``(T, B, U)`` layer gives ``(B, T, U)`` and the Jacobian is taken per sample.
    """
    module = resolve_single(model, name, name="jacobian_layer")[1]
    with preserve_model(model):
        found = probe_batch_axis(model, name, module, probe)
    if found.calls != 1:
        raise ValueError(f"the Jacobian layer {name!r} ran {found.calls} times in one forward pass; "
                         "pick a layer that runs once")

    def fn(x: torch.Tensor) -> torch.Tensor:
        with capture(model, name, detach=False) as acts:  # copies stay in the graph: gradients flow
            model(x)
        if acts.calls.get(name) != 1:
            raise ValueError(
                f"the Jacobian layer ran {acts.calls.get(name, 0)} times in one forward pass; "
                "pick a layer that runs once"
            )
        return acts[name].movedim(found.axis, 0)

    return fn
