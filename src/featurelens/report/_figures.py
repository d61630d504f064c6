"""Report figures, drawn with matplotlib's object API and the Agg canvas.

No pyplot and no global backend state: every figure is a
:class:`matplotlib.figure.Figure` printed by :class:`FigureCanvasAgg` into a
PNG written atomically next to ``index.html``. Each function returns a
``{"file", "title", "caption", "alt"}`` dict, or ``None`` when its data is
absent.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from featurelens._io import atomic_write_bytes
from featurelens.attribution._explanation import Explanation
from featurelens.report._results import format_number, importance_label, unit_of

MAX_PLAYERS = 40  # players drawn per figure (the most important ones, in report order)
MAX_POINTS = 2000  # strip-plot points per player and method
# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
HIGHLIGHT = "#B2182B"
_BOX_KW = (
    {"orientation": "horizontal"} if matplotlib.__version_info__ >= (3, 10) else {"vert": False}
)
FigureInfo = dict[str, str]


def _save(fig: Figure, path: Path, dpi: int) -> None:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def _shown(players: list[str], level: str) -> tuple[list[str], str]:
    shown = players[:MAX_PLAYERS]
    extra = "" if len(shown) == len(players) else (
        f" Only the {len(shown)} most important of {len(players)} {level}s are drawn; the table lists all."
    )
    return shown, extra


def _player_axis(ax: Any, names: list[str], spurious: str | None, level: str) -> None:
    """Players on the y axis, most important at the top, the planted one highlighted."""
    ax.set_ylim(len(names) - 0.5, -0.5)
    labels = [f"{n} (planted)" if n == spurious else n for n in names]
    ticks = ax.set_yticks(np.arange(len(names)), labels)
    for tick, name in zip(ticks, names, strict=True):
        if name == spurious:
            tick.label1.set_color(HIGHLIGHT)
            tick.label1.set_fontweight("bold")
    ax.set_ylabel(level)
    ax.grid(axis="x", alpha=0.3)


def _height(n_players: int, per_player: float = 0.3) -> float:
    return 1.8 + n_players * per_player


def importance_figure(directory: Path, results: Mapping[str, Any], spurious: str | None, dpi: int) -> FigureInfo:
    """Grouped horizontal bars of normalised importance, ± scaled standard error."""
    methods = list(results["importance"])
    level = results["level"]
    names, extra = _shown(results["players"], level)
    m = len(methods)
    fig = Figure(figsize=(7.5, _height(len(names), 0.12 + 0.1 * m)), layout="constrained")
    ax = fig.add_subplot()
    height = 0.8 / m
    y = np.arange(len(names))
    for j, method in enumerate(methods):
        imp = np.array([results["importance"][method][n] for n in results["players"]], dtype=np.float64)
        total = float(np.nansum(np.abs(imp)))
        scale = 1.0 / total if total > 0 else 0.0
        vals = np.array([results["importance_normalized"][method][n] for n in names], dtype=np.float64)
        err = np.array([results["std_error"][method][n] for n in names], dtype=np.float64) * scale
        ax.barh(y - 0.4 + height * (j + 0.5), vals, height=height, xerr=err, color=COLOURS[j % len(COLOURS)],
                label=method, error_kw={"ecolor": "0.2", "capsize": 2, "elinewidth": 0.8})
    ax.axvline(0, color="0.3", lw=0.8)
    _player_axis(ax, names, spurious, level)
    ax.set_xlabel("normalised importance (share of total |importance|, unitless)")
    ax.set_title(f"Importance per {level}")
    fig.legend(loc="outside lower center", ncols=min(m, 4), title="method", frameon=False)
    _save(fig, directory / "importance.png", dpi)
    averaged = [k for k, e in results["explanations"].items() if e["reduction"]]
    note = f" For {', '.join(averaged)} the importance is the mean over model outputs." if averaged else ""
    return {
        "file": "importance.png",
        "title": f"Normalised importance per {level}",
        "caption": (
            f"Importance of each {level} divided by the sum of absolute importances of its method, "
            "so methods with different units can be compared; error bars are ± one standard error "
            f"scaled the same way. {level.capitalize()}s are sorted by the importance of {methods[0]}.{note}{extra}"
        ),
        "alt": (
            f"Horizontal bar chart of normalised importance for {len(results['players'])} {level}s and "
            f"methods {', '.join(methods)}; {results['players'][0]} ranks first for {methods[0]}."
        ),
    }


def distribution_figure(directory: Path, results: Mapping[str, Any], explanations: Mapping[str, Explanation],
                        spurious: str | None, dpi: int) -> FigureInfo | None:
    """Box plot with a seeded jittered strip of per-sample values, one panel per method."""
    level = results["level"]
    usable = {k: e for k, e in explanations.items() if e.values is not None and e.axes == ("sample", e.level)}
    if not usable:
        return None
    names, extra = _shown(results["players"], level)
    rng = np.random.default_rng(0)
    k = len(usable)
    fig = Figure(figsize=(1.8 + 3.6 * k, _height(len(names), 0.32)), layout="constrained")
    axes = fig.subplots(1, k, sharey=True, squeeze=False)[0]
    for j, (ax, (key, expl)) in enumerate(zip(axes, usable.items(), strict=True)):
        colour = COLOURS[list(explanations).index(key) % len(COLOURS)]
        data = []
        for i, name in enumerate(names):
            col = expl.values[:, expl.names.index(name)].astype(np.float64)
            col = col[np.isfinite(col)]
            data.append(col)
            strip = col if col.size <= MAX_POINTS else col[rng.choice(col.size, MAX_POINTS, replace=False)]
            jitter = rng.uniform(-0.28, 0.28, size=strip.size)
            ax.scatter(strip, i + jitter, s=3, alpha=0.25, color=colour, linewidths=0, zorder=1)
        ax.boxplot([d if d.size else np.array([np.nan]) for d in data], positions=np.arange(len(names)),
                   widths=0.6, showfliers=False, manage_ticks=False, zorder=2,
                   medianprops={"color": "black", "lw": 1.6}, **_BOX_KW)
        ax.axvline(0, color="0.3", lw=0.8)
        _player_axis(ax, names, spurious, level)
        if j:
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelleft=False)
        ax.set_xlabel(f"attribution value ({unit_of(expl)})")
        ax.set_title(key)
    fig.suptitle(f"Per-sample attributions per {level}")
    _save(fig, directory / "distribution.png", dpi)
    skipped = [k for k in explanations if k not in usable]
    skip = f" Not drawn (no per-sample (sample, {level}) values): {', '.join(skipped)}." if skipped else ""
    return {
        "file": "distribution.png",
        "title": "Per-sample attributions",
        "caption": (
            "Distribution of signed per-sample attributions. Boxes show the quartiles and median, "
            f"whiskers extend to 1.5 × the interquartile range; dots are samples (at most {MAX_POINTS} per "
            f"{level}, vertical jitter, seed 0). {level.capitalize()}s in report order.{skip}{extra}"
        ),
        "alt": f"Box and strip plots of per-sample attributions for methods {', '.join(usable)}.",
    }


def repeats_figure(directory: Path, results: Mapping[str, Any], explanations: Mapping[str, Explanation],
                   spurious: str | None, dpi: int) -> FigureInfo | None:
    """Repeat-level metric degradation: the repeats as dots, mean ± standard error."""
    level = results["level"]
    usable = {k: e for k, e in explanations.items() if e.scores is not None and e.scores.shape[0] > 1}
    if not usable:
        return None
    names, extra = _shown(results["players"], level)
    rng = np.random.default_rng(0)
    k = len(usable)
    fig = Figure(figsize=(1.8 + 3.6 * k, _height(len(names), 0.3)), layout="constrained")
    axes = fig.subplots(1, k, sharey=True, squeeze=False)[0]
    for j, (ax, (key, expl)) in enumerate(zip(axes, usable.items(), strict=True)):
        colour = COLOURS[list(explanations).index(key) % len(COLOURS)]
        cols = [expl.names.index(n) for n in names]
        scores = expl.scores[:, cols].astype(np.float64)
        y = np.arange(len(names))
        for i in range(len(names)):
            ax.scatter(scores[:, i], i + rng.uniform(-0.15, 0.15, size=scores.shape[0]), s=14,
                       color=colour, alpha=0.6, linewidths=0, zorder=2)
        means = [results["importance"][key][n] for n in names]
        errs = [results["std_error"][key][n] for n in names]
        means = np.array([np.nan if v is None else v for v in means], dtype=np.float64)
        errs = np.array([np.nan if v is None else v for v in errs], dtype=np.float64)
        ax.errorbar(means, y, xerr=errs, fmt="D", color="black", ms=4, capsize=3, lw=1, zorder=3,
                    label="mean ± standard error")
        ax.axvline(0, color="0.3", lw=0.8)
        _player_axis(ax, names, spurious, level)
        if j:
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelleft=False)
        ax.set_xlabel(importance_label(expl))
        ax.set_title(f"{key} ({scores.shape[0]} repeats)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", frameon=False)
    fig.suptitle(f"Permutation repeats per {level}")
    _save(fig, directory / "permutation_repeats.png", dpi)
    return {
        "file": "permutation_repeats.png",
        "title": "Permutation repeats",
        "caption": (
            "Degradation of the model's metric when each "
            f"{level} is permuted (positive = the {level} matters). Dots are individual repeats "
            f"(vertical jitter, seed 0); diamonds the mean with ± one standard error over repeats.{extra}"
        ),
        "alt": f"Dot plot of repeat-level metric degradation for methods {', '.join(usable)}.",
    }


def training_figure(directory: Path, results: Mapping[str, Any], dpi: int) -> FigureInfo | None:
    """Training and validation loss per epoch with the best (lowest validation loss) epoch."""
    training = results["training"]
    if training is None:
        return None
    rows = training["history"]

    def col(c: str) -> np.ndarray:
        return np.array([np.nan if r[c] is None else r[c] for r in rows], dtype=np.float64)

    epoch, train, val = col("epoch"), col("train_loss"), col("val_loss")
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(epoch, train, marker="o", ms=3, color=COLOURS[0], label="training loss")
    ax.plot(epoch, val, marker="o", ms=3, color=COLOURS[1], label="validation loss")
    best = training["best_epoch"]
    if best is not None:
        i = int(np.flatnonzero(epoch == best)[0])
        ax.axvline(best, color="0.4", ls="--", lw=1)
        ax.scatter([best], [val[i]], s=90, marker="*", color=HIGHLIGHT, zorder=3,
                   label=f"best epoch ({format_number(best)})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (training objective, mean per sample)")
    ax.set_title("Training history")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    _save(fig, directory / "training.png", dpi)
    return {
        "file": "training.png",
        "title": "Training history",
        "caption": "Training and validation loss per epoch; the dashed line and star mark the epoch with "
                   "the lowest validation loss.",
        "alt": f"Line chart of training and validation loss over {len(rows)} epochs.",
    }


# -- figure formats (every report kind) ----------------------------------------------
FORMATS = ("png", "pdf", "svg")


def check_formats(formats: Sequence[str]) -> list[str]:
    """Validated, de-duplicated, lower-case figure formats; ``ValueError`` naming a bad one.

    ``formats`` is a non-empty sequence of :data:`FORMATS` entries (a single
    string counts as one format; a leading dot is ignored).
    """
    if isinstance(formats, str):
        formats = (formats,)
    if not isinstance(formats, Sequence) or not formats:
        raise ValueError(f"formats must be a non-empty sequence of {', '.join(FORMATS)}")
    out = list(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise ValueError(f"formats: {bad[0]!r} is not a figure format; choose from {', '.join(FORMATS)}")
    return out


def write_figure(fig: Figure, directory: Path, stem: str, *, formats: Sequence[str] = ("png",),
                 dpi: int = 110) -> list[Path]:
    """Write ``fig`` as ``directory/<stem>.<fmt>`` for every format, each file atomically.

    The constrained layout is solved once, by the first format, and kept for
    the others, so every format shows the same layout. Returns the paths written.
    """
    FigureCanvasAgg(fig)
    written = []
    for k, fmt in enumerate(formats):
        if k == 1:
            fig.set_layout_engine("none")
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        written.append(atomic_write_bytes(directory / f"{stem}.{fmt}", buf.getvalue()))
    return written
