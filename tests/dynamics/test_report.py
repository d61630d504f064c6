"""The dynamics pipeline end to end on runs with a planted detour phase, and its report files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from featurelens._io import atomic_output_dir
from featurelens.dynamics import GaussianHMM
from featurelens.dynamics._detours import state_correlations
from featurelens.dynamics._report import analyse_runs, write_dynamics_report
from featurelens.dynamics._runs import load_runs, read_saved_runs

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
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("dyn")
    (base / "runs").mkdir()
    truth = write_planted_runs(base / "runs")
    runs = load_runs(base / "runs", metrics=METRICS)
    analysis = analyse_runs(runs, states=range(1, 5), n_restarts=2, n_iter=20, covariance_type="diag",
                            n_states=3, test_fraction=0.25, random_state=0,
                            convergence={"column": "val_accuracy", "threshold": 0.9})
    with atomic_output_dir(base / "out") as tmp:
        results = write_dynamics_report(tmp, analysis, title="planted", summary={"runs": 12}, notes=["a note"],
                                        dpi=40, max_timelines=2)
    return base / "out", results, analysis, truth


def test_states_and_detour_recovered(report):
    _out, results, analysis, truth = report
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


def test_files_and_numbers_agree(report):
    out, results, _analysis, _ = report
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["format"] == "featurelens.dynamics" and on_disk["version"] == 1
    model = GaussianHMM.load(out / on_disk["model"]["file"])
    np.testing.assert_allclose(model.transmat, on_disk["model"]["transmat"], rtol=0, atol=0)
    assert sorted(p.name for p in (out / "models").iterdir()) == [f"k{k}.npz" for k in range(1, 5)]
    # states.csv is the model's Viterbi decoding of the saved runs
    states = pd.read_csv(out / "states.csv")
    saved = read_saved_runs(out / "runs.npz")
    decoded = model.decode(saved.sequences)
    for rid, path in zip(saved.run_ids, decoded, strict=True):
        np.testing.assert_array_equal(states[states.run_id == rid]["state"].to_numpy(), path)
    # transitions: counted again from states.csv
    counts = {}
    for _, g in states.groupby("run_id"):
        s = g["state"].to_numpy()
        for a, b in itertools.pairwise(s):
            if a != b:
                counts[(int(a), int(b))] = counts.get((int(a), int(b)), 0) + 1
    assert {(t["from"], t["to"]): t["count"] for t in on_disk["transitions"]} == counts
    # detour table: recomputed from states.csv and the convergence times
    conv = on_disk["convergence"]["times"]
    table = state_correlations([decoded[i] for i in range(len(decoded))], [conv[r] for r in saved.run_ids], n_states=3)
    for s in on_disk["detours"]["states"]:
        ref = table.loc[s["state"]]
        assert s["kind"] == ref["kind"]
        if s["r"] is not None:
            assert s["r"] == pytest.approx(ref["r"], rel=1e-12)
            assert s["p_value"] == pytest.approx(ref["p_value"], rel=1e-9)
    # drivers: the top transitions by count, each with every feature once
    assert [(d["from"], d["to"]) for d in on_disk["drivers"]] == [(t["from"], t["to"]) for t in on_disk["transitions"][:4]]
    for d in on_disk["drivers"]:
        assert sorted(f["feature"] for f in d["features"]) == sorted(METRICS)
        grads = [abs(f["mean_gradient"]) for f in d["features"]]
        assert grads == sorted(grads, reverse=True)
        change = dict(zip(METRICS, model.means[d["to"]] - model.means[d["from"]], strict=True))
        for f in d["features"]:
            assert f["mean_change"] == pytest.approx(change[f["feature"]], rel=1e-12)
    selection = pd.read_csv(out / "selection.csv")
    assert len(selection) == 4 * 2 and set(selection["n_states"]) == {1, 2, 3, 4}


def test_html_and_figures(report):
    out, results, _, _ = report
    html = (out / "index.html").read_text()
    for f in results["figures"]:
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{f}"' in html
    assert set(results["figures"]) == {"model_selection.png", "training_map.png", "timelines.png"}
    assert "a note" in html and results["selection"]["rule"] in html
    rid = results["runs"]["run_ids"][1]
    assert " → ".join(map(str, results["runs"]["visits"][rid])) in html
    top = results["drivers"][0]
    assert f"{top['from']} → {top['to']} ({top['n_occurrences']} occurrences)" in html
    assert "detour" in html


def test_errors(report, tmp_path):
    _, _, analysis, _ = report
    with pytest.raises(ValueError, match=r"report directory .* does not exist"):
        write_dynamics_report(tmp_path / "missing", analysis)
    with pytest.raises(TypeError, match="analysis must be a DynamicsAnalysis"):
        write_dynamics_report(tmp_path, {})
    with pytest.raises(TypeError, match="runs must be a RunSet"):
        analyse_runs([np.zeros((5, 2))])
    with pytest.raises(ValueError, match="convergence column 'nope' is missing"):
        analyse_runs(analysis.runs, states=[1], convergence={"column": "nope", "threshold": 1.0})
    with pytest.raises(ValueError, match=r"n_states=7 is not among the fitted state counts \[1, 2\]"):
        analyse_runs(analysis.runs, states=[1, 2], n_restarts=1, n_states=7, covariance_type="diag")
