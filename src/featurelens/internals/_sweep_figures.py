"""Figures of the sweeps and of the internals report (matplotlib object API, Agg canvas)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from featurelens.report._figures import COLOURS, _save

if TYPE_CHECKING:
    from featurelens.internals._sweeps import SweepResult


def _lines(ax, table: pd.DataFrame, x: str, y: str, by: str, title: str) -> None:
    for i, (key, part) in enumerate(table.groupby(by, sort=True)):
        part = part.sort_values(x)
        ax.plot(part[x], part[y], marker="o", color=COLOURS[i % len(COLOURS)], label=f"{by}={key}")
    ax.set_xlabel(x)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def _capacity(fig: Figure, t: pd.DataFrame) -> None:
    axes = fig.subplots(1, 3)
    _lines(axes[0], t, "hidden_dim", "overlap_mean", "n_groups", "mean group overlap (input weights)")
    _lines(axes[1], t, "hidden_dim", "rank_per_group", "n_groups", "effective rank / groups (input_proj)")
    _lines(axes[2], t, "hidden_dim", "test_accuracy", "n_groups", "test accuracy")
    for ax in axes:
        ax.set_xscale("log", base=2)
    axes[0].legend(fontsize=8)


def _scale(fig: Figure, t: pd.DataFrame) -> None:
    axes = fig.subplots(1, 4)
    specs = [("effective_rank", "effective rank (mean over layers)"), ("interference", "interference"),
             ("head_diversity", "attention head diversity"), ("test_accuracy", "test accuracy")]
    for ax, (col, title) in zip(axes, specs, strict=True):
        _lines(ax, t, "width", col, "depth", title)
        ax.set_xscale("log", base=2)
    axes[0].legend(fontsize=8)


def _architectures(fig: Figure, t: pd.DataFrame) -> None:
    cols = ["test_accuracy", "shifted_accuracy", "representation_rank", "spurious_share",
            "noise_sensitivity", "ablation_sensitivity"]
    axes = fig.subplots(1, len(cols))
    for ax, col in zip(axes, cols, strict=True):
        ax.bar(np.arange(len(t)), t[col], color=[COLOURS[i % len(COLOURS)] for i in range(len(t))])
        ax.set_xticks(np.arange(len(t)), t["architecture"], rotation=45, ha="right", fontsize=8)
        ax.set_title(col.replace("_", " "), fontsize=9)
        ax.grid(axis="y", alpha=0.3)


def sweep_figure(result: SweepResult) -> Figure:
    """One row of panels with the sweep's main metrics."""
    draw = {"capacity": _capacity, "scale": _scale, "architectures": _architectures}[result.kind]
    fig = Figure(figsize=(15, 3.8), layout="constrained")
    draw(fig, result.table)
    return fig


def save_figure(result: SweepResult, path: Path, *, dpi: int = 110) -> str:
    """Write :func:`sweep_figure` as PNG to ``path``; returns the file name."""
    _save(sweep_figure(result), path, dpi)
    return path.name
