"""Timing helpers shared by the benchmark scripts (median of repeated runs)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn


def time_it(fn: Callable[[], object], *, repeats: int = 7, warmup: int = 1) -> tuple[float, float]:
    """Median and minimum wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def hand_perturb(model: nn.Module, x: torch.Tensor, permute: bool, chunk: int) -> None:
    """The plain-torch floor of group ablation/permutation: 8 groups of 8 of 64 columns, rows in chunks."""
    with torch.no_grad():
        rep = x.unsqueeze(0).repeat(8, 1, 1)
        for k in range(8):
            cols = slice(8 * k, 8 * k + 8)
            rep[k, :, cols] = x[torch.randperm(len(x))][:, cols] if permute else 0.0
        rows = torch.cat([x, rep.reshape(-1, 64)])
        for i in range(0, len(rows), chunk):
            model(rows[i : i + chunk])
