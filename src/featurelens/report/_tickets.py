"""The report of the deep-hedging lottery-ticket study (``featurelens example tickets``).

The study's result type lives in :mod:`featurelens.examples.tickets`, a layer above
this one, so the writer is registered for the structural type :class:`TicketsStudy`
(the attributes it reads) rather than for that class. It writes ``results.json``
(``{"title", "featurelens_version"}``, the result's :meth:`to_dict`,
``"comparison_text"`` and ``"figures"``), ``index.html``, the risk and training
figures, the comparison's four figures and ``checkpoints/<network>.pt``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from featurelens._io import atomic_write_bytes, atomic_write_text
from featurelens._version import __version__
from featurelens.compare import Comparison
from featurelens.report._compare import (
    comparison_context,
    comparison_figures,
    comparison_text,
    figure_entries,
)
from featurelens.report._figures import COLOURS, FigureInfo, write_figure
from featurelens.report._html import _environment

TEMPLATE = "tickets.html.j2"
TITLE = "Robust lottery tickets for deep hedging"


@runtime_checkable
class TicketsStudy(Protocol):
    """What the writer reads: :class:`featurelens.examples.tickets.TicketsResult` has these attributes."""

    risk: pd.DataFrame
    attacked: pd.DataFrame
    sparsity: pd.DataFrame
    comparison: Comparison
    history: Mapping[str, Sequence[float]]
    checkpoints: Mapping[str, bytes]

    def to_dict(self) -> dict[str, Any]: ...


def risk_figure(risk: pd.DataFrame, attacked: pd.DataFrame) -> Figure:
    """Bars of clean, FGSM and PGD expected shortfall per network; the anchors' clean ES dashed."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    labels = list(attacked.index)
    x = np.arange(len(labels))
    for i, col in enumerate(("clean", "FGSM", "PGD")):
        ax.bar(x + (i - 1) * 0.27, attacked[col].to_numpy(), 0.27, label=col, color=COLOURS[i])
    for j, anchor in enumerate(("BS delta", "unhedged")):
        if anchor in risk.index:
            ax.axhline(risk.loc[anchor, "ES_0.1"], color=COLOURS[3 + j], linestyle="--", label=f"{anchor} (clean)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("expected shortfall ES_0.1 of −P&L")
    ax.set_title("Hedging risk, clean and under attack (fresh paths)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3, axis="y")
    return fig


def training_figure(history: Mapping[str, Sequence[float]]) -> Figure:
    """Per-epoch training loss of each network."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(history.items()):
        ax.plot(np.arange(1, len(values) + 1), values, label=name, color=COLOURS[i % len(COLOURS)], linewidth=1)
    ax.set_xlabel("epoch (tickets: retraining epochs of all rounds in sequence)")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=8, loc="upper right")  # losses fall from the left; "best" is slow on long histories
    ax.grid(True, alpha=0.3)
    return fig


_INFO: dict[str, FigureInfo] = {
    "risk": {"file": "risk.png", "title": "Hedging risk",
             "caption": "Expected shortfall (10 %) of the loss on fresh evaluation paths, clean and under FGSM / PGD "
                        "attacks on the observed market features; dashed: the anchors' clean ES.",
             "alt": "bar chart of expected shortfall per network, clean and attacked"},
    "training": {"file": "training.png", "title": "Training",
                 "caption": "Per-epoch training loss (ES of fresh paths; the robust ticket's is the 50/50 clean and "
                            "FGSM mix). Tickets restart from the rewind point each round, hence the saw-tooth.",
                 "alt": "line chart of training losses"},
}


def write_tickets(result: TicketsStudy, directory: Path, *, formats: Sequence[str], dpi: int,
                  title: str = TITLE) -> dict[str, Any]:
    """Write the study's report into the existing ``directory``; return ``results.json``'s content."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"title must be a non-empty string, got {title!r}")
    fmts = ["png", *[f for f in formats if f != "png"]]
    (directory / "checkpoints").mkdir()
    for name, data in result.checkpoints.items():
        atomic_write_bytes(directory / "checkpoints" / f"{name}.pt", data)
    write_figure(risk_figure(result.risk, result.attacked), directory, "risk", formats=fmts, dpi=dpi)
    write_figure(training_figure(result.history), directory, "training", formats=fmts, dpi=dpi)
    written = comparison_figures(result.comparison, directory, formats=fmts, dpi=dpi)
    reference = result.comparison.reference
    figures = [_INFO["risk"], _INFO["training"]]
    for entry in figure_entries([p.stem for p in written if p.suffix == ".png"]):
        if entry["file"] == "difference.png":
            entry["caption"] += (f" Reference: {reference!r} (the original study plotted the robust minus the "
                                 "standard ticket).")
        figures.append(entry)
    results = {"title": title, "featurelens_version": __version__, **result.to_dict(),
               "comparison_text": comparison_text(result.comparison), "figures": [f["file"] for f in figures]}
    atomic_write_text(directory / "results.json", json.dumps(results, indent=2, ensure_ascii=False))
    html = _environment().get_template(TEMPLATE).render(r=results, figures=figures,
                                                        t=comparison_context(result.comparison))
    atomic_write_text(directory / "index.html", html)
    return results
