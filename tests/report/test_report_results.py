"""Helpers behind the report: formatting, JSON conversion, ranks, units."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from featurelens.attribution._explanation import Explanation
from featurelens.report._results import (
    format_number,
    importance_label,
    jsonable,
    rank_of,
    ranked,
    unit_of,
)


@pytest.mark.parametrize(("value", "text"), [
    (0.123456, "0.1235"), (4000, "4000"), (np.int64(7), "7"), (np.float32(0.5), "0.5"),
    (1.5e-7, "1.5e-07"), (None, "—"), (float("nan"), "—"), (math.inf, "—"), (True, "True"), ("x", "x"),
])
def test_format_number(value, text):
    assert format_number(value) == text


def test_jsonable_converts_numpy_and_nan():
    got = jsonable({"a": np.float64(0.5), "b": np.arange(3), "c": (np.nan, 1), 3: np.bool_(True)})
    assert got == {"a": 0.5, "b": [0, 1, 2], "c": [None, 1], "3": True}
    assert type(got["a"]) is float and type(got["b"][0]) is int
    with pytest.raises(TypeError, match=r"params\['f'\] must be JSON-serialisable, got set"):
        jsonable({"f": {1}}, where="params")


def test_ranks_ties_and_nan():
    imp = pd.Series([0.2, 0.5, np.nan, 0.5, 0.1], index=list("abcde"))
    assert ranked(imp) == ["b", "d", "a", "e", "c"]
    assert [rank_of(imp, n) for n in "abcde"] == [3, 1, 5, 1, 4]


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
    import numpy as np

    from featurelens.attribution._explanation import Explanation
    from featurelens.report import write_attribution_report

    w = Explanation(None, names=["a", "b"], axes=("sample", "feature"), method="weights",
                    scores=np.array([[0.75, 0.25]]), params={"score_label": "share of first-layer |weight|"})
    results = write_attribution_report(tmp_path, title="t", explanations={"weights": w})
    assert "permutation_repeats.png" not in results["figures"]
    assert results["importance"]["weights"] == {"a": 0.75, "b": 0.25}
    assert "share of first-layer |weight|" in (tmp_path / "index.html").read_text()
