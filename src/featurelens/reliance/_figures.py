"""Figures of the reliance report, drawn with matplotlib's object API and the Agg canvas.

Each function takes a tidy :class:`pandas.DataFrame` (as returned by the
reliance functions), writes one PNG into ``directory`` atomically and returns
``{"file", "title", "caption", "alt"}`` for the HTML page. No pyplot, no
global backend state (see :mod:`featurelens.report._figures`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from featurelens.reliance._detect import verdict_of
from featurelens.report._figures import COLOURS, HIGHLIGHT, FigureInfo, _save

_VERDICT_COLOURS = {"spurious": HIGHLIGHT, "relied upon": COLOURS[0], "unstable": COLOURS[1],
                    "neither": "0.6"}


def detection_figure(directory: Path, table: pd.DataFrame, *, dpi: int = 110) -> FigureInfo:
    """Permutation reliance (± 2 SE) per group, coloured by verdict, next to the relation's spread."""
    names = table["group"].astype(str).tolist()
    verdicts = [verdict_of(r) for _, r in table.iterrows()]
    colours = [_VERDICT_COLOURS[v] for v in verdicts]
    y = np.arange(len(names))
    fig = Figure(figsize=(9.0, 1.6 + 0.35 * len(names)), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    rel = table["reliance_permutation"].to_numpy(np.float64)
    se = table.get("reliance_permutation_se", pd.Series(np.zeros(len(names)))).to_numpy(np.float64)
    ax1.barh(y, rel, xerr=2 * se, color=colours, error_kw={"ecolor": "0.2", "capsize": 2})
    ax1.axvline(0, color="0.3", lw=0.8)
    ax1.set_yticks(y, names)
    ax1.set_ylim(len(names) - 0.5, -0.5)
    ax1.set_xlabel("reliance: permutation importance (metric drop)")
    spread = table["relation_spread"].to_numpy(np.float64)
    ax2.barh(y, np.nan_to_num(spread), color=colours)
    ax2.set_xlabel("spread of the group–label relation across environments")
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=c, label=v) for v, c in _VERDICT_COLOURS.items() if v in verdicts]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False, title="verdict")
    _save(fig, directory / "detection.png", dpi)
    flagged = [n for n, v in zip(names, verdicts, strict=True) if v == "spurious"]
    return {
        "file": "detection.png",
        "title": "Reliance and stability per feature group",
        "caption": (
            "Left: drop of the model's metric when the group's columns are permuted jointly "
            "(mean over repeats, error bars ± 2 standard errors). Right: spread (max − min) of the "
            "group-alone probe's relation to the label across environments. A group is flagged "
            "spurious when it is both relied upon and unstable (thresholds in the table below)."
        ),
        "alt": (f"Bar charts of reliance and relation spread for {len(names)} groups; "
                f"flagged spurious: {', '.join(flagged) or 'none'}."),
    }


def robustness_figure(
    directory: Path,
    table: pd.DataFrame,
    *,
    x: str = "strength",
    y: str = "metric",
    err: str | None = "std",
    hue: str = "perturbation",
    metric_name: str = "metric",
    dpi: int = 110,
) -> FigureInfo:
    """One line per perturbation (``hue``): metric ``y`` against strength ``x`` with a ±``err`` band."""
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    kinds = list(dict.fromkeys(table[hue].astype(str)))
    for j, kind in enumerate(kinds):
        part = table[table[hue].astype(str) == kind].sort_values(x)
        xs, ys = part[x].to_numpy(np.float64), part[y].to_numpy(np.float64)
        colour = COLOURS[j % len(COLOURS)]
        ax.plot(xs, ys, marker="o", ms=3, color=colour, label=kind)
        if err is not None and err in part.columns:
            e = np.nan_to_num(part[err].to_numpy(np.float64))
            ax.fill_between(xs, ys - e, ys + e, color=colour, alpha=0.15, lw=0)
    ax.set_xlabel("perturbation strength (ε in units of each feature's standard deviation; "
                  "dropout: probability)")
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3)
    ax.legend(title=hue, frameon=False)
    _save(fig, directory / "robustness.png", dpi)
    return {
        "file": "robustness.png",
        "title": "Robustness curves",
        "caption": (f"{metric_name} of the model under each perturbation as its strength grows "
                    "(0 = clean data); bands are ± one standard deviation over repeats where "
                    "the perturbation is random."),
        "alt": f"Line chart of {metric_name} against perturbation strength for {', '.join(kinds)}.",
    }


