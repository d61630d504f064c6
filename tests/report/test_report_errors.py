"""Error paths and all-or-nothing output."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import featurelens.report._figures as figures_mod
import featurelens.report._html as html_mod
from featurelens.attribution._explanation import Explanation
from featurelens.report import save_attribution_report, write_attribution_report


def _kwargs(attribution, **extra):
    return {"title": "t", "explanations": {"shap": attribution}, "dpi": 50, **extra}


def _boom(*args, **kwargs):
    raise RuntimeError("boom while rendering")


@pytest.mark.parametrize("target", [
    (figures_mod, "repeats_figure"),
    (html_mod, "render_html"),
    (Explanation, "save"),
])
def test_failure_leaves_nothing_behind(tmp_path, monkeypatch, attribution, permutation, target):
    monkeypatch.setattr(*target, _boom)
    with pytest.raises(RuntimeError, match="boom while rendering"):
        save_attribution_report(tmp_path / "rep", title="t", explanations={"shap": attribution, "perm": permutation},
                                dpi=50)
    assert os.listdir(tmp_path) == []


def test_failure_with_force_keeps_the_old_report(tmp_path, monkeypatch, attribution):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.txt").write_text("old")
    monkeypatch.setattr(figures_mod, "importance_figure", _boom)
    with pytest.raises(RuntimeError, match="boom"):
        save_attribution_report(out, force=True, **_kwargs(attribution))
    assert os.listdir(tmp_path) == ["rep"]
    assert os.listdir(out) == ["old.txt"]


def test_existing_directory_needs_force(tmp_path, attribution):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(ValueError, match="already exists"):
        save_attribution_report(out, **_kwargs(attribution))
    assert os.listdir(out) == ["old.txt"]
    save_attribution_report(out, force=True, **_kwargs(attribution))
    assert not (out / "old.txt").exists()
    assert (out / "index.html").is_file()
    assert os.listdir(tmp_path) == ["rep"]


def test_empty_explanations(tmp_path):
    with pytest.raises(ValueError, match="explanations is empty"):
        save_attribution_report(tmp_path / "rep", title="t", explanations={})
    with pytest.raises(TypeError, match="explanations must be a mapping"):
        save_attribution_report(tmp_path / "rep", title="t", explanations=[1])
    assert os.listdir(tmp_path) == []


def test_different_names_names_the_methods(tmp_path, attribution):
    other = Explanation(np.ones((10, 3)), names=["age", "spurious", "zip"], axes=("sample", "group"), method="ig")
    with pytest.raises(ValueError, match=r"'shap' and 'ig'.*missing in 'ig': \['income', 'region'\].*\['zip'\]"):
        save_attribution_report(tmp_path / "rep", title="t", explanations={"shap": attribution, "ig": other})


def test_bad_explanation_values_and_keys(tmp_path, attribution):
    with pytest.raises(TypeError, match=r"explanations\['shap'\] must be an Explanation, got dict"):
        write_attribution_report(tmp_path, title="t", explanations={"shap": {}})
    with pytest.raises(ValueError, match="not a valid method name"):
        write_attribution_report(tmp_path, title="t", explanations={"../evil": attribution})
    assert os.listdir(tmp_path) == []


def test_bad_history(tmp_path, attribution):
    with pytest.raises(ValueError, match=r"history is missing columns \['val_loss'\]"):
        bad = pd.DataFrame({"epoch": [1], "train_loss": [1.0]})
        write_attribution_report(tmp_path, **_kwargs(attribution, history=bad))
    with pytest.raises(ValueError, match="history has no rows"):
        write_attribution_report(tmp_path, **_kwargs(
            attribution, history=pd.DataFrame(columns=["epoch", "train_loss", "val_loss"])))
    with pytest.raises(TypeError, match="history must be a pandas DataFrame"):
        write_attribution_report(tmp_path, **_kwargs(attribution, history={"epoch": [1]}))


def test_bad_ground_truth(tmp_path, attribution):
    with pytest.raises(ValueError, match=r"ground_truth\['spurious_group'\] = 'nope' is not among"):
        write_attribution_report(tmp_path, **_kwargs(attribution, ground_truth={"spurious_group": "nope"}))
    with pytest.raises(ValueError, match="must name the planted player"):
        write_attribution_report(tmp_path, **_kwargs(attribution, ground_truth={"bias_strength": 0.8}))
    with pytest.raises(TypeError, match="ground_truth must be a mapping"):
        write_attribution_report(tmp_path, **_kwargs(attribution, ground_truth="spurious"))
    assert os.listdir(tmp_path) == []


def test_bad_scalars(tmp_path, attribution):
    with pytest.raises(TypeError, match="notes must be a sequence of strings"):
        write_attribution_report(tmp_path, **_kwargs(attribution, notes="one note"))
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        write_attribution_report(tmp_path, **_kwargs(attribution, title=" "))
    with pytest.raises(ValueError, match="dpi must be >= 10"):
        write_attribution_report(tmp_path, **_kwargs(attribution, dpi=0))
    with pytest.raises(TypeError, match="summary must be a mapping"):
        write_attribution_report(tmp_path, **_kwargs(attribution, summary=[("a", 1)]))
    with pytest.raises(TypeError, match=r"summary\['model'\] must be JSON-serialisable, got object"):
        write_attribution_report(tmp_path, **_kwargs(attribution, summary={"model": object()}))
    with pytest.raises(ValueError, match="does not exist"):
        write_attribution_report(tmp_path / "missing", **_kwargs(attribution))
    assert os.listdir(tmp_path) == []


def test_rendering_does_not_touch_pyplot(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from featurelens.attribution._explanation import Explanation\n"
        "from featurelens.report import write_attribution_report\n"
        "e = Explanation(np.ones((5, 2)), names=['a', 'b'], axes=('sample', 'feature'), method='ig')\n"
        f"write_attribution_report({str(tmp_path)!r}, title='t', explanations={{'ig': e}}, dpi=30)\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {**os.environ, "MPLBACKEND": "TkAgg"}  # a GUI default must not matter
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert (tmp_path / "importance.png").is_file()
