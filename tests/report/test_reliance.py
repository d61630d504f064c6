"""The reliance report (featurelens.report._reliance): page and results.json of a RelianceAudit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from featurelens.reliance import (
    MitigationTable,
    RelianceAudit,
    RobustnessCurve,
    SpuriousReport,
    Thresholds,
)
from featurelens.report import save
from featurelens.report._reliance import FORMAT


def _detection(table: pd.DataFrame | None = None, evidence: dict | None = None) -> SpuriousReport:
    table = pd.DataFrame({
        "group": ["genuine", "<b>spurious</b>"],
        "reliance_permutation": [0.012, 0.2],
        "reliance_permutation_se": [0.004, 0.01],
        "relation_spread": [0.02, np.nan],
        "relied_upon": [False, True],
        "unstable": [False, True],
        "spurious": [False, True],
    }) if table is None else table
    return SpuriousReport(table, evidence or {}, Thresholds(), "user", "auc", "auc")


def _robustness() -> pd.DataFrame:
    return pd.DataFrame({"perturbation": ["gaussian"] * 3 + ["pgd"] * 3, "strength": [0, 0.5, 1] * 2,
                         "metric": [0.9, 0.8, 0.7, 0.9, 0.5, 0.2], "std": [0, 0.01, 0.02, 0, 0, 0]})


def _matrix(names=("a", "b")) -> pd.DataFrame:
    return pd.DataFrame([[0.0, 0.25], [0.25, 0.0]], index=list(names), columns=list(names))


def _mitigation() -> pd.DataFrame:
    return pd.DataFrame({"strategy": ["none", "group_dro"], "in_distribution": [0.9, 0.85],
                         "shifted": [0.5, 0.8], "reliance": [0.3, 0.05]})


def _save(tmp_path, audit, name="report"):
    out = tmp_path / name
    save(audit, out, dpi=50)
    return out, json.loads((out / "results.json").read_text()), (out / "index.html").read_text()


def test_full_report_holds_every_number(tmp_path):
    evidence = {"<b>spurious</b>": {"reasons": ["permutation importance 0.2 > 0.01", "spread 0.3 >= 0.08"]}}
    subgroups = pd.DataFrame({"insurance_type": ["private", "uninsured"], "n": [120, 30], "auc": [0.91, 0.77]})
    windows = pd.DataFrame({"window": [2015, 2016] * 2, "group": ["a", "a", "b", "b"],
                            "importance": [0.1, 0.2, 0.3, 0.05]})
    audit = RelianceAudit(
        _detection(evidence=evidence), robustness=_robustness(), interactions={"groups": _matrix()},
        mitigation=_mitigation(), mitigated_group="<b>spurious</b>", subgroups=subgroups, windows=windows,
        title="Reliance <check>", summary={"rows": 150, "model": "MLP"}, ground_truth={"spurious_group": "x"},
        notes=("a note",), scores={"shifted accuracy": 0.61},
    )
    out, stored, html = _save(tmp_path, audit)
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["index.html", "results.json", "detection.png", "robustness.png",
                            "interactions_groups.png", "windows.png", "subgroups.png", "mitigation.png"])
    assert stored["format"] == FORMAT
    assert stored["detection"]["flagged"] == ["<b>spurious</b>"]
    assert stored["detection"]["table"][1]["reliance_permutation"] == 0.2
    assert stored["detection"]["table"][1]["relation_spread"] is None  # NaN -> null
    assert stored["detection"]["thresholds"] == Thresholds().to_dict()
    assert [r["metric"] for r in stored["robustness"]["table"]] == [0.9, 0.8, 0.7, 0.9, 0.5, 0.2]
    assert stored["interactions"]["groups"]["a"]["b"] == 0.25
    assert stored["mitigation"][1]["shifted"] == 0.8 and stored["mitigated_group"] == "<b>spurious</b>"
    assert stored["subgroups"][1] == {"insurance_type": "uninsured", "n": 30, "auc": 0.77}
    assert stored["scores"] == {"shifted accuracy": 0.61}
    assert "&lt;b&gt;spurious&lt;/b&gt;" in html and "<b>spurious</b>" not in html  # escaped
    assert "Reliance &lt;check&gt;" in html
    assert "spread 0.3 &gt;= 0.08" in html and "0.77" in html and "0.61" in html
    assert html.count('class="planted"') == 1  # the flagged row is highlighted
    for f in stored["figures"]:
        assert f'src="{f}"' in html


def test_robustness_curves_by_name_get_their_areas(tmp_path):
    real = {k: RobustnessCurve(k, "accuracy", True, part.drop(columns="perturbation").reset_index(drop=True),
                               clean=0.9, auc=auc, degradation_auc=0.9 - auc, perturbed=["a"])
            for (k, part), auc in zip(_robustness().groupby("perturbation", sort=False), (0.8, 0.5), strict=True)}
    _, stored, html = _save(tmp_path, RelianceAudit(_detection(), robustness=real, robustness_metric="accuracy"))
    assert stored["robustness"]["summary"] == [
        {"perturbation": "gaussian", "mean metric over the strength range": 0.8,
         "mean degradation (area under the degradation curve / range)": pytest.approx(0.1)},
        {"perturbation": "pgd", "mean metric over the strength range": 0.5,
         "mean degradation (area under the degradation curve / range)": pytest.approx(0.4)}]
    assert "Line chart of accuracy against perturbation strength for gaussian, pgd." in html


def test_detection_table_has_readable_headers(tmp_path):
    """Regression: the detection table showed raw snake_case column names."""
    _, stored, html = _save(tmp_path, _detection())
    assert "<h2>Robustness</h2>" not in html and "<h2>Detection</h2>" in html
    assert '<th scope="col">reliance (permutation)</th>' in html and '<th scope="col">relied upon</th>' in html
    assert "reliance_permutation" not in html.split("<h2>Detection</h2>")[1]
    assert "reliance_permutation" in stored["detection"]["table"][0]  # results.json keeps the names


def test_interactions_table_is_headed_by_what_it_holds(tmp_path):
    """Regression: a feature x feature matrix was headed "group"."""
    features = _matrix(("day_of_week", "f1"))
    _, stored, html = _save(tmp_path, RelianceAudit(_detection(), interactions={"ablation": features,
                                                                                  "groups": _matrix(("genuine", "x"))}))
    part = html.split("<h2>Interactions</h2>")[1]
    assert "Pairwise interactions between features (ablation)" in part
    assert '<th scope="col">feature</th><th scope="col">day_of_week</th>' in part  # names are not reworded
    assert '<th scope="col">group</th><th scope="col">genuine</th>' in part
    assert "Rows and columns are features." in part and "Rows and columns are groups." in part
    assert set(stored["interactions"]) == {"ablation", "groups"}


def test_mitigation_section_names_the_mitigated_group(tmp_path):
    """Regression: the mitigation section did not say which group was mitigated."""
    table = MitigationTable(_mitigation(), models={}, results={}, metric="accuracy", suspect="calendar")
    _, stored, html = _save(tmp_path, RelianceAudit(_detection(), mitigation=table))
    assert stored["mitigated_group"] == "calendar"
    part = html.split("<h2>Mitigation (before / after)</h2>")[1]
    assert 'Mitigated group: <span class="spurious">calendar</span>' in part
    assert "reliance on &#39;calendar&#39;" in part  # the figure's alt text names the panel


def test_mitigation_with_other_columns(tmp_path):
    table = pd.DataFrame({"strategy": ["none", "jtt"], "acc_id": [0.9, 0.8], "acc_shift": [0.5, 0.7]})
    _, stored, html = _save(tmp_path, RelianceAudit(_detection(), mitigation=table))
    assert stored["mitigation"][1] == {"strategy": "jtt", "acc_id": 0.8, "acc_shift": 0.7}
    assert stored["mitigated_group"] is None and "does not name the group" in html


def test_failure_leaves_nothing(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ValueError, match="lacks column"):
        save(RelianceAudit(_detection(), mitigation=pd.DataFrame({"name": ["x"], "v": [1.0]})), out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    save(RelianceAudit(_detection(), title="first"), out)
    with pytest.raises(ValueError, match="already exists"):
        save(RelianceAudit(_detection(), title="second"), out)
    save(RelianceAudit(_detection(), title="second"), out, force=True)
    assert json.loads((out / "results.json").read_text())["title"] == "second"


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"detection": _detection().to_frame()}, TypeError, "detection must be a SpuriousReport"),
    ({"detection": _detection(_detection().to_frame().drop(columns="relation_spread"))}, ValueError,
     "detection lacks column.*'relation_spread'"),
    ({"detection": _detection(_detection().to_frame().iloc[:0])}, ValueError, "detection is an empty table"),
    ({"robustness": _robustness().drop(columns="strength")}, ValueError, "robustness lacks column.*'strength'"),
    ({"robustness": {}}, ValueError, "robustness is an empty mapping"),
    ({"robustness": [1]}, TypeError, "robustness must be a mapping of name to RobustnessCurve"),
    ({"interactions": pd.DataFrame([[0.0, 1.0]], index=["a"], columns=["a", "b"])}, ValueError,
     "must be square with the same row and column labels"),
    ({"windows": pd.DataFrame({"window": [1], "value": [0.1]})}, ValueError, "windows lacks column"),
    ({"subgroups": pd.DataFrame({"g": ["a"], "name": ["x"]})}, ValueError, "subgroups needs a numeric"),
    ({"summary": [1]}, TypeError, "summary must be a mapping"),
    ({"notes": "one"}, TypeError, "notes must be a sequence"),
    ({"title": " "}, ValueError, "title must be a non-empty string"),
])
def test_errors(tmp_path, kwargs, exc, match):
    kwargs = {"detection": _detection(), **kwargs}
    with pytest.raises(exc, match=match):
        save(RelianceAudit(**kwargs), tmp_path / "r")
    assert list(tmp_path.iterdir()) == []
