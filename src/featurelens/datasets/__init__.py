"""Synthetic data sets with planted ground truth, in the manner of ``sklearn.datasets``.

Every generator is a ``make_*`` function that takes ``random_state`` and returns the data
together with what was planted in it, so that an analysis can be checked against the truth:
biased and shifted sets with a spurious feature group, daily market bars with a calendar
effect, health records with an administrative shortcut, training runs with planted phases,
and the validation suite of :func:`featurelens.reliance.detect_spurious`. Reading, checking
and transforming real data is :mod:`featurelens.data`.
"""

from featurelens.datasets._ehr import INSURANCE, EHRData, make_ehr
from featurelens.datasets._ohlcv import RegimeParams, make_ohlcv
from featurelens.datasets._planted import make_planted_runs
from featurelens.datasets._reliance_suite import SuiteCase, SuiteConfig, make_reliance_suite
from featurelens.datasets._synthetic import (
    GroundTruth,
    SyntheticData,
    make_biased,
    make_multifeature,
    make_shifted,
)

__all__ = [
    "INSURANCE",
    "EHRData",
    "GroundTruth",
    "RegimeParams",
    "SuiteCase",
    "SuiteConfig",
    "SyntheticData",
    "make_biased",
    "make_ehr",
    "make_multifeature",
    "make_ohlcv",
    "make_planted_runs",
    "make_reliance_suite",
    "make_shifted",
]
