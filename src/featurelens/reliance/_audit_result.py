"""The result of a reliance audit: :class:`RelianceAudit`, rendered by ``featurelens.report.save``."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from featurelens._protocol import jsonable
from featurelens.reliance._detect import SpuriousReport
from featurelens.reliance._mitigation_eval import MitigationTable
from featurelens.reliance._robustness import RobustnessCurve


@dataclass
class RelianceAudit:
    """Everything one reliance audit found, ready to render or serialise.

    Attributes
    ----------
    detection : SpuriousReport
        Per-group reliance, probe, stability and verdicts.
    robustness : dict of str to RobustnessCurve, optional
        One curve per perturbation (``"gaussian"``, ``"dropout"``, ``"fgsm"``, ``"pgd"``).
    robustness_metric : str
        The metric the curves measure (e.g. ``"accuracy"``).
    interactions : dict of str to DataFrame, optional
        Square interaction matrices, keyed by what their rows and columns are
        (``"groups"`` or ``"features"``).
    mitigation : MitigationTable, optional
        Before/after table of the mitigation strategies (first row unmitigated).
    mitigated_group : str, optional
        The group the mitigation strategies acted on.
    windows : DataFrame, optional
        Importance per time window (``importance_over_windows(...).table``).
    subgroups : DataFrame, optional
        Metrics per subgroup (``metrics_by_subgroup``).
    scores : dict of str to float
        Headline numbers (e.g. accuracy in-distribution and on shifted data).
    title : str
        Title of the rendered report.
    summary : dict of str to Any
        Context lines shown on the report (data sizes, model, training).
    ground_truth : dict, optional
        Planted truth of synthetic data, shown beside the verdicts.
    notes : tuple of str
        Free-text notes shown at the end of the report.
    """

    detection: SpuriousReport
    robustness: dict[str, RobustnessCurve] | None = None
    robustness_metric: str = "metric"
    interactions: dict[str, pd.DataFrame] | None = None
    mitigation: MitigationTable | None = None
    mitigated_group: str | None = None
    windows: pd.DataFrame | None = None
    subgroups: pd.DataFrame | None = None
    scores: dict[str, float] = field(default_factory=dict)
    title: str = "Reliance audit"
    summary: Mapping[str, Any] = field(default_factory=dict)
    ground_truth: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        """Return the detection table (a copy): one row per group, columns as :attr:`SpuriousReport.table`."""
        return self.detection.table.copy()

    def robustness_frame(self) -> pd.DataFrame | None:
        """Return the curves as one tidy table, as :func:`featurelens.reliance.robustness` returns it.

        Columns ``perturbation``, ``strength``, ``metric``, ``std``, ``n_repeats``,
        ``degradation`` and each curve's ``clean``, ``auc`` and ``degradation_auc``
        repeated on its rows; ``None`` without curves.
        """
        if not self.robustness:
            return None
        frames = []
        for curve in self.robustness.values():
            t = curve.table.copy()
            t.insert(0, "perturbation", curve.perturbation)
            t["clean"], t["auc"], t["degradation_auc"] = curve.clean, curve.auc, curve.degradation_auc
            frames.append(t)
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable content: every field, tables as lists of records (NaN and inf as ``None``)."""
        def records(frame: pd.DataFrame | None, where: str) -> list[dict[str, Any]] | None:
            return None if frame is None else jsonable(frame.to_dict(orient="records"), where=where)

        robustness = self.robustness_frame()
        return {
            "title": self.title,
            "detection": self.detection.to_dict(),
            "robustness_metric": self.robustness_metric,
            "robustness": records(robustness, "robustness"),
            "interactions": None if self.interactions is None else {
                str(k): jsonable(m.to_dict(orient="index"), where=f"interactions[{k!r}]")
                for k, m in self.interactions.items()},
            "mitigation": None if self.mitigation is None else records(self.mitigation.table, "mitigation"),
            "mitigated_group": self.mitigated_group,
            "windows": records(self.windows, "windows"),
            "subgroups": records(self.subgroups, "subgroups"),
            "scores": jsonable(dict(self.scores), where="scores"),
            "summary": jsonable(dict(self.summary), where="summary"),
            "ground_truth": None if self.ground_truth is None else jsonable(dict(self.ground_truth),
                                                                            where="ground_truth"),
            "notes": [str(n) for n in self.notes],
        }

    def _repr_html_(self) -> str:
        flagged = ", ".join(self.detection.flagged) or "none"
        parts = [f"<h4>{html.escape(self.title)}</h4>",
                 f"<p>flagged spurious: {html.escape(flagged)}</p>",
                 self.to_frame().to_html(index=False)]
        if self.scores:
            parts.append(pd.Series(self.scores, name="value").to_frame().to_html())
        if self.mitigation is not None:
            parts.append(f"<p>mitigation of group {html.escape(str(self.mitigated_group))}</p>")
            parts.append(self.mitigation.table.to_html(index=False))
        return "\n".join(parts)
