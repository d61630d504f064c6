"""Reference values that replace a feature or group ("baselines")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featurelens.data._inputs import as_tensor

BASELINE_NAMES = ("zeros", "mean", "median")


def resolve_baselines(baselines: Any, x: torch.Tensor, *, background: Any = None) -> tuple[torch.Tensor, Any]:
    """Turn ``baselines`` into a tensor broadcastable against ``x``'s rows.

    Parameters
    ----------
    baselines : None, "zeros", "mean", "median", float, array or tensor
        ``None``/``"zeros"``: 0 for every feature. ``"mean"``/``"median"``:
        the per-column statistic of ``background`` (the training data), over
        all rows and, for sequences, all time steps (the median is NumPy's,
        averaging the two middle values). A number: that value everywhere.
        An array: shape ``(d,)`` (one value per feature), ``x.shape[1:]``
        (one reference row or sequence), or ``x.shape`` (one reference per
        sample).
    x : Tensor ``(n, d)`` or ``(n, T, d)``
    background : array-like, optional
        Required for ``"mean"`` and ``"median"``.

    Returns
    -------
    baseline : Tensor
        Shape ``(d,)``, ``x.shape[1:]`` or ``x.shape``, on ``x``'s device and dtype.
    description : JSON-friendly description stored with the result.
    """
    d = x.shape[-1]
    kw = {"dtype": x.dtype, "device": x.device}
    if background is not None and not (isinstance(baselines, str) and baselines in ("mean", "median")):
        raise ValueError("background= is used only with baselines='mean' or 'median'")
    if baselines is None or (isinstance(baselines, str) and baselines == "zeros"):
        return torch.zeros(d, **kw), "zeros"
    if isinstance(baselines, str):
        if baselines not in BASELINE_NAMES:
            raise ValueError(f"baselines must be one of {', '.join(map(repr, BASELINE_NAMES))}, a number or an array; got {baselines!r}")
        if background is None:
            raise ValueError(
                f"baselines={baselines!r} needs background= (the training data) to compute per-column statistics"
            )
        bg, _ = as_tensor(background, name="background", dtype=torch.float64)
        if bg.shape[-1] != d:
            raise ValueError(f"background has {bg.shape[-1]} features but the inputs have {d}")
        flat = bg.reshape(-1, d).cpu().numpy()
        stat = flat.mean(axis=0) if baselines == "mean" else np.median(flat, axis=0)
        return torch.as_tensor(stat, **kw), baselines
    if isinstance(baselines, bool):
        raise TypeError("baselines must be a name, a number or an array, not a bool")
    if isinstance(baselines, (int, float)):
        if not np.isfinite(baselines):
            raise ValueError(f"baselines must be finite, got {baselines}")
        return torch.full((d,), float(baselines), **kw), float(baselines)
    b, _ = as_tensor(baselines, name="baselines", dtype=x.dtype, device=x.device, ndims=(1, 2, 3))
    shape = tuple(b.shape)
    if shape in {(d,), tuple(x.shape[1:]), tuple(x.shape)}:
        return b, f"array{list(shape)}"
    raise ValueError(
        f"baselines has shape {shape}; expected ({d},), {tuple(x.shape[1:])} or {tuple(x.shape)}"
    )


def per_row(baseline: torch.Tensor, x: torch.Tensor, rows: slice) -> torch.Tensor:
    """The baseline for ``x[rows]``, broadcastable to ``x[rows]``."""
    if baseline.dim() == x.dim() and baseline.shape[0] == x.shape[0] and baseline.dim() > 1:
        return baseline[rows]
    return baseline
