"""Attribution methods behind one entry point, :func:`attribute`, and their result, :class:`Explanation`."""

from featurelens.attribution._api import METHODS, attribute
from featurelens.attribution._baselines import resolve_baselines
from featurelens.attribution._explanation import Explanation

__all__ = [
    "METHODS",
    "Explanation",
    "attribute",
    "resolve_baselines",
]
