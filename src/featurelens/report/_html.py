"""Render ``index.html`` from the results dict with a jinja2 template (autoescape on).

The page is static and self-contained: inline CSS, no scripts, no network
resources; figures are PNG files next to it. Every number is printed by
:func:`featurelens.report._results.format_number` (the ``num`` filter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from featurelens.attribution._explanation import Explanation
from featurelens.report._results import format_number, importance_label

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    return env


def _display(value: Any) -> str:
    """A summary or ground-truth value as text (numbers via ``format_number``)."""
    if value is None or isinstance(value, bool | int | float | str):
        return format_number(value)
    return json.dumps(value, sort_keys=True)


def _check_rows(results: Mapping[str, Any], spurious: str | None) -> list[dict[str, Any]]:
    rows = []
    for method, check in (results["checks"] or {}).items():
        rows.append({
            "method": method,
            "ok": check["top"] == spurious,
            "top": check["top"],
            "rank": check["spurious_rank"],
            "share": check["spurious_share"],
            "importance": results["importance"][method][spurious],
        })
    return rows


def _training(results: Mapping[str, Any]) -> dict[str, Any] | None:
    training = results["training"]
    if training is None:
        return None
    best = training["best_epoch"]
    row = next((r for r in training["history"] if r["epoch"] == best), None)
    return {"n_epochs": len(training["history"]), "best_epoch": best, "best": row}


def _internals_context(section: Mapping[str, Any]) -> dict[str, Any]:
    from featurelens.report._internals import _context

    return _context(section)


def render_html(
    results: Mapping[str, Any],
    explanations: Mapping[str, Explanation],
    figures: Sequence[Mapping[str, str]],
    spurious: str | None,
) -> str:
    """Return the HTML text of the report page."""
    methods = list(results["importance"])
    table = [
        {
            "name": name,
            "planted": name == spurious,
            "cells": [
                (
                    results["importance"][m][name],
                    results["std_error"][m][name],
                    results["importance_normalized"][m][name],
                )
                for m in methods
            ],
        }
        for name in results["players"]
    ]
    details = [
        {
            "key": key,
            "info": info,
            "unit": importance_label(explanations[key]),
            "params": json.dumps(info["params"], sort_keys=True),
            "target": json.dumps(info["target"], sort_keys=True),
        }
        for key, info in results["explanations"].items()
    ]
    context = {
        "r": results,
        "methods": methods,
        "level": results["level"],
        "summary_rows": [(k, _display(v)) for k, v in results["summary"].items()],
        "ground_truth_rows": [(k, _display(v)) for k, v in (results["ground_truth"] or {}).items()],
        "spurious": spurious,
        "checks": _check_rows(results, spurious),
        "table": table,
        "figures": {f["file"]: f for f in figures},
        "training": _training(results),
        "details": details,
        "internals": None if results.get("internals") is None else _internals_context(results["internals"]),
    }
    return _environment().get_template(TEMPLATE).render(**context)
