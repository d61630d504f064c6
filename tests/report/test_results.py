"""Labels of the attribution report (units, what importance measures) and results.json's assembly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featurelens.attribution import Explanation
from featurelens.report import save
from featurelens.report._results import importance_label, unit_of


@pytest.mark.parametrize(("link", "unit"), [
    ("sigmoid", "probability"), ("softmax", "probability"), ("logit", "log-odds"),
    ("identity", "model output"), (None, "model output"),
])
def test_units_from_link(link, unit):
    expl = Explanation(np.ones((2, 1)), names=["a"], axes=("sample", "feature"), method="ig",
                       target={"link": link})
    assert unit_of(expl) == unit
    assert importance_label(expl) == f"mean |attribution| ({unit})"
    perm = Explanation(None, names=["a"], axes=("sample", "feature"), method="permutation",
                       scores=np.ones((2, 1)), params={"metric": "auc"})
    assert importance_label(perm) == "auc degradation when permuted (auc units)"


def test_single_row_scores_use_their_label_and_get_no_repeats_figure(tmp_path):
    w = Explanation(None, names=["a", "b"], axes=("sample", "feature"), method="weights",
                    scores=np.array([[0.75, 0.25]]), params={"score_label": "share of first-layer |weight|"})
    save(w, tmp_path / "rep")
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert "permutation_repeats.png" not in results["figures"]
    assert results["importance"]["weights"] == {"a": 0.75, "b": 0.25}
    assert "share of first-layer |weight|" in (tmp_path / "rep" / "index.html").read_text()
