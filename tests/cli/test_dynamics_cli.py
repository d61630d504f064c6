"""featurelens dynamics fit / explain: outputs, printed numbers, one-line errors that write nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from featurelens.cli import main
from featurelens.dynamics import GaussianHMM, explain_transition, read_saved_runs

MEANS = {"a": [-3.0, -3.0, 0.0], "b": [0.0, 3.0, 3.0], "c": [3.0, 0.0, -3.0]}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Ten runs through phases a -> b -> c, fitted once with K = 1..3 (diag, 2 restarts)."""
    base = tmp_path_factory.mktemp("dyncli")
    rng = np.random.default_rng(0)
    for r in range(10):
        cuts = np.sort(rng.choice(np.arange(8, 32), size=2, replace=False))
        phase = np.where(np.arange(40) < cuts[0], "a", np.where(np.arange(40) < cuts[1], "b", "c"))
        x = np.array([MEANS[p] for p in phase]) + rng.normal(scale=0.3, size=(40, 3))
        frame = pd.DataFrame(x, columns=["m0", "m1", "m2"])
        frame.insert(0, "step", np.arange(40) * 5)
        frame["val_accuracy"] = np.where(phase == "c", 0.95, 0.4)
        frame.to_csv(base / f"run{r}.csv", index=False)
    out = base / "fit"
    code = main(["dynamics", "fit", str(base / "run*.csv"), "--metrics", "m0,m1,m2", "--max-states", "3",
                 "--restarts", "2", "--covariance", "diag", "--states", "3", "--converge-column", "val_accuracy",
                 "--converge-threshold", "0.9", "--out", str(out), "--quiet"])
    assert code == 0
    return base, out


def test_fit_writes_models_table_figures_report(fitted):
    _, out = fitted
    results = json.loads((out / "results.json").read_text())
    assert sorted(p.name for p in (out / "models").iterdir()) == ["k1.npz", "k2.npz", "k3.npz"]
    assert results["model"]["file"] == "models/k3.npz" and results["selection"]["chosen"] == 3
    table = pd.read_csv(out / "selection.csv")
    assert len(table) == 3 * 2 and {"test_loglik", "aic", "bic"} <= set(table.columns)
    for f in ("index.html", "model_selection.png", "training_map.png", "states.csv", "runs.npz"):
        assert (out / f).is_file(), f
    # the three planted phases in order: two transitions per run
    assert sum(t["count"] for t in results["transitions"]) == 20
    assert len(results["runs"]["run_ids"]) == 10


def _expected(out, i, j):
    model = GaussianHMM.load(out / "models" / "k3.npz")
    runs = read_saved_runs(out / "runs.npz")
    return explain_transition(model, runs.sequences, i, j, feature_names=list(runs.metrics))


def test_explain_prints_the_table(fitted, capsys):
    _, out = fitted
    results = json.loads((out / "results.json").read_text())
    t = results["transitions"][0]
    i, j = t["from"], t["to"]
    capsys.readouterr()
    assert main(["dynamics", "explain", str(out), "--transition", str(i), str(j)]) == 0
    printed = capsys.readouterr().out
    expl = _expected(out, i, j)
    assert f"{expl.n_occurrences} occurrences" in printed and expl.n_occurrences == t["count"]
    lines = [line for line in printed.splitlines() if any(f in line for f in ("m0", "m1", "m2"))]
    assert [next(f for f in ("m0", "m1", "m2") if f in line) for line in lines] == list(expl.features)
    assert "μ_j − μ_i (z units)" in printed and "…" not in printed  # full width off a terminal
    for line, g, c in zip(lines, expl.mean_gradient, expl.mean_change, strict=True):
        assert f"{g:.4g}" in line and f"{c:.4g}" in line
    # the same through the model file (runs.npz found next to models/) and through --runs
    assert main(["dynamics", "explain", str(out / "models" / "k3.npz"), "--transition", str(i), str(j)]) == 0
    assert capsys.readouterr().out == printed
    base = out.parent
    assert main(["dynamics", "explain", str(out / "models" / "k3.npz"), "--transition", str(i), str(j),
                 "--runs", str(base / "run*.csv")]) == 0
    assert capsys.readouterr().out == printed
    # raw units: per run, the z-unit gradient divided by that run's std (features re-ranked)
    model = GaussianHMM.load(out / "models" / "k3.npz")
    runs = read_saved_runs(out / "runs.npz")
    raw = explain_transition(model, runs.sequences, i, j, units="raw", scale=list(runs.std))
    assert main(["dynamics", "explain", str(out), "--transition", str(i), str(j), "--units", "raw"]) == 0
    printed = capsys.readouterr().out
    assert "per raw unit" in printed
    lines = [line for line in printed.splitlines() if any(f in line for f in ("m0", "m1", "m2"))]
    for line, f, g in zip(lines, raw.features, raw.mean_gradient, strict=True):
        assert f in line and f"{g:.4g}" in line


