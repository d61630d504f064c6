"""The reliance report: a :class:`RelianceAudit` (or one :class:`SpuriousReport`) as a page.

A report directory holds ``index.html`` (static, inline CSS, no scripts),
the figures and ``results.json`` with every table shown on the page as
records (``{"format": "featurelens-reliance-report", "version": 1, ...}``;
keys ``detection``, ``robustness``, ``interactions``, ``windows``,
``subgroups``, ``mitigation`` (with ``mitigated_group``) and ``scores``
appear only for the parts the audit holds). Tables on the page have
readable headers (:data:`HEADERS`); ``results.json`` keeps the column names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from featurelens._io import atomic_write_text
from featurelens._protocol import format_number, jsonable, records
from featurelens._version import __version__
from featurelens.reliance import MitigationTable, RelianceAudit, SpuriousReport, WindowImportance
from featurelens.report._figures import font_note, write_display
from featurelens.report._html import _environment, figure_map, render_table, rows
from featurelens.report._reliance_displays import (
    DetectionDisplay,
    InteractionDisplay,
    MitigationDisplay,
    RobustnessDisplay,
    SubgroupDisplay,
    WindowsDisplay,
    subgroup_value,
    tidy_robustness,
)

FORMAT = "featurelens-reliance-report"
VERSION = 1
TEMPLATE = "reliance.html.j2"
#: headers shown on the page for the reliance tables' columns (others: underscores become spaces)
HEADERS = {
    "reliance_permutation": "reliance (permutation)", "reliance_permutation_se": "± SE (permutation)",
    "reliance_ablation": "reliance (ablation)", "reliance_ablation_se": "± SE (ablation)",
    "probe_score": "probe score (group alone)", "relation_min": "relation min", "relation_max": "relation max",
    "relation_spread": "relation spread", "heterogeneity_q": "heterogeneity Q", "heterogeneity_df": "Q df",
    "heterogeneity_p": "heterogeneity p", "heterogeneity_i2": "I²", "excess_spread": "excess spread",
    "wasserstein_mean": "class shift (mean W₁ / sd)", "wasserstein_max": "class shift (max W₁ / sd)",
    "relied_upon": "relied upon", "in_distribution": "in-distribution",
    "in_distribution_change": "in-distribution change",
    "reliance_reduction": "reliance reduction", "reliance_se": "± SE", "n_repeats": "repeats", "std_error": "± SE",
}
#: robustness columns: ``auc``/``degradation_auc`` are normalised areas under the curves, not ROC AUCs
ROBUSTNESS_HEADERS = {"auc": "mean metric over strengths", "degradation_auc": "mean degradation over strengths"}


def _header(column: Any) -> str:
    return HEADERS.get(str(column), str(column).replace("_", " "))


def _render(table: pd.DataFrame, highlight: Sequence[bool] | None = None,
            headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    shown = {str(c): _header(c) for c in table.columns} | dict(headers or {})
    return render_table(table, highlight, headers=shown)


def _nonempty(table: Any, name: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    if table.empty:
        raise ValueError(f"{name} is an empty table")
    return table


def _interaction_label(key: str, matrix: pd.DataFrame, groups: set[str]) -> str:
    """``"group"`` or ``"feature"``: what the matrix's rows and columns are."""
    if key in ("groups", "features"):
        return key[:-1]
    return "group" if {str(c) for c in matrix.columns} <= groups else "feature"


def _robustness_summary(robustness: Any) -> pd.DataFrame | None:
    if not isinstance(robustness, Mapping):
        return None
    summary = []
    for key, curve in robustness.items():
        if getattr(curve, "auc", None) is not None:
            row = {"perturbation": str(key), "mean metric over the strength range": float(curve.auc)}
            if getattr(curve, "degradation_auc", None) is not None:
                row["mean degradation (area under the degradation curve / range)"] = float(curve.degradation_auc)
            summary.append(row)
    return pd.DataFrame(summary) if summary else None


def _check(audit: RelianceAudit) -> None:
    if not isinstance(audit.detection, SpuriousReport):
        raise TypeError(f"detection must be a SpuriousReport, got {type(audit.detection).__name__}")
    if not isinstance(audit.title, str) or not audit.title.strip():
        raise ValueError(f"title must be a non-empty string, got {audit.title!r}")
    if isinstance(audit.notes, str) or not isinstance(audit.notes, Sequence):
        raise TypeError(f"notes must be a sequence of strings, got {type(audit.notes).__name__}")
    for label in ("summary", "ground_truth", "scores"):
        value = getattr(audit, label)
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{label} must be a mapping of label to value or None, got {type(value).__name__}")


