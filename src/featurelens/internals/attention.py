"""Per-head attention probabilities of ``nn.MultiheadAttention`` and their statistics.

The superposition and spurious-correlation notebook (its ``ScaleAnalyzer``) applied ``softmax``
to attention weights that were already probabilities and measured "head diversity" on weights
already averaged over heads. Here the probabilities are captured per head and every
statistic is computed on them as given (never re-normalised).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._validation import check_int
from featurelens.internals._capture import iter_batches
from featurelens.internals._modules import ModuleSpec, as_input_tensor, resolve_modules
from featurelens.models import preserve_model

__all__ = ["attention_statistics", "attention_weights", "record_attention"]

_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
             "is_causal")


def _attention_modules(model: nn.Module, modules: ModuleSpec | None) -> dict[str, nn.MultiheadAttention]:
    named = resolve_modules(model, nn.MultiheadAttention if modules is None else modules)
    bad = [n for n, m in named.items() if not isinstance(m, nn.MultiheadAttention)]
    if bad:
        raise TypeError(f"modules must name nn.MultiheadAttention submodules; not attention: {', '.join(bad)}")
    return named  # type: ignore[return-value]


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = dict(zip(_MHA_ARGS, args, strict=False))
    bound.update(kwargs)
    return bound


def _recompute(module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """Per-head weights ``(n, heads, L, S)`` of one call, recomputed by a separate hook-free call."""
    b = _bind(args, kwargs)
    query, key, value = b["query"], b["key"], b["value"]
    attn_mask = b.get("attn_mask")
    is_causal = bool(b.get("is_causal", False))
    if is_causal and attn_mask is None:  # is_causal is only a hint; with need_weights a mask is required
        batched = query.dim() == 3
        seq_axis = 1 if (batched and module.batch_first) else 0
        length_q, length_k = query.shape[seq_axis], key.shape[seq_axis]
        attn_mask = torch.ones(length_q, length_k, dtype=torch.bool, device=query.device).triu(1)
    with torch.no_grad():
        # module.forward (not module(...)) so this call triggers no hooks
        _, weights = module.forward(
            query,
            key,
            value,
            key_padding_mask=b.get("key_padding_mask"),
            need_weights=True,
            attn_mask=attn_mask,
            average_attn_weights=False,
            is_causal=False,  # the mask carries the causal structure; need_weights ignores the hint
        )
    if weights is None:  # pragma: no cover - need_weights=True always returns weights
        raise RuntimeError("nn.MultiheadAttention returned no weights with need_weights=True")
    if weights.dim() == 3:  # unbatched input: (heads, L, S)
        weights = weights.unsqueeze(0)
    return weights.detach()


@contextlib.contextmanager
def record_attention(
    model: nn.Module, modules: ModuleSpec | None = None, *, to_cpu: bool = True
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record per-head attention probabilities during the forward passes run in the block.

    A forward pre-hook (``with_kwargs=True``) on every selected
    ``nn.MultiheadAttention`` recomputes the weights in a separate call,
    ``module.forward(q, k, v, need_weights=True, average_attn_weights=False,
    ...)`` under ``torch.no_grad()``, with the same query, key, value,
    ``key_padding_mask`` and ``attn_mask`` the model passed (``is_causal``
    without a mask becomes the explicit causal mask). The model's own call
    is not touched, so its outputs are those of the unhooked slow path.

    Parameters
    ----------
    model : nn.Module
    modules : ModuleSpec or None
        Attention modules to record (exact path, glob, type, instance or a
        list); ``None``: every ``nn.MultiheadAttention``.
    to_cpu : bool
        Move the recorded tensors to the CPU.

    Yields
    ------
    dict[str, list[torch.Tensor]]
        ``name -> list`` with one tensor ``(batch, heads, T_query, T_key)``
        per call, in call order (unbatched calls get a batch axis of 1).

    Notes
    -----
    PyTorch disables the fused eval fast path of ``nn.TransformerEncoderLayer``
    (and of ``nn.MultiheadAttention``) while hooks are attached, so inside the
    block the encoder runs its slow path; outputs are bit-identical to an
    unhooked run of the slow path (training mode, or
    ``torch.backends.mha.set_fastpath_enabled(False)``) and may differ from
    the fused kernel by rounding only. Hooks are removed on exit, also when
    the block raises. The model's mode is not changed here.
    """
    named = _attention_modules(model, modules)
    records: dict[str, list[torch.Tensor]] = {}
    handles = []
    try:
        for name, module in named.items():

            def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], name: str = name) -> None:
                w = _recompute(m, args, kwargs)  # type: ignore[arg-type]
                records.setdefault(name, []).append(w.cpu() if to_cpu else w)

            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        yield records
    finally:
        for h in handles:
            h.remove()


