"""Model and data fingerprints: equal for equal content, changed by any edit."""

from __future__ import annotations

import torch
from torch import nn

from featurelens._fingerprint import fingerprint_data, fingerprint_model


def test_model_fingerprint_tracks_edits_through_the_cache():
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    fa = fingerprint_model(a)
    assert fingerprint_model(a) == fa == fingerprint_model(b)
    original = a.weight[0, 0].item()
    with torch.no_grad():
        a.weight[0, 0] += 1.0  # in place: version counter moves
    assert fingerprint_model(a) != fa
    with torch.no_grad():
        a.weight[0, 0] = original
    assert fingerprint_model(a) == fa
    a.weight = nn.Parameter(a.weight.detach().clone() * 2)  # replaced tensor
    assert fingerprint_model(a) != fa
    a.weight.data = b.weight.data.clone()  # .data assignment swaps storage
    assert fingerprint_model(a) == fa


def test_data_fingerprint():
    x = torch.arange(6.0).reshape(2, 3)
    assert fingerprint_data(x) == fingerprint_data(x.numpy().copy())
    assert fingerprint_data(x) != fingerprint_data(x.double())
    assert fingerprint_data(x) != fingerprint_data(x.reshape(3, 2))
