"""Static, offline reports and figures of every featurelens result.

``save(result, out)`` writes any result's report directory: ``index.html``
(inline CSS, no scripts, no network resources), figures (PNG, plus PDF/SVG on
request), ``results.json`` with every number shown on the page, and the kind's
data files (CSV tables, models, explanations). The attribution report
(``save_attribution_report``) holds each explanation as
``explanations/<method>.npz`` (readable with :meth:`Explanation.load`); its
schema is in :mod:`featurelens.report._results` and ``docs/report_schema.md``.
The ``*Display`` classes draw the report figures on any matplotlib Axes
(scikit-learn's display convention: ``Display.from_<result>(...)`` computes
and plots, ``.plot(ax=...)`` redraws).
"""

from featurelens.report._api import save_attribution_report, write_attribution_report
from featurelens.report._compare import comparison_text
from featurelens.report._compare_figures import ComparisonDisplay
from featurelens.report._dynamics_figures import (
    ModelSelectionDisplay,
    StateTimelineDisplay,
    TrainingMapDisplay,
)
from featurelens.report._figures import FORMATS, check_formats
from featurelens.report._internals import save_internals_report
from featurelens.report._save import save
from featurelens.report._sweeps import SweepDisplay

__all__ = [
    "FORMATS",
    "ComparisonDisplay",
    "ModelSelectionDisplay",
    "StateTimelineDisplay",
    "SweepDisplay",
    "TrainingMapDisplay",
    "check_formats",
    "comparison_text",
    "save",
    "save_attribution_report",
    "save_internals_report",
    "write_attribution_report",
]
