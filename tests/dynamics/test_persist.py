"""Tests for featurelens.dynamics._persist: non-pickle round trips and bad files."""

from __future__ import annotations

import ast
import io
import json
import zipfile

import numpy as np
import pytest

from featurelens.datasets import make_planted_runs
from featurelens.dynamics import GaussianHMM, fit_hmm, load_hmm, save_hmm
from featurelens.dynamics import _persist as persist


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_round_trip_is_bit_identical(tmp_path, ctype):
    runs, _, names = make_planted_runs(n_runs=3, n_steps=40, n_features=3, n_phases=2, random_state=0)
    model = fit_hmm(runs, n_states=2, covariance_type=ctype, n_restarts=1, n_iter=5, random_state=0,
                    feature_names=names).model
    path = model.save(tmp_path / "m.npz")
    back = GaussianHMM.load(path)
    for name in ("startprob", "transmat", "means", "covars"):
        a, b = getattr(model, name), getattr(back, name)
        assert a.dtype == b.dtype == np.float64 and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    assert back.covariance_type == ctype and back.feature_names == names
    assert back.score(runs) == model.score(runs)
    # the file is a plain npz readable without pickle, with JSON metadata
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(data["metadata"].tobytes())
    assert meta == {"covariance_type": ctype, "feature_names": list(names), "format": "featurelens.GaussianHMM",
                    "n_features": 3, "n_states": 2, "version": 1}


def test_no_feature_names_and_overwrite(tmp_path):
    model = GaussianHMM([0.25, 0.75], [[0.9, 0.1], [0.2, 0.8]], [[0.0], [1.0]], [[2.0], [3.0]], "diag")
    path = tmp_path / "m.npz"
    save_hmm(model, path)
    save_hmm(model, path)  # atomic replace
    assert load_hmm(path).feature_names is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary files left


def _write_npz(path, **arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_hmm(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a featurelens GaussianHMM file"):
        load_hmm(junk)
    part = tmp_path / "part.npz"
    _write_npz(part, means=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="missing startprob, transmat, covars, metadata"):
        load_hmm(part)
    arrays = {"startprob": np.ones(1), "transmat": np.ones((1, 1)), "means": np.zeros((1, 1)),
              "covars": np.ones((1, 1))}
    other = tmp_path / "other.npz"
    _write_npz(other, metadata=np.frombuffer(json.dumps({"format": "x"}).encode(), np.uint8), **arrays)
    with pytest.raises(ValueError, match=r"format is not .featurelens\.GaussianHMM."):
        load_hmm(other)
    newer = tmp_path / "newer.npz"
    meta = {"format": "featurelens.GaussianHMM", "version": 99, "covariance_type": "diag"}
    _write_npz(newer, metadata=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    with pytest.raises(ValueError, match="unsupported version 99"):
        load_hmm(newer)
    pickled = tmp_path / "pickled.npz"
    _write_npz(pickled, metadata=np.array([{"format": 1}], dtype=object), **arrays)
    with pytest.raises(ValueError, match="is not a featurelens GaussianHMM file"):
        load_hmm(pickled)
    assert zipfile.is_zipfile(pickled)


def test_save_errors(tmp_path):
    model = GaussianHMM([1.0], [[1.0]], [[0.0]], [[1.0]], "diag")
    with pytest.raises(ValueError, match="does not exist"):
        save_hmm(model, tmp_path / "no" / "m.npz")
    with pytest.raises(TypeError, match="model must be a GaussianHMM"):
        save_hmm({"means": 1}, tmp_path / "m.npz")


def test_the_file_format_module_does_not_import_the_model():
    """``_hmm`` imports ``_persist`` at module level; ``_persist`` must not import ``_hmm`` back (no circle)."""
    tree = ast.parse(open(persist.__file__, encoding="utf-8").read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m.startswith("featurelens.dynamics") for m in imported if m), imported
