"""The orthogonality penalty of "disentangled" training (see :func:`featurelens.models.train`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def orthogonality_penalty(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ ‖G − I‖_F²`` over 2-D weights, ``G = W Wᵀ`` if ``out ≤ in`` else ``Wᵀ W`` (see :func:`train`)."""
    total = weights[0].new_zeros(())
    for w in weights:
        g = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        total = total + ((g - torch.eye(g.shape[0], dtype=g.dtype, device=g.device)) ** 2).sum()
    return total


def _orthogonal_weights(model: nn.Module, layers: Sequence[str] | None) -> list[torch.Tensor]:
    modules = dict(model.named_modules())
    if layers is None:
        found = [m.weight for m in modules.values() if isinstance(m, nn.Linear)]
        if not found:
            raise ValueError("orthogonal_penalty > 0 but the model has no nn.Linear; name layers in orthogonal_layers=")
        return found
    if isinstance(layers, str):
        raise TypeError("orthogonal_layers must be a list of module paths, not a single str")
    out = []
    for name in layers:
        if name not in modules:
            raise ValueError(f"orthogonal_layers: no module {name!r} in the model")
        w = getattr(modules[name], "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"orthogonal_layers: module {name!r} has no 2-D weight")
        out.append(w)
    return out
