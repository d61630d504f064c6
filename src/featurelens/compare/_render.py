"""Plain-text rendering of a :class:`Comparison` (what ``featurelens compare`` prints)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from featurelens.report._results import format_number

if TYPE_CHECKING:
    from featurelens.compare._compare import Comparison


def _fmt(frame: pd.DataFrame) -> str:
    return frame.to_string(float_format=format_number, na_rep="—")


def render_text(c: Comparison) -> str:
    """Importance shares, differences, top shifts, rank correlations, sparsity and weights."""
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
