"""Reliance: spurious-correlation detection, robustness, interactions, stability, mitigation.

Results render with ``featurelens.report.save``.
"""

from featurelens.reliance._audit import MITIGATION_STRATEGIES, audit
from featurelens.reliance._audit_result import RelianceAudit
from featurelens.reliance._detect import SpuriousReport, Thresholds, detect_spurious, verdict_of
from featurelens.reliance._interactions import interaction_matrix, shapley_interactions
from featurelens.reliance._mitigate import Mitigated, infer_environments, mitigate
from featurelens.reliance._mitigation_eval import (
    MitigationTable,
    evaluate_mitigations,
    mitigation_benchmark,
)
from featurelens.reliance._probe import ProbeResult, cross_val_probe
from featurelens.reliance._robustness import (
    PERTURBATIONS,
    RobustnessCurve,
    robustness,
    robustness_curve,
)
from featurelens.reliance._stability import (
    WindowImportance,
    importance_by_subgroup,
    importance_over_windows,
    metrics_by_subgroup,
)
from featurelens.reliance._suite import SuiteResult, evaluate_suite, fit_suite_model

__all__ = [
    "MITIGATION_STRATEGIES",
    "PERTURBATIONS",
    "Mitigated",
    "MitigationTable",
    "ProbeResult",
    "RelianceAudit",
    "RobustnessCurve",
    "SpuriousReport",
    "SuiteResult",
    "Thresholds",
    "WindowImportance",
    "audit",
    "cross_val_probe",
    "detect_spurious",
    "evaluate_mitigations",
    "evaluate_suite",
    "fit_suite_model",
    "importance_by_subgroup",
    "importance_over_windows",
    "infer_environments",
    "interaction_matrix",
    "metrics_by_subgroup",
    "mitigate",
    "mitigation_benchmark",
    "robustness",
    "robustness_curve",
    "shapley_interactions",
    "verdict_of",
]