def interaction_figure(directory: Path, matrix: pd.DataFrame, *, name: str = "interactions",
                       title: str = "Pairwise group interactions", dpi: int = 110) -> FigureInfo:
    """Heatmap of a symmetric group × group matrix, diverging colours centred at 0, values printed."""
    values = matrix.to_numpy(np.float64)
    labels = [str(c) for c in matrix.columns]
    k = len(labels)
    fig = Figure(figsize=(2.2 + 0.7 * k, 1.8 + 0.6 * k), layout="constrained")
    ax = fig.add_subplot()
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    bound = bound if bound > 0 else 1.0
    im = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set_xticks(np.arange(k), labels, rotation=45, ha="right")
    ax.set_yticks(np.arange(k), [str(i) for i in matrix.index])
    if k <= 12:
        for i in range(k):
            for j in range(k):
                if np.isfinite(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=8,
                            color="white" if abs(values[i, j]) > 0.6 * bound else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="interaction (output units)")
    ax.set_title(title)
    file = f"{name}.png"
    _save(fig, directory / file, dpi)
    return {
        "file": file,
        "title": title,
        "caption": (
            "Entry (i, j): mean over rows of f(x) − f(x without i) − f(x without j) + f(x without "
            "i and j), players (groups or features) removed by setting them to the baseline, in the "
            "units of the model's output; 0 for an additive model. "
            "Red: the pair together matters more than the sum of its parts; blue: less."
        ),
        "alt": f"Heatmap of a {k} by {k} symmetric interaction matrix over groups {', '.join(labels)}.",
    }


def mitigation_figure(directory: Path, table: pd.DataFrame, *, dpi: int = 110) -> FigureInfo:
    """Bars per strategy: in-distribution metric, each shifted metric, reliance on the suspect group.

    Columns as in :class:`featurelens.reliance.MitigationTable` (``in_distribution``,
    ``shifted`` or ``shifted_<name>``, ``reliance``); another schema draws its
    first three numeric columns.
    """
    names = table["strategy"].astype(str).tolist()
    shifted = [c for c in table.columns if str(c).startswith("shifted") and not str(c).endswith("_change")]
    panels = ([("in_distribution", "in-distribution metric")] if "in_distribution" in table.columns else [])
    panels += [(c, f"{str(c).replace('_', ' ')} metric") for c in shifted]
    panels += [("reliance", "reliance on the suspect group")] if "reliance" in table.columns else []
    if not panels:  # another schema: the first three numeric columns
        numeric = [c for c in table.columns if c != "strategy" and pd.api.types.is_numeric_dtype(table[c])
                   and not pd.api.types.is_bool_dtype(table[c])]
        if not numeric:
            raise ValueError("mitigation table has no numeric column to draw")
        panels = [(c, str(c)) for c in numeric[:3]]
    fig = Figure(figsize=(3.4 * len(panels), 1.8 + 0.35 * len(names)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    y = np.arange(len(names))
    for ax, (col, label) in zip(axes, panels, strict=True):
        vals = table[col].to_numpy(np.float64)
        colours = [COLOURS[0] if i == 0 else COLOURS[2] for i in range(len(names))]
        ax.barh(y, vals, color=colours)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
        if ax is axes[0]:
            ax.set_yticks(y, names)
            ax.set_ylim(len(names) - 0.5, -0.5)
    _save(fig, directory / "mitigation.png", dpi)
    return {
        "file": "mitigation.png",
        "title": "Mitigation: before and after",
        "caption": ("Each strategy trains a new model; the first row is the unmitigated model. "
                    "In-distribution: held-out data with the training distribution; shifted: "
                    "held-out data where the suspect group's link to the label is broken."),
        "alt": f"Bar charts comparing {len(names)} models on {', '.join(lbl for _, lbl in panels)}.",
    }


def subgroup_figure(directory: Path, table: pd.DataFrame, *, by: str, value: str,
                    dpi: int = 110) -> FigureInfo:
    """Bars of a metric per subgroup (e.g. AUC by insurance type) with the row counts."""
    names = table[by].astype(str).tolist()
    vals = table[value].to_numpy(np.float64)
    fig = Figure(figsize=(6.0, 1.6 + 0.4 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    ax.barh(y, vals, color=COLOURS[0])
    ax.set_yticks(y, names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    if "n" in table.columns:
        for i, n in enumerate(table["n"]):
            ax.text(vals[i], i, f"  n = {int(n)}", va="center", fontsize=8)
    ax.set_xlabel(value)
    ax.set_ylabel(by)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, directory / "subgroups.png", dpi)
    return {
        "file": "subgroups.png",
        "title": f"{value} by {by}",
        "caption": f"The model's {value} computed separately on each {by} subgroup of the test rows.",
        "alt": f"Bar chart of {value} for subgroups {', '.join(names)}.",
    }


def windows_figure(directory: Path, table: pd.DataFrame, *, window: str = "window",
                   group: str = "group", value: str = "importance", dpi: int = 110) -> FigureInfo:
    """Importance of each group per time window (one line per group)."""
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(table[group].astype(str)))
    for j, g in enumerate(groups):
        part = table[table[group].astype(str) == g]
        err = part["std_error"].to_numpy(np.float64) if "std_error" in part.columns else None
        ax.errorbar(part[window].astype(str), part[value].to_numpy(np.float64), yerr=err, marker="o",
                    capsize=2, color=COLOURS[j % len(COLOURS)], label=g)
    ax.set_xlabel(window)
    ax.set_ylabel(value)
    ax.grid(alpha=0.3)
    ax.legend(title=group, frameon=False)
    for tick in ax.get_xticklabels():
        tick.set_rotation(45)
    _save(fig, directory / "windows.png", dpi)
    return {
        "file": "windows.png",
        "title": "Importance over time windows",
        "caption": ("Importance of each group computed separately on the rows of each consecutive time "
                    "window (error bars: ± one standard error where given)."),
        "alt": f"Line chart of {value} per time window for groups {', '.join(groups)}.",
    }
