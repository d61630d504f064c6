"""The attribution report's files and numbers: results.json agrees with the explanations and the page."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featurelens._protocol import format_number
from featurelens.attribution import AttributionReport, Explanation
from featurelens.report import save

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GT = {"spurious_group": "spurious", "bias_strength": 0.8}


def save_report(out, explanations, *, dpi=50, **kwargs):
    """Save an AttributionReport of ``explanations``; returns results.json's content."""
    kwargs.setdefault("title", "t")
    save(AttributionReport(explanations, **kwargs), out, dpi=dpi)
    return json.loads((out / "results.json").read_text())


def _save(out, attribution, permutation, **kwargs):
    kwargs.setdefault("dpi", 50)
    return save_report(out, {"shap": attribution, "perm": permutation}, title="Test report", **kwargs)


def test_files_exist_and_pngs_are_valid(tmp_path, attribution, permutation, history):
    out = tmp_path / "rep"
    results = _save(out, attribution, permutation, ground_truth=GT, history=history,
                    summary={"samples": 200, "model": "MLP"}, dpi=110)
    expected = ["importance.png", "distribution.png", "permutation_repeats.png", "training.png"]
    assert results["figures"] == expected
    for name in expected:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 5000
    assert sorted(p.name for p in (out / "explanations").iterdir()) == ["perm.npz", "shap.npz"]
    assert json.loads((out / "results.json").read_text()) == results
    html = (out / "index.html").read_text()
    for name in expected:
        assert f'src="{name}"' in html
    assert html.count("<figcaption>") == len(expected)
    assert html.count('alt="') == len(expected)
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_results_json_numbers_equal_explanation_methods(tmp_path, attribution, permutation):
    _save(tmp_path / "rep", attribution, permutation)
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["format"] == "featurelens.report" and results["version"] == 1
    for key, expl in {"shap": attribution, "perm": permutation}.items():
        for section, series in [("importance", expl.importance()),
                                ("importance_normalized", expl.importance(normalize=True)),
                                ("std_error", expl.importance_std_error())]:
            got = results[section][key]
            assert set(got) == set(series.index)
            for name, value in series.items():
                assert got[name] == pytest.approx(float(value), rel=1e-12, abs=0)
    # report order: the first method's importance, descending
    assert results["players"] == ["spurious", "age", "income", "region"]
    assert list(results["importance"]["perm"]) == results["players"]


def test_every_importance_number_appears_in_html(tmp_path, attribution, permutation):
    results = _save(tmp_path / "rep", attribution, permutation, ground_truth=GT)
    html = (tmp_path / "rep" / "index.html").read_text()
    n = 0
    for section in ("importance", "importance_normalized", "std_error"):
        for values in results[section].values():
            for value in values.values():
                assert format_number(value) in html, (section, value)
                n += 1
    assert n == 3 * 2 * 4


def test_checks_rank_the_planted_group(tmp_path, attribution, permutation):
    results = _save(tmp_path / "a", attribution, permutation, ground_truth=GT)
    shares = attribution.importance(normalize=True)
    assert results["checks"]["shap"] == {"top": "spurious", "spurious_rank": 1,
                                         "spurious_share": pytest.approx(shares["spurious"])}
    assert results["checks"]["perm"]["spurious_rank"] == 1
    html = (tmp_path / "a" / "index.html").read_text()
    assert html.count('class="ok">yes') == 2
    assert format_number(results["checks"]["shap"]["spurious_share"]) in html

    # a group that is not the most important: ranks by hand from the fixture scales
    results = _save(tmp_path / "b", attribution, permutation, ground_truth={"spurious_group": "income"})
    assert results["checks"]["shap"]["top"] == "spurious"
    assert results["checks"]["shap"]["spurious_rank"] == 3
    assert results["checks"]["perm"]["spurious_rank"] == 3
    html = (tmp_path / "b" / "index.html").read_text()
    assert html.count('class="bad">no') == 2
    assert "ranks 3 of 4" in html
    assert 'class="planted"><th scope="row">income' in html


