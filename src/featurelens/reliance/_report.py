"""The reliance report: detection with evidence, robustness curves, interactions, mitigation.

A report directory holds ``index.html`` (static, inline CSS, no scripts),
PNG figures and ``results.json`` with every table shown on the page as
records (``{"format": "featurelens-reliance-report", "version": 1, ...}``).
Sections appear only for the results passed in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurelens._io import atomic_output_dir, atomic_write_text
from featurelens._validation import check_int
from featurelens.reliance import _figures
from featurelens.report._html import _environment
from featurelens.report._results import format_number, jsonable

FORMAT = "featurelens-reliance-report"
VERSION = 1
TEMPLATE = "reliance.html.j2"
DETECTION_COLUMNS = ("group", "reliance_permutation", "relation_spread")


def _as_table(obj: Any, *, name: str) -> pd.DataFrame:
    """A DataFrame from ``obj`` or from its ``.table`` attribute (the reliance result objects)."""
    table = getattr(obj, "table", obj)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame or a result with a .table DataFrame, "
                        f"got {type(obj).__name__}")
    if table.empty:
        raise ValueError(f"{name} is an empty table")
    return table


def _require(table: pd.DataFrame, columns: Sequence[str], *, name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(map(repr, missing))}; it has "
                         f"{', '.join(map(repr, map(str, table.columns)))}")


def _render_table(table: pd.DataFrame, highlight: Sequence[bool] | None = None) -> dict[str, Any]:
    rows = []
    for i, (_, row) in enumerate(table.iterrows()):
        cells = []
        for v in row.tolist():
            is_num = isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
            cells.append({"text": format_number(v.item() if isinstance(v, np.generic) else v), "num": is_num})
        rows.append({"cells": cells, "highlight": bool(highlight[i]) if highlight is not None else False})
    return {"columns": [str(c) for c in table.columns], "rows": rows}


def _records(table: pd.DataFrame, where: str) -> list[dict[str, Any]]:
    return jsonable(table.to_dict(orient="records"), where=where)


def _robustness_table(robustness: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Tidy table with a ``perturbation`` column, and per-perturbation AUC of the curve if known."""
    if isinstance(robustness, Mapping):
        if not robustness:
            raise ValueError("robustness is an empty mapping")
        parts, summary = [], []
        for key, curve in robustness.items():
            part = _as_table(curve, name=f"robustness[{key!r}]").copy()
            part.insert(0, "perturbation", str(key))
            parts.append(part)
            if getattr(curve, "auc", None) is not None:
                row = {"perturbation": str(key), "mean metric over the strength range": float(curve.auc)}
                if getattr(curve, "degradation_auc", None) is not None:
                    row["mean degradation (area under the degradation curve / range)"] = float(curve.degradation_auc)
                summary.append(row)
        table = pd.concat(parts, ignore_index=True)
        return table, pd.DataFrame(summary) if summary else None
    return _as_table(robustness, name="robustness"), None


def _interactions(interactions: Any) -> dict[str, pd.DataFrame]:
    items = interactions if isinstance(interactions, Mapping) else {"interactions": interactions}
    out = {}
    for key, matrix in items.items():
        m = _as_table(matrix, name=f"interactions[{key!r}]")
        if m.shape[0] != m.shape[1] or [str(c) for c in m.columns] != [str(i) for i in m.index]:
            raise ValueError(f"interactions[{key!r}] must be a square group x group DataFrame with the same "
                             f"row and column labels, got shape {m.shape}")
        out[str(key)] = m
    return out


def _display(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float | str | np.number):
        return format_number(value.item() if isinstance(value, np.generic) else value)
    return json.dumps(jsonable(value), sort_keys=True)


