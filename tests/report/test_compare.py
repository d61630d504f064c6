"""featurelens.report on a Comparison: the report files, the text tables and ComparisonDisplay."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from featurelens.compare import compare
from featurelens.models.pruning import magnitude_prune
from featurelens.report import ComparisonDisplay, comparison_text, save

NAMES = [f"f{i}" for i in range(6)]


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))


@pytest.fixture(scope="module")
def comparison():
    dense = _net(0)
    models = {"dense": dense, "ticket": magnitude_prune(dense, amount=0.75, layers=["0"]), "other": _net(1)}
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    return compare(models, x, feature_names=NAMES, methods=("weights", "integrated_gradients"), random_state=0)


def test_report_files(comparison, tmp_path):
    out = save(comparison, tmp_path / "report", formats=("pdf",), summary={"rows": 40}, dpi=40)
    names = sorted(p.name for p in out.iterdir())
    stems = ("importance", "difference", "weights", "sparsity")
    assert names == sorted(["index.html", "results.json", "tables",
                            *(f"{s}.{f}" for s in stems for f in ("png", "pdf"))])
    for s in stems:
        assert (out / f"{s}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        data = (out / f"{s}.pdf").read_bytes()
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    results = json.loads((out / "results.json").read_text())
    assert results["format"] == "featurelens.compare" and results["version"] == 1
    assert results["summary"] == {"rows": 40} and results["title"] == "featurelens: model comparison"
    assert {k: v for k, v in results.items() if k not in ("format", "version", "title", "summary", "figures")} == \
        comparison.to_dict()
    assert results["figures"] == sorted(f"{s}.{f}" for s in stems for f in ("png", "pdf"))
    for name in comparison.TABLES:
        pd.testing.assert_frame_equal(pd.read_csv(out / "tables" / f"{name}.csv"),
                                      getattr(comparison, name).reset_index(drop=True), check_dtype=False)
    html = (out / "index.html").read_text()
    assert "0.weight" in html and "Kendall" in html and 'src="difference.png"' in html and "rows" in html
    with pytest.raises(ValueError, match="already exists"):
        save(comparison, out)
    svg = save(comparison, tmp_path / "svg", formats=("svg", "png"), dpi=40)
    assert "<svg" in (svg / "weights.svg").read_text()[:400] and not (svg / "weights.pdf").exists()


def test_comparison_text(comparison):
    text = comparison_text(comparison)
    assert "importance share (weights; shares of each model sum to 1)" in text
    assert "largest shifts vs 'dense'" in text and "spearman" in text and "0.weight" in text
    shares = comparison.shares("weights")
    assert f"{shares.loc['f0', 'ticket']:.4g}" in text
    with pytest.raises(TypeError, match=r"comparison must be a featurelens\.compare\.Comparison"):
        comparison_text({})


def test_display_draws_the_shares_and_differences(comparison):
    shares = ComparisonDisplay.from_comparison(comparison, method="weights")
    bars = [p for p in shares.ax_.patches]
    assert len(bars) == len(NAMES) * 3
    heights = np.array([b.get_height() for b in bars]).reshape(3, len(NAMES))  # one model after the other
    np.testing.assert_allclose(heights, comparison.shares("weights").to_numpy().T, rtol=1e-12)
    diff = ComparisonDisplay.from_comparison(comparison, method="weights", kind="differences", models=["ticket"])
    widths = [p.get_width() for p in diff.ax_.patches]
    block = comparison.differences[(comparison.differences["method"] == "weights")
                                   & (comparison.differences["model"] == "ticket")]
    np.testing.assert_allclose(widths, block.set_index("feature").loc[NAMES, "difference"], rtol=1e-12)
    printed = {t.get_text() for t in diff.ax_.texts}
    assert {f"{v:+.3f}" for v in widths if abs(v) >= 0.01} == printed
    assert diff.ax_.get_title() == "weights: ticket − dense"
    ax = Figure().add_subplot()
    assert ComparisonDisplay.from_comparison(comparison, ax=ax).ax_ is ax


def test_display_errors(comparison):
    with pytest.raises(ValueError, match="kind must be one of 'shares', 'differences'"):
        ComparisonDisplay.from_comparison(comparison, kind="ratios")
    with pytest.raises(ValueError, match="models: 'dense' is not one of"):
        ComparisonDisplay.from_comparison(comparison, kind="differences", models=["dense"])
    with pytest.raises(ValueError, match="method must be one of"):
        ComparisonDisplay.from_comparison(comparison, method="saliency")
    with pytest.raises(TypeError, match=r"comparison must be a featurelens\.compare\.Comparison"):
        ComparisonDisplay.from_comparison({})
    with pytest.raises(TypeError, match="values must be a DataFrame"):
        ComparisonDisplay([1, 2], kind="shares", method="weights", reference="dense")


def test_save_refuses_unknown_results_and_options(comparison, tmp_path):
    with pytest.raises(TypeError, match=r"result: cannot save a dict; featurelens.report.save writes .*Comparison"):
        save({}, tmp_path / "a")
    with pytest.raises(TypeError,
                       match="save: 'notes' is not an option for a Comparison report; it takes title, summary"):
        save(comparison, tmp_path / "b", notes=["x"])
    with pytest.raises(TypeError, match="summary must be a mapping"):
        save(comparison, tmp_path / "c", summary=["rows"])
    with pytest.raises(ValueError, match="dpi must be >= 10"):
        save(comparison, tmp_path / "d", dpi=1)
    assert list(tmp_path.iterdir()) == []
