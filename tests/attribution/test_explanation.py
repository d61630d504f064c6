"""The Explanation result: summaries, frames and the .npz file format."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from featurelens.attribution import Explanation


def _expl(**kw) -> Explanation:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3)) * np.array([1.0, 3.0, 0.1])
    args = dict(names=["a", "b", "c"], axes=("sample", "group"), method="ablation",
                params={"baselines": "zeros"}, target={"target": None, "output": None, "link": "sigmoid"},
                model_fingerprint="m" * 16, data_fingerprint="d" * 16)
    args.update(kw)
    return Explanation(values, **args)


def test_importance_is_mean_absolute_value_and_normalises():
    e = _expl()
    imp = e.importance()
    np.testing.assert_allclose(imp.to_numpy(), np.abs(e.values).mean(axis=0))
    assert imp.idxmax() == "b" and imp.name == "ablation" and imp.index.name == "group"
    norm = e.importance(normalize=True)
    assert norm.sum() == pytest.approx(1.0)
    se = e.importance_std_error()
    np.testing.assert_allclose(se.to_numpy(), np.abs(e.values).std(axis=0, ddof=1) / np.sqrt(50))
    s = e.to_frame()
    assert list(s.index) == ["b", "a", "c"] and list(s.columns) == ["importance", "std_error", "normalized"]
    np.testing.assert_allclose(s.loc[["a", "b", "c"], "importance"], np.abs(e.values).mean(axis=0))
    np.testing.assert_allclose(s.loc[["a", "b", "c"], "normalized"],
                               np.abs(e.values).mean(axis=0) / np.abs(e.values).mean(axis=0).sum())


def test_scores_define_importance_when_present():
    scores = np.array([[0.1, 0.5, 0.0], [0.3, 0.7, 0.0]])
    e = _expl(scores=scores)
    np.testing.assert_allclose(e.importance().to_numpy(), [0.2, 0.6, 0.0])
    np.testing.assert_allclose(e.importance_std_error().to_numpy(), scores.std(0, ddof=1) / np.sqrt(2))
    zero = Explanation(None, names=["a"], axes=("sample", "feature"), method="permutation", scores=np.zeros((3, 1)))
    assert zero.importance(normalize=True).iloc[0] == 0.0


def test_sequence_values_average_over_time_and_long_frame():
    v = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    e = Explanation(v, names=["f0", "f1"], axes=("sample", "time", "feature"), method="saliency")
    np.testing.assert_allclose(e.importance().to_numpy(), [np.abs(v[..., 0]).mean(), np.abs(v[..., 1]).mean()])
    frame = e.values_frame()
    assert list(frame.columns) == ["sample", "time", "feature", "value"]
    assert len(frame) == 12
    assert frame.loc[(frame["sample"] == 1) & (frame["time"] == 2) & (frame["feature"] == "f1"), "value"].item() == 11.0


def test_output_axis_gives_a_frame_per_output():
    v = np.ones((4, 2, 3)) * np.array([1.0, 2.0, 3.0])
    e = Explanation(v, names=["a", "b"], axes=("sample", "group", "output"), method="ablation",
                    output_names=["u", "v", "w"])
    imp = e.importance()
    assert isinstance(imp, pd.DataFrame) and list(imp.columns) == ["u", "v", "w"]
    np.testing.assert_allclose(imp.loc["a"].to_numpy(), [1.0, 2.0, 3.0])
    frame = e.to_frame()  # one block per output, most important first within it
    assert frame.index.names == ["group", "output"]
    assert list(frame.index) == [(g, o) for o in "uvw" for g in "ab"]  # equal importance: stable name order
    np.testing.assert_allclose(frame.xs("w", level="output")["importance"], [3.0, 3.0])
    np.testing.assert_allclose(frame.xs("w", level="output")["normalized"], [0.5, 0.5])


def test_wide_frame_has_names():
    e = _expl()
    f = e.values_frame()
    assert list(f.columns) == ["a", "b", "c"] and f.shape == (50, 3)
    np.testing.assert_array_equal(f.to_numpy(), e.values)


def test_to_dict_is_json_and_repr_html_shows_the_table():
    e = _expl(scores=np.array([[0.1, 0.5, 0.0], [0.3, 0.7, np.nan]]))
    d = e.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["importance"] == {"a": pytest.approx(0.2), "b": pytest.approx(0.6), "c": None}
    assert d["std_error"]["a"] == pytest.approx(np.std([0.1, 0.3], ddof=1) / np.sqrt(2))
    assert (d["method"], d["level"], d["values_shape"], d["n_repeats"]) == ("ablation", "group", [50, 3], 2)
    assert d["params"] == {"baselines": "zeros"} and d["model_fingerprint"] == "m" * 16
    html = e._repr_html_()
    assert html.startswith("<table>") and "<th>importance</th>" in html and "0.6" in html and "—" in html


def test_save_load_round_trip_is_exact_and_not_pickle(tmp_path):
    e = _expl(scores=np.ones((2, 3)), extras={"output": np.linspace(0, 1, 50)})
    path = e.save(tmp_path / "e.npz")
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["extra.output.npy", "meta.npy", "scores.npy", "values.npy"]
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["format"] == "featurelens.explanation" and meta["version"] == 1
    back = Explanation.load(path)
    np.testing.assert_array_equal(back.values, e.values)
    np.testing.assert_array_equal(back.scores, e.scores)
    np.testing.assert_array_equal(back.extras["output"], e.extras["output"])
    assert (back.names, back.axes, back.method, back.params, back.target) == (
        e.names, e.axes, e.method, e.params, e.target)
    assert back.model_fingerprint == e.model_fingerprint and back.data_fingerprint == e.data_fingerprint
    pd.testing.assert_series_equal(back.importance(), e.importance())


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Explanation.load(tmp_path / "missing.npz")
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(ValueError, match="is not a featurelens explanation file"):
        Explanation.load(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", values=np.ones(3))
    with pytest.raises(ValueError, match="no 'meta' entry"):
        Explanation.load(tmp_path / "y.npz")
    np.savez(tmp_path / "z.npz", meta=np.array(json.dumps({"format": "other"})))
    with pytest.raises(ValueError, match="has format 'other'"):
        Explanation.load(tmp_path / "z.npz")
    np.savez(tmp_path / "w.npz", meta=np.array(json.dumps([1, 2])))
    with pytest.raises(ValueError, match="not a JSON object"):
        Explanation.load(tmp_path / "w.npz")
    np.savez(tmp_path / "u.npz", meta=np.array("{not json"))
    with pytest.raises(ValueError, match="is not JSON"):
        Explanation.load(tmp_path / "u.npz")
    np.savez(tmp_path / "k.npz", meta=np.array(json.dumps({"format": "featurelens.explanation", "version": 1})))
    with pytest.raises(ValueError, match="lacks 'method'"):
        Explanation.load(tmp_path / "k.npz")
    e = _expl()
    meta = e._meta()
    meta["version"] = 99
    np.savez(tmp_path / "v.npz", meta=np.array(json.dumps(meta)), values=e.values)
    with pytest.raises(ValueError, match="format version 99"):
        Explanation.load(tmp_path / "v.npz")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"axes": ("sample", "time")}, "exactly one of"),
        ({"axes": ("sample", "group", "output")}, "values has 2 dims"),
        ({"names": ["a", "b"]}, "values has 3 groups but 2 names"),
        ({"scores": np.ones((2, 5))}, r"scores must have shape \(n_repeats, 3\)"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _expl(**kwargs)


def test_constructor_needs_values_or_scores():
    with pytest.raises(ValueError, match="needs values, scores or both"):
        Explanation(None, names=["a"], axes=("sample", "feature"), method="x")
    with pytest.raises(ValueError, match="only repeat-level scores"):
        Explanation(None, names=["a"], axes=("sample", "feature"), method="x", scores=np.ones((2, 1))).values_frame()
