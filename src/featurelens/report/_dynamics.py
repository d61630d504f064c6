"""The report of a :class:`~featurelens.dynamics.DynamicsAnalysis` (HTML, figures, results.json, models, states).

``results.json`` (format ``"featurelens.dynamics"``, version 1) is
``{"format", "version", "featurelens_version", "title", "summary": {label: value},
"notes": [str], "figures": [file, ...]}`` plus :meth:`DynamicsAnalysis.to_dict`
(schema in :mod:`featurelens.dynamics._analysis`), whose ``model`` entry also gets
``"file"``, the chosen model's path. The directory also holds ``selection.csv``
(the selection table), ``states.csv`` (``run_id, row, <sort_by>, state``),
``models/k<K>.npz`` (the best model for every K, :meth:`GaussianHMM.save`
format) and ``runs.npz`` (the z-scored sequences,
:func:`featurelens.dynamics.save_runs`), which ``featurelens dynamics explain`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurelens._io import atomic_write_text
from featurelens._protocol import jsonable
from featurelens._validation import check_int
from featurelens._version import __version__
from featurelens.dynamics import DynamicsAnalysis, save_runs
from featurelens.report._dynamics_figures import (
    MAX_TIMELINES,
    ModelSelectionDisplay,
    StateTimelineDisplay,
    TrainingMapDisplay,
    default_columns,
)
from featurelens.report._figures import FigureInfo, write_figure
from featurelens.report._html import _environment
from featurelens.report._results import format_number

FORMAT_NAME = "featurelens.dynamics"
FORMAT_VERSION = 1
TEMPLATE = "dynamics.html.j2"
TITLE = "featurelens: training dynamics"


def _selection_info(display: ModelSelectionDisplay) -> FigureInfo:
    where = "held-out" if display.on_test_ else "training"
    k = display.recommended
    return {
        "file": "model_selection.png",
        "title": "Model selection",
        "caption": ("Log-likelihood of the held-out runs for each number of states K: every restart (dots), "
                    "mean ± std over restarts and the selected restart (dashed; the one kept as the model for K, "
                    "or the best test score if the table does not say); AIC and BIC (means over restarts, "
                    f"computed on the {where} runs) on the right axis."
                    + (f" The dotted line marks the recommended K={k}." if k else "")),
        "alt": f"Model-selection curves for K = {display.ks_.min()}..{display.ks_.max()}.",
    }


def _map_info(display: TrainingMapDisplay) -> FigureInfo:
    graph = display.graph
    edges = sorted(graph.edges(data=True), key=lambda e: -e[2]["count"])
    top = ", ".join(f"{i}→{j} (p={d['prob']:.3f}, n={d['count']})" for i, j, d in edges[:5]) or "none"
    unvisited = [n for n in graph.nodes if graph.nodes[n]["n_runs"] == 0]
    return {
        "file": "training_map.png",
        "title": "Training map",
        "caption": (
            "Latent states of the HMM (nodes, numbered from 0) placed left to right by the mean time of the "
            "first visit (fraction of the run); states first visited at about the same time share a column. "
            "An arrow i→j is drawn for every transition seen at least once in the Viterbi paths, labelled "
            "with the fitted transition probability transmat[i, j] and the number of observed occurrences n "
            "(arrow width ∝ n); 'stay' is transmat[k, k]."
            + (f" Never-visited states (faded): {unvisited}." if unvisited else "")
        ),
        "alt": f"Directed graph of {graph.number_of_nodes()} training states; most frequent transitions: {top}.",
    }


def _timeline_info(display: StateTimelineDisplay, n_runs: int) -> FigureInfo:
    shown, cols = len(display.frames), ", ".join(display.columns)
    extra = f" Only the first {shown} of {n_runs} runs are drawn." if shown < n_runs else ""
    return {
        "file": "timelines.png",
        "title": "Loss timelines coloured by latent state",
        "caption": (f"{cols} against {display.sort_by} for each run; every logged checkpoint is a dot coloured by "
                    f"its Viterbi state, so state changes show where the training phase changes.{extra}"),
        "alt": f"{shown} small line charts of {cols} with dots coloured by {display.n_states} states.",
    }


def dynamics_figures(analysis: DynamicsAnalysis, directory: Path, *, formats: Sequence[str], dpi: int,
                     max_timelines: int = MAX_TIMELINES) -> list[FigureInfo]:
    """Write the model-selection curves, the training map and (when the runs log losses) the timelines."""
    selection = ModelSelectionDisplay.from_selection(analysis.selection)
    training = TrainingMapDisplay.from_analysis(analysis)
    infos = [(selection.figure_, _selection_info(selection)), (training.figure_, _map_info(training))]
    if default_columns(analysis.runs.frames):
        timelines = StateTimelineDisplay.from_analysis(analysis, max_timelines=max_timelines)
        infos.append((timelines.figure_, _timeline_info(timelines, len(analysis.runs))))
    for fig, info in infos:
        write_figure(fig, directory, info["file"].removesuffix(".png"), formats=formats, dpi=dpi)
    return [info for _, info in infos]


def _check_page(title: Any, summary: Any, notes: Any) -> None:
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if summary is not None and not isinstance(summary, Mapping):
        raise TypeError(f"summary must be a mapping of label to value or None, got {type(summary).__name__}")
    if isinstance(notes, str) or not isinstance(notes, Sequence):
        raise TypeError(f"notes must be a sequence of strings, got {type(notes).__name__}; wrap one note in a list")


def write_dynamics(analysis: DynamicsAnalysis, directory: Path, *, formats: Sequence[str], dpi: int,
                   title: str = TITLE, summary: Mapping[str, Any] | None = None, notes: Sequence[str] = (),
                   max_timelines: int = MAX_TIMELINES) -> dict[str, Any]:
    """Write the report of ``analysis`` into the existing ``directory``; return ``results.json``'s content.

    ``title`` heads the page, ``summary`` (label → value) and ``notes`` are listed
    at the top; ``max_timelines`` runs (the first ones) get a timeline panel.
    """
    _check_page(title, summary, notes)
    max_timelines = check_int(max_timelines, name="max_timelines", minimum=1)
    runs, k = analysis.runs, analysis.n_states
    (directory / "models").mkdir()
    for n, m in sorted(analysis.selection.best.items()):
        m.save(directory / "models" / f"k{n}.npz")
    numbers = analysis.to_dict()
    model = numbers.pop("model")
    numbers["model"] = {"n_states": model.pop("n_states"), "covariance_type": model.pop("covariance_type"),
                        "file": f"models/k{k}.npz", **model}
    results = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "featurelens_version": __version__,
               "title": title, "summary": jsonable(dict(summary or {}), where="summary"),
               "notes": [str(n) for n in notes], **numbers, "figures": []}
    figures = dynamics_figures(analysis, directory, formats=["png", *[f for f in formats if f != "png"]], dpi=dpi,
                               max_timelines=max_timelines)
    results["figures"] = [f["file"] for f in figures]
    states = pd.concat([pd.DataFrame({"run_id": rid, "row": np.arange(len(p)),
                                      runs.sort_by: f[runs.sort_by].to_numpy(), "state": p})
                        for rid, f, p in zip(runs.run_ids, runs.frames, analysis.paths, strict=True)])
    atomic_write_text(directory / "selection.csv", analysis.selection.table.to_csv(index=False))
    atomic_write_text(directory / "states.csv", states.to_csv(index=False))
    save_runs(runs, directory / "runs.npz")
    html = _environment().get_template(TEMPLATE).render(
        r=results, figures={f["file"]: f for f in figures},
        summary_rows=[(key, format_number(v) if not isinstance(v, str) else v)
                      for key, v in results["summary"].items()],
    )
    atomic_write_text(directory / "index.html", html)
    atomic_write_text(directory / "results.json",
                      json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    return results
