"""Tests for featurelens.reliance._report: the reliance HTML report and results.json."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from featurelens.reliance._report import FORMAT, save_reliance_report, write_reliance_report


def _detection() -> pd.DataFrame:
    return pd.DataFrame({
        "group": ["genuine", "<b>spurious</b>"],
        "reliance_permutation": [0.012, 0.2],
        "reliance_permutation_se": [0.004, 0.01],
        "relation_spread": [0.02, np.nan],
        "relied_upon": [False, True],
        "unstable": [False, True],
        "spurious": [False, True],
    })


def _robustness() -> pd.DataFrame:
    return pd.DataFrame({"perturbation": ["gaussian"] * 3 + ["pgd"] * 3, "strength": [0, 0.5, 1] * 2,
                         "metric": [0.9, 0.8, 0.7, 0.9, 0.5, 0.2], "std": [0, 0.01, 0.02, 0, 0, 0]})


def _matrix() -> pd.DataFrame:
    return pd.DataFrame([[0.0, 0.25], [0.25, 0.0]], index=["a", "b"], columns=["a", "b"])


def _mitigation() -> pd.DataFrame:
    return pd.DataFrame({"strategy": ["none", "group_dro"], "in_distribution": [0.9, 0.85],
                         "shifted": [0.5, 0.8], "reliance": [0.3, 0.05]})


def test_full_report_holds_every_number(tmp_path):
    evidence = {"<b>spurious</b>": {"reasons": ["permutation importance 0.2 > 0.01", "spread 0.3 >= 0.08"]}}
    detection = SimpleNamespace(table=_detection(), evidence=evidence,
                                thresholds=SimpleNamespace(to_dict=lambda: {"min_reliance": 0.01}))
    subgroups = pd.DataFrame({"insurance_type": ["private", "uninsured"], "n": [120, 30], "auc": [0.91, 0.77]})
    windows = pd.DataFrame({"window": [2015, 2016] * 2, "group": ["a", "a", "b", "b"],
                            "importance": [0.1, 0.2, 0.3, 0.05]})
    curves = {"gaussian": SimpleNamespace(table=_robustness().iloc[:3, 1:], auc=0.123, degradation_auc=0.045)}
    out = tmp_path / "report"
    res = save_reliance_report(
        out, title="Reliance <check>", detection=detection, robustness=curves,
        interactions={"ablation": _matrix()}, mitigation=_mitigation(), subgroups=subgroups,
        windows=windows, summary={"rows": 150, "model": "MLP"}, ground_truth={"spurious_group": "x"},
        notes=["a note"],
    )
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["index.html", "results.json", "detection.png", "robustness.png",
                            "interactions_ablation.png", "windows.png", "subgroups.png", "mitigation.png"])
    stored = json.loads((out / "results.json").read_text())
    assert stored == res and stored["format"] == FORMAT
    assert stored["detection"]["flagged"] == ["<b>spurious</b>"]
    assert stored["detection"]["table"][1]["reliance_permutation"] == 0.2
    assert stored["detection"]["table"][1]["relation_spread"] is None  # NaN -> null
    assert stored["detection"]["thresholds"] == {"min_reliance": 0.01}
    assert stored["robustness"]["summary"] == [{
        "perturbation": "gaussian", "mean metric over the strength range": 0.123,
        "mean degradation (area under the degradation curve / range)": 0.045}]
    assert [r["metric"] for r in stored["robustness"]["table"]] == [0.9, 0.8, 0.7]
    assert stored["interactions"]["ablation"]["a"]["b"] == 0.25
    assert stored["mitigation"][1]["shifted"] == 0.8
    assert stored["subgroups"][1] == {"insurance_type": "uninsured", "n": 30, "auc": 0.77}
    html = (out / "index.html").read_text()
    assert "&lt;b&gt;spurious&lt;/b&gt;" in html and "<b>spurious</b>" not in html  # escaped
    assert "Reliance &lt;check&gt;" in html
    assert "spread 0.3 &gt;= 0.08" in html and "0.123" in html and "0.77" in html
    assert html.count('class="planted"') == 1  # the flagged row is highlighted
    for f in stored["figures"]:
        assert f'src="{f}"' in html


def test_single_section_and_tidy_robustness(tmp_path):
    res = write_reliance_report(tmp_path, title="t", robustness=_robustness(), robustness_metric="accuracy")
    assert res["figures"] == ["robustness.png"]
    assert res["robustness"]["summary"] is None
    assert len(res["robustness"]["table"]) == 6
    assert "detection" not in res
    html = (tmp_path / "index.html").read_text()
    assert "<h2>Detection</h2>" not in html and "<h2>Robustness</h2>" in html
    assert "Line chart of accuracy against perturbation strength for gaussian, pgd." in html


def test_mitigation_with_other_columns(tmp_path):
    table = pd.DataFrame({"strategy": ["none", "jtt"], "acc_id": [0.9, 0.8], "acc_shift": [0.5, 0.7]})
    res = write_reliance_report(tmp_path, title="t", mitigation=table)
    assert res["mitigation"][1] == {"strategy": "jtt", "acc_id": 0.8, "acc_shift": 0.7}


def test_failure_leaves_nothing(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ValueError, match="lacks column"):
        save_reliance_report(out, title="t", robustness=_robustness(),
                             mitigation=pd.DataFrame({"name": ["x"], "v": [1.0]}))
    assert not out.exists() and list(tmp_path.iterdir()) == []
    save_reliance_report(out, title="first", robustness=_robustness())
    with pytest.raises(ValueError, match="already exists"):
        save_reliance_report(out, title="second", robustness=_robustness())
    save_reliance_report(out, title="second", robustness=_robustness(), force=True)
    assert json.loads((out / "results.json").read_text())["title"] == "second"


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({}, ValueError, "nothing to report"),
    ({"detection": _detection().drop(columns="relation_spread")}, ValueError,
     "detection lacks column.*'relation_spread'"),
    ({"detection": _detection().iloc[:0]}, ValueError, "detection is an empty table"),
    ({"detection": [1, 2]}, TypeError, "detection must be a pandas DataFrame"),
    ({"robustness": _robustness().drop(columns="strength")}, ValueError, "robustness lacks column.*'strength'"),
    ({"robustness": {}}, ValueError, "robustness is an empty mapping"),
    ({"interactions": pd.DataFrame([[0.0, 1.0]], index=["a"], columns=["a", "b"])}, ValueError,
     "must be a square group x group"),
    ({"windows": pd.DataFrame({"window": [1], "value": [0.1]})}, ValueError, "windows lacks column"),
    ({"subgroups": pd.DataFrame({"g": ["a"], "name": ["x"]})}, ValueError, "subgroups needs a numeric"),
    ({"robustness": _robustness(), "summary": [1]}, TypeError, "summary must be a mapping"),
    ({"robustness": _robustness(), "notes": "one"}, TypeError, "notes must be a sequence"),
    ({"robustness": _robustness(), "title": " "}, ValueError, "title must be a non-empty string"),
    ({"robustness": _robustness(), "dpi": 1}, ValueError, "dpi must be >= 10"),
])
def test_errors(tmp_path, kwargs, exc, match):
    kwargs = {"title": "t", **kwargs}
    with pytest.raises(exc, match=match):
        write_reliance_report(tmp_path, **kwargs)


def test_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        write_reliance_report(tmp_path / "nope", title="t", robustness=_robustness())
