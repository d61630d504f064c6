"""The training map graph and the observed transition counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from featurelens.dynamics import GaussianHMM, training_map, transition_counts


@pytest.fixture()
def model():
    transmat = np.array([[0.9, 0.08, 0.02], [0.0, 0.95, 0.05], [0.01, 0.0, 0.99]])
    return GaussianHMM(startprob=[1.0, 0.0, 0.0], transmat=transmat, means=np.zeros((3, 2)),
                       covars=np.ones((3, 2)), covariance_type="diag")


PATHS = [np.array([0, 0, 1, 1, 2, 2]), np.array([0, 2, 2, 2]), np.array([0, 0, 0, 1, 1, 1, 1, 2])]


def test_transition_counts_match_a_loop():
    counts = transition_counts(PATHS, n_states=3)
    ref = np.zeros((3, 3), int)
    for p in PATHS:
        for a, b in itertools.pairwise(p):
            ref[a, b] += 1
    np.testing.assert_array_equal(counts, ref)
    assert counts[0, 1] == 2 and counts[1, 2] == 2 and counts[0, 2] == 1


def test_training_map_graph(model):
    g = training_map(model, PATHS)
    assert sorted(g.edges) == [(0, 1), (0, 2), (1, 2)]  # observed pairs only, no self-loops
    assert g.edges[0, 1] == {"prob": 0.08, "count": 2}
    assert g.edges[0, 2] == {"prob": 0.02, "count": 1}
    assert g.nodes[0]["n_runs"] == 3 and g.nodes[0]["first_visit"] == 0.0
    assert g.nodes[1]["n_runs"] == 2
    assert g.nodes[1]["first_visit"] == pytest.approx((2 / 6 + 3 / 8) / 2)
    assert g.nodes[2]["first_visit"] == pytest.approx((4 / 6 + 1 / 4 + 7 / 8) / 3)
    assert g.nodes[2]["self_prob"] == 0.99
    assert sum(g.nodes[k]["occupancy"] for k in range(3)) == pytest.approx(1.0)
    assert g.nodes[0]["occupancy"] == pytest.approx(6 / 18)
