"""Shapley values over feature groups: exact enumeration and antithetic permutation sampling."""

from __future__ import annotations

from collections.abc import Callable

#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
METHODS: dict[str, Callable] = {}