class _Page:
    """Accumulates the page context, the figures and ``results.json`` section by section."""

    def __init__(self, audit: RelianceAudit, directory: Path, formats: Sequence[str], dpi: int):
        self.audit, self.directory, self.write = audit, directory, {"formats": formats, "dpi": dpi}
        self.figures: list[dict[str, Any]] = []
        self.context: dict[str, Any] = {"detection": None, "robustness": None, "interactions": [],
                                        "mitigation": None, "subgroups": None, "windows": None}
        self.results: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "featurelens_version": __version__, "title": audit.title,
            "notes": [str(n) for n in audit.notes], "summary": jsonable(dict(audit.summary or {}), where="summary"),
            "ground_truth": jsonable(dict(audit.ground_truth or {}), where="ground_truth"),
        }
        if audit.scores:
            self.results["scores"] = jsonable(dict(audit.scores), where="scores")

    def figure(self, display: Any, stem: str, **text: str) -> dict[str, Any]:
        info = write_display(display, self.directory, stem, **self.write, **text)
        self.figures.append(info)
        return info

    def detection(self, report: SpuriousReport) -> None:
        table = _nonempty(report.to_frame(), "detection")
        display = DetectionDisplay(table).plot()
        flags = table["spurious"].astype(bool).tolist() if "spurious" in table.columns else [False] * len(table)
        reasons = [(g, list(e.get("reasons", []))) for g, e in report.evidence.items() if e.get("reasons")]
        thresholds = report.thresholds.to_dict()
        flagged = [str(g) for g, f in zip(table["group"], flags, strict=True) if f]
        self.figure(display, "detection", title="Reliance and stability per feature group", caption=(
            "Left: drop of the model's metric when the group's columns are permuted jointly "
            "(mean over repeats, error bars ± 2 standard errors). Right: spread (max − min) of the "
            "group-alone probe's relation to the label across environments. A group is flagged "
            "spurious when it is both relied upon and unstable (thresholds in the table below)."),
            alt=(f"Bar charts of reliance and relation spread for {len(table)} groups; "
                 f"flagged spurious: {', '.join(flagged) or 'none'}."))
        self.results["detection"] = {"table": records(table, where="detection"), "flagged": flagged,
                                     "thresholds": jsonable(thresholds, where="thresholds"), "reasons": dict(reasons)}
        self.context["detection"] = {"table": _render(table, flags), "flagged": flagged, "reasons": reasons,
                                     "thresholds": [(k, format_number(v)) for k, v in thresholds.items()]}

    def robustness(self, robustness: Any, metric: str) -> None:
        table = _nonempty(tidy_robustness(robustness), "robustness")
        summary = _robustness_summary(robustness)
        display = RobustnessDisplay(table, robustness_metric=metric).plot()
        self.figure(display, "robustness", title="Robustness curves", caption=(
            f"{metric[:1].upper()}{metric[1:]} of the model under each perturbation as its strength grows "
            "(0 = clean data); "
            "each perturbation has its own line style and marker, so coinciding curves stay visible; "
            "bands are ± one standard deviation over repeats where the perturbation is random."),
            alt=f"Line chart of {metric} against perturbation strength for {', '.join(display.kinds)}.")
        self.results["robustness"] = {"table": records(table, where="robustness"),
                                      "summary": records(summary, where="robustness summary")}
        self.context["robustness"] = {"table": _render(table, headers=ROBUSTNESS_HEADERS),
                                      "summary": None if summary is None else _render(summary)}

    def interactions(self, interactions: Any, groups: set[str]) -> None:
        items = interactions if isinstance(interactions, Mapping) else {"interactions": interactions}
        self.results["interactions"] = {}
        for key, matrix in items.items():
            m = _nonempty(matrix, f"interactions[{key!r}]")
            label = _interaction_label(str(key), m, groups)
            title = (f"Pairwise interactions between {label}s"
                     + ("" if key in ("groups", "features") else f" ({key})"))
            info = self.figure(InteractionDisplay(m, label=label, title=title).plot(), f"interactions_{key}",
                               title=title, caption=(
                "Entry (i, j): mean over rows of f(x) − f(x without i) − f(x without j) + f(x without "
                f"i and j), {label}s removed by setting them to the baseline, in the units of the model's "
                "output; 0 for an additive model. Red: the pair together matters more than the sum of its "
                "parts; blue: less."),
                alt=f"Heatmap of a {len(m)} by {len(m)} symmetric interaction matrix over {label}s "
                    f"{', '.join(map(str, m.columns))}.")
            self.results["interactions"][str(key)] = jsonable(m.to_dict(orient="index"), where="interactions")
            # names as they are
            self.context["interactions"].append({"figure": info["stem"], "label": label, "title": title,
                                                 "table": render_table(m.reset_index(names=label))})

    def windows(self, windows: Any) -> None:
        table = windows.to_frame() if isinstance(windows, WindowImportance) else _nonempty(windows, "windows")
        self.figure(WindowsDisplay(table).plot(), "windows", title="Importance over time windows", caption=(
            "Importance of each group computed separately on the rows of each consecutive time "
            "window (error bars: ± one standard error where given)."),
            alt=f"Line chart of importance per time window for groups "
                f"{', '.join(dict.fromkeys(table['group'].astype(str)))}.")
        self.results["windows"] = records(table, where="windows")
        self.context["windows"] = _render(table)

    def subgroups(self, subgroups: Any) -> None:
        table = _nonempty(subgroups, "subgroups")
        by, value = str(table.columns[0]), subgroup_value(table)
        self.figure(SubgroupDisplay(table, by=by, value=value).plot(), "subgroups", title=f"{value} by {by}",
                    caption=f"The model's {value} computed separately on each {by} subgroup of the test rows.",
                    alt=f"Bar chart of {value} for subgroups {', '.join(table[by].astype(str))}.")
        self.results["subgroups"] = records(table, where="subgroups")
        self.context["subgroups"] = _render(table)

    def mitigation(self, mitigation: Any, group: str | None) -> None:
        if isinstance(mitigation, MitigationTable):
            group = group or mitigation.suspect
            mitigation = mitigation.to_frame()
        table = _nonempty(mitigation, "mitigation")
        display = MitigationDisplay(table, group=group).plot()
        acted = f" on group {group!r}" if group else ""
        self.figure(display, "mitigation", title="Mitigation: before and after", caption=(
            f"Each strategy trains a new model that acts{acted}; the first row is the unmitigated model. "
            "In-distribution: held-out data with the training distribution; shifted: held-out data where "
            "that group's link to the label is broken."),
            alt=f"Bar charts comparing {len(table)} models on {', '.join(lbl for _, lbl in display.panels)}.")
        self.results["mitigation"] = records(table, where="mitigation")
        self.results["mitigated_group"] = group
        self.context["mitigation"] = {"table": _render(table), "group": group}

    def html(self) -> str:
        audit = self.audit
        return _environment().get_template(TEMPLATE).render(
            r=self.results, figures=figure_map(self.figures), summary_rows=rows(audit.summary),
            ground_truth_rows=rows(audit.ground_truth), score_rows=rows(audit.scores),
            font_note=font_note(self.figures), **self.context,
        )


