"""The protocol every featurelens result shares: ``to_frame()``, ``to_dict()``, ``_repr_html_()``.

* ``to_frame()`` returns the result's main table as a :class:`pandas.DataFrame`
  (a copy: editing it never changes the result);
* ``to_dict()`` returns plain JSON types (``json.dumps(..., allow_nan=False)``
  succeeds: NaN and infinities become ``None``);
* ``_repr_html_()`` is a small HTML table of ``to_frame()`` for notebooks
  (at most :data:`MAX_HTML_ROWS` rows; no figures, no matplotlib).

This module sits below every subpackage: it holds the JSON conversion and the
number format the results and the report layer share.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: rows of ``to_frame()`` shown by ``_repr_html_`` (the rest are counted, not shown)
MAX_HTML_ROWS = 20


def format_number(value: Any) -> str:
    """Format a value the way reports and notebooks print it (4 significant digits).

    ``None``, NaN and infinities print as ``"—"``; ints and bools print as is;
    any other value prints with ``str``.
    """
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_ | str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return "—"
        return f"{value:.4g}"
    return str(value)


def jsonable(obj: Any, *, where: str = "value") -> Any:
    """Convert ``obj`` to plain JSON types (NaN/inf → ``None``); ``TypeError`` naming ``where`` otherwise."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), where=where)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, where=f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), where=where)
    if isinstance(obj, list | tuple):
        return [jsonable(v, where=f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where} must be JSON-serialisable, got {type(obj).__name__}: {obj!r}")


def records(frame: pd.DataFrame | None, *, where: str = "table") -> list[dict[str, Any]] | None:
    """``frame``'s rows as JSON-ready records (the index is dropped; ``None`` stays ``None``)."""
    if frame is None:
        return None
    return jsonable(frame.to_dict(orient="records"), where=where)


def _cell(value: Any, tag: str = "td") -> str:
    numeric = isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_)
    style = ' style="text-align: right"' if numeric else ""
    return f"<{tag}{style}>{html.escape(format_number(value))}</{tag}>"


def html_table(frame: pd.DataFrame, *, title: str | None = None, max_rows: int = MAX_HTML_ROWS) -> str:
    """Return a small, escaped HTML table of ``frame`` (index included), numbers via :func:`format_number`.

    Parameters
    ----------
    frame : pandas.DataFrame
    title : str, optional
        A caption above the table.
    max_rows : int
        Rows shown; a final line says how many more there are.
    """
    index_names = [n for n in frame.index.names]
    show_index = not (isinstance(frame.index, pd.RangeIndex) and index_names == [None])
    head = [("" if n is None else str(n)) for n in index_names] if show_index else []
    head += [" / ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in frame.columns]
    parts = ["<table>"]
    if title:
        parts.append(f"<caption>{html.escape(title)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>")
    for key, row in zip(frame.index[:max_rows], frame.iloc[:max_rows].itertuples(index=False), strict=True):
        keys = (key if isinstance(key, tuple) else (key,)) if show_index else ()
        cells = "".join(_cell(k, "th") for k in keys) + "".join(_cell(v) for v in row)
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    if len(frame) > max_rows:
        parts.append(f"<p>… {len(frame) - max_rows} more rows (to_frame() has all {len(frame)}).</p>")
    return "".join(parts)


class FrameResult:
    """Mixin giving a result ``_repr_html_`` from its ``to_frame()``.

    Subclasses define ``to_frame()`` and ``to_dict()``; ``_html_title()``
    gives the caption (the class name by default).
    """

    def _html_title(self) -> str:
        return type(self).__name__

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), title=self._html_title())  # type: ignore[attr-defined]
