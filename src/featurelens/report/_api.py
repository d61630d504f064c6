"""Writing attribution reports: the two public entry points."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from featurelens._io import atomic_output_dir, atomic_write_text
from featurelens._validation import check_int
from featurelens.attribution._explanation import Explanation
from featurelens.report import _figures, _html, _internals, _results


def write_attribution_report(
    out: str | os.PathLike,
    *,
    title: str,
    explanations: Mapping[str, Explanation],
    summary: Mapping[str, Any] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    history: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    internals: Any = None,
    dpi: int = 110,
) -> dict[str, Any]:
    """Write an attribution report into the existing directory ``out``.

    Files already in ``out`` with the same names are replaced; use
    :func:`save_attribution_report` for an all-or-nothing output directory.

    Parameters
    ----------
    out : str or path-like
        An existing directory.
    title : str
        Page title.
    explanations : mapping of str to Explanation
        One explanation per method, keyed by the method name used in the
        report and in ``explanations/<method>.npz``. All must explain the same
        set of names (features or groups).
    summary : mapping, optional
        Data and model summary, label → value (e.g. ``{"samples": 4000,
        "validation accuracy": 0.83}``), shown as a table.
    ground_truth : mapping, optional
        What was planted, e.g. ``{"spurious_group": "spurious",
        "bias_strength": 0.8}``. It must name the planted player under
        ``"spurious_group"`` or ``"spurious_feature"`` (``None`` for none);
        the report then states per method whether it ranks that player first.
    history : pandas.DataFrame, optional
        Training history with columns ``epoch, train_loss, val_loss``.
    notes : sequence of str
        Free-text notes listed at the top of the page.
    internals : InternalsSummary, optional
        Adds the model-internals section (per-layer representation metrics,
        group-overlap heatmaps, attention statistics) from
        :func:`featurelens.internals.summarize_internals`; ``results.json``
        gets it under ``"internals"`` (``null`` without).
    dpi : int
        Resolution of the PNG figures.

    Returns
    -------
    dict
        The contents of ``results.json``.

    Raises
    ------
    ValueError
        If ``out`` does not exist, ``explanations`` is empty, the
        explanations explain different names, ``history`` lacks a column, or
        ``ground_truth`` names an unknown player.
    TypeError
        If an argument has the wrong type.
    """
    directory = Path(out)
    if not directory.is_dir():
        raise ValueError(
            f"report directory {str(directory)!r} does not exist; create it first or use save_attribution_report"
        )
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if isinstance(notes, str) or not isinstance(notes, Sequence):
        raise TypeError(f"notes must be a sequence of strings, got {type(notes).__name__}; wrap one note in a list")
    if summary is not None and not isinstance(summary, Mapping):
        raise TypeError(f"summary must be a mapping of label to value or None, got {type(summary).__name__}")
    dpi = check_int(dpi, name="dpi", minimum=10)
    explanations = _results.check_explanations(explanations)
    history = _results.check_history(history)
    section = None if internals is None else _internals.internals_results(internals)

    from featurelens import __version__

    results = _results.build_results(
        title=title, explanations=explanations, summary=summary, ground_truth=ground_truth,
        history=history, notes=notes, version=__version__,
    )
    spurious = _results.spurious_name(ground_truth, results["players"])
    figures = [_figures.importance_figure(directory, results, spurious, dpi)]
    figures.append(_figures.distribution_figure(directory, results, explanations, spurious, dpi))
    figures.append(_figures.repeats_figure(directory, results, explanations, spurious, dpi))
    figures.append(_figures.training_figure(directory, results, dpi))
    results["internals"] = section
    if section is not None:
        figures.extend(_internals.internals_figures(directory, section, dpi))
    figures = [f for f in figures if f is not None]
    results["figures"] = [f["file"] for f in figures]

    (directory / "explanations").mkdir(exist_ok=True)
    for key, expl in explanations.items():
        expl.save(directory / results["explanations"][key]["file"])
    atomic_write_text(directory / "index.html", _html.render_html(results, explanations, figures, spurious))
    text = json.dumps(results, indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False)
    atomic_write_text(directory / "results.json", text + "\n")
    return results


def save_attribution_report(
    out: str | os.PathLike,
    *,
    force: bool = False,
    title: str,
    explanations: Mapping[str, Explanation],
    summary: Mapping[str, Any] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    history: pd.DataFrame | None = None,
    notes: Sequence[str] = (),
    internals: Any = None,
    dpi: int = 110,
) -> dict[str, Any]:
    """Write a report to a new directory ``out``, all or nothing.

    The report is built in a temporary sibling directory and renamed to
    ``out`` once complete; on any error nothing is left behind and an
    existing ``out`` is untouched.

    Parameters
    ----------
    out : str or path-like
        Output directory; must not exist unless ``force=True``.
    force : bool
        Replace an existing ``out`` (only after the new report is complete).
    title, explanations, summary, ground_truth, history, notes, internals, dpi
        As for :func:`write_attribution_report`.

    Returns
    -------
    dict
        The contents of ``results.json``.

    Raises
    ------
    ValueError
        If ``out`` exists and ``force`` is false (message: "already exists"),
        or for any reason :func:`write_attribution_report` raises.
    """
    with atomic_output_dir(out, force=force) as tmp:
        return write_attribution_report(
            tmp, title=title, explanations=explanations, summary=summary,
            ground_truth=ground_truth, history=history, notes=notes, internals=internals, dpi=dpi,
        )
