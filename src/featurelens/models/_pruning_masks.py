"""Magnitude pruning with ``torch.nn.utils.prune`` masks.

Layer selection, one-shot pruning, masks, sparsity tables and folding masks into parameters.

Private implementation of :mod:`featurelens.models.pruning` (see its docstring for the
mask convention); layers are addressed by exact module path, parameters by exact dotted name.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from featurelens._validation import check_float, check_option
from featurelens.models._exported import original_class

_PARAM = "weight"
_DEFAULT_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


# ---------------------------------------------------------------------------- masks


def _own_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """Return the parameters a module holds itself, also for TorchScript modules (no ``_parameters`` dict)."""
    return dict(module.named_parameters(recurse=False))


def _own_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """Return the buffers a module holds itself, also for TorchScript modules."""
    return dict(module.named_buffers(recurse=False))


def _module_masks(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{param: mask buffer}`` for every ``<param>_orig`` / ``<param>_mask`` pair the module holds."""
    params = _own_parameters(module)
    return {
        name[: -len("_mask")]: buf for name, buf in _own_buffers(module).items()
        if name.endswith("_mask") and name[: -len("_mask")] + "_orig" in params
    }


def pruning_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the pruning masks of ``model`` by exact parameter name.

    Returns ``{"<module path>.<param>": mask}`` for every module that holds a
    ``<param>_orig`` parameter and a ``<param>_mask`` buffer (the
    ``torch.nn.utils.prune`` reparametrisation), e.g. ``{"layer1.weight": …}``.
    The masks are detached clones (1 = kept, 0 = pruned), in module order.
    TorchScript modules (traced or scripted from a pruned model) keep both
    tensors and are read the same way.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {
        _param_name(mod_name, base): mask.detach().clone()
        for mod_name, module in model.named_modules()
        for base, mask in _module_masks(module).items()
    }


def _param_name(module_path: str, param: str) -> str:
    """Exact dotted name of parameter ``param`` of the module at ``module_path``."""
    return f"{module_path}.{param}" if module_path else param


