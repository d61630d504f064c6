"""Figure plumbing: fonts for names DejaVu Sans cannot draw, formats, label wrapping."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import featurelens.report._figures as figures_mod
from featurelens.attribution import Explanation
from featurelens.report import save
from featurelens.report._figures import (
    MISSING_GLYPHS_NOTE,
    apply_fonts,
    fallback_families,
    new_figure,
    wrap,
)

CJK = ["年齢", "収入", "地域"]


def _cjk_explanation() -> Explanation:
    values = np.random.default_rng(0).normal(size=(40, 3)) * [1.0, 2.0, 0.5]
    return Explanation(values, names=CJK, axes=("sample", "feature"), method="ig")


def _pixels(text: str) -> np.ndarray:
    fig = new_figure(1.0, 1.0)
    fig.text(0.1, 0.3, text, fontsize=30)
    apply_fonts(fig)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())


@pytest.mark.skipif(not any("CJK" in f for f in fallback_families()), reason="no CJK font installed")
def test_cjk_names_are_drawn_with_an_installed_font_and_no_warnings(tmp_path):
    """Regression: CJK column names rendered as boxes and printed one font warning per glyph."""
    assert not np.array_equal(_pixels("年"), _pixels("齢"))  # two real glyphs, not two identical boxes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save(_cjk_explanation(), tmp_path / "rep", dpi=40)
    html = (tmp_path / "rep" / "index.html").read_text()
    assert MISSING_GLYPHS_NOTE not in html and "年齢" in html


def test_without_a_font_the_warnings_become_one_note(tmp_path, monkeypatch):
    monkeypatch.setattr(figures_mod, "fallback_families", lambda: ())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Glyph ... missing from font" warning gets out
        save(_cjk_explanation(), tmp_path / "rep", dpi=40)
    html = (tmp_path / "rep" / "index.html").read_text()
    assert html.count(MISSING_GLYPHS_NOTE) == 1
    assert json.loads((tmp_path / "rep" / "results.json").read_text())["players"][0] == "収入"


def test_latin_figures_keep_the_default_font():
    fig = new_figure(2.0, 1.0)
    text = fig.text(0.1, 0.5, "age, income")
    family = list(text.get_fontfamily())
    apply_fonts(fig)
    assert list(text.get_fontfamily()) == family


def test_wrap_breaks_long_labels_only():
    assert wrap("short") == "short"
    assert wrap("accuracy degradation when permuted (accuracy units)", 40) == (
        "accuracy degradation when permuted\n(accuracy units)")
