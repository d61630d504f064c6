"""AttributionReport: validation on construction, the numbers of to_dict, the protocol."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from featurelens.attribution import AttributionReport, Explanation
from featurelens.attribution._attribution_report import rank_of, ranked

GROUPS = ["age", "spurious", "income", "region"]


@pytest.fixture
def attribution() -> Explanation:
    values = np.random.default_rng(0).normal(size=(200, 4)) * np.array([1.0, 3.0, 0.5, 0.2])
    return Explanation(values, names=GROUPS, axes=("sample", "group"), method="shap",
                       target={"target": None, "link": "sigmoid"})


@pytest.fixture
def permutation() -> Explanation:
    scores = np.array([0.05, 0.30, 0.02, 0.0]) + np.random.default_rng(1).normal(scale=0.01, size=(5, 4))
    return Explanation(None, names=GROUPS, axes=("sample", "group"), method="permutation", scores=scores,
                       params={"metric": "auc", "n_repeats": 5})


def test_empty_explanations():
    with pytest.raises(ValueError, match="explanations is empty"):
        AttributionReport({})
    with pytest.raises(TypeError, match="explanations must be a mapping"):
        AttributionReport([1])


def test_different_names_names_the_methods(attribution):
    other = Explanation(np.ones((10, 3)), names=["age", "spurious", "zip"], axes=("sample", "group"), method="ig")
    with pytest.raises(ValueError, match=r"'shap' and 'ig'.*missing in 'ig': \['income', 'region'\].*\['zip'\]"):
        AttributionReport({"shap": attribution, "ig": other})


def test_bad_explanation_values_and_keys(attribution):
    with pytest.raises(TypeError, match=r"explanations\['shap'\] must be an Explanation, got dict"):
        AttributionReport({"shap": {}})
    with pytest.raises(ValueError, match="not a valid method name"):
        AttributionReport({"../evil": attribution})


def test_bad_history(attribution):
    with pytest.raises(ValueError, match=r"history is missing columns \['val_loss'\]"):
        AttributionReport({"shap": attribution}, history=pd.DataFrame({"epoch": [1], "train_loss": [1.0]}))
    with pytest.raises(ValueError, match="history has no rows"):
        AttributionReport({"shap": attribution}, history=pd.DataFrame(columns=["epoch", "train_loss", "val_loss"]))
    with pytest.raises(TypeError, match="history must be a pandas DataFrame"):
        AttributionReport({"shap": attribution}, history={"epoch": [1]})


def test_bad_ground_truth(attribution):
    with pytest.raises(ValueError, match=r"ground_truth\['spurious_group'\] = 'nope' is not among"):
        AttributionReport({"shap": attribution}, ground_truth={"spurious_group": "nope"})
    with pytest.raises(ValueError, match="must name the planted player"):
        AttributionReport({"shap": attribution}, ground_truth={"bias_strength": 0.8})
    with pytest.raises(TypeError, match="ground_truth must be a mapping"):
        AttributionReport({"shap": attribution}, ground_truth="spurious")


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"notes": "one note"}, TypeError, "notes must be a sequence of strings"),
    ({"title": " "}, ValueError, "title must be a non-empty string"),
    ({"summary": [("a", 1)]}, TypeError, "summary must be a mapping"),
    ({"summary": {"model": object()}}, TypeError, r"summary\['model'\] must be JSON-serialisable, got object"),
    ({"internals": 3}, TypeError, "internals must be an InternalsSummary"),
])
def test_bad_scalars(attribution, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        AttributionReport({"shap": attribution}, **kwargs)


def test_ranks_ties_and_nan():
    imp = pd.Series([0.2, 0.5, np.nan, 0.5, 0.1], index=list("abcde"))
    assert ranked(imp) == ["b", "d", "a", "e", "c"]
    assert [rank_of(imp, n) for n in "abcde"] == [3, 1, 5, 1, 4]


def test_to_dict_numbers_and_checks(attribution, permutation):
    report = AttributionReport({"shap": attribution, "perm": permutation}, ground_truth={"spurious_group": "income"})
    d = report.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["players"] == ["spurious", "age", "income", "region"]  # the first method's importance, descending
    imp = np.abs(attribution.values).mean(axis=0)
    assert [d["importance"]["shap"][g] for g in GROUPS] == pytest.approx(imp, rel=1e-12)
    assert [d["importance_normalized"]["shap"][g] for g in GROUPS] == pytest.approx(imp / imp.sum(), rel=1e-12)
    assert [d["importance"]["perm"][g] for g in GROUPS] == pytest.approx(permutation.scores.mean(axis=0))
    assert d["checks"]["shap"] == {"top": "spurious", "spurious_rank": 3,
                                   "spurious_share": pytest.approx(imp[2] / imp.sum())}
    assert report.planted == "income"


def test_to_frame_and_repr_html(attribution, permutation):
    report = AttributionReport({"shap": attribution, "perm": permutation})
    frame = report.to_frame()
    assert list(frame.index) == ["spurious", "age", "income", "region"] and list(frame.columns) == ["shap", "perm"]
    np.testing.assert_allclose(frame.loc[GROUPS, "perm"], permutation.scores.mean(axis=0))
    frame.iloc[0, 0] = -1.0  # a copy
    assert report.to_frame().iloc[0, 0] > 0
    html = report._repr_html_()
    assert "<caption>AttributionReport" in html and "<th>spurious</th>" in html
