"""Gradient attributions: saliency, input × gradient, integrated gradients, SmoothGrad."""

from __future__ import annotations

from collections.abc import Callable

#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
METHODS: dict[str, Callable] = {}