def test_ground_truth_without_planted_group_gives_empty_checks(tmp_path, attribution, permutation):
    results = _save(tmp_path / "rep", attribution, permutation, ground_truth={"spurious_group": None})
    assert results["checks"] == {}
    assert results["ground_truth"] == {"spurious_group": None}
    results = _save(tmp_path / "rep2", attribution, permutation)
    assert results["checks"] is None and results["ground_truth"] is None and results["training"] is None


def test_html_escapes_names_title_and_notes(tmp_path):
    rng = np.random.default_rng(3)
    names = ["<script>", "a&b", "plain"]
    expl = Explanation(rng.normal(size=(50, 3)) * [2.0, 1.0, 0.5], names=names, axes=("sample", "feature"),
                       method="ig")
    results = save_report(tmp_path / "rep", {"ig": expl}, title="<b>bold</b>",
                          notes=["<img src=x>"], ground_truth={"spurious_feature": "<script>"},
                          summary={"<i>label</i>": "<u>v</u>"})
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "<script" not in html and "<b>bold" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;" in html and "a&amp;b" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;i&gt;label&lt;/i&gt;" in html and "&lt;u&gt;v&lt;/u&gt;" in html
    assert results["checks"]["ig"]["top"] == "<script>"
    assert json.loads((tmp_path / "rep" / "results.json").read_text())["players"][0] == "<script>"


def test_training_history_and_best_epoch(tmp_path, attribution, permutation, history):
    results = _save(tmp_path / "rep", attribution, permutation, history=history)
    assert results["training"]["best_epoch"] == 5
    assert [r["epoch"] for r in results["training"]["history"]] == list(range(1, 9))
    assert results["training"]["history"][4]["val_loss"] == pytest.approx(0.48)
    html = (tmp_path / "rep" / "index.html").read_text()
    assert f"Best epoch {format_number(5)} of 8: validation loss {format_number(0.48)}" in html
    assert f"training loss {format_number(0.2)}" in html


def test_summary_table_numbers(tmp_path, attribution, permutation):
    summary = {"samples": 4000, "features": 60, "model": "SmallTransformer", "validation accuracy": 0.83125}
    results = _save(tmp_path / "rep", attribution, permutation, summary=summary)
    assert results["summary"] == summary
    html = (tmp_path / "rep" / "index.html").read_text()
    for label, value in summary.items():
        assert f'<th scope="row">{label}</th><td>{format_number(value)}</td>' in html


def test_explanations_are_saved_and_load_back(tmp_path, attribution, permutation):
    results = _save(tmp_path / "rep", attribution, permutation)
    assert results["explanations"]["shap"]["file"] == "explanations/shap.npz"
    assert results["explanations"]["shap"]["model_fingerprint"] == "m123"
    assert results["explanations"]["perm"]["n_repeats"] == 5
    back = Explanation.load(tmp_path / "rep" / "explanations" / "shap.npz")
    np.testing.assert_array_equal(back.values, attribution.values)
    back = Explanation.load(tmp_path / "rep" / "explanations" / "perm.npz")
    np.testing.assert_array_equal(back.scores, permutation.scores)


