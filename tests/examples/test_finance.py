"""The finance example end to end (quick size): numbers consistent, artifacts reusable by the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from featurelens.cli import main
from featurelens.examples.finance import finance_splits, run_finance_example
from featurelens.models import load_model

SEED = 0


def _scores(model, split):
    """Accuracy (logit >= 0 predicts 1) and sklearn's AUC of ``model`` on one split: independent of the audit."""
    with torch.no_grad():
        logits = model(torch.from_numpy(split.X)).reshape(-1).numpy()
    return {"accuracy": float(np.mean((logits >= 0) == (split.y == 1))), "auc": roc_auc_score(split.y, logits)}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("finance") / "run"
    return run_finance_example(out, quick=True, random_state=SEED)


def test_artifacts_and_sections(example):
    out = example.out
    assert sorted(p.name for p in out.iterdir()) == ["data.csv", "groups.json", "model.pt2", "report"]
    res = json.loads((out / "report" / "results.json").read_text())
    assert res == example.results
    for section in ("detection", "robustness", "interactions", "windows", "mitigation"):
        assert section in res, section
    assert {"detection.png", "robustness.png", "mitigation.png", "windows.png"} <= set(res["figures"])
    assert [r["group"] for r in res["detection"]["table"]] == ["technical", "calendar"]
    assert json.loads((out / "groups.json").read_text())["calendar"] == ["day_of_week", "month_end"]
    strategies = [r["strategy"] for r in res["mitigation"]]
    assert strategies[0] == "unmitigated" and set(strategies[1:]) == {"randomize", "adversarial", "orthogonal"}
    # the result is the audit the report was written from
    assert example.audit.mitigated_group == "calendar" and example.detection is example.audit.detection
    assert res["detection"]["table"] == example.audit.detection.to_dict()["table"]


def test_numbers_match_an_independent_recomputation(example):
    data = finance_splits(n_days=1200, calendar_effect=1.5, effect_share=0.75, lookback=5, random_state=SEED)
    summary = example.results["scores"]  # headline scores: results.json "scores"
    for part, key in (("in-distribution test", "test"), ("shifted test", "shifted")):
        scores = _scores(example.model, data["splits"][key])
        assert summary[f"{part} accuracy"] == pytest.approx(scores["accuracy"], abs=1e-12)
        assert summary[f"{part} auc"] == pytest.approx(scores["auc"], abs=1e-12)
    first = example.results["mitigation"][0]  # the unmitigated model, measured by evaluate_mitigations
    assert first["in_distribution"] == pytest.approx(summary["in-distribution test accuracy"], abs=1e-12)
    assert first["shifted"] == pytest.approx(summary["shifted test accuracy"], abs=1e-12)
    # the saved model is the trained one, untouched by the mitigations
    loaded = load_model(example.out / "model.pt2")
    x = torch.from_numpy(data["splits"]["shifted"].X)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), example.model(x), rtol=0, atol=0)


def test_the_anomaly_is_planted_and_learned(example):
    summary = example.results["scores"]
    # the calendar anomaly disappears in the shifted period: the model loses accuracy there
    assert summary["in-distribution test accuracy"] > summary["shifted test accuracy"]
    detection = pd.DataFrame(example.results["detection"]["table"]).set_index("group")
    assert detection.loc["calendar", "reliance_permutation"] > 0


def test_cli_reruns_on_the_artifacts(example, tmp_path):
    out = example.out
    code = main(["reliance", "--model", str(out / "model.pt2"), "--data", str(out / "data.csv"),
                 "--groups", str(out / "groups.json"), "--label", "next_day_up", "--lookback", "5",
                 "--environments", "year", "--perturbation", "gaussian", "--seed", str(SEED),
                 "--out", str(tmp_path / "cli"), "-q"])
    assert code == 0
    res = json.loads((tmp_path / "cli" / "results.json").read_text())
    sizes = [int(v) for v in example.results["summary"]["rows (train / validation / test / shifted)"].split(" / ")]
    n_windows = sizes[2] + sizes[3]  # the detector saw the test and the shifted windows
    assert res["summary"]["inputs"] == f"{n_windows} x [5, 5]"
    cli = pd.DataFrame(res["detection"]["table"]).set_index("group")
    ex = pd.DataFrame(example.results["detection"]["table"]).set_index("group")
    # same model, same windows (re-cut from the daily CSV), same environments and seed
    np.testing.assert_allclose(cli["probe_score"], ex["probe_score"], atol=1e-3)
    np.testing.assert_allclose(cli["reliance_permutation"], ex["reliance_permutation"], atol=2e-3)
