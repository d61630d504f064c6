"""Comparison figures (matplotlib object API, Agg canvas; PNG, PDF or SVG).

Seed 000's four figures: grouped importance bars, the importance difference with
annotated values, the overlaid weight distributions, and the sparsity per layer.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from featurelens._io import atomic_write_bytes
from featurelens.report._figures import COLOURS

if TYPE_CHECKING:
    from featurelens.compare._compare import Comparison

FORMATS = ("png", "pdf", "svg")
GAIN, LOSS = "#009E73", "#D55E00"
#: figure file stem -> (title, caption) used by the HTML page
CAPTIONS = {
    "importance": ("Feature importance by model",
                   "Share of each feature in the model's total importance, per method (bars of one model sum to 1)."),
    "difference": ("Importance shift against the reference",
                   "Share minus the reference model's share; values of |difference| ≥ 0.01 are printed."),
    "weights": ("Distribution of the unpruned weights",
                "Density of the layer weights that are not pruned (masks matched by exact name), all layers pooled."),
    "sparsity": ("Sparsity per layer", "Fraction of each layer's weights pruned by its mask; 'total' pools all layers."),
}


def check_formats(formats: Sequence[str]) -> list[str]:
    """Validated, de-duplicated figure formats (``ValueError`` naming a bad one)."""
    if isinstance(formats, str):
        formats = (formats,)
    if not isinstance(formats, Sequence) or not formats:
        raise ValueError(f"formats must be a non-empty sequence of {', '.join(FORMATS)}")
    out = list(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise ValueError(f"formats: {bad[0]!r} is not a figure format; choose from {', '.join(FORMATS)}")
    return out


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _importance(c: Comparison) -> Figure:
    d, n = len(c.feature_names), len(c.models)
    fig = Figure(figsize=(max(7.0, 0.9 * d + 2), 3.2 * len(c.methods)), layout="constrained")
    axes = fig.subplots(len(c.methods), 1, squeeze=False)[:, 0]
    x = np.arange(d)
    width = 0.8 / n
    for ax, method in zip(axes, c.methods, strict=True):
        shares = c.shares(method)
        for i, model in enumerate(c.models):
            ax.bar(x + i * width - (n - 1) * width / 2, shares[model].to_numpy(), width, label=model,
                   color=_colour(i), alpha=0.85)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_title(method)
        ax.set_ylabel("importance share")
        ax.set_xticks(x, c.feature_names, rotation=45, ha="right")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _difference(c: Comparison) -> Figure:
    others = [m for m in c.models if m != c.reference]
    d = len(c.feature_names)
    fig = Figure(figsize=(4.2 * len(others) + 1.5, (0.3 * d + 1.2) * len(c.methods)), layout="constrained")
    axes = fig.subplots(len(c.methods), len(others), squeeze=False)
    y = np.arange(d)
    for r, method in enumerate(c.methods):
        for k, model in enumerate(others):
            ax = axes[r, k]
            block = c.differences[(c.differences["method"] == method) & (c.differences["model"] == model)]
            diff = block.set_index("feature").loc[c.feature_names, "difference"].to_numpy()
            ax.barh(y, diff, color=[GAIN if v > 0 else LOSS for v in diff], alpha=0.85)
            ax.axvline(0, color="black", linewidth=0.5)
            span = float(np.max(np.abs(diff))) if d else 0.0
            ax.set_xlim(-1.35 * span - 1e-3, 1.35 * span + 1e-3)
            for i, v in enumerate(diff):
                if abs(v) >= 0.01:
                    ax.annotate(f"{v:+.3f}", xy=(v, i), xytext=(4 if v > 0 else -4, 0), textcoords="offset points",
                                ha="left" if v > 0 else "right", va="center", fontsize=8)
            ax.set_yticks(y, c.feature_names if k == 0 else [""] * d)
            ax.set_ylim(d - 0.5, -0.5)
            ax.set_title(f"{method}: {model} − {c.reference}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
    return fig


def _weights(c: Comparison) -> Figure:
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
    ax.legend(fontsize=8)
    return fig


def _sparsity(c: Comparison) -> Figure:
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
    "importance": _importance,
    "difference": _difference,
    "weights": _weights,
    "sparsity": _sparsity,
}


def save_figures(c: Comparison, directory: str | Path, *, formats: Sequence[str] = ("png",),
                 dpi: int = 150) -> list[Path]:
    """Draw every figure of :data:`FIGURES` and write ``<stem>.<fmt>`` atomically."""
    fmts = check_formats(formats)
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} does not exist")
    written = []
    for stem, draw in FIGURES.items():
        fig = draw(c)
        fig.suptitle(CAPTIONS[stem][0])
        FigureCanvasAgg(fig)
        for k, fmt in enumerate(fmts):
            if k == 1:  # the constrained layout is solved by the first save; keep it, do not re-solve
                fig.set_layout_engine("none")
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=dpi)
            written.append(atomic_write_bytes(directory / f"{stem}.{fmt}", buf.getvalue()))
    return written
