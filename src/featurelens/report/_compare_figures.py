"""Figures of a :class:`~featurelens.compare.Comparison` (matplotlib object API, no pyplot).

The deep-hedging lottery-ticket study's four figures: grouped importance shares,
the share differences to the reference with annotated values, the overlaid
distributions of the unpruned weights, and the sparsity per layer. The first two
are drawn through :class:`ComparisonDisplay`, which also works on a notebook's axes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from featurelens._validation import check_option
from featurelens.compare import Comparison
from featurelens.report._figures import COLOURS

GAIN, LOSS = "#009E73", "#D55E00"
KINDS = ("shares", "differences")
#: figure file stem -> (title, caption) used by the HTML pages
CAPTIONS = {
    "importance": ("Feature importance by model",
                   "Share of each feature in the model's total importance, per method (bars of one model sum to 1)."),
    "difference": ("Importance shift against the reference",
                   "Share minus the reference model's share; values of |difference| ≥ 0.01 are printed."),
    "weights": ("Distribution of the unpruned weights",
                "Density of the layer weights that are not pruned (masks matched by exact name), all layers pooled."),
    "sparsity": ("Sparsity per layer",
                 "Fraction of each layer's weights pruned by its mask; 'total' pools all layers."),
}


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


class ComparisonDisplay:
    """Importance shares, or their differences to the reference, of one attribution method.

    Parameters
    ----------
    values : DataFrame, features × models
        ``kind="shares"``: each model's importance share of every feature
        (:meth:`Comparison.shares`); ``kind="differences"``: share minus the
        reference model's share (the models other than the reference).
    kind : {"shares", "differences"}
    method : str
        The attribution method the values come from.
    reference : str
        The reference model of the comparison.

    Attributes
    ----------
    figure_, ax_ : matplotlib Figure and Axes
        Set by :meth:`plot`.
    """

    def __init__(self, values: pd.DataFrame, *, kind: str, method: str, reference: str) -> None:
        if not isinstance(values, pd.DataFrame):
            raise TypeError(f"values must be a DataFrame of features × models, got {type(values).__name__}")
        self.values = values
        self.kind = check_option(kind, name="kind", options=KINDS)
        self.method = method
        self.reference = reference

    @classmethod
    def from_comparison(cls, comparison: Comparison, *, method: str | None = None, kind: str = "shares",
                        models: Sequence[str] | None = None, ax: Any = None,
                        feature_labels: bool = True) -> ComparisonDisplay:
        """Take the values of ``method`` (default: the first) from ``comparison`` and plot them on ``ax``.

        ``models`` restricts the columns (for ``kind="differences"`` the
        reference is never a column). Returns the plotted display.
        """
        if not isinstance(comparison, Comparison):
            raise TypeError(f"comparison must be a featurelens.compare.Comparison, got {type(comparison).__name__}")
        kind = check_option(kind, name="kind", options=KINDS)
        method = comparison.methods[0] if method is None else method
        values = comparison.shares(method)
        if kind == "differences":
            block = comparison.differences[comparison.differences["method"] == method]
            others = [m for m in comparison.models if m != comparison.reference]
            values = block.pivot(index="feature", columns="model", values="difference").loc[
                comparison.feature_names, others]
        if models is not None:
            unknown = [m for m in models if m not in values.columns]
            if unknown:
                raise ValueError(f"models: {unknown[0]!r} is not one of {', '.join(map(repr, values.columns))}")
            values = values[list(models)]
        display = cls(values, kind=kind, method=method, reference=comparison.reference)
        return display.plot(ax=ax, feature_labels=feature_labels)

    def plot(self, ax: Any = None, *, feature_labels: bool = True, title: str | None = None) -> ComparisonDisplay:
        """Draw on ``ax`` (a new figure when ``None``) and return ``self``.

        Shares: grouped vertical bars per feature, one colour per model.
        Differences: horizontal bars per feature (green gain, red loss for one
        model; one colour per model for several), values of
        ``|difference| ≥ 0.01`` printed. ``feature_labels=False`` hides the
        feature names (for panels that share them with a neighbour).
        """
        if ax is None:
            d = len(self.values)
            size = (max(7.0, 0.9 * d + 2), 3.2) if self.kind == "shares" else (5.7, 0.3 * d + 1.2)
            ax = Figure(figsize=size, layout="constrained").add_subplot()
        if self.kind == "shares":
            self._plot_shares(ax, feature_labels)
        else:
            self._plot_differences(ax, feature_labels)
        if title is None:
            models = ", ".join(self.values.columns)
            title = self.method if self.kind == "shares" else f"{self.method}: {models} − {self.reference}"
        ax.set_title(title, fontsize=10 if self.kind == "differences" else None)
        self.ax_, self.figure_ = ax, ax.figure
        return self

    def _plot_shares(self, ax: Any, feature_labels: bool) -> None:
        names, n = list(self.values.index), len(self.values.columns)
        x, width = np.arange(len(names)), 0.8 / n
        for i, model in enumerate(self.values.columns):
            label = f"{model} (ref)" if model == self.reference else model
            ax.bar(x + i * width - (n - 1) * width / 2, self.values[model].to_numpy(), width, label=label,
                   color=_colour(i), alpha=0.85)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_ylabel("importance share")
        ax.set_xticks(x, names if feature_labels else [""] * len(names), rotation=45, ha="right")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)

    def _plot_differences(self, ax: Any, feature_labels: bool) -> None:
        names, n = list(self.values.index), len(self.values.columns)
        y, height = np.arange(len(names)), 0.8 / n
        span = float(np.nanmax(np.abs(self.values.to_numpy()))) if self.values.size else 0.0
        for i, model in enumerate(self.values.columns):
            diff = self.values[model].to_numpy()
            pos = y if n == 1 else y + i * height - (n - 1) * height / 2
            colour = [GAIN if v > 0 else LOSS for v in diff] if n == 1 else _colour(i)
            ax.barh(pos, diff, height=0.8 if n == 1 else height, color=colour, alpha=0.85,
                    label=None if n == 1 else model)
            for p, v in zip(pos, diff, strict=True):
                if abs(v) >= 0.01:
                    ax.annotate(f"{v:+.3f}", xy=(v, p), xytext=(4 if v > 0 else -4, 0), textcoords="offset points",
                                ha="left" if v > 0 else "right", va="center", fontsize=8)
        ax.axvline(0, color="black", linewidth=0.5)
        if span > 0:
            ax.set_xlim(-1.35 * span, 1.35 * span)
        else:  # identical shares: a readable empty axis and a note instead of ticks at ±0.00025
            ax.set_xlim(-0.01, 0.01)
            ax.text(0.5, 0.5, "no difference", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, symmetric=True))
        ax.set_yticks(y, names if feature_labels else [""] * len(names))
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xlabel("share − reference share")
        ax.grid(axis="x", alpha=0.3)
        if n > 1:
            ax.legend(fontsize=8)


def importance_figure(c: Comparison) -> Figure:
    """One :class:`ComparisonDisplay` of the shares per method, stacked."""
    fig = Figure(figsize=(max(7.0, 0.9 * len(c.feature_names) + 2), 3.2 * len(c.methods)), layout="constrained")
    for ax, method in zip(fig.subplots(len(c.methods), 1, squeeze=False)[:, 0], c.methods, strict=True):
        ComparisonDisplay.from_comparison(c, method=method, ax=ax)
    return fig


def difference_figure(c: Comparison) -> Figure:
    """Return a :class:`ComparisonDisplay` of the differences per method (rows) and model (columns)."""
    others = [m for m in c.models if m != c.reference]
    d = len(c.feature_names)
    fig = Figure(figsize=(4.2 * len(others) + 1.5, (0.3 * d + 1.2) * len(c.methods)), layout="constrained")
    axes = fig.subplots(len(c.methods), len(others), squeeze=False)
    for r, method in enumerate(c.methods):
        for k, model in enumerate(others):
            ComparisonDisplay.from_comparison(c, method=method, kind="differences", models=[model], ax=axes[r, k],
                                              feature_labels=k == 0)
    return fig


def weights_figure(c: Comparison) -> Figure:
    """Overlaid density histograms of each model's unpruned weights (0.5–99.5 % range of all models)."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    pooled = np.concatenate([w for w in c.weights.values() if w.size] or [np.zeros(1)])
    lo, hi = np.quantile(pooled, [0.005, 0.995]) if pooled.size > 1 else (-1.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    bins = np.linspace(lo, hi, 101)
    for i, model in enumerate(c.models):
        w = c.weights[model]
        if w.size:
            ax.hist(np.clip(w, lo, hi), bins=bins, density=True, alpha=0.45, color=_colour(i),
                    label=f"{model} ({w.size} unpruned)")
    ax.set_xlabel("weight value (0.5–99.5 % range of all models; outliers clipped to the edges)")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")  # "best" searches 100 bins per model: seconds on a loaded machine
    return fig


def sparsity_figure(c: Comparison) -> Figure:
    """Draw grouped bars of the pruned percentage per layer and model, values printed."""
    layers = list(dict.fromkeys(c.sparsity["layer"]))
    wide = c.sparsity.pivot_table(index="layer", columns="model", values="sparsity", sort=False)
    n = len(c.models)
    fig = Figure(figsize=(max(6.0, 0.9 * len(layers) * max(1, n / 2) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    width = 0.8 / n
    for i, model in enumerate(c.models):
        vals = wide.reindex(layers)[model].to_numpy() if model in wide else np.full(len(layers), np.nan)
        bars = ax.bar(x + i * width - (n - 1) * width / 2, 100 * vals, width, label=model, color=_colour(i),
                      alpha=0.85)
        ax.bar_label(bars, labels=["" if not np.isfinite(v) else f"{100 * v:.0f}" for v in vals], fontsize=7)
    ax.set_xticks(x, layers, rotation=30, ha="right")
    ax.set_ylabel("sparsity (% of weights pruned)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


FIGURES: dict[str, Callable[[Comparison], Figure]] = {
    "importance": importance_figure,
    "difference": difference_figure,
    "weights": weights_figure,
    "sparsity": sparsity_figure,
}
