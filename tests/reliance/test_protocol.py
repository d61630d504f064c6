"""The result protocol of the reliance results: to_frame (a copy of the main table), to_dict (JSON), _repr_html_."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from featurelens.reliance import (
    Mitigated,
    MitigationTable,
    ProbeResult,
    RobustnessCurve,
    SpuriousReport,
    SuiteResult,
    Thresholds,
    WindowImportance,
)

DETECTION = pd.DataFrame({"group": ["a", "b"], "reliance_permutation": [0.01, np.nan], "spurious": [False, True]})


def _results():
    report = SpuriousReport(DETECTION.copy(), {"b": {"reasons": ["x"]}}, Thresholds(), "user", "auc", "auc")
    curve = RobustnessCurve("pgd", "accuracy", True, pd.DataFrame({"strength": [0.0, 1.0], "metric": [0.9, 0.4]}),
                            clean=0.9, auc=0.65, degradation_auc=0.25, perturbed=["f0"])
    mitigation = MitigationTable(pd.DataFrame({"strategy": ["unmitigated", "dro"], "shifted": [0.5, 0.8]}),
                                 models={}, results={}, metric="accuracy", suspect="b")
    windows = WindowImportance(pd.DataFrame({"window": [0, 1], "group": ["a", "a"], "importance": [0.1, 0.2]}),
                               pd.DataFrame({"group": ["a"], "mean": [0.15]}))
    probe = ProbeResult(0.75, "auc", np.array([0.1, np.nan, 0.3]), np.array([0.7, 0.8]))
    suite = SuiteResult(pd.DataFrame({"case": ["c"], "group": ["a"], "truth": [True], "spurious": [True]}), 0.9,
                        [("c", "a")], {"c": report})
    mitigated = Mitigated(model=None, strategy="dro", options={"eta": 0.1},
                          history=pd.DataFrame({"epoch": [1, 2], "loss": [0.5, 0.4]}), environments=np.array([0, 1]))
    return {"report": (report, DETECTION), "curve": (curve, curve.table), "mitigation": (mitigation, mitigation.table),
            "windows": (windows, windows.table), "suite": (suite, suite.table),
            "mitigated": (mitigated, mitigated.history),
            "probe": (probe, pd.DataFrame({"fold": [0, 1], "auc": [0.7, 0.8]}))}


@pytest.mark.parametrize("kind", ["report", "curve", "mitigation", "windows", "suite", "mitigated", "probe"])
def test_protocol(kind):
    result, table = _results()[kind]
    frame = result.to_frame()
    pd.testing.assert_frame_equal(frame, table, check_dtype=False)
    frame.columns = [f"renamed_{i}" for i in range(frame.shape[1])]
    frame["added"] = 1
    pd.testing.assert_frame_equal(result.to_frame(), table, check_dtype=False)  # to_frame gave a copy
    d = result.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    html = result._repr_html_()
    assert html.startswith("<table><caption>") and f"<caption>{type(result).__name__}" in html


def test_to_dict_content():
    r = _results()
    assert r["report"][0].to_dict()["table"][1]["reliance_permutation"] is None
    assert r["curve"][0].to_dict()["auc"] == 0.65 and r["curve"][0].to_dict()["table"][1]["metric"] == 0.4
    assert r["mitigation"][0].to_dict() == {"metric": "accuracy", "suspect": "b",
                                             "table": [{"strategy": "unmitigated", "shifted": 0.5},
                                                       {"strategy": "dro", "shifted": 0.8}]}
    assert r["probe"][0].to_dict()["oof"] == [0.1, None, 0.3]
    suite = r["suite"][0].to_dict()
    assert suite["flagged_at_zero_bias"] == [["c", "a"]] and suite["reports"]["c"]["environments"] == "user"
    assert r["mitigated"][0].to_dict()["environments"] == [0, 1]

