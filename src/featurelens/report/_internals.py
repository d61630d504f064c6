"""The model-internals section (per-layer metrics, group-overlap heatmaps, attention) and its page.

Used by the attribution report (optional section, e.g. the demo) and for an
:class:`~featurelens.internals.InternalsReport` or
:class:`~featurelens.internals.InternalsSummary` given to
``featurelens.report.save`` (the page of ``featurelens internals``). In
``results.json`` the section is the key ``"internals"``::

    {"layers": [{"layer", "type", "units", "samples", "effective_rank", ...}],
     "overlap": {name: {"groups": [g, ...], "matrix": [[float]]}},
     "attention": [{"module", "head", "entropy", "max_entropy", "sparsity", "head_diversity"}] | null,
     "notes": [str]}

Attention rows of modules with a single key position (``max_entropy`` 0:
every query attends to it with probability 1) carry no information; the page
leaves them out and says why, ``results.json`` keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featurelens._io import atomic_write_text
from featurelens._version import __version__
from featurelens.internals import InternalsReport, InternalsSummary
from featurelens.report._figures import font_note, write_display
from featurelens.report._html import _environment, figure_map, rows
from featurelens.report._internals_displays import LayerSummaryDisplay, OverlapDisplay
from featurelens.report._results import FORMAT_NAME, FORMAT_VERSION

ATTENTION_THRESHOLD = 0.01  # the sparsity threshold of summarize_internals' attention statistics

#: (key, label, help) of the per-layer columns shown in the report
LAYER_COLUMNS = (
    ("units", "units", "size of the output's last axis."),
    ("effective_rank", "effective rank",
     "exp of the entropy of the normalised singular values of the centred activations."),
    ("n_significant", "PCs > 1 %", "principal components explaining more than 1 % of the variance (the count of the "
     "superposition and spurious-correlation study)."),
    ("participation_ratio", "participation ratio", "(Σλ)² / Σλ² of the covariance eigenvalues."),
    ("interference", "interference", "mean |off-diagonal correlation| between units."),
    ("fraction_inactive", "inactive",
     "share of entries ≤ 0 (inactive units after a ReLU; for other layers, non-positive values)."),
    ("dead_units", "dead units", "units never above 0."),
)


def _attention(section: Mapping[str, Any]) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """Return the attention rows worth showing and the modules left out (single key position)."""
    table = section["attention"]
    if not table:
        return None, []
    shown = [r for r in table if r["max_entropy"] is None or r["max_entropy"] > 0]
    omitted = list(dict.fromkeys(str(r["module"]) for r in table if r not in shown))
    return shown or None, omitted


def section_context(section: Mapping[str, Any]) -> dict[str, Any]:
    """Return what ``_internals.html.j2`` needs from the JSON section."""
    attention, omitted = _attention(section)
    return {
        "layers": section["layers"],
        "layer_columns": [{"key": k, "label": label, "help": h} for k, label, h in LAYER_COLUMNS],
        "samples": section["layers"][0]["samples"] if section["layers"] else 0,
        "overlap": section["overlap"],
        "attention": attention,
        "attention_omitted": omitted,
        "attention_threshold": ATTENTION_THRESHOLD,
        "notes": section["notes"],
    }


def internals_figures(summary: InternalsSummary, directory: Path, *, formats: Sequence[str],
                      dpi: int) -> list[dict[str, Any]]:
    """Write the section's figures (per-layer metrics, overlap heatmaps); returns their descriptions."""
    figures = []
    if not summary.layers.empty:
        figures.append(write_display(
            LayerSummaryDisplay(summary.layers).plot(), directory, "layers", formats=formats, dpi=dpi,
            title="Representation per layer",
            caption="Left: effective rank of each layer's output against its number of units. "
                    "Right: interference between units.",
            alt="Bar charts of effective rank and interference per layer"))
    if summary.overlap:
        figures.append(write_display(
            OverlapDisplay(summary.overlap).plot(), directory, "group_overlap", formats=formats, dpi=dpi,
            title="Input-group overlap",
            caption="Mean squared cosine of the principal angles between the groups' subspaces "
                    "(1: shared directions, 0: orthogonal).",
            alt="Heatmaps of the overlap between input feature groups"))
    return figures


def write_internals(result: InternalsReport | InternalsSummary, directory: Path, *, formats: Sequence[str],
                    dpi: int) -> dict[str, Any]:
    """Write the stand-alone internals page into ``directory``; returns ``results.json``'s content.

    ``results.json`` keys: ``format``, ``version``, ``featurelens_version``,
    ``title``, ``summary``, ``internals``, ``figures``.
    """
    report = result if isinstance(result, InternalsReport) else InternalsReport(result)
    numbers = report.to_dict()
    results = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "featurelens_version": __version__,
               "title": numbers["title"], "summary": numbers["summary"], "internals": numbers["internals"],
               "figures": []}
    figures = internals_figures(report.internals, directory, formats=formats, dpi=dpi)
    results["figures"] = [f for fig in figures for f in fig["files"]]
    html = _environment().get_template("internals.html.j2").render(
        r=results, summary_rows=rows(results["summary"]), internals=section_context(results["internals"]),
        figures=figure_map(figures), font_note=font_note(figures),
    )
    atomic_write_text(directory / "index.html", html)
    text = json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False)
    atomic_write_text(directory / "results.json", text + "\n")
    return results
