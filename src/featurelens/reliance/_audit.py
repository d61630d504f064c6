"""One reliance audit: the result every reliance front end (CLI, finance, healthcare) returns.

:class:`RelianceAudit` holds what an audit computed; ``featurelens.report.save``
renders it. The audit pipeline that fills it lives in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

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
