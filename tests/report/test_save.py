"""``featurelens.report.save``: dispatch, validation before any work, all-or-nothing output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import featurelens.report._attribution as attribution_mod
import featurelens.report._figures as figures_mod
from featurelens.attribution import AttributionReport, Explanation
from featurelens.report import WRITERS, check_formats, save


def _boom(*args, **kwargs):
    raise RuntimeError("boom while rendering")


@pytest.mark.parametrize("target", [
    (figures_mod, "write_figure"),
    (attribution_mod, "render_page"),
    (Explanation, "save"),
])
def test_failure_leaves_nothing_behind(tmp_path, monkeypatch, attribution, permutation, target):
    monkeypatch.setattr(*target, _boom)
    with pytest.raises(RuntimeError, match="boom while rendering"):
        save(AttributionReport({"shap": attribution, "perm": permutation}), tmp_path / "rep", dpi=50)
    assert os.listdir(tmp_path) == []


def test_failure_with_force_keeps_the_old_report(tmp_path, monkeypatch, attribution):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.txt").write_text("old")
    monkeypatch.setattr(attribution_mod, "render_page", _boom)
    with pytest.raises(RuntimeError, match="boom"):
        save(attribution, out, force=True, dpi=50)
    assert os.listdir(tmp_path) == ["rep"]
    assert os.listdir(out) == ["old.txt"]


def test_existing_directory_needs_force(tmp_path, attribution):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(ValueError, match="already exists"):
        save(attribution, out, dpi=50)
    assert os.listdir(out) == ["old.txt"]
    assert save(attribution, out, force=True, dpi=50) == out
    assert not (out / "old.txt").exists()
    assert (out / "index.html").is_file()
    assert os.listdir(tmp_path) == ["rep"]


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"formats": ("png", "gif")}, ValueError, r"formats: 'gif' is not a figure format; choose from png, svg, pdf"),
    ({"formats": ()}, ValueError, "formats must be a non-empty sequence of png, svg, pdf"),
    ({"formats": 3}, ValueError, "formats must be a non-empty sequence"),
    ({"dpi": 0}, ValueError, "dpi must be >= 10"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, attribution, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        save(attribution, tmp_path / "rep", **kwargs)
    assert os.listdir(tmp_path) == []


def test_formats_are_normalised():
    assert check_formats("PNG") == ("png",)
    assert check_formats(["png", ".pdf", "png"]) == ("png", "pdf")


def test_unknown_result_names_what_save_writes(tmp_path):
    with pytest.raises(TypeError, match=r"cannot save a dict; featurelens.report.save writes AttributionReport, "
                                        r"Explanation, .*RelianceAudit"):
        save({"a": 1}, tmp_path / "rep")
    assert os.listdir(tmp_path) == []


def test_every_registered_kind_is_a_class_with_a_writer():
    kinds = [kind.__name__ for kind, _ in WRITERS]
    assert kinds == ["AttributionReport", "Explanation", "InternalsReport", "InternalsSummary", "RelianceAudit",
                     "SpuriousReport", "Comparison", "DynamicsAnalysis", "SweepResult", "TicketsStudy"]
    assert all(callable(writer) for _, writer in WRITERS)


def test_rendering_does_not_touch_pyplot(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from featurelens.attribution import Explanation\n"
        "from featurelens.report import save\n"
        "e = Explanation(np.ones((5, 2)), names=['a', 'b'], axes=('sample', 'feature'), method='ig')\n"
        f"save(e, {str(tmp_path / 'rep')!r}, dpi=30)\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {**os.environ, "MPLBACKEND": "TkAgg"}  # a GUI default must not matter
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert (tmp_path / "rep" / "importance.png").is_file()


@pytest.mark.parametrize("module", ["featurelens.attribution", "featurelens.reliance"])
def test_importing_an_analysis_does_not_load_matplotlib(module):
    """Analyses compute; only featurelens.report draws (and imports matplotlib)."""
    code = f"import sys, {module}\nloaded = [m for m in sys.modules if m.startswith('matplotlib')]\n" \
           "assert not loaded, loaded[:5]\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
