"""The default demo end to end: the report shows the planted spurious group on top."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featurelens.attribution import Explanation
from featurelens.cli import main
from featurelens.examples import run_spurious_demo


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    code = main(["demo", "--out", str(out), "--n-samples", "12000", "--seed", "0", "--quiet"])
    assert code == 0
    return out


def test_demo_report_files(demo_dir):
    assert (demo_dir / "index.html").is_file()
    pngs = sorted(p.name for p in demo_dir.glob("*.png"))
    assert len(pngs) >= 3 and {"importance.png", "distribution.png"} <= set(pngs)
    for p in pngs:
        assert (demo_dir / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_report_shows_internals(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    section = results["internals"]
    layers = [r["layer"] for r in section["layers"]]
    assert layers[0] == "input_proj" and "transformer_layers.1" in layers
    assert all(0 < r["effective_rank"] <= r["units"] for r in section["layers"])
    overlap = section["overlap"]["input weights (input_proj)"]
    assert overlap["groups"][-1] == "spurious"
    m = np.array(overlap["matrix"])
    np.testing.assert_allclose(np.diag(m), 1.0)
    np.testing.assert_allclose(m, m.T, atol=1e-12)
    assert {"layers.png", "group_overlap.png"} <= set(results["figures"])
    html = (demo_dir / "index.html").read_text()
    assert "Model internals: representation per layer" in html and "Input-group overlap" in html


def test_demo_results_show_reliance_on_planted_group(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    truth = results["ground_truth"]
    assert truth == {"spurious_group": "spurious", "bias_strength": 0.8}
    for method in ("ablation", "permutation"):
        imp = results["importance"][method]
        assert set(imp) == {"spurious", *[f"genuine_{k}" for k in range(5)]}
        assert max(imp, key=imp.get) == truth["spurious_group"], method
        assert results["checks"][method]["spurious_rank"] == 1
    # the spurious group dominates, not merely leads
    abl = results["importance"]["ablation"]
    assert abl["spurious"] > 3 * max(v for k, v in abl.items() if k != "spurious")
    # evidence beyond attributions: accuracy falls to chance when the spurious link is broken
    summary = results["summary"]
    assert summary["test accuracy"] > 0.7
    assert summary["shifted test accuracy (spurious link broken)"] < 0.6


def test_demo_numbers_match_saved_explanations_and_page(demo_dir):
    results = json.loads((demo_dir / "results.json").read_text())
    html = (demo_dir / "index.html").read_text()
    for method, info in results["explanations"].items():
        e = Explanation.load(demo_dir / info["file"])
        imp = e.importance()
        for name, value in results["importance"][method].items():
            assert value == pytest.approx(imp[name], rel=1e-12)
        assert e.values.shape == (2400, 6)
    assert "reliance on a planted spurious feature group" in html
    assert "spurious" in html
    np.testing.assert_allclose(sum(results["importance_normalized"]["ablation"].values()), 1.0)


def test_demo_refuses_existing_directory_before_any_work(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        run_spurious_demo(tmp_path / "r")
    with pytest.raises(ValueError, match="bias_strength must be in"):
        run_spurious_demo(tmp_path / "s", bias_strength=1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
