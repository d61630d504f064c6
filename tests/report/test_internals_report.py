"""The model-internals section: stand-alone report and the section inside the attribution report."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from featurelens.internals import InternalsSummary, summarize_internals
from featurelens.models import SmallTransformer
from featurelens.report import save_attribution_report, save_internals_report


@pytest.fixture(scope="module")
def summary() -> InternalsSummary:
    torch.manual_seed(0)
    model = SmallTransformer(4, hidden_dim=8, n_heads=2, n_layers=1, dropout=0.0).eval()
    x = torch.randn(60, 3, 4, generator=torch.Generator().manual_seed(1))
    return summarize_internals(model, x, groups={"age": [0, 1], "spurious": [2, 3]}, jacobian_rows=16)


def test_standalone_report(tmp_path, summary):
    out = tmp_path / "r"
    results = save_internals_report(out, internals=summary, summary={"rows": 60})
    assert sorted(p.name for p in out.iterdir()) == ["group_overlap.png", "index.html", "layers.png", "results.json"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    layers = on_disk["internals"]["layers"]
    assert [r["layer"] for r in layers] == list(summary.layers.index)
    assert layers[0]["effective_rank"] == pytest.approx(summary.layers["effective_rank"].iloc[0])
    m = on_disk["internals"]["overlap"]["input weights (input_proj)"]
    assert m["groups"] == ["age", "spurious"]
    assert m["matrix"][0][1] == pytest.approx(summary.overlap["input weights (input_proj)"].iloc[0, 1])
    html = (out / "index.html").read_text()
    for text in ("Model internals: representation per layer", "Input-group overlap", "Attention statistics",
                 "transformer_layers.0.self_attn", "group_overlap.png"):
        assert text in html


def test_section_in_attribution_report(tmp_path, summary, attribution):
    out = tmp_path / "a"
    res = save_attribution_report(out, title="t", explanations={"shap": attribution}, internals=summary)
    assert res["internals"]["overlap"].keys() == summary.overlap.keys()
    assert {"layers.png", "group_overlap.png"} <= set(res["figures"])
    assert "Input-group overlap" in (out / "index.html").read_text()
    plain = save_attribution_report(tmp_path / "b", title="t", explanations={"shap": attribution})
    assert plain["internals"] is None
    assert "Model internals" not in (tmp_path / "b" / "index.html").read_text()


def test_nan_values_become_null(tmp_path):
    layers = pd.DataFrame([{"layer": "l", "type": "Linear", "units": 2, "samples": 3, "effective_rank": 1.0,
                            "n_significant": 1, "participation_ratio": float("nan"), "compression_ratio": 1.0,
                            "spectral_decay": float("nan"), "interference": 0.5, "fraction_inactive": 0.0,
                            "dead_units": 0}]).set_index("layer")
    res = save_internals_report(tmp_path / "n", internals=InternalsSummary(layers=layers))
    assert res["internals"]["layers"][0]["participation_ratio"] is None
    assert res["internals"]["attention"] is None


def test_errors(tmp_path, summary, attribution):
    with pytest.raises(TypeError, match="internals must be an InternalsSummary"):
        save_internals_report(tmp_path / "x", internals={"layers": []})
    assert not (tmp_path / "x").exists()
    with pytest.raises(TypeError, match="internals must be an InternalsSummary"):
        save_attribution_report(tmp_path / "y", title="t", explanations={"shap": attribution}, internals=3)
    assert not (tmp_path / "y").exists()
    (tmp_path / "z").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        save_internals_report(tmp_path / "z", internals=summary)
    with pytest.raises(ValueError, match="title"):
        save_internals_report(tmp_path / "w", internals=summary, title=" ")
