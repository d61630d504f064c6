"""Displays of model internals: representation per layer and input-group overlap heatmaps.

scikit-learn's Display convention (see :class:`Display`); the internals
section of the reports draws its figures through these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from featurelens.internals import InternalsSummary
from featurelens.report._figures import COLOURS, Display

MAX_ANNOTATED = 12  # overlap matrices up to this many groups get their values printed


def _check_summary(summary: Any) -> InternalsSummary:
    if not isinstance(summary, InternalsSummary):
        raise TypeError(f"internals must be an InternalsSummary, got {type(summary).__name__}")
    return summary


class LayerSummaryDisplay(Display):
    """Effective rank (bars, against the unit count) and interference per layer, two panels.

    Parameters
    ----------
    layers : pandas.DataFrame
        One row per layer (index: the layer's name) with columns ``units``,
        ``effective_rank`` and ``interference`` (NaN drawn as 0).
    """

    def __init__(self, layers: pd.DataFrame):
        self.layers = layers

    @classmethod
    def from_summary(cls, summary: InternalsSummary, *, ax: Any = None) -> LayerSummaryDisplay:
        """Plot the layers of :func:`featurelens.internals.summarize_internals`'s result."""
        summary = _check_summary(summary)
        if summary.layers.empty:
            raise ValueError("the summary has no layers to draw")
        return cls(summary.layers).plot(ax=ax)

    def _n_panels(self) -> int:
        return 2

    def _size(self) -> tuple[float, float]:
        return 10.0, 0.32 * len(self.layers) + 1.6

    def plot(self, ax: Any = None) -> LayerSummaryDisplay:
        """Draw into ``ax`` (a sequence of two Axes, or ``None`` for a new figure); returns ``self``."""
        ax1, ax2 = self._axes(ax, sharey=True)
        rows = self.layers
        names = [str(n) for n in rows.index]
        y = np.arange(len(rows))

        def column(name: str) -> np.ndarray:
            return np.nan_to_num(pd.to_numeric(rows[name], errors="coerce").to_numpy(np.float64))

        ax1.barh(y, column("units"), color="#dddddd", label="units")
        ax1.barh(y, column("effective_rank"), color=COLOURS[0], label="effective rank")
        ax1.set_yticks(y, names, fontsize=8)
        ax1.set_ylim(len(rows) - 0.5, -0.5)
        ax1.set_xlabel("dimensions")
        ax1.legend(fontsize=8, loc="lower right")
        ax2.barh(y, column("interference"), color=COLOURS[1])
        ax2.set_xlabel("interference (mean |corr| between units)")
        for a in (ax1, ax2):
            a.grid(axis="x", alpha=0.3)
        return self._done()


class OverlapDisplay(Display):
    """One heatmap per group x group overlap matrix (0 = orthogonal subspaces, 1 = shared), values printed.

    Parameters
    ----------
    matrices : mapping of str to DataFrame
        Square matrices with the groups as index and columns, keyed by the
        space they were measured in (the panel titles).
    """

    def __init__(self, matrices: Mapping[str, pd.DataFrame]):
        self.matrices = dict(matrices)

    @classmethod
    def from_summary(cls, summary: InternalsSummary, *, ax: Any = None) -> OverlapDisplay:
        """Plot the overlap matrices of :func:`featurelens.internals.summarize_internals`'s result."""
        summary = _check_summary(summary)
        if not summary.overlap:
            raise ValueError("the summary has no overlap matrices (summarize_internals was called without groups)")
        return cls(summary.overlap).plot(ax=ax)

    def _n_panels(self) -> int:
        return len(self.matrices)

    def _size(self) -> tuple[float, float]:
        return 4.6 * len(self.matrices), 4.2

    def plot(self, ax: Any = None) -> OverlapDisplay:
        """Draw one heatmap per matrix into ``ax`` (that many Axes, or ``None``); returns ``self``."""
        axes = self._axes(ax)
        image = None
        for panel, (name, m) in zip(axes, self.matrices.items(), strict=True):
            a = m.to_numpy(dtype=np.float64)
            groups = [str(g) for g in m.index]
            image = panel.imshow(a, vmin=0.0, vmax=1.0, cmap="viridis")
            ticks = np.arange(len(groups))
            panel.set_xticks(ticks, groups, rotation=45, ha="right", fontsize=8)
            panel.set_yticks(ticks, groups, fontsize=8)
            if len(ticks) <= MAX_ANNOTATED:
                for i in ticks:
                    for j in ticks:
                        if np.isfinite(a[i, j]):
                            panel.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                       color="white" if a[i, j] < 0.5 else "black")
            panel.set_title(name, fontsize=9)
        self.figure_.colorbar(image, ax=list(axes), shrink=0.8, label="overlap")
        return self._done()
