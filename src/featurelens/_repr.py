"""Small HTML tables for notebooks: the ``_repr_html_`` of the result objects (no matplotlib)."""

from __future__ import annotations

import html

import pandas as pd

MAX_ROWS = 20


def html_table(title: str, frame: pd.DataFrame, *, index: bool = False, max_rows: int = MAX_ROWS) -> str:
    """``title`` above ``frame`` as an HTML table (4 significant digits, NaN as "—"), at most ``max_rows`` rows.

    Cells and the title are HTML-escaped; a line below the table says how many
    rows were left out (the full table is the result's ``to_frame()``).
    """
    shown = frame.head(max_rows)
    body = shown.to_html(index=index, float_format=lambda v: f"{v:.4g}", na_rep="—", border=0)
    more = "" if len(frame) <= max_rows else (
        f"<p>{len(frame) - max_rows} more rows; the full table is <code>.to_frame()</code>.</p>")
    return f"<div><p><strong>{html.escape(title)}</strong></p>{body}{more}</div>"
