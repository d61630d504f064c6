"""The report of a :class:`~featurelens.internals.SweepResult`: CSV tables, one figure, results.json, index.html.

``results.json`` is :meth:`SweepResult.to_dict` (``{"sweep", "params", "table",
"layers"}``) plus ``"files"``: the tables and figures written (``<kind>.csv``,
``<kind>_layers.csv`` for the scale sweep, ``<kind>.<fmt>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from featurelens._io import atomic_write_text
from featurelens.internals import SweepResult
from featurelens.report._figures import COLOURS, write_figure
from featurelens.report._html import _environment

TEMPLATE = "sweep.html.j2"
#: per sweep kind: (x column, grouping column, [(y column, panel title), ...]); architectures are bars
PANELS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "capacity": ("hidden_dim", "n_groups", [("overlap_mean", "mean group overlap (input weights)"),
                                            ("rank_per_group", "effective rank / groups (input_proj)"),
                                            ("test_accuracy", "test accuracy")]),
    "scale": ("width", "depth", [("effective_rank", "effective rank (mean over layers)"),
                                 ("interference", "interference"), ("head_diversity", "attention head diversity"),
                                 ("test_accuracy", "test accuracy")]),
    "architectures": ("architecture", "architecture", [(c, c.replace("_", " ")) for c in (
        "test_accuracy", "shifted_accuracy", "representation_rank", "spurious_share", "noise_sensitivity",
        "ablation_sensitivity")]),
}


class SweepDisplay:
    """The main metrics of a sweep, one panel per metric.

    Capacity and scale sweeps: lines of each metric against the width (log₂
    axis), one line per number of groups or depth. Architecture sweep: bars
    per architecture.

    Parameters
    ----------
    table : DataFrame
        :meth:`SweepResult.to_frame`.
    kind : {"capacity", "scale", "architectures"}

    Attributes
    ----------
    figure_, axes_ : Figure and ndarray of Axes (one per metric), ``ax_`` the first
    """

    def __init__(self, table: pd.DataFrame, *, kind: str) -> None:
        if kind not in PANELS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, PANELS))}; got {kind!r}")
        x, by, panels = PANELS[kind]
        missing = sorted({c for c in (x, by, *(p[0] for p in panels)) if c not in table.columns})
        if missing:
            raise ValueError(f"table is missing column(s) {missing} of a {kind} sweep")
        self.table, self.kind = table, kind

    @classmethod
    def from_result(cls, result: SweepResult, *, ax: Any = None) -> SweepDisplay:
        """Return the panels of ``result``, plotted on ``ax``.

        ``result`` is a :func:`~featurelens.internals.capacity_sweep`, ``scale_sweep`` or
        ``architecture_sweep`` result.
        """
        if not isinstance(result, SweepResult):
            raise TypeError(f"result must be a featurelens.internals.SweepResult, got {type(result).__name__}")
        return cls(result.to_frame(), kind=result.kind).plot(ax=ax)

    def plot(self, ax: Any = None) -> SweepDisplay:
        """Draw into a new one-row figure (``ax=None``) or one Axes per metric; return ``self``."""
        x, by, panels = PANELS[self.kind]
        if ax is None:
            fig = Figure(figsize=(15, 3.8), layout="constrained")
            axes = np.atleast_1d(fig.subplots(1, len(panels)))
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if len(axes) < len(panels):
                raise ValueError(f"ax must hold {len(panels)} Axes for a {self.kind} sweep, got {len(axes)}")
            fig = axes[0].figure
        for a, (col, title) in zip(axes, panels, strict=False):
            if self.kind == "architectures":
                self._bars(a, col, title)
            else:
                self._lines(a, x, col, by, title)
                a.set_xscale("log", base=2)
        if self.kind != "architectures":
            axes[0].legend(fontsize=8)
        self.axes_, self.ax_, self.figure_ = axes, axes[0], fig
        return self

    def _lines(self, ax: Axes, x: str, y: str, by: str, title: str) -> None:
        for i, (key, part) in enumerate(self.table.groupby(by, sort=True)):
            part = part.sort_values(x)
            ax.plot(part[x], part[y], marker="o", color=COLOURS[i % len(COLOURS)], label=f"{by}={key}")
        ax.set_xlabel(x)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)

    def _bars(self, ax: Axes, col: str, title: str) -> None:
        t = self.table
        ax.bar(np.arange(len(t)), t[col], color=[COLOURS[i % len(COLOURS)] for i in range(len(t))])
        ax.set_xticks(np.arange(len(t)), t["architecture"], rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)


def write_sweep(result: SweepResult, directory: Path, *, formats: Sequence[str], dpi: int) -> dict[str, Any]:
    """Write the sweep's report into the existing ``directory``; return ``results.json``'s content.

    Files: ``<kind>.csv`` (and ``<kind>_layers.csv``), the figure, ``results.json`` and ``index.html``.
    """
    kind = result.kind
    files = [f"{kind}.csv"]
    atomic_write_text(directory / files[0], result.table.to_csv(index=False))
    if result.layers is not None:
        files.append(f"{kind}_layers.csv")
        atomic_write_text(directory / files[-1], result.layers.to_csv(index=False))
    display = SweepDisplay.from_result(result)
    written, _ = write_figure(display.figure_, directory, kind, formats=["png", *[f for f in formats if f != "png"]],
                           dpi=dpi)
    files += written
    results = {**result.to_dict(), "files": files}
    atomic_write_text(directory / "results.json", json.dumps(results, indent=2, allow_nan=False) + "\n")
    columns = list(result.table.columns)
    html = _environment().get_template(TEMPLATE).render(
        kind=kind, params=results["params"], columns=columns, rows=results["table"], files=files,
        figure={"file": f"{kind}.png", "title": f"{kind} sweep",
                "caption": "Main metrics of every configuration; every column of the table is in "
                           f"{kind}.csv and results.json.",
                "alt": f"{len(PANELS[kind][2])} panels of {kind} sweep metrics"})
    atomic_write_text(directory / "index.html", html)
    return results
