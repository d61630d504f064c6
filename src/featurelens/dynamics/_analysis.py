"""The training-dynamics pipeline end to end: selection, decoding, drivers, detours.

:func:`analyse_runs` returns a :class:`DynamicsAnalysis`; its report (HTML page,
figures, ``results.json``, models, decoded states) is
``featurelens.report.save(analysis, out)``. :meth:`DynamicsAnalysis.to_dict` holds
every number of that report::

    {
      "metrics": [name, ...],                       # the D modelled columns
      "runs": {"run_ids": [...], "lengths": [...], "dropped": {run_id: reason},
               "sort_by": str, "constant_columns": {run_id: [metric, ...]},
               "visits": {run_id: [state, ...]}},     # Viterbi states in visiting order, repeats merged
      "selection": {"rule": str, "recommended": int, "chosen": int,
                    "table": [{"n_states", "restart", "train_loglik", "test_loglik", "aic", "bic",
                               "converged", ...}]},
      "model": {"n_states", "covariance_type", "startprob", "transmat", "means",
                "n_parameters", "loglik_all_runs"},
      "occupancy": {state: fraction of all checkpoints},
      "transitions": [{"from", "to", "count", "prob"}],            # observed, i != j, by count
      "drivers": [{"from", "to", "n_occurrences", "step",
                   "features": [{"feature", "mean_gradient", "mean_change"}]}],
      "convergence": {"column", "threshold", "direction", "sustained",
                      "times": {run_id: int}, "converged": {run_id: bool}} | null,
      "detours": {"states": [{"state", "n_runs_visiting", "fraction_visiting", "r", "t", "p_value",
                              "mean_convergence_visiting", "mean_convergence_not_visiting", "kind"}],
                  "regression": {"intercept", "coef", "r2", "r2_cv", "rank", "n_runs",
                                 "first_k", "n_splits"}} | null
    }

Floats are plain JSON numbers; NaN and inf are ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from featurelens._protocol import html_table, jsonable
from featurelens._validation import RandomState, check_int
from featurelens.dynamics._detours import (
    OccupancyRegression,
    convergence_time,
    occupancy,
    occupancy_regression,
    state_correlations,
)
from featurelens.dynamics._drivers import TransitionExplanation, explain_transition
from featurelens.dynamics._hmm import GaussianHMM
from featurelens.dynamics._map import training_map, transition_counts
from featurelens.dynamics._runs import RunSet
from featurelens.dynamics._selection import ModelSelection, select_model


@dataclass(frozen=True)
class DynamicsAnalysis:
    """Everything :func:`analyse_runs` computed.

    Attributes
    ----------
    runs : RunSet
        The runs analysed.
    selection : ModelSelection
        Every fitted K and restart.
    n_states : int
        K of the reported model.
    model : GaussianHMM
        ``selection.best[n_states]``.
    paths : list of ndarray
        The Viterbi state path of every run, ``(T_i,)`` ints.
    counts : ndarray, ``(K, K)``
        Observed transitions ``s_t → s_{t+1}`` over all runs (self-loops too).
    drivers : list of (int, int, TransitionExplanation)
        The most frequent observed transitions ``i → j`` and their explanation.
    step : str
        Where the drivers' gradients were taken (``"last"`` or ``"first"``).
    convergence : DataFrame or None
        ``run_id, time, converged`` per run (with a convergence rule).
    correlations : DataFrame or None
        :func:`state_correlations` (at least 3 runs).
    regression : OccupancyRegression or None
        :func:`occupancy_regression` (at least 5 runs).
    convergence_rule : dict or None
        ``{"column", "threshold", "direction", "sustained"}``.
    """

    runs: RunSet
    selection: ModelSelection
    n_states: int
    model: GaussianHMM
    paths: list[np.ndarray]
    counts: np.ndarray
    drivers: list[tuple[int, int, TransitionExplanation]]
    step: str
    convergence: pd.DataFrame | None
    correlations: pd.DataFrame | None
    regression: OccupancyRegression | None
    convergence_rule: dict[str, Any] | None

    def to_frame(self) -> pd.DataFrame:
        """Return one row per state.

        Columns ``state, occupancy`` (share of all checkpoints), ``stay_probability``
        (``transmat[k, k]``), ``n_runs_visiting``, ``first_visit`` (mean first-visit time as a fraction
        of the run) and, with detour statistics, ``r, p_value, kind`` (:func:`state_correlations`).
        """
        graph = training_map(self.model, self.paths)
        frame = pd.DataFrame([{"state": s, "occupancy": graph.nodes[s]["occupancy"],
                               "stay_probability": graph.nodes[s]["self_prob"],
                               "n_runs_visiting": graph.nodes[s]["n_runs"],
                               "first_visit": graph.nodes[s]["first_visit"]} for s in range(self.n_states)])
        if self.correlations is not None:
            corr = self.correlations.reindex(range(self.n_states))
            for col in ("r", "p_value", "kind"):
                frame[col] = corr[col].to_numpy()
        return frame

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every number (schema in this module's docstring)."""
        runs, model, k = self.runs, self.model, self.n_states
        occ = occupancy(self.paths, n_states=k).sum(axis=0)
        conv = None
        if self.convergence is not None:
            conv = {**self.convergence_rule,
                    "times": dict(zip(self.convergence["run_id"], self.convergence["time"].astype(int), strict=True)),
                    "converged": dict(zip(self.convergence["run_id"], self.convergence["converged"], strict=True))}
        detours = None
        if self.correlations is not None:
            reg = self.regression
            detours = {
                "states": self.correlations.reset_index().to_dict(orient="records"),
                "regression": None if reg is None else {
                    "intercept": reg.intercept, "coef": reg.coef, "r2": reg.r2, "r2_cv": reg.r2_cv,
                    "rank": reg.rank, "n_runs": reg.n_runs, "first_k": reg.first_k, "n_splits": reg.n_splits},
            }
        run_info = runs.to_dict()
        metrics = run_info.pop("metrics")
        run_info["visits"] = {rid: _visits(p) for rid, p in zip(runs.run_ids, self.paths, strict=True)}
        out = {
            "metrics": metrics,
            "runs": run_info,
            "selection": {**self.selection.to_dict(), "chosen": k},
            "model": {"n_states": k, "covariance_type": model.covariance_type,
                      "startprob": model.startprob, "transmat": model.transmat, "means": model.means,
                      "n_parameters": model.n_parameters, "loglik_all_runs": model.score(runs.sequences)},
            "occupancy": {str(s): float(occ[s] / occ.sum()) for s in range(k)},
            "transitions": [{"from": i, "to": j, "count": n, "prob": float(model.transmat[i, j])}
                            for i, j, n in _observed_transitions(self.counts)],
            "drivers": [{"from": i, "to": j, "n_occurrences": int(e.n_occurrences), "step": self.step,
                         "features": e.to_frame()[["feature", "mean_gradient", "mean_change"]].to_dict(
                             orient="records")} for i, j, e in self.drivers],
            "convergence": conv,
            "detours": detours,
        }
        return jsonable(out, where="analysis")

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), title=f"Training dynamics: {len(self.runs)} runs, "
                          f"K = {self.n_states} states (recommended {self.selection.recommended})")


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
    """Return ``(i, j, count)`` of the transitions ``i → j`` (``i ≠ j``) seen at least once.

    Most frequent first (ties by ``i``, then ``j``).
    """
    k = len(counts)
    seen = [(i, j, int(counts[i, j])) for i in range(k) for j in range(k) if i != j and counts[i, j] > 0]
    return sorted(seen, key=lambda t: (-t[2], t[0], t[1]))


def _visits(path: np.ndarray) -> list[int]:
    """Return the states of a path in the order visited, consecutive repeats merged (``[2, 1, 0]``)."""
    path = np.asarray(path)
    keep = np.r_[True, path[1:] != path[:-1]]
    return [int(s) for s in path[keep]]
