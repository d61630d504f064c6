"""``results.json`` of the attribution report, and the labels its figures and page use.

``results.json`` holds every number the report shows; the numbers are
:meth:`featurelens.attribution.AttributionReport.to_dict` (definitions there).
Schema (format ``"featurelens.report"``, version 1; see also ``docs/report_schema.md``)::

    {
      "format": "featurelens.report",
      "version": 1,
      "featurelens_version": str,
      "title": str,
      "summary": {label: value},                    # as passed ({} if None)
      "players": [name, ...],                       # report order: first method's importance, descending
      "level": "feature" | "group",                 # the first explanation's player axis
      "importance": {method: {name: float}},
      "importance_normalized": {method: {name: float}},   # importance / sum(|importance|)
      "std_error": {method: {name: float}},
      "ground_truth": {...} | null,                 # as passed
      "checks": {method: {"top": name, "spurious_rank": int, "spurious_share": float}} | null,
      "training": {"history": [{"epoch", "train_loss", "val_loss"}], "best_epoch": int | null} | null,
      "explanations": {method: {"method", "level", "axes", "values_shape", "n_repeats",
                                "reduction", "params", "target", "model_fingerprint",
                                "data_fingerprint", "file"}},
      "figures": [file name, ...],
      "notes": [str, ...],
      "internals": {...} | null                     # model-internals section (report/_internals.py)
    }

Floats are plain Python floats; NaN and infinities are written as ``null``.
``checks`` is ``{}`` when the ground truth names no planted player
(``"spurious_group": None``).
"""

from __future__ import annotations

from typing import Any

from featurelens._protocol import format_number, jsonable
from featurelens._version import __version__
from featurelens.attribution import AttributionReport, Explanation

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "build_results", "format_number", "importance_label", "jsonable",
           "unit_of"]

FORMAT_NAME = "featurelens.report"
FORMAT_VERSION = 1


def unit_of(expl: Explanation) -> str:
    """Return the unit of an explanation's per-sample values, from its target's link."""
    link = expl.target.get("link")
    return {"sigmoid": "probability", "softmax": "probability", "logit": "log-odds"}.get(link, "model output")


def importance_label(expl: Explanation) -> str:
    """Return what :meth:`Explanation.importance` measures, with its unit."""
    if expl.scores is not None:
        label = expl.params.get("score_label")
        if isinstance(label, str):
            return label
        metric = expl.params.get("metric")
        metric = metric if isinstance(metric, str) else "metric"
        return f"{metric} degradation when permuted ({metric} units)"
    return f"mean |attribution| ({unit_of(expl)})"


def build_results(report: AttributionReport) -> dict[str, Any]:
    """Return the content of ``results.json`` (``figures`` still empty): the report's numbers with the format header."""
    numbers = report.to_dict()
    explanations = {k: {**info, "file": f"explanations/{k}.npz"} for k, info in numbers["explanations"].items()}
    keys = ("title", "summary", "players", "level", "importance", "importance_normalized", "std_error",
            "ground_truth", "checks", "training")
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "featurelens_version": __version__,
        **{k: numbers[k] for k in keys},
        "explanations": explanations,
        "figures": [],
        "notes": numbers["notes"],
        "internals": numbers["internals"],
    }
