"""analyse_runs end to end on runs with a planted detour phase, and the result's to_frame/to_dict."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from featurelens.dynamics import analyse_runs, load_runs, occupancy, transition_counts

METRICS = ["m0", "m1", "m2"]
# m0 is noise; the detour lies between start and end in m1 only, so it stays distinct after per-run z-scoring
PHASE_MEANS = {"start": [0.0, -4.0, -4.0], "detour": [0.0, 0.0, -4.0], "end": [0.0, 4.0, 4.0]}


def write_planted_runs(directory, *, n_runs=12, seed=0):
    """Runs start -> (detour, every other run) -> end; accuracy passes 0.9 when 'end' begins."""
    rng = np.random.default_rng(seed)
    truth = {}
    for r in range(n_runs):
        n_start = int(rng.integers(12, 18))
        n_detour = int(rng.integers(10, 15)) if r % 2 else 0
        n_end = 60 - n_start - n_detour
        phases = ["start"] * n_start + ["detour"] * n_detour + ["end"] * n_end
        x = np.array([PHASE_MEANS[p] for p in phases]) + rng.normal(scale=0.4, size=(60, 3))
        acc = np.where(np.arange(60) >= n_start + n_detour, 0.95, 0.5)
        frame = pd.DataFrame(x, columns=METRICS)
        frame.insert(0, "step", np.arange(60) * 10)
        frame["train_loss"] = np.exp(-np.arange(60) / 20) + 0.01
        frame["val_accuracy"] = acc
        frame.to_csv(directory / f"run{r:02d}.csv", index=False)
        truth[f"run{r:02d}"] = (n_start + n_detour, phases)
    return truth


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    base = tmp_path_factory.mktemp("dyn")
    truth = write_planted_runs(base)
    runs = load_runs(base, metrics=METRICS)
    analysis = analyse_runs(runs, states=range(1, 5), n_restarts=2, n_iter=20, covariance_type="diag",
                            n_states=3, test_fraction=0.25, random_state=0,
                            convergence={"column": "val_accuracy", "threshold": 0.9})
    return analysis, analysis.to_dict(), truth


def test_states_and_detour_recovered(analysed):
    analysis, results, truth = analysed
    assert analysis.n_states == 3 and results["selection"]["chosen"] == 3
    assert results["convergence"]["times"] == {rid: t for rid, (t, _) in truth.items()}
    # the state occupied during the planted detour is the detour state: significant, r > 0
    paths = dict(zip(analysis.runs.run_ids, analysis.paths, strict=True))
    detour_state = np.bincount(np.concatenate(
        [paths[rid][np.array(ph) == "detour"] for rid, (_, ph) in truth.items() if "detour" in ph])).argmax()
    row = next(s for s in results["detours"]["states"] if s["state"] == detour_state)
    assert row["kind"] == "detour" and row["r"] > 0.8 and row["p_value"] < 1e-3
    assert row["n_runs_visiting"] == 6
    # every run visits the start state first and ends in the end state; detour runs pass the detour
    visits = results["runs"]["visits"]
    assert all(v[0] == visits["run00"][0] and v[-1] == visits["run00"][-1] for v in visits.values())
    assert all((detour_state in visits[rid]) == ("detour" in ph) for rid, (_, ph) in truth.items())
    reg = results["detours"]["regression"]
    assert reg["r2"] > 0.8 and reg["n_runs"] == 12


def test_to_dict_numbers_recompute_from_the_paths(analysed):
    analysis, results, _ = analysed
    assert results == json.loads(json.dumps(results, allow_nan=False))  # plain JSON
    model, paths = analysis.model, analysis.paths
    np.testing.assert_array_equal(results["model"]["transmat"], model.transmat)
    assert results["model"]["loglik_all_runs"] == model.score(analysis.runs.sequences)
    # transitions: counted again from the paths with a loop, most frequent first
    counts = {}
    for p in paths:
        for a, b in itertools.pairwise(p):
            if a != b:
                counts[(int(a), int(b))] = counts.get((int(a), int(b)), 0) + 1
    assert {(t["from"], t["to"]): t["count"] for t in results["transitions"]} == counts
    assert [t["count"] for t in results["transitions"]] == sorted(counts.values(), reverse=True)
    np.testing.assert_array_equal(analysis.counts, transition_counts(paths, n_states=3))
    total = sum(len(p) for p in paths)
    for s in range(3):
        assert results["occupancy"][str(s)] == pytest.approx(sum(int((p == s).sum()) for p in paths) / total)
    # drivers: the top transitions by count, each with every feature once, sorted by |mean gradient|
    assert ([(d["from"], d["to"]) for d in results["drivers"]]
            == [(t["from"], t["to"]) for t in results["transitions"][:4]])
    for d in results["drivers"]:
        assert sorted(f["feature"] for f in d["features"]) == sorted(METRICS)
        grads = [abs(f["mean_gradient"]) for f in d["features"]]
        assert grads == sorted(grads, reverse=True)
        change = dict(zip(METRICS, model.means[d["to"]] - model.means[d["from"]], strict=True))
        for f in d["features"]:
            assert f["mean_change"] == pytest.approx(change[f["feature"]], rel=1e-12)
    assert results["selection"]["chosen"] == 3 and len(results["selection"]["table"]) == 4 * 2


def test_to_frame_is_one_row_per_state(analysed):
    analysis = analysed[0]
    frame = analysis.to_frame()
    assert list(frame["state"]) == [0, 1, 2]
    assert list(frame.columns) == ["state", "occupancy", "stay_probability", "n_runs_visiting", "first_visit",
                                   "r", "p_value", "kind"]
    occ = occupancy(analysis.paths, n_states=3).sum(axis=0)
    np.testing.assert_allclose(frame["occupancy"], occ / occ.sum(), rtol=1e-12)
    np.testing.assert_array_equal(frame["stay_probability"], np.diag(analysis.model.transmat))
    visiting = [sum(bool((p == s).any()) for p in analysis.paths) for s in range(3)]
    assert frame["n_runs_visiting"].tolist() == visiting
    pd.testing.assert_series_equal(frame.set_index("state")["r"], analysis.correlations["r"], check_names=False,
                                   check_index_type=False)
    html = analysis._repr_html_()
    assert "<table" in html and "K = 3 states" in html


def test_errors(analysed):
    analysis, _, _ = analysed
    with pytest.raises(TypeError, match="runs must be a RunSet"):
        analyse_runs([np.zeros((5, 2))])
    with pytest.raises(ValueError, match="convergence column 'nope' is missing"):
        analyse_runs(analysis.runs, states=[1], convergence={"column": "nope", "threshold": 1.0})
    with pytest.raises(ValueError, match=r"n_states=7 is not among the fitted state counts \[1, 2\]"):
        analyse_runs(analysis.runs, states=[1, 2], n_restarts=1, n_states=7, covariance_type="diag")
