"""Training map, timelines and model-selection figures."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from featurelens.dynamics import GaussianHMM
from featurelens.dynamics._figures import (
    selection_figure,
    state_colours,
    timeline_figure,
    training_map,
    training_map_figure,
    transition_counts,
)

PNG = b"\x89PNG\r\n\x1a\n"


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


def test_figures_write_pngs(tmp_path, model):
    info = training_map_figure(tmp_path, model, PATHS, dpi=50)
    assert (tmp_path / info["file"]).read_bytes()[:8] == PNG
    assert "0→1 (p=0.080, n=2)" in info["alt"]
    frames = [pd.DataFrame({"step": np.arange(len(p)) * 10, "train_loss": np.exp(-np.arange(len(p))),
                            "val_loss": 1.1 * np.exp(-np.arange(len(p)))}) for p in PATHS]
    info = timeline_figure(tmp_path, frames, PATHS, ["a", "b", "c"], n_states=3, max_runs=2, dpi=50)
    assert (tmp_path / "timelines.png").read_bytes()[:8] == PNG
    assert "train_loss, val_loss" in info["caption"] and "first 2 of 3 runs" in info["caption"]
    assert timeline_figure(tmp_path, [f[["step"]] for f in frames], PATHS, ["a", "b", "c"], n_states=3) is None
    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"n_states": k, "restart": r, "test_loglik": -100 / k + rng.normal(),
                           "aic": 10 * k, "bic": 12 * k} for k in range(1, 5) for r in range(3)])
    info = selection_figure(tmp_path, table, recommended=3, dpi=50)
    assert (tmp_path / "model_selection.png").read_bytes()[:8] == PNG
    assert "K = 1..4" in info["alt"] and "K=3" in info["caption"]
    with pytest.raises(ValueError, match=r"table is missing column\(s\) \['bic'\]"):
        selection_figure(tmp_path, table.drop(columns="bic"))


def test_state_colours_distinct():
    assert len(set(state_colours(8))) == 8
    assert len({str(c) for c in state_colours(12)}) == 12
