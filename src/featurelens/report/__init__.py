"""Rendering: every HTML page, figure and ``results.json`` of featurelens, and notebook Displays.

``save(result, out)`` writes any result (an attribution report or explanation,
an internals summary, a reliance audit or detection, ...) to a new directory,
all or nothing. The Display classes draw the same figures into a notebook:
``ImportanceDisplay.from_explanation(expl).plot(ax=ax)``; each stores the
computed data, and ``plot`` returns the display with ``figure_`` and ``ax_``.
"""

from featurelens.report._attribution_displays import (
    DistributionDisplay,
    ImportanceDisplay,
    RankDisplay,
    RepeatsDisplay,
    TrainingDisplay,
)
from featurelens.report._figures import Display
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

__all__ = [
    "WRITERS",
    "DetectionDisplay",
    "Display",
    "DistributionDisplay",
    "ImportanceDisplay",
    "InteractionDisplay",
    "LayerSummaryDisplay",
    "MitigationDisplay",
    "OverlapDisplay",
    "RankDisplay",
    "RepeatsDisplay",
    "RobustnessDisplay",
    "SubgroupDisplay",
    "TrainingDisplay",
    "WindowsDisplay",
    "save",
]