def write_reliance_report(
    out: str | os.PathLike,
    *,
    title: str,
    detection: Any = None,
    robustness: Any = None,
    interactions: Any = None,
    mitigation: Any = None,
    subgroups: pd.DataFrame | None = None,
    windows: pd.DataFrame | None = None,
    summary: Mapping[str, Any] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    robustness_metric: str = "metric",
    dpi: int = 110,
) -> dict[str, Any]:
    """Write a reliance report into the existing directory ``out``.

    Parameters
    ----------
    out : str or path-like
        An existing directory; files with the report's names are replaced
        (use :func:`save_reliance_report` for an all-or-nothing directory).
    title : str
    detection : SpuriousReport or DataFrame, optional
        :func:`detect_spurious`'s result (its ``table``, ``evidence`` reasons
        and ``thresholds`` are shown) or a table with at least the columns
        ``group, reliance_permutation, relation_spread`` and the flags.
    robustness : DataFrame or mapping of str to RobustnessCurve/DataFrame, optional
        A tidy table with columns ``perturbation, strength, metric`` (and
        ``std``), or one curve per perturbation name (then the area under each
        curve is listed when the curve has ``.auc``).
    interactions : DataFrame or mapping of str to DataFrame, optional
        Square group x group matrices (e.g. ``{"ablation": ..., "shapley": ...}``).
    mitigation : MitigationTable or DataFrame, optional
        Before/after table with a ``strategy`` column (first row: the
        unmitigated model) and in-distribution, shifted and reliance columns.
    subgroups : DataFrame, optional
        Metric per subgroup; the first column names the subgroup, the figure
        shows column ``auc`` if present, else the last numeric column.
    windows : DataFrame, optional
        Importance per time window with columns ``window, group, importance``.
    summary, ground_truth : mapping, optional
        Label -> value tables.
    notes : sequence of str
    robustness_metric : str
        Name of the robustness curves' metric, for the axis label (e.g. ``"accuracy"``).
    dpi : int

    Returns
    -------
    dict
        The contents of ``results.json``.

    Raises
    ------
    ValueError
        If ``out`` does not exist, no section is given, a table is
        empty or lacks a required column (named), or a matrix is not square.
    TypeError
        If an argument has the wrong type.
    """
    directory = Path(out)
    if not directory.is_dir():
        raise ValueError(f"report directory {str(directory)!r} does not exist; create it first or use "
                         "save_reliance_report")
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if isinstance(notes, str) or not isinstance(notes, Sequence):
        raise TypeError(f"notes must be a sequence of strings, got {type(notes).__name__}")
    for label, value in (("summary", summary), ("ground_truth", ground_truth)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{label} must be a mapping of label to value or None, got {type(value).__name__}")
    dpi = check_int(dpi, name="dpi", minimum=10)
    if all(v is None for v in (detection, robustness, interactions, mitigation, subgroups, windows)):
        raise ValueError("nothing to report: pass at least one of detection, robustness, interactions, "
                         "mitigation, subgroups, windows")
    from featurelens import __version__

    results: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "featurelens_version": __version__, "title": title,
        "notes": [str(n) for n in notes], "summary": jsonable(dict(summary or {}), where="summary"),
        "ground_truth": jsonable(dict(ground_truth or {}), where="ground_truth"),
    }
    figures: list[dict[str, str]] = []
    context: dict[str, Any] = {"detection": None, "robustness": None, "interactions": [],
                               "mitigation": None, "subgroups": None, "windows": None}

    if detection is not None:
        table = _as_table(detection, name="detection")
        _require(table, DETECTION_COLUMNS, name="detection")
        evidence = getattr(detection, "evidence", None) or {}
        thresholds = getattr(detection, "thresholds", None)
        thresholds = thresholds.to_dict() if hasattr(thresholds, "to_dict") else thresholds
        reasons = [(g, list(e.get("reasons", []))) for g, e in evidence.items() if e.get("reasons")]
        flags = table["spurious"].astype(bool).tolist() if "spurious" in table.columns else [False] * len(table)
        figures.append(_figures.detection_figure(directory, table, dpi=dpi))
        results["detection"] = {
            "table": _records(table, "detection"),
            "flagged": [str(g) for g, f in zip(table["group"], flags, strict=True) if f],
            "thresholds": jsonable(thresholds, where="thresholds"),
            "reasons": dict(reasons),
        }
        context["detection"] = {
            "table": _render_table(table, flags), "flagged": results["detection"]["flagged"],
            "thresholds": [(k, format_number(v)) for k, v in (thresholds or {}).items()],
            "reasons": reasons,
        }
    if robustness is not None:
        table, auc = _robustness_table(robustness)
        _require(table, ("perturbation", "strength", "metric"), name="robustness")
        figures.append(_figures.robustness_figure(directory, table, metric_name=str(robustness_metric), dpi=dpi))
        results["robustness"] = {"table": _records(table, "robustness"),
                                 "summary": None if auc is None else _records(auc, "robustness summary")}
        context["robustness"] = {"table": _render_table(table),
                                 "summary": None if auc is None else _render_table(auc)}
    if interactions is not None:
        results["interactions"] = {}
        for key, m in _interactions(interactions).items():
            fig = _figures.interaction_figure(directory, m, name=f"interactions_{key}",
                                              title=f"Pairwise interactions ({key})", dpi=dpi)
            figures.append(fig)
            results["interactions"][key] = jsonable(m.to_dict(orient="index"), where="interactions")
            context["interactions"].append({"figure": fig["file"],
                                            "table": _render_table(m.reset_index(names="group"))})
    if windows is not None:
        table = _as_table(windows, name="windows")
        _require(table, ("window", "group", "importance"), name="windows")
        figures.append(_figures.windows_figure(directory, table, dpi=dpi))
        results["windows"] = _records(table, "windows")
        context["windows"] = _render_table(table)
    if subgroups is not None:
        table = _as_table(subgroups, name="subgroups")
        numeric = [c for c in table.columns[1:] if pd.api.types.is_numeric_dtype(table[c]) and c != "n"]
        if not numeric:
            raise ValueError("subgroups needs a numeric metric column after the subgroup column")
        value = "auc" if "auc" in table.columns else numeric[-1]
        figures.append(_figures.subgroup_figure(directory, table, by=str(table.columns[0]), value=value, dpi=dpi))
        results["subgroups"] = _records(table, "subgroups")
        context["subgroups"] = _render_table(table)
    if mitigation is not None:
        table = _as_table(mitigation, name="mitigation")
        _require(table, ("strategy",), name="mitigation")
        figures.append(_figures.mitigation_figure(directory, table, dpi=dpi))
        results["mitigation"] = _records(table, "mitigation")
        context["mitigation"] = _render_table(table)

    results["figures"] = [f["file"] for f in figures]
    html = _environment().get_template(TEMPLATE).render(
        r=results, figures={f["file"]: f for f in figures},
        summary_rows=[(k, _display(v)) for k, v in (summary or {}).items()],
        ground_truth_rows=[(k, _display(v)) for k, v in (ground_truth or {}).items()],
        **context,
    )
    atomic_write_text(directory / "index.html", html)
    text = json.dumps(results, indent=2, allow_nan=False, ensure_ascii=False)
    atomic_write_text(directory / "results.json", text + "\n")
    return results


def save_reliance_report(out: str | os.PathLike, *, force: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Write a reliance report to a new directory ``out``, all or nothing.

    Built in a temporary sibling directory and renamed to ``out`` when
    complete; on any error nothing is left behind and an existing ``out`` is
    untouched. ``kwargs`` are those of :func:`write_reliance_report`.

    Raises
    ------
    ValueError
        If ``out`` exists and ``force`` is false, or as :func:`write_reliance_report`.
    """
    with atomic_output_dir(out, force=force) as tmp:
        return write_reliance_report(tmp, **kwargs)