def attention_weights(
    model: nn.Module,
    X: Any,
    *,
    modules: ModuleSpec | None = None,
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-head attention probabilities of the model's ``nn.MultiheadAttention`` modules.

    Parameters
    ----------
    model : nn.Module
        Any model; attention inside ``nn.TransformerEncoderLayer`` (which
        calls it with ``need_weights=False``) is captured too.
    X : tensor or array-like
        Model input with the batch on dim 0, e.g. a sequence batch
        ``(n, T, d)``; converted to the model's device and floating dtype.
    modules : ModuleSpec or None
        Which attention modules (exact dotted path, glob such as
        ``"transformer_layers.*.self_attn"``, type, instance or a list);
        ``None``: all ``nn.MultiheadAttention`` submodules.
    batch_size : int or None
        Rows per forward pass (all at once if ``None``).

    Returns
    -------
    dict[str, torch.Tensor]
        ``name -> P`` on the CPU with shape ``(n, heads, T_query, T_key)``,
        ``P[b, h, i, j] = softmax_j(q_i^h · k_j^h / sqrt(d_head) + mask_ij)``,
        the probability that query ``i`` of row ``b`` puts on key ``j`` in
        head ``h`` (pre-dropout, not averaged over heads); rows sum to 1.
        A module called several times per forward pass has the calls
        concatenated along dim 0 in call order. Modules that never ran are
        absent.

    Notes
    -----
    Runs under ``torch.no_grad()`` in eval mode via
    :func:`~featurelens.models.preserve_model` (mode, ``requires_grad`` and
    hooks restored, also on exceptions); see :func:`record_attention` for how
    the weights are obtained without changing the model's computation.
    A tabular row fed to ``SmallTransformer`` is one token (``T = 1``): its
    attention is trivially 1; pass sequences ``(n, T, d)`` for non-trivial
    patterns.
    """
    _attention_modules(model, modules)
    if batch_size is not None:
        check_int(batch_size, name="batch_size", minimum=1)
    x = as_input_tensor(model, X)
    with preserve_model(model), torch.no_grad(), record_attention(model, modules) as records:
        for batch in iter_batches(x, batch_size):
            model(batch)
    return {name: torch.cat(parts, dim=0) for name, parts in records.items()}


def _as_probabilities(name: str, w: Any, atol: float) -> np.ndarray:
    p = w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, dtype=np.float64)
    if p.ndim != 4:
        hint = " (3-D weights look averaged over heads; pass per-head weights)" if p.ndim == 3 else ""
        raise ValueError(f"weights[{name!r}] must have shape (n, heads, T_query, T_key), got {p.shape}{hint}")
    if p.size == 0:
        raise ValueError(f"weights[{name!r}] is empty: shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"weights[{name!r}] contains NaN or inf (e.g. a fully masked query row)")
    if p.min() < -atol or not np.allclose(p.sum(axis=-1), 1.0, atol=atol, rtol=0.0):
        raise ValueError(
            f"weights[{name!r}] are not probabilities over the key axis (entries >= 0, rows summing to 1); "
            "pass softmax outputs, e.g. from attention_weights - they are not re-normalised here"
        )
    return p


def _head_diversity(p: np.ndarray, tol: float = 1e-12) -> float:
    n_heads = p.shape[1]
    flat = np.moveaxis(p, 1, 0).reshape(n_heads, -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    std = np.sqrt((centred**2).mean(axis=1))
    ok = std > tol
    idx = np.flatnonzero(ok)
    if idx.size < 2:
        return float("nan")
    z = centred[idx] / std[idx, None]
    corr = (z @ z.T) / flat.shape[1]
    off = ~np.eye(idx.size, dtype=bool)
    return float(np.mean(np.abs(np.clip(corr[off], -1.0, 1.0))))


def attention_statistics(
    weights: Mapping[str, Any], *, threshold: float = 0.01, atol: float = 1e-4
) -> pd.DataFrame:
    """Entropy, sparsity and head diversity of per-head attention probabilities.

    Parameters
    ----------
    weights : Mapping[str, tensor or array]
        ``name -> P`` of shape ``(n, heads, T_query, T_key)`` with
        ``P >= 0`` and ``P.sum(-1) == 1`` (the output of
        :func:`attention_weights`). The values are used as given: they are
        never passed through softmax again.
    threshold : float
        Probabilities strictly below it count as sparse; in ``[0, 1]``.
    atol : float
        Tolerance of the probability check (rows summing to 1, no negative
        entries); ``ValueError`` otherwise.

    Returns
    -------
    pandas.DataFrame
        One row per module and head, index ``(module, head)``, columns

        * ``entropy``: ``mean_{b,i} -Σ_j P[b,h,i,j] log P[b,h,i,j]`` in nats
          (``0 log 0 = 0``); ``0`` for one-hot attention, ``log T_key`` for
          uniform attention.
        * ``max_entropy``: ``log T_key``, the upper bound of ``entropy``.
        * ``sparsity``: share of the ``n · T_query · T_key`` entries of the
          head with ``P < threshold`` (masked keys count as sparse).
          One-hot attention: ``(T_key - 1) / T_key``.
        * ``head_diversity`` (per module, repeated on its rows): mean of
          ``|corr(P[:, g].ravel(), P[:, h].ravel())|`` (Pearson) over the
          ordered pairs ``g != h`` of heads. ``1`` for identical heads;
          near ``0`` for unrelated ones.

    Notes
    -----
    The correlation of a head whose pattern is constant (e.g. uniform
    attention, or ``T_key = 1``) is undefined: such heads are left out of
    the pairs, and ``head_diversity`` is ``NaN`` when fewer than two heads
    have a non-constant pattern (also for a single head).
    """
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError("weights must be a non-empty mapping name -> (n, heads, T_query, T_key) probabilities")
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0 or math.isnan(threshold):
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    rows = []
    for name, w in weights.items():
        p = _as_probabilities(name, w, atol)
        p = np.clip(p, 0.0, None)
        n_keys = p.shape[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        entropy = (-plogp.sum(axis=-1)).mean(axis=(0, 2))
        sparsity = (p < threshold).mean(axis=(0, 2, 3))
        diversity = _head_diversity(p)
        for h in range(p.shape[1]):
            rows.append(
                {
                    "module": name,
                    "head": h,
                    "entropy": float(entropy[h]),
                    "max_entropy": math.log(n_keys),
                    "sparsity": float(sparsity[h]),
                    "head_diversity": diversity,
                }
            )
    return pd.DataFrame(rows).set_index(["module", "head"])
