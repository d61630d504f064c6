"""The comparison's output directory: figures, results.json, CSV tables and index.html."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featurelens._io import atomic_output_dir, atomic_write_text
from featurelens.compare._compare import Comparison
from featurelens.compare._figures import CAPTIONS, FIGURES, check_formats
from featurelens.report._html import _environment
from featurelens.report._results import jsonable

FORMAT_NAME = "featurelens.compare"
FORMAT_VERSION = 1
TEMPLATE = "compare.html.j2"


def _wide(c: Comparison, method: str) -> list[dict[str, Any]]:
    shares = c.shares(method)
    diff = c.differences[c.differences["method"] == method].pivot(index="feature", columns="model",
                                                                  values="difference")
    others = [m for m in c.models if m != c.reference]
    return [{"feature": f, "shares": [shares.loc[f, m] for m in c.models],
             "diffs": [diff.loc[f, m] for m in others]} for f in c.feature_names]


def _html(c: Comparison, title: str, summary: Mapping[str, Any], figures: list[str]) -> str:
    others = [m for m in c.models if m != c.reference]
    layers = list(dict.fromkeys(c.sparsity["layer"]))
    sp = c.sparsity.pivot_table(index="layer", columns="model", values="sparsity", sort=False)
    context = {
        "title": title,
        "c": c,
        "others": others,
        "summary_rows": [(k, v if isinstance(v, str) else json.dumps(jsonable(v))) for k, v in summary.items()],
        "method_tables": {m: _wide(c, m) for m in c.methods},
        "shifts": c.shifts.to_dict(orient="records"),
        "correlations": c.rank_correlation.to_dict(orient="records"),
        "sparsity_rows": [{"layer": ly, "values": [sp.loc[ly, m] if m in sp and ly in sp.index else None
                                                   for m in c.models]} for ly in layers],
        "weight_rows": c.weight_summary.to_dict(orient="records"),
        "figures": [{"file": f"{stem}.png", "title": CAPTIONS[stem][0], "caption": CAPTIONS[stem][1],
                     "alt": CAPTIONS[stem][0]}
                    for stem in FIGURES if f"{stem}.png" in figures],
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
    }
    return _environment().get_template(TEMPLATE).render(**context)


def write_comparison_report(
    comparison: Comparison,
    out: str | Path,
    *,
    formats: Sequence[str] = ("png",),
    force: bool = False,
    title: str = "featurelens: model comparison",
    summary: Mapping[str, Any] | None = None,
    dpi: int = 150,
) -> Path:
    """Write ``out/`` atomically: ``index.html``, ``results.json``, ``tables/<name>.csv`` and the
    figures (PNG for the page, plus every other format in ``formats``, e.g. ``("png", "pdf")``).

    ``results.json`` holds ``{"format": "featurelens.compare", "version": 1, "title",
    "summary", ...}`` plus :meth:`Comparison.to_dict`. Nothing is left behind on error;
    an existing ``out`` is replaced only with ``force=True``.
    """
    if not isinstance(comparison, Comparison):
        raise TypeError(f"comparison must be a Comparison, got {type(comparison).__name__}")
    fmts = check_formats(formats)
    summary = dict(summary or {})
    with atomic_output_dir(out, force=force) as tmp:
        written = comparison.save_figures(tmp, formats=["png", *[f for f in fmts if f != "png"]], dpi=dpi)
        (tmp / "tables").mkdir()
        for name, table in comparison.tables.items():
            atomic_write_text(tmp / "tables" / f"{name}.csv", table.to_csv(index=False))
        results = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "title": title,
                   "summary": jsonable(summary, where="summary"), **comparison.to_dict(),
                   "figures": sorted(p.name for p in written)}
        atomic_write_text(tmp / "results.json", json.dumps(results, indent=1, allow_nan=False))
        atomic_write_text(tmp / "index.html", _html(comparison, title, summary, [p.name for p in written]))
    return Path(out)