def _fails(capsys, argv, match):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err
    assert "allow_pickle" not in err and "unpickl" not in err, err


def test_fit_errors_write_nothing(fitted, capsys, tmp_path):
    base, out = fitted
    new = tmp_path / "new"
    runs = str(base / "run*.csv")
    _fails(capsys, ["dynamics", "fit", runs, "--metrics", "m0,nope", "--out", str(new)], "missing column(s) 'nope'")
    _fails(capsys, ["dynamics", "fit", runs, "--metrics", "m0", "--covariance", "tied", "--out", str(new)],
           "--covariance must be one of")
    _fails(capsys, ["dynamics", "fit", runs, "--metrics", "m0", "--max-states", "0", "--out", str(new)],
           "1 <= min <= max")
    _fails(capsys, ["dynamics", "fit", runs, "--metrics", "m0", "--converge-column", "val_accuracy",
                    "--out", str(new)], "go together")
    _fails(capsys, ["dynamics", "fit", runs, "--metrics", "m0,,m1", "--out", str(new)], "comma-separated")
    for opt, cap in (("--max-states", "64"), ("--restarts", "1,000"), ("--iterations", "100,000")):
        _fails(capsys, ["dynamics", "fit", runs, "--metrics", "m0", opt, "1000000000000", "--out", str(new)],
               f"{opt} 1000000000000 exceeds the maximum of {cap}")
    _fails(capsys, ["dynamics", "fit", str(tmp_path / "none*.csv"), "--metrics", "m0", "--out", str(new)],
           "matches no file")
    assert not new.exists()
    _fails(capsys, ["dynamics", "fit", runs, "--metrics", "m0", "--out", str(out)], "already exists")


def test_explain_errors(fitted, capsys, tmp_path):
    _, out = fitted
    _fails(capsys, ["dynamics", "explain", str(out), "--transition", "0", "5"], "destination state 5 is not in 0..2")
    _fails(capsys, ["dynamics", "explain", str(out), "--transition", "1", "1"], "two different states")
    _fails(capsys, ["dynamics", "explain", str(tmp_path / "none.npz"), "--transition", "0", "1"], "does not exist")
    np.save(tmp_path / "plain.npy", np.arange(3))  # a .npy, not an .npz: numpy would advise unpickling it
    _fails(capsys, ["dynamics", "explain", str(tmp_path / "plain.npy"), "--transition", "0", "1"],
           "is not a featurelens GaussianHMM file: it is not an .npz (zip) archive")
    np.savez(tmp_path / "objects.npz", means=np.array([{"a": 1}], dtype=object))
    _fails(capsys, ["dynamics", "explain", str(tmp_path / "objects.npz"), "--transition", "0", "1"],
           "array 'means' holds Python objects, which featurelens never loads")
    _fails(capsys, ["dynamics", "explain", str(tmp_path), "--transition", "0", "1"], "has no results.json")
    lonely = tmp_path / "alone"
    lonely.mkdir()
    for f in (out / "models").iterdir():
        shutil.copy(f, lonely / f.name)
    _fails(capsys, ["dynamics", "explain", str(lonely / "k3.npz"), "--transition", "0", "1"], "no runs.npz")
    counts = {(t["from"], t["to"]) for t in json.loads((out / "results.json").read_text())["transitions"]}
    never = next((i, j) for i in range(3) for j in range(3) if i != j and (i, j) not in counts)
    _fails(capsys, ["dynamics", "explain", str(out), "--transition", str(never[0]), str(never[1])], "never occurs")
    _fails(capsys, ["dynamics", "explain", str(out), "--transition", "0", "1", "--step", "middle"],
           "--step must be one of")
    _fails(capsys, ["dynamics", "explain", str(out), "--transition", "0", "1", "--units", "log"],
           "--units must be one of")


def test_raw_units_refused_for_constant_columns(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for r in range(6):
        phase = np.arange(30) < rng.integers(10, 20)
        frame = pd.DataFrame({"step": np.arange(30), "m0": np.where(phase, -2.0, 2.0) + rng.normal(scale=0.2, size=30),
                              "flat": np.full(30, 1.5)})
        frame.to_csv(tmp_path / f"r{r}.csv", index=False)
    out = tmp_path / "fit"
    assert main(["dynamics", "fit", str(tmp_path / "r*.csv"), "--metrics", "m0,flat", "--min-states", "2",
                 "--max-states", "2", "--restarts", "1", "--covariance", "diag", "--out", str(out), "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["runs"]["constant_columns"] == {f"r{r}": ["flat"] for r in range(6)}
    t = results["transitions"][0]
    argv = ["dynamics", "explain", str(out), "--transition", str(t["from"]), str(t["to"])]
    assert main(argv) == 0
    _fails(capsys, [*argv, "--units", "raw"], "['flat'] are constant within a run")
