"""The tickets study's report: results.json, risk and training figures, the comparison's figures, index.html."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import featurelens
from featurelens._io import atomic_write_text
from featurelens.compare._figures import CAPTIONS
from featurelens.examples._hedging_rollout import FEATURE_NAMES, HedgingTask
from featurelens.report._figures import COLOURS, _save
from featurelens.report._html import _environment
from featurelens.report._results import jsonable

TEMPLATE = "tickets.html.j2"
DPI = 120


def _records(table: pd.DataFrame, index: str) -> list[dict[str, Any]]:
    return jsonable(table.rename_axis(index).reset_index().to_dict(orient="records"))


def _risk_figure(directory: Path, risk: pd.DataFrame, attacked: pd.DataFrame) -> dict[str, str]:
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    labels = list(attacked.index)
    x = np.arange(len(labels))
    for i, col in enumerate(("clean", "FGSM", "PGD")):
        ax.bar(x + (i - 1) * 0.27, attacked[col].to_numpy(), 0.27, label=col, color=COLOURS[i])
    for j, anchor in enumerate(("BS delta", "unhedged")):
        if anchor in risk.index:
            ax.axhline(risk.loc[anchor, "ES_0.1"], color=COLOURS[3 + j], linestyle="--",
                       label=f"{anchor} (clean)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("expected shortfall ES_0.1 of −P&L")
    ax.set_title("Hedging risk, clean and under attack (fresh paths)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3, axis="y")
    fig.tight_layout()
    _save(fig, directory / "risk.png", DPI)
    return {"file": "risk.png", "title": "Hedging risk",
            "caption": "Expected shortfall (10 %) of the loss on fresh evaluation paths, clean and under FGSM / PGD "
                       "attacks on the observed market features; dashed: the anchors' clean ES.",
            "alt": "bar chart of expected shortfall per network, clean and attacked"}


def _training_figure(directory: Path, history: Mapping[str, list[float]]) -> dict[str, str]:
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    for i, (name, values) in enumerate(history.items()):
        ax.plot(np.arange(1, len(values) + 1), values, label=name, color=COLOURS[i], linewidth=1)
    ax.set_xlabel("epoch (tickets: retraining epochs of all rounds in sequence)")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    _save(fig, directory / "training.png", DPI)
    return {"file": "training.png", "title": "Training",
            "caption": "Per-epoch training loss (ES of fresh paths; the robust ticket's is the 50/50 clean and FGSM "
                       "mix). Tickets restart from the rewind point each round, hence the saw-tooth.",
            "alt": "line chart of training losses"}


def _comparison_figures(directory: Path, comparison: Any, formats: Sequence[str]) -> list[dict[str, str]]:
    """Seed 000's four figures: PNG for the page, plus ``formats`` (the seed saved PDFs)."""
    paths = comparison.save_figures(directory, formats=list(dict.fromkeys(("png", *formats))), dpi=DPI)
    pngs = [p.name for p in paths if p.suffix == ".png"]
    figures = []
    for name in pngs:
        title, caption = CAPTIONS[name.removesuffix(".png")]
        if name == "difference.png":
            caption += f" Reference: {comparison.reference!r} (seed 000 plotted the robust minus the standard ticket)."
        figures.append({"file": name, "title": title, "caption": caption, "alt": title})
    return figures


def write_report(directory: Path, *, task: HedgingTask, config: Any, seed: int, risk: pd.DataFrame,
                 attacked: pd.DataFrame, sparsity: pd.DataFrame, comparison: Any, reload: Mapping[str, bool],
                 log: Mapping[str, Any], output_spread: Mapping[str, float], seconds: float,
                 formats: Sequence[str] = ("png",)) -> dict[str, Any]:
    """Write ``results.json``, the figures and ``index.html`` into ``directory``; return the results dict."""
    market = dataclasses.asdict(task.market)
    pruned = sparsity[sparsity["layer"] != "total"]
    collapse = {
        name: {"smallest_kept_fraction": float((1 - pruned[pruned["model"] == name]["sparsity"]).min())
               if (pruned["model"] == name).any() else 1.0,
               "output_std_on_rows": output_spread[name]}
        for name in output_spread
    }
    results: dict[str, Any] = {
        "title": "Robust lottery tickets for deep hedging (seed 000)",
        "featurelens_version": featurelens.__version__,
        "random_state": seed,
        "config": dataclasses.asdict(config),
        "task": {"market": market, "strike": task.strike, "cost": task.cost, "premium": task.premium,
                 "option": "short European call, hedged in the underlier"},
        "features": list(FEATURE_NAMES),
        "risk": _records(risk, "strategy"),
        "attacked": _records(attacked, "model"),
        "sparsity": jsonable(sparsity.to_dict(orient="records")),
        "imp_history": {k.removesuffix("_imp"): jsonable(v.to_dict(orient="records"))
                        for k, v in log.items() if k.endswith("_imp")},
        "collapse_check": collapse,
        "reload_bit_identical": dict(reload),
        "comparison_text": str(comparison),
        "comparison": comparison.to_dict(),
        "seconds": {**{k: float(v) for k, v in log["seconds"].items()}, "total": seconds},
    }
    figures = [_risk_figure(directory, risk, attacked), _training_figure(directory, log["history"]),
               *_comparison_figures(directory, comparison, formats)]
    results["figures"] = [f["file"] for f in figures]
    atomic_write_text(directory / "results.json", json.dumps(results, indent=2, ensure_ascii=False))
    html = _environment().get_template(TEMPLATE).render(r=results, figures=figures, risk=risk, attacked=attacked,
                                                        sparsity=sparsity)
    atomic_write_text(directory / "index.html", html)
    return results