def copy_model(model: nn.Module) -> nn.Module:
    """Deep-copy ``model``, also after a forward pass of a pruned model.

    ``copy.deepcopy`` refuses non-leaf tensors, and a pruned module holds one: the
    ``weight = weight_orig * weight_mask`` attribute its pre-hook computed (so does a
    buffer that caches an output with its graph, e.g. pfhedge's ``prev_output``).
    Those are copied detached; pruned parameters are then recomputed from the
    copy's own ``<p>_orig`` and ``<p>_mask``, so gradients reach ``<p>_orig``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in list(vars(module).values()) + list(module._buffers.values()):
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    new = copy.deepcopy(model, memo)
    _refresh_pruned(new, pruning_masks(new))
    return new


def _refresh_pruned(model: nn.Module, names: Iterable[str]) -> None:
    """Recompute ``<p> = <p>_orig * <p>_mask`` for every pruned parameter ``names``.

    ``names`` are exact dotted names; this is what the pruning pre-hook does before a forward pass.
    """
    for name in names:
        mod_path, _, pname = name.rpartition(".")
        module = model.get_submodule(mod_path)
        setattr(module, pname, getattr(module, pname + "_orig") * getattr(module, pname + "_mask"))


def effective_weight(module: nn.Module) -> torch.Tensor:
    """Return the weight a layer computes with, detached: ``weight_orig * weight_mask`` if pruned.

    ``torch.nn.utils.prune`` keeps the dense ``weight_orig`` parameter and the
    ``weight_mask`` buffer; the product is what the forward pass uses. A module
    without them returns its ``weight``.
    """
    if hasattr(module, _PARAM + "_orig") and hasattr(module, _PARAM + "_mask"):
        return (getattr(module, _PARAM + "_orig") * getattr(module, _PARAM + "_mask")).detach()
    return getattr(module, _PARAM).detach()


def _mask_of(module: nn.Module) -> torch.Tensor:
    mask = getattr(module, _PARAM + "_mask", None)
    if mask is not None:
        return mask.detach().clone()
    return torch.ones_like(getattr(module, _PARAM), dtype=getattr(module, _PARAM).dtype)


def _has_weight(module: nn.Module) -> bool:
    params = _own_parameters(module)
    return isinstance(params.get(_PARAM), torch.Tensor) or (
        _PARAM + "_orig" in params and _PARAM + "_mask" in _own_buffers(module)
    )


def _subclass_names(classes: Iterable[type]) -> set[str]:
    names: set[str] = set()
    todo = list(classes)
    while todo:
        cls = todo.pop()
        if cls.__name__ not in names:
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
    return names


def _is_layer_type(module: nn.Module) -> bool:
    """Tell whether ``module`` is an ``nn.Linear`` or convolution.

    Also as a TorchScript module (by its original class name) or as a submodule of an unflattened
    exported program (by the class it had before export).
    """
    if isinstance(module, _DEFAULT_TYPES):
        return True
    cls = original_class(module)
    if isinstance(cls, type) and issubclass(cls, _DEFAULT_TYPES):
        return True
    return isinstance(module, torch.jit.ScriptModule) and getattr(module, "original_name", None) in _subclass_names(
        _DEFAULT_TYPES
    )


def _select_layers(
    model: nn.Module, layers: Sequence[str] | None, exclude: Sequence[str]
) -> list[tuple[str, nn.Module]]:
    """Modules to prune, by exact module path."""
    modules = dict(model.named_modules())
    for arg, names in (("layers", layers), ("exclude", exclude)):
        if names is None:
            continue
        if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
            raise TypeError(f"{arg} must be a sequence of module names, got {type(names).__name__}")
        for n in names:
            if not isinstance(n, str):
                raise TypeError(f"{arg} must hold module names (str), got {type(n).__name__}")
            if n not in modules or n == "":
                known = ", ".join(repr(k) for k, m in modules.items() if k and _has_weight(m))
                raise ValueError(f"{arg}: the model has no module named exactly {n!r}; modules with a weight: {known}")
            if not _has_weight(modules[n]):
                raise ValueError(f"{arg}: module {n!r} ({type(modules[n]).__name__}) has no 'weight' parameter")
    if layers is None:
        chosen = [(n, m) for n, m in modules.items() if n and isinstance(m, _DEFAULT_TYPES) and _has_weight(m)]
    else:
        chosen = [(n, modules[n]) for n in dict.fromkeys(layers)]
    chosen = [(n, m) for n, m in chosen if n not in set(exclude)]
    if not chosen:
        raise ValueError("layers: no layer left to prune (no nn.Linear/convolution, or all excluded)")
    return chosen


def _floor(n: int, min_remaining: float) -> int:
    return max(1, math.ceil(min_remaining * n - 1e-9))


def _apply_masks(layers: Sequence[tuple[str, nn.Module]], masks: Sequence[torch.Tensor]) -> None:
    """Install ``masks`` (each a subset of the current one) with ``torch.nn.utils.prune``."""
    for (_, module), new in zip(layers, masks, strict=True):
        if hasattr(module, _PARAM + "_mask"):
            # an existing reparametrisation: replace the buffer in place (keeps one pre-hook)
            module._buffers[_PARAM + "_mask"].copy_(new)
            _refresh_pruned(module, [_PARAM])
        else:
            prune.custom_from_mask(module, _PARAM, new)


def _smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """Return the indices of the ``k`` smallest entries of the 1-D ``values`` (ties: lowest index first)."""
    order = torch.sort(values, stable=True).indices
    return order[:k]


def _prune_layerwise(layers: Sequence[tuple[str, nn.Module]], keep: Sequence[int]) -> None:
    """Prune each layer to ``keep[l]`` unpruned weights, smallest ``|w|`` first."""
    masks = []
    for (_, module), k in zip(layers, keep, strict=True):
        mask = _mask_of(module)
        flat = mask.reshape(-1)
        alive = torch.nonzero(flat, as_tuple=True)[0]
        n_cut = alive.numel() - k
        if n_cut > 0:
            mags = effective_weight(module).reshape(-1)[alive].abs().to(torch.float64)
            flat[alive[_smallest(mags, n_cut)]] = 0
        masks.append(mask)
    _apply_masks(layers, masks)


def _prune_global(layers: Sequence[tuple[str, nn.Module]], keep_total: int, floors: Sequence[int]) -> None:
    """Prune to ``keep_total`` unpruned weights over all layers, smallest ``|w|`` first.

    Never below ``floors[l]`` weights in layer ``l`` (its largest ones are protected).
    """
    masks, mags, positions, owners = [], [], [], []
    for li, ((_, module), floor) in enumerate(zip(layers, floors, strict=True)):
        mask = _mask_of(module)
        masks.append(mask)
        alive = torch.nonzero(mask.reshape(-1), as_tuple=True)[0].cpu()
        mag = effective_weight(module).reshape(-1).abs().to(torch.float64).cpu()[alive]
        free = torch.sort(mag, stable=True, descending=True).indices[floor:]  # all but the largest `floor`
        mags.append(mag[free])
        positions.append(alive[free])
        owners.append(torch.full((free.numel(),), li, dtype=torch.long))
    alive_total = sum(int(m.sum()) for m in masks)
    all_mags = torch.cat(mags)
    n_cut = min(alive_total - keep_total, all_mags.numel())
    if n_cut > 0:
        # one stable sort over the concatenation: ties go to the earlier layer, then lower index
        cut = _smallest(all_mags, n_cut)
        pos, own = torch.cat(positions)[cut], torch.cat(owners)[cut]
        for li, mask in enumerate(masks):
            mask.reshape(-1)[pos[own == li].to(mask.device)] = 0
    _apply_masks(layers, masks)


def _counts(layers: Sequence[tuple[str, nn.Module]]) -> tuple[list[int], list[int]]:
    masks = [_mask_of(m) for _, m in layers]
    return [int(m.numel()) for m in masks], [int(m.sum()) for m in masks]


def _check_common(model: Any, scope: str, min_remaining: Any) -> tuple[str, float]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    scope = check_option(scope, name="scope", options=("layer", "global"))
    min_remaining = check_float(min_remaining, name="min_remaining", low=0.0, high=1.0, inclusive=(True, False))
    return scope, min_remaining


# ---------------------------------------------------------------------------- one shot


def magnitude_prune(
    model: nn.Module,
    *,
    amount: float,
    scope: str = "layer",
    layers: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    min_remaining: float = 0.05,
) -> nn.Module:
    """Prune the smallest-magnitude weights, returning a pruned copy of ``model``.

    Definition: among the weights not pruned yet (``|weight_orig · weight_mask|``
    of the unpruned entries), ``round(amount · n_alive)`` of the smallest are
    pruned, where ``n_alive`` counts the unpruned weights of each layer
    (``scope="layer"``, as ``torch.nn.utils.prune.l1_unstructured``, which also
    prunes ``amount`` of the *remaining* weights when called again) or of all
    selected layers together (``scope="global"``, as ``prune.global_unstructured``).
    Each layer keeps at least ``max(1, ceil(min_remaining · n_weights))`` weights,
    its largest ones (the floor that prevents layer collapse: a one-shot global
    80 % prune of a small MLP can otherwise leave the output layer with a handful
    of weights and a constant output). Ties in ``|w|`` are pruned lowest index first.

    Parameters
    ----------
    model : nn.Module
        Not modified; a deep copy is pruned and returned.
    amount : float
        Fraction of the currently unpruned weights to prune, in ``[0, 1]``.
    scope : {"layer", "global"}
    layers : sequence of str, optional
        Exact module paths to prune (default: every ``nn.Linear`` and convolution).
    exclude : sequence of str
        Exact module paths not to prune (e.g. the output layer).
    min_remaining : float
        Per-layer floor, as a fraction of the layer's weights in ``[0, 1)``.

    Returns
    -------
    nn.Module
        The pruned copy; its pruned layers carry ``weight_orig`` and ``weight_mask``.
    """
    scope, min_remaining = _check_common(model, scope, min_remaining)
    amount = check_float(amount, name="amount", low=0.0, high=1.0)
    new = copy_model(model)
    chosen = _select_layers(new, layers, exclude)
    sizes, alive = _counts(chosen)
    floors = [_floor(n, min_remaining) for n in sizes]
    if scope == "layer":
        keep = [max(min(a, f), a - round(amount * a)) for a, f in zip(alive, floors, strict=True)]
        _prune_layerwise(chosen, keep)
    else:
        total = sum(alive)
        _prune_global(chosen, total - round(amount * total), floors)
    return new


# ---------------------------------------------------------------------------- folding


def make_permanent(model: nn.Module) -> nn.Module:
    """Copy ``model`` with every pruning mask folded into its parameter.

    ``prune.remove`` on each pruned parameter: ``weight = weight_orig * weight_mask``
    becomes a plain parameter (pruned entries are zeros), the masks and hooks go.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    new = copy_model(model)
    for name in pruning_masks(new):
        mod_path, _, pname = name.rpartition(".")
        prune.remove(new.get_submodule(mod_path), pname)
    return new
