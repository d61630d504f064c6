"""Metrics on selected outputs: which check speaks first, and what it says."""

from __future__ import annotations

import pytest
import torch

from featurelens._metrics import METRICS


@pytest.mark.parametrize("metric", ["accuracy", "log_loss"])
@pytest.mark.parametrize("k", [1, 3])
def test_class_metric_on_a_regression_target_says_it_needs_class_labels(metric, k):
    y = torch.tensor([0.25, 1.5, -2.0, 3.0], dtype=torch.float64)  # a regression target
    pred = torch.linspace(-3, 3, 4 * k, dtype=torch.float64).reshape(4, k).squeeze(1)  # outputs outside [0, 1]
    with pytest.raises(ValueError, match=rf"metric '{metric}' needs class labels, but the labels hold non-integer "
                                         r"values such as \[0.25, 1.5\] \(a regression target\?\); use "
                                         r"metric='mse'") as info:
        METRICS[metric].fn(y, pred)
    assert "sigmoid" not in str(info.value)


def test_class_metric_on_logits_with_class_labels_advises_a_link():
    with pytest.raises(ValueError, match=r"needs probabilities in \[0, 1\].*link='sigmoid' \(one logit per row\)"):
        METRICS["accuracy"].fn(torch.tensor([0.0, 1.0]), torch.tensor([-2.0, 3.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"on one output needs binary labels 0/1, found label value\(s\) \[2.0\]"):
        METRICS["log_loss"].fn(torch.tensor([0.0, 2.0]), torch.tensor([0.2, 0.7], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"needs class labels in 0..2, found \[3.0\]"):
        METRICS["accuracy"].fn(torch.tensor([0.0, 3.0]), torch.full((2, 3), 1 / 3, dtype=torch.float64))
