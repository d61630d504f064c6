"""featurelens.report.save on a DynamicsAnalysis: the files agree with each other and with the analysis."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from featurelens.dynamics import (
    GaussianHMM,
    analyse_runs,
    load_runs,
    read_saved_runs,
    state_correlations,
)
from featurelens.report import save

METRICS = ["m0", "m1", "m2"]
PHASE_MEANS = {"start": [0.0, -4.0, -4.0], "detour": [0.0, 0.0, -4.0], "end": [0.0, 4.0, 4.0]}


def _write_runs(directory, *, n_runs=8, seed=0):
    """Runs start -> (detour, every other run) -> end; accuracy passes 0.9 when 'end' begins."""
    rng = np.random.default_rng(seed)
    for r in range(n_runs):
        n_start, n_detour = int(rng.integers(12, 18)), int(rng.integers(10, 15)) if r % 2 else 0
        phases = ["start"] * n_start + ["detour"] * n_detour + ["end"] * (60 - n_start - n_detour)
        frame = pd.DataFrame(np.array([PHASE_MEANS[p] for p in phases]) + rng.normal(scale=0.4, size=(60, 3)),
                             columns=METRICS)
        frame.insert(0, "step", np.arange(60) * 10)
        frame["train_loss"] = np.exp(-np.arange(60) / 20) + 0.01
        frame["val_accuracy"] = np.where(np.arange(60) >= n_start + n_detour, 0.95, 0.5)
        frame.to_csv(directory / f"run{r:02d}.csv", index=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("dynreport")
    (base / "runs").mkdir()
    _write_runs(base / "runs")
    runs = load_runs(base / "runs", metrics=METRICS)
    analysis = analyse_runs(runs, states=range(1, 5), n_restarts=2, n_iter=20, covariance_type="diag", n_states=3,
                            test_fraction=0.25, random_state=0,
                            convergence={"column": "val_accuracy", "threshold": 0.9})
    out = save(analysis, base / "out", title="planted", summary={"runs": 8}, notes=["a note"], dpi=40,
               max_timelines=2, formats=("png", "svg"),
               files={"runs/run00.csv": base / "runs" / "run00.csv", "README.txt": b"planted runs\n"})
    return out, json.loads((out / "results.json").read_text()), analysis


def test_results_json_is_the_analysis_plus_page_fields(report):
    _, results, analysis = report
    numbers = analysis.to_dict()
    assert results["format"] == "featurelens.dynamics" and results["version"] == 1
    assert results["title"] == "planted" and results["summary"] == {"runs": 8} and results["notes"] == ["a note"]
    assert results["model"]["file"] == "models/k3.npz"
    model = {k: v for k, v in results["model"].items() if k != "file"}
    assert model == numbers["model"]
    assert {k: v for k, v in results.items() if k in numbers and k != "model"} == {
        k: v for k, v in numbers.items() if k != "model"}


def test_files_agree_with_each_other(report):
    out, results, _ = report
    model = GaussianHMM.load(out / results["model"]["file"])
    np.testing.assert_allclose(model.transmat, results["model"]["transmat"], rtol=0, atol=0)
    assert sorted(p.name for p in (out / "models").iterdir()) == [f"k{k}.npz" for k in range(1, 5)]
    # states.csv is the model's Viterbi decoding of the saved runs
    states = pd.read_csv(out / "states.csv")
    saved = read_saved_runs(out / "runs.npz")
    decoded = model.decode(saved.sequences)
    for rid, path in zip(saved.run_ids, decoded, strict=True):
        np.testing.assert_array_equal(states[states.run_id == rid]["state"].to_numpy(), path)
    counts = {}
    for _, g in states.groupby("run_id"):
        for a, b in itertools.pairwise(g["state"].to_numpy()):
            if a != b:
                counts[(int(a), int(b))] = counts.get((int(a), int(b)), 0) + 1
    assert {(t["from"], t["to"]): t["count"] for t in results["transitions"]} == counts
    conv = results["convergence"]["times"]
    table = state_correlations(decoded, [conv[r] for r in saved.run_ids], n_states=3)
    for s in results["detours"]["states"]:
        assert s["kind"] == table.loc[s["state"], "kind"]
        if s["r"] is not None:
            assert s["r"] == pytest.approx(table.loc[s["state"], "r"], rel=1e-12)
    selection = pd.read_csv(out / "selection.csv")
    assert len(selection) == 4 * 2 and set(selection["n_states"]) == {1, 2, 3, 4}
    # the extra files went in as given
    assert (out / "runs" / "run00.csv").read_bytes() == (out.parent / "runs" / "run00.csv").read_bytes()
    assert (out / "README.txt").read_bytes() == b"planted runs\n"


def test_html_and_figures(report):
    out, results, _ = report
    html = (out / "index.html").read_text()
    assert set(results["figures"]) == {"model_selection.png", "training_map.png", "timelines.png"}
    for f in results["figures"]:
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{f}"' in html
        assert "<svg" in (out / f.replace(".png", ".svg")).read_text()[:400]
    assert "a note" in html and results["selection"]["rule"] in html
    rid = results["runs"]["run_ids"][1]
    assert " → ".join(map(str, results["runs"]["visits"][rid])) in html
    top = results["drivers"][0]
    assert f"{top['from']} → {top['to']} ({top['n_occurrences']} occurrences)" in html


def test_bad_options_and_files_write_nothing(report, tmp_path):
    _, _, analysis = report
    with pytest.raises(TypeError, match=r"save: 'colour' is not an option for a DynamicsAnalysis report; it takes "
                                        r"title, summary, notes, max_timelines"):
        save(analysis, tmp_path / "a", colour="red")
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        save(analysis, tmp_path / "b", title="")
    with pytest.raises(TypeError, match="notes must be a sequence of strings"):
        save(analysis, tmp_path / "c", notes="one note")
    with pytest.raises(ValueError, match="max_timelines must be >= 1"):
        save(analysis, tmp_path / "d", max_timelines=0)
    with pytest.raises(ValueError, match=r"files: '\.\./x' must be a relative path inside the output directory"):
        save(analysis, tmp_path / "e", files={"../x": b""})
    with pytest.raises(ValueError, match=r"files\['x'\] must be bytes or an existing file"):
        save(analysis, tmp_path / "f", files={"x": tmp_path / "missing"})
    with pytest.raises(ValueError, match=r"'states\.csv' would replace a file of the report"):
        save(analysis, tmp_path / "g", files={"states.csv": b""})
    with pytest.raises(ValueError, match="formats: 'gif' is not a figure format"):
        save(analysis, tmp_path / "h", formats=("gif",))
    assert list(tmp_path.iterdir()) == []
