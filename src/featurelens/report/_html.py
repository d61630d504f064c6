"""The jinja2 environment of every report page, and the helpers the pages share.

Pages are static and self-contained: inline CSS, no scripts, no network
resources; figures are files next to ``index.html``. Every number is printed
by :func:`featurelens._protocol.format_number` (the ``num`` filter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from featurelens._protocol import format_number, jsonable

TEMPLATE_DIR = Path(__file__).parent / "templates"


def _environment() -> jinja2.Environment:
    """Return the environment of the report templates (autoescape on, undefined names are errors)."""
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
    """Return a summary or ground-truth value as text (numbers via ``format_number``, others as JSON)."""
    if value is None or isinstance(value, bool | int | float | str | np.number):
        return format_number(value.item() if isinstance(value, np.generic) else value)
    return json.dumps(jsonable(value), sort_keys=True)


def rows(mapping: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(label, text)`` rows of a label → value table."""
    return [(str(k), _display(v)) for k, v in (mapping or {}).items()]


def render_table(table: pd.DataFrame, highlight: Sequence[bool] | None = None,
                 headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return a DataFrame as the ``table`` macro's input: column headers, cells (text, numeric?), highlighted rows.

    ``headers`` maps column names to the header shown (others are shown as they are).
    """
    out = []
    for i, (_, row) in enumerate(table.iterrows()):
        cells = []
        for v in row.tolist():
            is_num = isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
            cells.append({"text": format_number(v.item() if isinstance(v, np.generic) else v), "num": is_num})
        out.append({"cells": cells, "highlight": bool(highlight[i]) if highlight is not None else False})
    headers = headers or {}
    return {"columns": [headers.get(str(c), str(c)) for c in table.columns], "rows": out}


def figure_map(figures: Sequence[Mapping[str, str]]) -> dict[str, Mapping[str, str]]:
    """Figure descriptions by their stem (``"importance"`` for ``importance.png``)."""
    return {f["stem"]: f for f in figures}
