"""The attribution report: an :class:`AttributionReport` (or one :class:`Explanation`) as a page.

A report directory holds ``index.html`` (inline CSS, no scripts, no network
resources), the figures, ``results.json`` with every number shown on the
page (schema in :mod:`featurelens.report._results` and
``docs/report_schema.md``) and each explanation as
``explanations/<method>.npz`` (readable with :meth:`Explanation.load`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featurelens._io import atomic_write_text
from featurelens.attribution import AttributionReport, Explanation
from featurelens.internals import InternalsSummary
from featurelens.report._attribution_displays import (
    MAX_POINTS,
    DistributionDisplay,
    ImportanceDisplay,
    RepeatsDisplay,
    TrainingDisplay,
)
from featurelens.report._figures import font_note, write_display
from featurelens.report._html import _environment, figure_map, rows
from featurelens.report._internals import internals_figures, section_context
from featurelens.report._results import build_results, importance_label

TEMPLATE = "report.html.j2"


def _cut(results: Mapping[str, Any], drawn: int) -> str:
    level, n = results["level"], len(results["players"])
    return "" if drawn == n else f" Only the {drawn} most important of {n} {level}s are drawn; the table lists all."


def _figures(report: AttributionReport, results: Mapping[str, Any], directory: Path, *, formats: Sequence[str],
             dpi: int) -> list[dict[str, Any]]:
    """Draw and write the figures through the displays; returns their descriptions in page order."""
    level, methods, planted = results["level"], list(results["importance"]), report.planted
    write = {"formats": formats, "dpi": dpi}
    imp = ImportanceDisplay._from_results(results, planted).plot()
    averaged = [k for k, e in results["explanations"].items() if e["reduction"]]
    note = f" For {', '.join(averaged)} the importance is the mean over model outputs." if averaged else ""
    figures = [write_display(
        imp, directory, "importance", **write, title=f"Normalised importance per {level}",
        caption=(f"Importance of each {level} divided by the sum of absolute importances of its method, "
                 "so methods with different units can be compared; error bars are ± one standard error "
                 f"scaled the same way. {level.capitalize()}s are sorted by the importance of {methods[0]}."
                 f"{note}{_cut(results, len(imp.normalized))}"),
        alt=(f"Horizontal bar chart of normalised importance for {len(results['players'])} {level}s and "
             f"methods {', '.join(methods)}; {results['players'][0]} ranks first for {methods[0]}."))]
    dist = DistributionDisplay._from_results(results, report.explanations, planted)
    if dist is not None:
        skipped = [k for k in report.explanations if k not in dist.values]
        skip = f" Not drawn (no per-sample (sample, {level}) values): {', '.join(skipped)}." if skipped else ""
        figures.append(write_display(
            dist.plot(), directory, "distribution", **write, title="Per-sample attributions",
            caption=("Distribution of signed per-sample attributions. Boxes show the quartiles and median, "
                     f"whiskers extend to 1.5 × the interquartile range; dots are samples (at most {MAX_POINTS} "
                     f"per {level}, vertical jitter). {level.capitalize()}s in report order.{skip}"
                     f"{_cut(results, len(dist.names))}"),
            alt=f"Box and strip plots of per-sample attributions for methods {', '.join(dist.values)}."))
    repeats = RepeatsDisplay._from_results(results, report.explanations, planted)
    if repeats is not None:
        figures.append(write_display(
            repeats.plot(), directory, "permutation_repeats", **write, title="Permutation repeats",
            caption=("Degradation of the model's metric when each "
                     f"{level} is permuted (positive = the {level} matters). Dots are individual repeats "
                     f"(vertical jitter); diamonds the mean with ± one standard error over repeats."
                     f"{_cut(results, len(repeats.names))}"),
            alt=f"Dot plot of repeat-level metric degradation for methods {', '.join(repeats.scores)}."))
    if report.history is not None:
        figures.append(write_display(
            TrainingDisplay(report.history).plot(), directory, "training", **write, title="Training history",
            caption="Training and validation loss per epoch; the dashed line and star mark the epoch with "
                    "the lowest validation loss.",
            alt=f"Line chart of training and validation loss over {len(report.history)} epochs."))
    if report.internals is not None:
        figures.extend(internals_figures(report.internals, directory, formats=formats, dpi=dpi))
    return figures


def _check_rows(results: Mapping[str, Any], spurious: str | None) -> list[dict[str, Any]]:
    return [{"method": method, "ok": check["top"] == spurious, "top": check["top"], "rank": check["spurious_rank"],
             "share": check["spurious_share"], "importance": results["importance"][method][spurious]}
            for method, check in (results["checks"] or {}).items()]


def _training(results: Mapping[str, Any]) -> dict[str, Any] | None:
    training = results["training"]
    if training is None:
        return None
    best = training["best_epoch"]
    row = next((r for r in training["history"] if r["epoch"] == best), None)
    return {"n_epochs": len(training["history"]), "best_epoch": best, "best": row}


def render_page(report: AttributionReport, results: Mapping[str, Any], figures: Sequence[Mapping[str, Any]]) -> str:
    """Return the HTML text of the attribution page."""
    spurious = report.planted
    methods = list(results["importance"])
    table = [
        {"name": name, "planted": name == spurious,
         "cells": [(results["importance"][m][name], results["std_error"][m][name],
                    results["importance_normalized"][m][name]) for m in methods]}
        for name in results["players"]
    ]
    details = [
        {"key": key, "info": info, "unit": importance_label(report.explanations[key]),
         "params": json.dumps(info["params"], sort_keys=True), "target": json.dumps(info["target"], sort_keys=True)}
        for key, info in results["explanations"].items()
    ]
    return _environment().get_template(TEMPLATE).render(
        r=results, methods=methods, level=results["level"], summary_rows=rows(results["summary"]),
        ground_truth_rows=rows(results["ground_truth"]), spurious=spurious, checks=_check_rows(results, spurious),
        table=table, figures=figure_map(figures), training=_training(results), details=details,
        internals=None if results["internals"] is None else section_context(results["internals"]),
        font_note=font_note(figures),
    )


def write_attribution(report: AttributionReport, directory: Path, *, formats: Sequence[str],
                      dpi: int) -> dict[str, Any]:
    """Write the attribution report into the existing directory ``directory``; returns ``results.json``'s content."""
    if report.internals is not None and not isinstance(report.internals, InternalsSummary):
        raise TypeError(f"internals must be an InternalsSummary, got {type(report.internals).__name__}")
    results = build_results(report)
    figures = _figures(report, results, directory, formats=formats, dpi=dpi)
    results["figures"] = [f for fig in figures for f in fig["files"]]
    (directory / "explanations").mkdir(exist_ok=True)
    for key, expl in report.explanations.items():
        expl.save(directory / results["explanations"][key]["file"])
    atomic_write_text(directory / "index.html", render_page(report, results, figures))
    text = json.dumps(results, indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False)
    atomic_write_text(directory / "results.json", text + "\n")
    return results


def write_explanation(explanation: Explanation, directory: Path, *, formats: Sequence[str],
                      dpi: int) -> dict[str, Any]:
    """One explanation as an attribution report titled after its method."""
    report = AttributionReport({explanation.method: explanation},
                               title=f"featurelens: {explanation.method} attributions")
    return write_attribution(report, directory, formats=formats, dpi=dpi)
