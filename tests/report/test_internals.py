"""The model-internals page and section: stand-alone report and the section inside the attribution report."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from featurelens.attribution import AttributionReport
from featurelens.internals import InternalsReport, InternalsSummary, summarize_internals
from featurelens.models import SmallTransformer
from featurelens.report import save


@pytest.fixture(scope="module")
def summary() -> InternalsSummary:
    torch.manual_seed(0)
    model = SmallTransformer(4, hidden_dim=8, n_heads=2, n_layers=1, dropout=0.0).eval()
    x = torch.randn(60, 3, 4, generator=torch.Generator().manual_seed(1))
    return summarize_internals(model, x, groups={"age": [0, 1], "spurious": [2, 3]}, jacobian_rows=16)


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_standalone_report(tmp_path, summary):
    out = tmp_path / "r"
    save(InternalsReport(summary, title="internals", summary={"rows": 60}), out)
    assert sorted(p.name for p in out.iterdir()) == ["group_overlap.png", "index.html", "layers.png", "results.json"]
    on_disk = _results(out)
    assert on_disk["title"] == "internals" and on_disk["summary"] == {"rows": 60}
    assert on_disk["figures"] == ["layers.png", "group_overlap.png"]
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


def test_a_bare_summary_gets_the_default_title(tmp_path, summary):
    save(summary, tmp_path / "r")
    assert _results(tmp_path / "r")["title"] == "featurelens internals report"


def test_section_in_attribution_report(tmp_path, summary, attribution):
    out = tmp_path / "a"
    save(AttributionReport({"shap": attribution}, internals=summary), out)
    res = _results(out)
    assert res["internals"]["overlap"].keys() == summary.overlap.keys()
    assert {"layers.png", "group_overlap.png"} <= set(res["figures"])
    assert "Input-group overlap" in (out / "index.html").read_text()
    save(AttributionReport({"shap": attribution}), tmp_path / "b")
    assert _results(tmp_path / "b")["internals"] is None
    assert "Model internals" not in (tmp_path / "b" / "index.html").read_text()


def test_single_token_attention_is_left_out_and_explained(tmp_path):
    """Regression: one token per row gave an attention table of zeros (entropy, max entropy, sparsity)."""
    torch.manual_seed(0)
    model = SmallTransformer(6, hidden_dim=8, n_heads=2, n_layers=1, dropout=0.0).eval()
    single = summarize_internals(model, torch.randn(40, 6), jacobian_rows=8)  # (n, d): a single token
    assert (single.attention["max_entropy"] == 0).all()
    save(single, tmp_path / "r")
    html = (tmp_path / "r" / "index.html").read_text()
    assert "entropy (nats)" not in html  # no table of zeros
    assert "each input is a single token" in html and "transformer_layers.0.self_attn" in html
    assert _results(tmp_path / "r")["internals"]["attention"] is not None  # the numbers stay in results.json


def test_nan_values_become_null(tmp_path):
    layers = pd.DataFrame([{"layer": "l", "type": "Linear", "units": 2, "samples": 3, "effective_rank": 1.0,
                            "n_significant": 1, "participation_ratio": float("nan"), "compression_ratio": 1.0,
                            "spectral_decay": float("nan"), "interference": 0.5, "fraction_inactive": 0.0,
                            "dead_units": 0}]).set_index("layer")
    save(InternalsSummary(layers=layers), tmp_path / "n")
    res = _results(tmp_path / "n")
    assert res["internals"]["layers"][0]["participation_ratio"] is None
    assert res["internals"]["attention"] is None


def test_errors(tmp_path, summary):
    with pytest.raises(TypeError, match="internals must be an InternalsSummary"):
        InternalsReport({"layers": []})
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        InternalsReport(summary, title=" ")
    with pytest.raises(TypeError, match=r"summary\['x'\] must be JSON-serialisable"):
        InternalsReport(summary, summary={"x": object()})
    (tmp_path / "z").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        save(summary, tmp_path / "z")
    assert list((tmp_path / "z").iterdir()) == []
