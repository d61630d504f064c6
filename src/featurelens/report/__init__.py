"""Static, offline HTML reports of attributions.

A report directory holds ``index.html`` (inline CSS, no scripts, no network
resources), PNG figures, ``results.json`` with every number shown on the
page (schema in :mod:`featurelens.report._results` and
``docs/report_schema.md``) and each explanation as
``explanations/<method>.npz`` (readable with :meth:`Explanation.load`).
"""

from featurelens.report._api import save_attribution_report, write_attribution_report
from featurelens.report._internals import save_internals_report

__all__ = ["save_attribution_report", "save_internals_report", "write_attribution_report"]
