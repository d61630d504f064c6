"""Lottery tickets: iterative magnitude pruning with weight rewinding, and checkpoints with masks.

Private implementation of :mod:`featurelens.models.pruning`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from featurelens._io import atomic_write_bytes
from featurelens._validation import check_float, check_int
from featurelens.models._pruning_masks import (
    _PARAM,
    _check_common,
    _counts,
    _floor,
    _prune_global,
    _prune_layerwise,
    _refresh_pruned,
    _select_layers,
    copy_model,
    pruning_masks,
)
from featurelens.models._sparsity import _with_total, sparsity

# ---------------------------------------------------------------------------- lottery tickets


@dataclass(eq=False)
class LotteryTicket:
    """Result of :func:`iterative_magnitude_pruning`.

    Attributes
    ----------
    model : nn.Module
        The trained sparse network (pruning reparametrisation kept).
    history : DataFrame
        One row per round and pruned layer plus a ``"total"`` row per round:
        ``round`` (1-based), ``layer`` (exact parameter name), ``n_weights``,
        ``n_pruned``, ``sparsity``; measured after pruning, before retraining.
    rounds : int
    """

    model: nn.Module
    history: pd.DataFrame
    rounds: int


def _rewind(model: nn.Module, state: Mapping[str, Any], pruned: set[str]) -> None:
    """Copy ``state`` into every parameter and persistent buffer except the masks.

    A pruned parameter ``<p>`` is restored from ``<p>_orig`` (a pruned state) or
    ``<p>`` (a dense state) into ``<p>_orig``; masks are kept as they are.
    """
    current = model.state_dict()
    targets: dict[str, torch.Tensor] = {}
    for key in current:
        if key.endswith("_mask") and key[: -len("_mask")] in pruned:
            continue
        source = key
        if key.endswith("_orig") and key[: -len("_orig")] in pruned and key not in state:
            source = key[: -len("_orig")]
        if source not in state:
            raise ValueError(f"rewind_to has no entry {source!r} (needed to rewind {key!r})")
        value = state[source]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(current[key].shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"rewind_to[{source!r}] has shape {shape}, the model's {key!r} {tuple(current[key].shape)}"
            )
        targets[key] = value
    with torch.no_grad():
        for key, value in targets.items():
            current[key].copy_(value)  # state_dict tensors share storage with the model
    _refresh_pruned(model, pruned)


def _schedule(rounds: int | None, rate: float | None, target: float) -> tuple[int, list[float]]:
    """Fraction of weights kept after each round."""
    if rounds is not None and rate is not None:
        raise ValueError("give either rounds or rate, not both")
    if rounds is None:
        rate = 0.2 if rate is None else check_float(rate, name="rate", low=0.0, high=1.0, inclusive=(False, False))
        rounds = 1 if target == 0 else max(1, math.ceil(math.log(1 - target) / math.log(1 - rate) - 1e-9))
        fracs = [max(1 - target, (1 - rate) ** k) for k in range(1, rounds + 1)]
    else:
        rounds = check_int(rounds, name="rounds", minimum=1)
        fracs = [(1 - target) ** (k / rounds) for k in range(1, rounds + 1)]
    fracs[-1] = 1 - target
    return rounds, fracs


def iterative_magnitude_pruning(
    model: nn.Module,
    train_fn: Callable[[nn.Module], Any],
    *,
    target_sparsity: float,
    rounds: int | None = None,
    rate: float | None = None,
    rewind_to: Mapping[str, Any] | None = None,
    scope: str = "layer",
    layers: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    min_remaining: float = 0.05,
) -> LotteryTicket:
    """Find a lottery ticket by iterative magnitude pruning (IMP) with weight rewinding.

    ``model`` is the trained network. Each round ``k = 1..R``: prune the
    smallest-magnitude unpruned weights of the current (trained) weights down to
    ``round(n · f_k)`` kept weights (per layer with ``scope="layer"``, over the
    union of the selected layers with ``scope="global"``, never below the floor of
    :func:`magnitude_prune`), reset every parameter and persistent buffer to
    ``rewind_to`` (the surviving weights get their early-epoch values; masks are
    kept), then call ``train_fn(model)`` to retrain the sparse network in place.
    Frankle & Carbin (2019) rewind to initialisation; Frankle et al. (2020) to an
    early iterate (``rewind_to`` = the state dict saved after a few epochs).

    The kept fraction after round ``k`` is ``f_k = (1 - s)^(k/R)`` for ``rounds=R``
    (the same fraction of the remaining weights each round), or ``max(1 - s,
    (1 - rate)^k)`` with ``R = ceil(log(1 - s) / log(1 - rate))`` for ``rate``
    (open_lth prunes 20 % of the remaining weights per level, the default). The
    last round always lands on ``1 - s`` exactly (up to rounding to whole weights).

    Parameters
    ----------
    model : nn.Module
        The trained (dense or already pruned) network; not modified.
    train_fn : callable
        ``train_fn(model) -> None`` trains ``model`` in place (any loop: plain,
        adversarial, …). Build the optimiser inside it from ``model.parameters()``:
        pruned layers expose ``weight_orig`` (gradients of pruned entries are zero).
    target_sparsity : float
        Fraction of the selected weights pruned at the end, in ``[0, 1)``.
    rounds, rate : int or float, optional
        Number of rounds, or fraction of the remaining weights pruned per round
        (default ``rate=0.2``); not both.
    rewind_to : mapping, optional
        State dict to rewind to after each pruning step: a dense one (``"layer1.weight"``)
        or a pruned one (``"layer1.weight_orig"``; its masks are ignored). ``None``:
        no rewinding (retrain from the trained weights, i.e. fine-tuning).
    scope, layers, exclude, min_remaining
        As in :func:`magnitude_prune`.

    Returns
    -------
    LotteryTicket
    """
    scope, min_remaining = _check_common(model, scope, min_remaining)
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable as train_fn(model), got {type(train_fn).__name__}")
    target = check_float(target_sparsity, name="target_sparsity", low=0.0, high=1.0, inclusive=(True, False))
    if rewind_to is not None and not isinstance(rewind_to, Mapping):
        raise TypeError(f"rewind_to must be a state dict (mapping) or None, got {type(rewind_to).__name__}")
    n_rounds, fracs = _schedule(rounds, rate, target)
    new = copy_model(model)
    chosen = _select_layers(new, layers, exclude)
    sizes, _ = _counts(chosen)
    floors = [_floor(n, min_remaining) for n in sizes]
    names = {f"{n}.{_PARAM}" for n, _ in chosen}
    rows = []
    for k, frac in enumerate(fracs, start=1):
        if scope == "layer":
            _prune_layerwise(chosen, [max(f, round(n * frac)) for n, f in zip(sizes, floors, strict=True)])
        else:
            _prune_global(chosen, round(sum(sizes) * frac), floors)
        table = sparsity(new)
        table = table[table["layer"].isin(names)]
        rows.append(_with_total(table).assign(round=k))
        if rewind_to is not None:
            _rewind(new, rewind_to, set(pruning_masks(new)))
        train_fn(new)
    history = pd.concat(rows, ignore_index=True)[["round", "layer", "n_weights", "n_pruned", "sparsity"]]
    return LotteryTicket(model=new, history=history, rounds=n_rounds)


# ---------------------------------------------------------------------------- files


def save_checkpoint(model: nn.Module, path: str | Path, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save ``model``'s state dict (with its pruning masks) for :func:`featurelens.models.load_model`.

    Writes ``{"model_state_dict": state_dict, "featurelens": {...}}`` atomically
    with ``torch.save``. Pruned parameters are stored as ``<p>_orig`` and
    ``<p>_mask``, which ``load_model(path, factory=...)`` re-attaches to the
    module at exactly that path, so the reloaded model's predictions are
    bit-identical. ``metadata`` (str keys; str/int/float/bool/None values or
    lists/dicts of them, so that ``weights_only=True`` can read it) is stored
    under ``"featurelens"`` along with the sparsity table.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    meta: dict[str, Any] = {}
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
            raise TypeError("metadata must be a mapping with str keys")
        meta.update(metadata)
    table = sparsity(model)
    meta["sparsity"] = {str(r.layer): float(r.sparsity) for r in table.itertuples()}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"model_state_dict": state, "featurelens": meta}, buf)
    path = Path(path)
    return atomic_write_bytes(path, buf.getvalue())
