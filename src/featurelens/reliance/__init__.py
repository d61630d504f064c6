"""Reliance: spurious-correlation detection, robustness, interactions, stability, mitigation, reports."""

from featurelens.reliance._report import save_reliance_report, write_reliance_report

__all__ = [
    "save_reliance_report",
    "write_reliance_report",
]
