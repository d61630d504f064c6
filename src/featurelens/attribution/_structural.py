"""Structural attributions read from weights: first-layer weights and edge scores."""

from __future__ import annotations

from collections.abc import Callable

#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
METHODS: dict[str, Callable] = {}
