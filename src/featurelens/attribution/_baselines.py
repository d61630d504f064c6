"""Reference values that replace a feature or group ("baselines")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from featurelens._validation import check_int, check_random_state
from featurelens.data import as_tensor

BASELINE_NAMES = ("zeros", "mean", "median")
#: methods that average over a background set also accept baselines="background"


def resolve_baselines(baselines: Any, X: torch.Tensor, *, background: Any = None) -> tuple[torch.Tensor, Any]:
    """Turn ``baselines`` into a tensor broadcastable against ``X``'s rows.

    Parameters
    ----------
    baselines : None, "zeros", "mean", "median", float, array or tensor
        ``None``/``"zeros"``: 0 for every feature. ``"mean"``/``"median"``:
        the per-column statistic of ``background`` (the training data), over
        all rows and, for sequences, all time steps (the median is NumPy's,
        averaging the two middle values). A number: that value everywhere.
        An array: shape ``(d,)`` (one value per feature), ``X.shape[1:]``
        (one reference row or sequence), or ``X.shape`` (one reference per
        sample).
    X : Tensor ``(n, d)`` or ``(n, T, d)``
    background : array-like, optional
        Required for ``"mean"`` and ``"median"``.

    Returns
    -------
    baseline : Tensor
        Shape ``(d,)``, ``X.shape[1:]`` or ``X.shape``, on ``X``'s device and dtype.
    description : JSON-friendly description stored with the result.
    """
    d = X.shape[-1]
    kw = {"dtype": X.dtype, "device": X.device}
    if background is not None and not (isinstance(baselines, str) and baselines in ("mean", "median")):
        raise ValueError("background= is used only with baselines='mean' or 'median'")
    if baselines is None or (isinstance(baselines, str) and baselines == "zeros"):
        return torch.zeros(d, **kw), "zeros"
    if isinstance(baselines, str):
        if baselines not in BASELINE_NAMES:
            raise ValueError(f"baselines must be one of {', '.join(map(repr, BASELINE_NAMES))}, a number or an array; "
                             f"got {baselines!r}")
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
    b, _ = as_tensor(baselines, name="baselines", dtype=X.dtype, device=X.device, ndims=(1, 2, 3))
    shape = tuple(b.shape)
    if shape in {(d,), tuple(X.shape[1:]), tuple(X.shape)}:
        return b, f"array{list(shape)}"
    raise ValueError(
        f"baselines has shape {shape}; expected ({d},), {tuple(X.shape[1:])} or {tuple(X.shape)}"
    )


def per_row(baseline: torch.Tensor, x: torch.Tensor, rows: slice) -> torch.Tensor:
    """Return the baseline for ``x[rows]``, broadcastable to ``x[rows]``."""
    if baseline.dim() == x.dim() and baseline.shape[0] == x.shape[0] and baseline.dim() > 1:
        return baseline[rows]
    return baseline


def resolve_background_sample(
    background: Any, x: torch.Tensor, *, max_rows: int | None = None, random_state: Any = None
) -> torch.Tensor:
    """Rows of ``background`` used as a distribution of baselines (``baselines="background"``).

    Methods that average over a background set (expected gradients,
    interventional Shapley values) call this. ``background`` must have the
    shape of the inputs' rows (``(m, d)`` or ``(m, T, d)``); with
    ``max_rows`` a seeded subsample of that many rows (without replacement,
    drawn by ``numpy.random.default_rng(random_state).choice``) is used.

    Returns
    -------
    Tensor ``(m, *x.shape[1:])`` on ``x``'s device and dtype.
    """
    if background is None:
        raise ValueError("baselines='background' needs background= (a sample of reference rows)")
    bg, _ = as_tensor(background, name="background", dtype=x.dtype, device=x.device)
    if tuple(bg.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(
            f"background rows have shape {tuple(bg.shape[1:])} but the inputs' rows have shape {tuple(x.shape[1:])}"
        )
    if max_rows is not None:
        max_rows = check_int(max_rows, name="max_rows", minimum=1)
        if bg.shape[0] > max_rows:
            rng = check_random_state(random_state)
            idx = np.sort(rng.choice(bg.shape[0], size=max_rows, replace=False))
            bg = bg[torch.as_tensor(idx, device=bg.device)]
    return bg
