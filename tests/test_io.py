"""Atomic writes: nothing half-written, nothing overwritten without force."""

from __future__ import annotations

import os
import stat

import pytest

from featurelens._io import atomic_output_dir, atomic_write_text, check_output_dir


def test_atomic_write_text_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]
    assert stat.S_IMODE(p.stat().st_mode) & 0o044  # readable by others, as a normal file


def test_atomic_write_to_missing_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write_text(tmp_path / "nope" / "f.txt", "x")


def test_atomic_output_dir_success_and_failure(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
        assert not out.exists()
    assert (out / "a.txt").read_text() == "a"
    assert stat.S_IMODE(out.stat().st_mode) & 0o055
    with pytest.raises(RuntimeError), atomic_output_dir(out, force=True) as tmp:
        (tmp / "b.txt").write_text("b")
        raise RuntimeError("fail")
    assert sorted(os.listdir(out)) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "c.txt").write_text("c")
    assert sorted(os.listdir(out)) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_check_output_dir_errors(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="already exists"):
        check_output_dir(tmp_path / "d")
    with pytest.raises(ValueError, match="not a directory"):
        check_output_dir(tmp_path / "f", force=True)
    with pytest.raises(ValueError, match="parent directory"):
        check_output_dir(tmp_path / "x" / "y")
    assert check_output_dir(tmp_path / "d", force=True) == tmp_path / "d"


def test_npz_round_trip_and_errors(tmp_path):
    import numpy as np

    from featurelens._io import atomic_write_npz, read_npz

    arrays = {"a": np.arange(4.0), "s": np.asarray(["x", "y"])}
    for compressed in (False, True):
        path = atomic_write_npz(tmp_path / f"f{compressed}.npz", arrays, compressed=compressed)
        back = read_npz(path, what="test file")
        assert back.keys() == arrays.keys()
        assert np.array_equal(back["a"], arrays["a"]) and list(back["s"]) == ["x", "y"]
    with pytest.raises(ValueError, match=r"test file '.*missing.npz' does not exist"):
        read_npz(tmp_path / "missing.npz", what="test file")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"'.*bad.npz' is not a test file"):
        read_npz(tmp_path / "bad.npz", what="test file")
    np.savez(tmp_path / "pickled.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"is not a test file: .*allow_pickle"):
        read_npz(tmp_path / "pickled.npz", what="test file")
