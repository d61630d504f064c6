"""The training-dynamics pipeline end to end and its report (HTML, figures, results.json).

``results.json`` (format ``"featurelens.dynamics"``, version 1)::

    {
      "format", "version", "featurelens_version", "title",
      "summary": {label: value}, "notes": [str],
      "metrics": [name, ...],                       # the D modelled columns
      "runs": {"run_ids": [...], "lengths": [...], "dropped": {run_id: reason},
               "sort_by": str, "constant_columns": {run_id: [metric, ...]},
               "visits": {run_id: [state, ...]}},     # Viterbi states in visiting order, repeats merged
      "selection": {"rule": str, "recommended": int, "chosen": int,
                    "table": [{"n_states", "restart", "train_loglik", "test_loglik", "aic", "bic",
                               "converged", ...}]},
      "model": {"n_states", "covariance_type", "file", "startprob", "transmat", "means",
                "n_parameters", "loglik_all_runs"},
      "occupancy": {state: fraction of all checkpoints},
      "transitions": [{"from", "to", "count", "prob"}],            # observed, i != j, by count
      "drivers": [{"from", "to", "n_occurrences", "step",
                   "features": [{"feature", "mean_gradient", "mean_change"}]}],
      "convergence": {"column", "threshold", "direction",
                      "times": {run_id: int}, "converged": {run_id: bool}} | null,
      "detours": {"states": [{"state", "n_runs_visiting", "fraction_visiting", "r", "t", "p_value",
                              "mean_convergence_visiting", "mean_convergence_not_visiting", "kind"}],
                  "regression": {"intercept", "coef", "r2", "r2_cv", "rank", "n_runs",
                                 "first_k", "n_splits"}} | null,
      "figures": [file, ...]
    }

Floats are plain JSON numbers; NaN and inf are written as ``null``. The
directory also holds ``selection.csv`` (the table), ``states.csv``
(``run_id, row, <sort_by>, state``), ``models/k<K>.npz`` (the best model for
every K, :meth:`GaussianHMM.save` format; ``model.file`` names the chosen one)
and ``runs.npz`` (the z-scored sequences, :func:`save_runs`), which
``featurelens dynamics explain`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurelens._io import atomic_write_text
from featurelens._validation import RandomState, check_int
from featurelens.dynamics._detours import (
    OccupancyRegression,
    convergence_time,
    occupancy,
    occupancy_regression,
    state_correlations,
)
from featurelens.dynamics._figures import (
    MAX_TIMELINES,
    selection_figure,
    timeline_figure,
    training_map_figure,
    transition_counts,
)
from featurelens.dynamics._runs import RunSet, save_runs
from featurelens.report._html import _environment
from featurelens.report._results import format_number, jsonable

FORMAT_NAME = "featurelens.dynamics"
FORMAT_VERSION = 1
TEMPLATE = "dynamics.html.j2"


@dataclass(frozen=True)
class DynamicsAnalysis:
    """Everything :func:`analyse_runs` computed (inputs of the report)."""

    runs: RunSet
    selection: Any  # featurelens.dynamics.ModelSelection
    n_states: int
    model: Any  # featurelens.dynamics.GaussianHMM
    paths: list[np.ndarray]
    counts: np.ndarray
    drivers: list[tuple[int, int, Any]]  # (i, j, TransitionExplanation)
    step: str
    convergence: pd.DataFrame | None
    correlations: pd.DataFrame | None
    regression: OccupancyRegression | None
    convergence_rule: dict[str, Any] | None


def _check_convergence(convergence: Mapping[str, Any] | None, runs: RunSet) -> dict[str, Any] | None:
    if convergence is None:
        return None
    if not isinstance(convergence, Mapping) or "column" not in convergence or "threshold" not in convergence:
        raise TypeError("convergence must be None or a mapping with 'column', 'threshold' and optional "
                        "'direction' ('above'/'below') and 'sustained' (bool)")
    rule = {"column": str(convergence["column"]), "threshold": convergence["threshold"],
            "direction": convergence.get("direction", "above"), "sustained": bool(convergence.get("sustained", False))}
    missing = [rid for rid, f in zip(runs.run_ids, runs.frames, strict=True) if rule["column"] not in f.columns]
    if missing:
        raise ValueError(f"convergence column {rule['column']!r} is missing in run(s) {missing[:5]}")
    return rule


def analyse_runs(
    runs: RunSet,
    *,
    states: Sequence[int] = range(1, 9),
    n_restarts: int = 5,
    n_iter: int = 32,
    covariance_type: str = "full",
    test_fraction: float = 0.2,
    n_states: int | None = None,
    n_drivers: int = 4,
    step: str = "last",
    convergence: Mapping[str, Any] | None = None,
    random_state: RandomState = 0,
    progress: bool = False,
) -> DynamicsAnalysis:
    """Model selection, decoding, transition drivers and detours for loaded runs.

    1. :func:`select_model` over ``states`` on a run-level train/test split.
    2. The model with ``n_states`` states (default: the recommended K) is
       the best restart for that K; it decodes every run (Viterbi, all runs
       z-scored per run as loaded, no split: the authors' inference step).
    3. The ``n_drivers`` most frequent observed transitions ``i → j``
       (``i ≠ j``) are explained with :func:`explain_transition` (``step``).
    4. With ``convergence`` (``{"column", "threshold", "direction",
       "sustained"}``, see :func:`convergence_time`): per run the convergence
       checkpoint, :func:`state_correlations` and :func:`occupancy_regression`
       (needs at least 5 runs; fewer runs skip the regression).
    """
    from featurelens.dynamics._drivers import explain_transition
    from featurelens.dynamics._selection import select_model

    if not isinstance(runs, RunSet):
        raise TypeError(f"runs must be a RunSet from load_runs, got {type(runs).__name__}")
    n_drivers = check_int(n_drivers, name="n_drivers", minimum=0)
    rule = _check_convergence(convergence, runs)
    selection = select_model(runs.sequences, states=states, n_restarts=n_restarts, n_iter=n_iter,
                             covariance_type=covariance_type, test_fraction=test_fraction,
                             feature_names=list(runs.metrics), random_state=random_state, progress=progress)
    k = selection.recommended if n_states is None else check_int(n_states, name="n_states", minimum=1)
    if k not in selection.best:
        raise ValueError(f"n_states={k} is not among the fitted state counts {sorted(selection.best)}")
    model = selection.best[k]
    paths = model.decode(runs.sequences)
    counts = transition_counts(paths, n_states=k)
    drivers = [(i, j, explain_transition(model, runs.sequences, i, j, step=step, feature_names=list(runs.metrics),
                                         states=paths))
               for i, j, _ in _observed_transitions(counts)[:n_drivers]]
    conv = corr = reg = None
    if rule is not None:
        rows = []
        for rid, frame in zip(runs.run_ids, runs.frames, strict=True):
            t, ok = convergence_time(frame[rule["column"]], threshold=rule["threshold"],
                                     direction=rule["direction"], sustained=rule["sustained"])
            rows.append({"run_id": rid, "time": t, "converged": ok})
        conv = pd.DataFrame(rows)
        if len(runs) >= 3:
            corr = state_correlations(paths, conv["time"].to_numpy(), n_states=k)
        if len(runs) >= 5:
            reg = occupancy_regression(paths, conv["time"].to_numpy(), n_states=k, n_splits=5,
                                       random_state=random_state if isinstance(random_state, int) else 0)
    return DynamicsAnalysis(runs=runs, selection=selection, n_states=k, model=model, paths=paths, counts=counts,
                            drivers=drivers, step=step, convergence=conv, correlations=corr, regression=reg,
                            convergence_rule=rule)


def _observed_transitions(counts: np.ndarray) -> list[tuple[int, int, int]]:
    """``(i, j, count)`` of the transitions ``i → j`` (``i ≠ j``) seen at least once, most frequent first
    (ties by ``i``, then ``j``)."""
    k = len(counts)
    seen = [(i, j, int(counts[i, j])) for i in range(k) for j in range(k) if i != j and counts[i, j] > 0]
    return sorted(seen, key=lambda t: (-t[2], t[0], t[1]))


def _driver_rows(expl: Any) -> list[dict[str, Any]]:
    """The rows of a :class:`TransitionExplanation`, in its order (by |mean gradient|)."""
    return [{"feature": f, "mean_gradient": float(g), "mean_change": float(c)}
            for f, g, c in zip(expl.features, expl.mean_gradient, expl.mean_change, strict=True)]


def _visits(path: np.ndarray) -> list[int]:
    """The states of a path in the order visited, consecutive repeats merged (``[2, 1, 0]``)."""
    path = np.asarray(path)
    keep = np.r_[True, path[1:] != path[:-1]]
    return [int(s) for s in path[keep]]


def build_results(analysis: DynamicsAnalysis, *, title: str, summary: Mapping[str, Any] | None,
                  notes: Sequence[str], model_file: str) -> dict[str, Any]:
    """Every number of the dynamics report; the returned dict is ``results.json``."""
    from featurelens import __version__

    runs, model, k = analysis.runs, analysis.model, analysis.n_states
    occ = occupancy(analysis.paths, n_states=k).sum(axis=0)
    transitions = [{"from": i, "to": j, "count": n, "prob": float(model.transmat[i, j])}
                   for i, j, n in _observed_transitions(analysis.counts)]
    conv = None
    if analysis.convergence is not None:
        conv = {**analysis.convergence_rule,
                "times": dict(zip(analysis.convergence["run_id"], analysis.convergence["time"].astype(int), strict=True)),
                "converged": dict(zip(analysis.convergence["run_id"], analysis.convergence["converged"], strict=True))}
    detours = None
    if analysis.correlations is not None:
        reg = analysis.regression
        detours = {
            "states": analysis.correlations.reset_index().to_dict(orient="records"),
            "regression": None if reg is None else {
                "intercept": reg.intercept, "coef": reg.coef, "r2": reg.r2, "r2_cv": reg.r2_cv, "rank": reg.rank,
                "n_runs": reg.n_runs, "first_k": reg.first_k, "n_splits": reg.n_splits},
        }
    constant = {rid: [m for m, c in zip(runs.metrics, row, strict=True) if c]
                for rid, row in zip(runs.run_ids, runs.constant, strict=True) if row.any()}
    results = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "featurelens_version": __version__,
        "title": title,
        "summary": dict(summary or {}),
        "notes": [str(n) for n in notes],
        "metrics": list(runs.metrics),
        "runs": {"run_ids": runs.run_ids, "lengths": runs.lengths, "dropped": runs.dropped,
                 "sort_by": runs.sort_by, "constant_columns": constant,
                 "visits": {rid: _visits(p) for rid, p in zip(runs.run_ids, analysis.paths, strict=True)}},
        "selection": {"rule": analysis.selection.rule, "recommended": int(analysis.selection.recommended),
                      "chosen": k, "table": analysis.selection.table.to_dict(orient="records")},
        "model": {"n_states": k, "covariance_type": model.covariance_type, "file": model_file,
                  "startprob": model.startprob, "transmat": model.transmat, "means": model.means,
                  "n_parameters": model.n_parameters, "loglik_all_runs": model.score(runs.sequences)},
        "occupancy": {str(s): float(occ[s] / occ.sum()) for s in range(k)},
        "transitions": transitions,
        "drivers": [{"from": i, "to": j, "n_occurrences": int(e.n_occurrences), "step": analysis.step,
                     "features": _driver_rows(e)} for i, j, e in analysis.drivers],
        "convergence": conv,
        "detours": detours,
        "figures": [],
    }
    return jsonable(results, where="results")


def write_dynamics_report(
    out: str | Path,
    analysis: DynamicsAnalysis,
    *,
    title: str = "featurelens: training dynamics",
    summary: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    dpi: int = 110,
    max_timelines: int = MAX_TIMELINES,
) -> dict[str, Any]:
    """Write the report of ``analysis`` into the existing directory ``out``.

    Files: ``index.html``, ``results.json`` (schema in this module's
    docstring), ``model_selection.png``, ``training_map.png``,
    ``timelines.png`` (when the runs have loss columns), ``selection.csv``,
    ``states.csv``, ``runs.npz`` and ``models/k<K>.npz`` for every fitted K. Use it inside
    :func:`featurelens._io.atomic_output_dir` for an all-or-nothing directory.
    ``max_timelines`` runs (the first ones) get a timeline panel.
    """
    directory = Path(out)
    if not directory.is_dir():
        raise ValueError(f"report directory {str(directory)!r} does not exist")
    if not isinstance(analysis, DynamicsAnalysis):
        raise TypeError(f"analysis must be a DynamicsAnalysis from analyse_runs, got {type(analysis).__name__}")
    dpi = check_int(dpi, name="dpi", minimum=10)
    runs, k = analysis.runs, analysis.n_states
    (directory / "models").mkdir(exist_ok=True)
    for n, m in sorted(analysis.selection.best.items()):
        m.save(directory / "models" / f"k{n}.npz")
    model_file = f"models/k{k}.npz"
    results = build_results(analysis, title=title, summary=summary, notes=notes, model_file=model_file)
    figures = [selection_figure(directory, analysis.selection.table, recommended=analysis.selection.recommended,
                                dpi=dpi),
               training_map_figure(directory, analysis.model, analysis.paths, dpi=dpi),
               timeline_figure(directory, runs.frames, analysis.paths, runs.run_ids, n_states=k, x=runs.sort_by,
                               max_runs=check_int(max_timelines, name="max_timelines", minimum=1), dpi=dpi)]
    figures = [f for f in figures if f is not None]
    results["figures"] = [f["file"] for f in figures]
    states = pd.concat([pd.DataFrame({"run_id": rid, "row": np.arange(len(p)),
                                      runs.sort_by: f[runs.sort_by].to_numpy(), "state": p})
                        for rid, f, p in zip(runs.run_ids, runs.frames, analysis.paths, strict=True)])
    atomic_write_text(directory / "selection.csv", analysis.selection.table.to_csv(index=False))
    atomic_write_text(directory / "states.csv", states.to_csv(index=False))
    save_runs(runs, directory / "runs.npz")
    html = _environment().get_template(TEMPLATE).render(
        r=results, figures={f["file"]: f for f in figures},
        summary_rows=[(key, format_number(v) if not isinstance(v, str) else v) for key, v in results["summary"].items()],
    )
    atomic_write_text(directory / "index.html", html)
    atomic_write_text(directory / "results.json",
                      json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False) + "\n")
    return results
