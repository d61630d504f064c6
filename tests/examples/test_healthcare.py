"""The healthcare example end to end (quick size): the planted shortcut is found, numbers consistent."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from featurelens.cli import main
from featurelens.examples.healthcare import healthcare_splits, run_healthcare_example
from featurelens.models import load_model

SEED = 0


def _scores(model, split):
    """Accuracy (logit >= 0 predicts 1) and sklearn's AUC of ``model`` on one split: independent of the audit."""
    with torch.no_grad():
        logits = model(torch.from_numpy(split.X)).reshape(-1).numpy()
    return {"accuracy": float(np.mean((logits >= 0) == (split.y == 1))), "auc": roc_auc_score(split.y, logits)}


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("healthcare") / "run"
    return run_healthcare_example(out, quick=True, random_state=SEED)


@pytest.fixture(scope="module")
def data():
    return healthcare_splits(n_patients=800, n_shifted=300, n_visits=10, shortcut=0.8, random_state=SEED)


def test_artifacts_and_sections(example):
    out = example.out
    assert sorted(p.name for p in out.iterdir()) == ["data.csv", "groups.json", "model.pt2", "report"]
    res = example.results
    for section in ("detection", "robustness", "interactions", "subgroups", "mitigation"):
        assert section in res, section
    assert [r["group"] for r in res["detection"]["table"]] == ["clinical", "administrative"]
    visits = pd.read_csv(out / "data.csv")
    assert len(visits) == (160 + 300) * 10  # test patients (20 % of 800) and the new hospital's, 10 visits each
    assert (visits.groupby("patient_id")["outcome"].nunique() == 1).all()


def test_shortcut_is_flagged_and_costs_accuracy_on_the_new_hospital(example):
    summary = example.results["scores"]  # headline scores: results.json "scores"
    assert summary["in-distribution test accuracy"] > summary["shifted test accuracy"] + 0.05
    detection = pd.DataFrame(example.results["detection"]["table"]).set_index("group")
    assert detection.loc["administrative", "relied_upon"]
    assert example.results["detection"]["flagged"] == ["administrative"]  # relied upon and unstable
    assert not detection.loc["clinical", "unstable"]


def test_subgroup_auc_matches_sklearn(example, data):
    splits = data["splits"]
    X = torch.from_numpy(np.concatenate([splits["test"].X, splits["shifted"].X]))
    y = np.concatenate([splits["test"].y, splits["shifted"].y])
    with torch.no_grad():
        p = torch.sigmoid(example.model(X)).numpy()
    labels = np.array([f"{s} ({e})" for s, e in zip(data["subgroups"], data["environments"], strict=True)])
    table = pd.DataFrame(example.results["subgroups"]).set_index("insurance type")
    for name, row in table.drop(index="(all)").iterrows():
        sel = labels == name
        assert row["n"] == sel.sum()
        assert row["auc"] == pytest.approx(roc_auc_score(y[sel], p[sel]), abs=1e-9)
    assert table.loc["(all)", "auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)


def test_numbers_and_saved_model(example, data):
    summary = example.results["scores"]
    scores = _scores(example.model, data["splits"]["shifted"])
    assert summary["shifted test accuracy"] == pytest.approx(scores["accuracy"], abs=1e-12)
    assert example.results["mitigation"][0]["shifted"] == pytest.approx(scores["accuracy"], abs=1e-12)
    loaded = load_model(example.out / "model.pt2")
    x = torch.from_numpy(data["splits"]["test"].X)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), example.model(x), rtol=0, atol=0)


def test_cli_reruns_on_the_artifacts(example, tmp_path):
    out = example.out
    code = main(["reliance", "--model", str(out / "model.pt2"), "--data", str(out / "data.csv"),
                 "--groups", str(out / "groups.json"), "--label", "outcome", "--sequence-id", "patient_id",
                 "--environments", "hospital", "--perturbation", "gaussian", "--seed", str(SEED),
                 "--out", str(tmp_path / "cli"), "-q"])
    assert code == 0
    res = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert res["summary"]["inputs"] == "460 x [10, 12]"
    cli = pd.DataFrame(res["detection"]["table"]).set_index("group")
    ex = pd.DataFrame(example.results["detection"]["table"]).set_index("group")
    np.testing.assert_allclose(cli["probe_score"], ex["probe_score"], atol=1e-6)
    np.testing.assert_allclose(cli["reliance_permutation"], ex["reliance_permutation"], atol=1e-6)
    assert res["detection"]["flagged"] == example.results["detection"]["flagged"]
