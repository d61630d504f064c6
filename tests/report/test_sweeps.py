"""featurelens.report on a SweepResult: the CSV tables, results.json, the page and SweepDisplay."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from featurelens.internals import SweepResult
from featurelens.report import SweepDisplay, save


def _capacity() -> SweepResult:
    rows = [{"n_groups": g, "hidden_dim": h, "n_features": 4 * g, "features_per_dim": 4 * g / h,
             "overlap_mean": 1.0 / h, "overlap_max": 2.0 / h, "effective_rank": h / 2, "interference": 0.1,
             "encoder_effective_rank": h / 3, "encoder_interference": 0.2, "rank_per_group": h / (2 * g),
             "test_accuracy": 0.5 + 0.01 * h} for g in (2, 3) for h in (4, 8, 16)]
    return SweepResult("capacity", pd.DataFrame(rows), None, {"n_groups": [2, 3], "hidden_dims": [4, 8, 16]})


def _scale() -> SweepResult:
    table = pd.DataFrame([{"width": w, "depth": d, "effective_rank": w / d, "interference": 0.1 * d,
                           "head_diversity": 0.3, "test_accuracy": 0.7, "parameters": 100 * w * d}
                          for w in (8, 16) for d in (1, 2)])
    layers = pd.DataFrame([{"width": w, "depth": d, "layer": i, "effective_rank": w / d} for w in (8, 16)
                           for d in (1, 2) for i in range(d)])
    return SweepResult("scale", table, layers, {"widths": [8, 16], "depths": [1, 2]})


def test_capacity_report(tmp_path):
    result = _capacity()
    out = save(result, tmp_path / "cap", dpi=40)
    results = json.loads((out / "results.json").read_text())
    assert results == {**result.to_dict(), "files": ["capacity.csv", "capacity.png"]}
    pd.testing.assert_frame_equal(pd.read_csv(out / "capacity.csv"), result.table)
    assert (out / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "index.html").read_text()
    assert 'src="capacity.png"' in html and "overlap_mean" in html and "4, 8, 16" in html


def test_scale_report_with_layers_and_pdf(tmp_path):
    result = _scale()
    out = save(result, tmp_path / "scale", formats=("pdf",), dpi=40)
    results = json.loads((out / "results.json").read_text())
    assert results["files"] == ["scale.csv", "scale_layers.csv", "scale.png", "scale.pdf"]
    assert results["layers"] == result.layers.to_dict(orient="records")
    assert (out / "scale.pdf").read_bytes()[:5] == b"%PDF-"


def test_display_lines_are_the_table():
    result = _capacity()
    display = SweepDisplay.from_result(result)
    assert len(display.axes_) == 3
    lines = display.axes_[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["n_groups=2", "n_groups=3"]
    for ln, g in zip(lines, (2, 3), strict=True):
        part = result.table[result.table["n_groups"] == g].sort_values("hidden_dim")
        np.testing.assert_array_equal(ln.get_xdata(), part["hidden_dim"])
        np.testing.assert_array_equal(ln.get_ydata(), part["overlap_mean"])
    assert display.axes_[0].get_xscale() == "log"
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert SweepDisplay.from_result(result, ax=axes).figure_ is fig


def test_display_errors():
    with pytest.raises(ValueError, match="ax must hold 3 Axes for a capacity sweep, got 1"):
        SweepDisplay.from_result(_capacity(), ax=Figure().add_subplot())
    with pytest.raises(ValueError, match="kind must be one of"):
        SweepDisplay(pd.DataFrame(), kind="depth")
    with pytest.raises(ValueError, match=r"table is missing column\(s\) \['overlap_mean'\] of a capacity sweep"):
        SweepDisplay(_capacity().table.drop(columns="overlap_mean"), kind="capacity")
    with pytest.raises(TypeError, match="result must be a featurelens"):
        SweepDisplay.from_result({})