def write_reliance(audit: RelianceAudit, directory: Path, *, formats: Sequence[str], dpi: int) -> dict[str, Any]:
    """Write the reliance report of ``audit`` into the existing ``directory``; returns ``results.json``'s content."""
    _check(audit)
    page = _Page(audit, directory, formats, dpi)
    page.detection(audit.detection)
    if audit.robustness is not None:
        page.robustness(audit.robustness, str(audit.robustness_metric))
    if audit.interactions is not None:
        page.interactions(audit.interactions, set(audit.detection.table["group"].astype(str)))
    if audit.windows is not None:
        page.windows(audit.windows)
    if audit.subgroups is not None:
        page.subgroups(audit.subgroups)
    if audit.mitigation is not None:
        page.mitigation(audit.mitigation, audit.mitigated_group)
    page.results["figures"] = [f for fig in page.figures for f in fig["files"]]
    atomic_write_text(directory / "index.html", page.html())
    text = json.dumps(page.results, indent=2, allow_nan=False, ensure_ascii=False)
    atomic_write_text(directory / "results.json", text + "\n")
    return page.results


def write_detection(report: SpuriousReport, directory: Path, *, formats: Sequence[str], dpi: int) -> dict[str, Any]:
    """One :func:`detect_spurious` result as a reliance report with only the detection section."""
    return write_reliance(RelianceAudit(detection=report, title="featurelens: spurious-correlation detection"),
                          directory, formats=formats, dpi=dpi)