def test_output_axis_and_sequence_layouts(tmp_path, attribution):
    rng = np.random.default_rng(4)
    names = attribution.names
    multi = Explanation(rng.normal(size=(60, 4, 3)), names=names, axes=("sample", "group", "output"),
                        method="occlusion", target={"target": "all", "link": "softmax"})
    seq = Explanation(rng.normal(size=(60, 5, 4)), names=names, axes=("sample", "time", "group"),
                      method="saliency")
    results = save_report(tmp_path / "rep", {"occ": multi, "sal": seq})
    np.testing.assert_allclose([results["importance"]["occ"][n] for n in names],
                               multi.importance().mean(axis=1).to_numpy(), rtol=1e-12)
    per_sample = np.abs(multi.values).mean(axis=2)  # (sample, group)
    se = per_sample.std(axis=0, ddof=1) / np.sqrt(60)
    np.testing.assert_allclose([results["std_error"]["occ"][n] for n in names], se, rtol=1e-12)
    np.testing.assert_allclose([results["importance"]["sal"][n] for n in names], seq.importance().to_numpy())
    assert results["explanations"]["occ"]["reduction"] == "mean over 3 model outputs"
    assert results["explanations"]["sal"]["reduction"] is None
    assert results["figures"] == ["importance.png"]  # neither has (sample, group) values
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "For occ the importance is the mean over model outputs." in html


def test_distribution_skips_unsuitable_methods(tmp_path, attribution):
    rng = np.random.default_rng(5)
    seq = Explanation(rng.normal(size=(30, 5, 4)), names=attribution.names, axes=("sample", "time", "group"),
                      method="saliency")
    results = save_report(tmp_path / "rep", {"shap": attribution, "sal": seq})
    assert "distribution.png" in results["figures"]
    assert "Not drawn (no per-sample (sample, group) values): sal." in (tmp_path / "rep" / "index.html").read_text()


def test_nan_is_null_in_json_and_a_dash_in_html(tmp_path):
    values = np.random.default_rng(6).normal(size=(20, 3))
    values[:, 2] = np.nan
    expl = Explanation(values, names=["a", "b", "c"], axes=("sample", "feature"), method="ig")
    results = save_report(tmp_path / "rep", {"ig": expl}, ground_truth={"spurious_feature": "c"})
    text = (tmp_path / "rep" / "results.json").read_text()
    assert "NaN" not in text
    assert results["importance"]["ig"]["c"] is None and results["std_error"]["ig"]["c"] is None
    assert results["players"][-1] == "c"
    assert results["checks"]["ig"]["spurious_rank"] == 3
    assert results["importance_normalized"]["ig"]["a"] == pytest.approx(
        expl.importance()["a"] / expl.importance()[["a", "b"]].abs().sum())
    assert "<td class=\"num\">—</td>" in (tmp_path / "rep" / "index.html").read_text()


def test_rendering_is_deterministic(tmp_path, attribution, permutation, history):
    for name in ("a", "b"):
        _save(tmp_path / name, attribution, permutation, history=history, ground_truth=GT)
    for file in ("results.json", "index.html", "importance.png", "distribution.png", "permutation_repeats.png"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_one_explanation_saves_as_a_report_titled_after_its_method(tmp_path, attribution):
    save(attribution, tmp_path / "rep", dpi=50)
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["title"] == "featurelens: shap attributions"
    assert results["figures"] == ["importance.png", "distribution.png"]
    assert results["importance"]["shap"] == {k: pytest.approx(v) for k, v in attribution.importance().items()}
    assert (tmp_path / "rep" / "explanations" / "shap.npz").is_file()


def test_every_format_is_written_and_the_page_shows_the_png(tmp_path, attribution, permutation):
    save(AttributionReport({"shap": attribution, "perm": permutation}), tmp_path / "rep", formats=("pdf", "png", "svg"),
         dpi=40)
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    stems = ["importance", "distribution", "permutation_repeats"]
    assert results["figures"] == [f"{s}.{fmt}" for s in stems for fmt in ("pdf", "png", "svg")]
    assert (tmp_path / "rep" / "importance.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (tmp_path / "rep" / "importance.svg").read_bytes()[:400]
    html = (tmp_path / "rep" / "index.html").read_text()
    assert 'src="importance.png"' in html and ".pdf" not in html
    save(AttributionReport({"shap": attribution}), tmp_path / "pdf", formats=("pdf",), dpi=40)
    html = (tmp_path / "pdf" / "index.html").read_text()
    assert '<a href="importance.pdf">' in html and "<img" not in html
