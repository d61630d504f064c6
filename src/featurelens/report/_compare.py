"""The report of a :class:`~featurelens.compare.Comparison`, and its plain-text tables.

:func:`write_comparison` (registered in :data:`featurelens.report._save.WRITERS`)
writes ``index.html``, ``results.json``, ``tables/<name>.csv`` and the four figures
(PNG for the page, plus every other requested format). ``results.json`` is
``{"format": "featurelens.compare", "version": 1, "title", "summary", "figures"}``
plus :meth:`Comparison.to_dict` (``models, reference, methods, features,
settings`` and every table as a list of records). :func:`comparison_text` is what
``featurelens compare`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from featurelens._io import atomic_write_text
from featurelens._protocol import jsonable
from featurelens.compare import Comparison
from featurelens.report._compare_figures import CAPTIONS, FIGURES
from featurelens.report._figures import write_figure
from featurelens.report._html import _environment
from featurelens.report._results import format_number

FORMAT_NAME = "featurelens.compare"
FORMAT_VERSION = 1
TEMPLATE = "compare.html.j2"
TITLE = "featurelens: model comparison"


def _fmt(frame: pd.DataFrame) -> str:
    return frame.to_string(float_format=format_number, na_rep="—")


def comparison_text(comparison: Comparison) -> str:
    """Return the comparison's tables as plain text.

    Shares, differences, largest shifts, rank correlations,
    sparsity per layer and the unpruned-weight summary (4 significant digits, NaN as "—").
    """
    if not isinstance(comparison, Comparison):
        raise TypeError(f"comparison must be a featurelens.compare.Comparison, got {type(comparison).__name__}")
    c = comparison
    parts = []
    for method in c.methods:
        table = c.shares(method)
        table.columns = [f"{m} (ref)" if m == c.reference else m for m in table.columns]
        parts.append(f"importance share ({method}; shares of each model sum to 1)\n{_fmt(table)}")
    others = [m for m in c.models if m != c.reference]
    diff = c.differences.pivot_table(index="feature", columns=["method", "model"], values="difference",
                                     sort=False).loc[c.feature_names]
    diff.columns = [f"{method}: {model}" for method, model in diff.columns]
    parts.append(f"difference of share vs {c.reference!r} ({', '.join(others)} minus {c.reference})\n{_fmt(diff)}")
    if len(c.shifts):
        lines = []
        for (model, method), block in c.shifts.groupby(["model", "method"], sort=False):
            gains = ", ".join(f"{r.feature} {r.difference:+.3f}" for r in block.itertuples() if r.direction == "gain")
            losses = ", ".join(f"{r.feature} {r.difference:+.3f}" for r in block.itertuples() if r.direction == "loss")
            lines.append(f"  {model} [{method}]: gains {gains or '—'}; losses {losses or '—'}")
        parts.append(f"largest shifts vs {c.reference!r}\n" + "\n".join(lines))
    parts.append("rank correlation of the shares between models\n"
                 + _fmt(c.rank_correlation.set_index(["method", "model_a", "model_b"])))
    sp = c.sparsity.pivot_table(index="layer", columns="model", values="sparsity", sort=False)[c.models]
    layers = list(dict.fromkeys(c.sparsity["layer"]))
    parts.append("sparsity per layer (pruning masks matched by exact name; total over all layer weights)\n"
                 + _fmt(sp.loc[layers]))
    parts.append("unpruned weights\n" + _fmt(c.weight_summary.set_index("model")))
    return "\n\n".join(parts)


def comparison_figures(c: Comparison, directory: Path, *, formats: Sequence[str], dpi: int) -> list[Path]:
    """Draw the four figures and write ``<stem>.<fmt>`` for every format; return the paths written."""
    written = []
    for stem, draw in FIGURES.items():
        fig = draw(c)
        fig.suptitle(CAPTIONS[stem][0])
        names, _ = write_figure(fig, directory, stem, formats=formats, dpi=dpi)
        written += [directory / name for name in names]
    return written


def figure_entries(stems: Sequence[str]) -> list[dict[str, str]]:
    """Return the page's ``{"file", "title", "caption", "alt"}`` of the PNG of each figure stem, in report order."""
    return [{"file": f"{stem}.png", "title": CAPTIONS[stem][0], "caption": CAPTIONS[stem][1],
             "alt": CAPTIONS[stem][0]} for stem in FIGURES if stem in stems]


def _wide(c: Comparison, method: str) -> list[dict[str, Any]]:
    shares = c.shares(method)
    diff = c.differences[c.differences["method"] == method].pivot(index="feature", columns="model",
                                                                  values="difference")
    others = [m for m in c.models if m != c.reference]
    return [{"feature": f, "shares": [shares.loc[f, m] for m in c.models],
             "diffs": [diff.loc[f, m] for m in others]} for f in c.feature_names]


def comparison_context(c: Comparison) -> dict[str, Any]:
    """Return what the ``comparison_tables`` macro (``_comparison.html.j2``) shows.

    Share tables per method,
    shifts, rank correlations, sparsity per layer and the unpruned-weight summary.
    """
    layers = list(dict.fromkeys(c.sparsity["layer"]))
    sp = c.sparsity.pivot_table(index="layer", columns="model", values="sparsity", sort=False)
    return {
        "c": c,
        "others": [m for m in c.models if m != c.reference],
        "method_tables": {m: _wide(c, m) for m in c.methods},
        "shifts": c.shifts.to_dict(orient="records"),
        "correlations": c.rank_correlation.to_dict(orient="records"),
        "sparsity_rows": [{"layer": ly, "values": [sp.loc[ly, m] if m in sp and ly in sp.index else None
                                                   for m in c.models]} for ly in layers],
        "weight_rows": c.weight_summary.to_dict(orient="records"),
    }


def _html(c: Comparison, title: str, summary: Mapping[str, Any], stems: Sequence[str]) -> str:
    return _environment().get_template(TEMPLATE).render(
        title=title, t=comparison_context(c), figures=figure_entries(stems), format=FORMAT_NAME,
        version=FORMAT_VERSION,
        summary_rows=[(k, v if isinstance(v, str) else json.dumps(jsonable(v))) for k, v in summary.items()])


def write_comparison(comparison: Comparison, directory: Path, *, formats: Sequence[str], dpi: int,
                     title: str = TITLE, summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the comparison's report into the existing ``directory``; return ``results.json``'s content.

    ``title`` heads the page; ``summary`` (label → value, e.g. the model files
    and the data) is listed under "Inputs" and kept in ``results.json``.
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    if summary is not None and not isinstance(summary, Mapping):
        raise TypeError(f"summary must be a mapping of label to value or None, got {type(summary).__name__}")
    summary = dict(summary or {})
    clean_summary = jsonable(summary, where="summary")
    written = comparison_figures(comparison, directory, formats=["png", *[f for f in formats if f != "png"]],
                                 dpi=dpi)
    (directory / "tables").mkdir()
    for name in comparison.TABLES:
        atomic_write_text(directory / "tables" / f"{name}.csv", getattr(comparison, name).to_csv(index=False))
    results = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "title": title, "summary": clean_summary,
               **comparison.to_dict(), "figures": sorted(p.name for p in written)}
    atomic_write_text(directory / "results.json", json.dumps(results, indent=1, allow_nan=False))
    stems = [p.stem for p in written if p.suffix == ".png"]
    atomic_write_text(directory / "index.html", _html(comparison, title, summary, stems))
    return results
