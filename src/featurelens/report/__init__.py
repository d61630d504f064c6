"""Rendering: every HTML page, figure and ``results.json`` of featurelens, and notebook Displays.

``save(result, out)`` writes any result (an attribution report or explanation,
an internals summary, a reliance audit or detection, a comparison of
checkpoints, a training-dynamics analysis, a sweep, the tickets study) to a new
directory, all or nothing: ``index.html`` (inline CSS, no scripts, no network
resources), figures (PNG, plus PDF/SVG on request), ``results.json`` with every
number shown on the page, and the kind's data files. The ``*Display`` classes
draw the same figures into a notebook (scikit-learn's display convention:
``ImportanceDisplay.from_explanation(expl).plot(ax=ax)``; each stores the
computed data, and ``plot`` returns the display with ``figure_`` and ``ax_``).
"""

from featurelens.report._attribution_displays import (
    DistributionDisplay,
    ImportanceDisplay,
    RankDisplay,
    RepeatsDisplay,
    TrainingDisplay,
)
from featurelens.report._compare import comparison_text
from featurelens.report._compare_figures import ComparisonDisplay
from featurelens.report._dynamics_figures import (
    ModelSelectionDisplay,
    StateTimelineDisplay,
    TrainingMapDisplay,
)
from featurelens.report._figures import FORMATS, Display, check_formats
from featurelens.report._internals_displays import LayerSummaryDisplay, OverlapDisplay
from featurelens.report._reliance_displays import (
    DetectionDisplay,
    InteractionDisplay,
    MitigationDisplay,
    RobustnessDisplay,
    SubgroupDisplay,
    WindowsDisplay,
)
from featurelens.report._save import WRITERS, save
from featurelens.report._sweeps import SweepDisplay

__all__ = [
    "FORMATS",
    "WRITERS",
    "ComparisonDisplay",
    "DetectionDisplay",
    "Display",
    "DistributionDisplay",
    "ImportanceDisplay",
    "InteractionDisplay",
    "LayerSummaryDisplay",
    "MitigationDisplay",
    "ModelSelectionDisplay",
    "OverlapDisplay",
    "RankDisplay",
    "RepeatsDisplay",
    "RobustnessDisplay",
    "StateTimelineDisplay",
    "SubgroupDisplay",
    "SweepDisplay",
    "TrainingDisplay",
    "TrainingMapDisplay",
    "WindowsDisplay",
    "check_formats",
    "comparison_text",
    "save",
]
