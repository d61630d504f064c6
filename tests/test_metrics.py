"""``logit_accuracy``: the binary accuracy of a logit model, shared by the demo and the sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurelens._metrics import accuracy, logit_accuracy
from featurelens.models import MLP


def test_logit_accuracy_equals_accuracy_of_probabilities():
    torch.manual_seed(0)
    model = MLP(3, (4,), 1, dropout=0.5)  # training mode, with dropout
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    got = logit_accuracy(model, x, y)
    assert model.training and model.drop1.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    want = float(np.mean((logits.numpy() >= 0) == (y == 1)))
    assert got == want == accuracy(torch.from_numpy(y), torch.sigmoid(logits).double())


def test_logit_accuracy_needs_one_logit():
    with pytest.raises(ValueError, match="one logit per row"):
        logit_accuracy(MLP(3, (4,), 2), np.zeros((5, 3), dtype=np.float32), np.zeros(5))
