"""The model-internals section: per-layer metrics, group-overlap heatmaps, attention statistics.

Used by the attribution report (optional section, e.g. the demo) and by the
stand-alone internals report of ``featurelens internals``. In
``results.json`` the section is the key ``"internals"``::

    {"layers": [{"layer", "type", "units", "samples", "effective_rank", ...}],
     "overlap": {name: {"groups": [g, ...], "matrix": [[float]]}},
     "attention": [{"module", "head", "entropy", "max_entropy", "sparsity", "head_diversity"}] | null,
     "notes": [str]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from featurelens._io import atomic_output_dir, atomic_write_text
from featurelens._validation import check_int
from featurelens.report._figures import COLOURS, FigureInfo, _save
from featurelens.report._results import FORMAT_NAME, FORMAT_VERSION, jsonable

#: (key, label, help) of the per-layer columns shown in the report
LAYER_COLUMNS = (
    ("units", "units", "size of the output's last axis."),
    ("effective_rank", "effective rank", "exp of the entropy of the normalised singular values of the centred activations."),
    ("n_significant", "PCs > 1 %", "principal components explaining more than 1 % of the variance (the seed's count)."),
    ("participation_ratio", "participation ratio", "(Σλ)² / Σλ² of the covariance eigenvalues."),
    ("interference", "interference", "mean |off-diagonal correlation| between units."),
    ("fraction_inactive", "inactive", "share of entries ≤ 0 (inactive units after a ReLU; for other layers, non-positive values)."),
    ("dead_units", "dead units", "units never above 0."),
)


def internals_results(summary: Any) -> dict[str, Any]:
    """The JSON-ready section of an :class:`~featurelens.internals.InternalsSummary`."""
    from featurelens.internals import InternalsSummary

    if not isinstance(summary, InternalsSummary):
        raise TypeError(f"internals must be an InternalsSummary, got {type(summary).__name__}")
    return jsonable(summary.to_dict(), where="internals")


def _context(section: Mapping[str, Any], attention_threshold: float = 0.01) -> dict[str, Any]:
    return {
        "layers": section["layers"],
        "layer_columns": [{"key": k, "label": label, "help": h} for k, label, h in LAYER_COLUMNS],
        "samples": section["layers"][0]["samples"] if section["layers"] else 0,
        "overlap": section["overlap"],
        "attention": section["attention"],
        "attention_threshold": attention_threshold,
        "notes": section["notes"],
    }


def layers_figure(directory: Path, section: Mapping[str, Any], dpi: int) -> FigureInfo | None:
    """Effective rank (bars, with the unit count) and interference per layer."""
    rows = section["layers"]
    if not rows:
        return None
    names = [r["layer"] for r in rows]
    y = np.arange(len(rows))
    fig = Figure(figsize=(10, 0.32 * len(rows) + 1.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh(y, [r["units"] for r in rows], color="#dddddd", label="units")
    ax1.barh(y, [r["effective_rank"] or 0.0 for r in rows], color=COLOURS[0], label="effective rank")
    ax1.set_yticks(y, names, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("dimensions")
    ax1.legend(fontsize=8, loc="lower right")
    ax2.barh(y, [r["interference"] or 0.0 for r in rows], color=COLOURS[1])
    ax2.set_xlabel("interference (mean |corr| between units)")
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    _save(fig, directory / "layers.png", dpi)
    return {"file": "layers.png", "title": "Representation per layer",
            "caption": "Left: effective rank of each layer's output against its number of units. "
                       "Right: interference between units.",
            "alt": "Bar charts of effective rank and interference per layer"}


def overlap_figure(directory: Path, section: Mapping[str, Any], dpi: int) -> FigureInfo | None:
    """One heatmap per overlap matrix, values annotated."""
    mats = section["overlap"]
    if not mats:
        return None
    fig = Figure(figsize=(4.6 * len(mats), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(mats)))
    for ax, (name, m) in zip(axes, mats.items(), strict=True):
        a = np.array(m["matrix"], dtype=float)
        im = ax.imshow(a, vmin=0.0, vmax=1.0, cmap="viridis")
        ticks = np.arange(len(m["groups"]))
        ax.set_xticks(ticks, m["groups"], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, m["groups"], fontsize=8)
        if len(ticks) <= 12:
            for i in ticks:
                for j in ticks:
                    ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if a[i, j] < 0.5 else "black")
        ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="overlap")
    _save(fig, directory / "group_overlap.png", dpi)
    return {"file": "group_overlap.png", "title": "Input-group overlap",
            "caption": "Mean squared cosine of the principal angles between the groups' subspaces "
                       "(1: shared directions, 0: orthogonal).",
            "alt": "Heatmaps of the overlap between input feature groups"}


def internals_figures(directory: Path, section: Mapping[str, Any], dpi: int) -> list[FigureInfo]:
    """Write the section's figures into ``directory``; returns their descriptions."""
    figs = [layers_figure(directory, section, dpi), overlap_figure(directory, section, dpi)]
    return [f for f in figs if f is not None]


def render_internals_page(results: Mapping[str, Any], figures: Sequence[FigureInfo]) -> str:
    """HTML of the stand-alone internals page."""
    from featurelens.report._html import _display, _environment

    return _environment().get_template("internals.html.j2").render(
        r=results, summary_rows=[(k, _display(v)) for k, v in results["summary"].items()],
        internals=_context(results["internals"]), figures={f["file"]: f for f in figures},
    )


def save_internals_report(
    out: str | os.PathLike,
    *,
    internals: Any,
    title: str = "featurelens internals report",
    summary: Mapping[str, Any] | None = None,
    force: bool = False,
    dpi: int = 110,
) -> dict[str, Any]:
    """Write a stand-alone internals report (``index.html``, figures, ``results.json``) to ``out``.

    All or nothing, like :func:`save_attribution_report`: built in a
    temporary sibling and renamed; an existing ``out`` is only replaced with
    ``force=True``. ``internals`` is the result of
    :func:`featurelens.internals.summarize_internals`; ``summary`` a
    label → value table of the data and model. Returns ``results.json``'s
    contents (keys ``format``, ``version``, ``featurelens_version``,
    ``title``, ``summary``, ``internals``, ``figures``).
    """
    from featurelens import __version__

    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    dpi = check_int(dpi, name="dpi", minimum=10)
    results = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "featurelens_version": __version__,
        "title": title, "summary": jsonable(dict(summary or {}), where="summary"),
        "internals": internals_results(internals), "figures": [],
    }
    with atomic_output_dir(out, force=force) as tmp:
        figures = internals_figures(Path(tmp), results["internals"], dpi)
        results["figures"] = [f["file"] for f in figures]
        atomic_write_text(Path(tmp) / "index.html", render_internals_page(results, figures))
        text = json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False)
        atomic_write_text(Path(tmp) / "results.json", text + "\n")
    return results
