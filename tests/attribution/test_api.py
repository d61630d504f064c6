"""featurelens.attribution._api: route_options, the one routing of shared options to attribution methods."""

from __future__ import annotations

import numpy as np
import pytest

from featurelens.attribution import route_options


def test_each_method_gets_exactly_the_options_it_accepts():
    bg, y = np.zeros((4, 3)), np.ones(4)
    routed = route_options(["ablation", "permutation", "integrated_gradients", "saliency"],
                           options={"n_steps": 16}, baselines="mean", background=bg, max_background=100,
                           y=y, metric="mse", n_repeats=3)
    assert set(routed) == {"ablation", "permutation", "integrated_gradients", "saliency"}
    assert routed["ablation"]["baselines"] == "mean" and routed["ablation"]["background"] is bg
    assert "max_background" not in routed["ablation"]  # only with baselines="background"
    assert routed["permutation"] == {"y": y, "metric": "mse", "n_repeats": 3}
    assert routed["integrated_gradients"]["n_steps"] == 16
    assert routed["integrated_gradients"]["background"] is bg
    assert routed["saliency"] == {}


def test_background_baseline_gets_the_cap_and_an_explicit_option_wins():
    bg = np.zeros((4, 3))
    routed = route_options(["integrated_gradients", "ablation"], options={"baselines": "zeros"},
                           baselines="background", background=bg, max_background=100)
    # --option baselines=zeros overrides the shared baselines: no background statistics then
    assert routed["integrated_gradients"]["baselines"] == "zeros"
    assert "background" not in routed["integrated_gradients"]
    routed = route_options(["integrated_gradients"], baselines="background", background=bg, max_background=100)
    assert routed["integrated_gradients"]["max_background"] == 100


def test_an_option_no_method_accepts_is_refused():
    with pytest.raises(ValueError, match=r"option n_steps=\.\.\. is not an option of saliency"):
        route_options(["saliency"], options={"n_steps": 8})
