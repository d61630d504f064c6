"""The digits dynamics example on a tiny configuration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from featurelens.cli import main
from featurelens.dynamics import METRIC_NAMES, convergence_time, weight_metrics
from featurelens.examples.dynamics import HIDDEN, THRESHOLD, run_dynamics_example
from featurelens.models import MLP


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("dynex") / "report"
    before = torch.random.get_rng_state()
    result = run_dynamics_example(out, n_runs=6, epochs=2, log_every=4, states=[1, 2], n_restarts=1,
                                  random_state=3)
    assert torch.equal(before, torch.random.get_rng_state())  # the global torch RNG is untouched
    return result


def test_runs_logged_every_few_steps_with_exact_initial_metrics(example):
    files = sorted((example.out / "runs").glob("*.csv"))
    assert [f.name for f in files] == [f"run_{r:02d}.csv" for r in range(6)]
    for r, f in enumerate(files):
        frame = pd.read_csv(f)
        # 1258 training rows in batches of 64: 20 steps per epoch, 2 epochs, a row every 4 steps and at 0
        assert frame["step"].tolist() == list(range(0, 41, 4))
        assert list(frame.columns[3:17]) == list(METRIC_NAMES)
        assert {"train_loss", "val_loss", "val_accuracy"} <= set(frame.columns)
        with torch.random.fork_rng():
            torch.manual_seed(3 + r)
            initial = MLP(64, HIDDEN, 10)
        ref = weight_metrics(initial)
        for k in METRIC_NAMES:
            assert frame.loc[0, k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9), k
        assert frame["val_accuracy"].iloc[-1] > frame["val_accuracy"].iloc[0]


def test_report_numbers(example):
    results = json.loads((example.out / "results.json").read_text())
    assert results == example.results
    assert len(results["runs"]["run_ids"]) == 6 and results["selection"]["chosen"] in (1, 2)
    assert set(pd.read_csv(example.out / "selection.csv")["n_states"]) == {1, 2}
    for rid, f in zip(results["runs"]["run_ids"], sorted((example.out / "runs").glob("*.csv")), strict=True):
        t, ok = convergence_time(pd.read_csv(f)["val_accuracy"], threshold=THRESHOLD)
        assert results["convergence"]["times"][rid] == t and results["convergence"]["converged"][rid] == ok
    assert (example.out / "index.html").is_file() and (example.out / "training_map.png").is_file()
    assert set(example.seconds) == {"training and logging", "HMM selection and analysis", "report"}
    assert np.isfinite(results["model"]["loglik_all_runs"])


def test_cli_refuses_existing_output(example, capsys):
    assert main(["example", "dynamics", "--quick", "--out", str(example.out)]) == 2
    assert "already exists" in capsys.readouterr().err
