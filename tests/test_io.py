"""Atomic writes: nothing half-written, nothing overwritten without force."""

from __future__ import annotations

import errno
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
    with pytest.raises(ValueError, match=r"is not a test file: array 'o' holds Python objects") as info:
        read_npz(tmp_path / "pickled.npz", what="test file")
    assert "allow_pickle" not in str(info.value) and "unpickl" not in str(info.value)


@pytest.mark.parametrize("kind", ["npy", "pickle", "text", "truncated zip"])
def test_read_npz_never_suggests_unpickling(tmp_path, kind):
    import pickle
    import zipfile

    import numpy as np

    from featurelens._io import atomic_write_npz, read_npz

    path = tmp_path / "f.npz"
    if kind == "npy":
        np.save(tmp_path / "f.npy", np.arange(3))
        (tmp_path / "f.npy").rename(path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"a": 1}))
    elif kind == "text":
        path.write_text("hello")
    else:
        atomic_write_npz(path, {"a": np.arange(1000.0)})
        data = path.read_bytes()
        with zipfile.ZipFile(path) as zf:
            offset = zf.infolist()[0].header_offset
        path.write_bytes(data[:offset + 80] + data[len(data) - 200:])
    with pytest.raises(ValueError, match=r"'.*f.npz' is not a test file") as info:
        read_npz(path, what="test file")
    assert "pickle" not in str(info.value).lower()


def test_check_output_dir_refuses_unwritable_parent_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"cannot write output directory '/proc/featurelens-out': \w"):
        check_output_dir("/proc/featurelens-out")
    with pytest.raises(ValueError, match=r"cannot write output directory '/proc/self/out': No such file"):
        check_output_dir("/proc/self/out")
    check_output_dir(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []  # the writability probe is removed


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_check_output_dir_refuses_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValueError, match=r"cannot write output directory '.*ro/out': Permission denied"):
            check_output_dir(ro / "out")
    finally:
        ro.chmod(0o700)


def _full_disk(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "disk quota talk that is not the reason")


def test_full_disk_during_a_file_write_names_path_and_reason(tmp_path, monkeypatch):
    import featurelens._io as fio

    monkeypatch.setattr(fio.os, "fsync", _full_disk)
    with pytest.raises(ValueError, match=r"cannot write file '.*f.txt': No space left on device"):
        atomic_write_text(tmp_path / "f.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_inside_an_output_directory_leaves_nothing(tmp_path, monkeypatch):
    import featurelens._io as fio

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("old")
    with pytest.raises(ValueError, match=r"cannot write output directory '.*out': No space left on device"):
        with atomic_output_dir(tmp_path / "out", force=True) as tmp:
            (tmp / "a.txt").write_text("a")
            monkeypatch.setattr(fio.os, "fsync", _full_disk)
            atomic_write_text(tmp / "b.txt", "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    # an OSError of the caller's own (not about the destination) is not renamed
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError), atomic_output_dir(tmp_path / "new"):
        (tmp_path / "elsewhere" / "x.txt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_final_rename_keeps_the_old_directory(tmp_path, monkeypatch):
    import featurelens._io as fio

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("old")
    real = fio.os.replace

    def refuse_new(src, dst):
        if ".tmp-" in str(src):
            raise OSError(errno.EROFS, "read-only")
        return real(src, dst)

    monkeypatch.setattr(fio.os, "replace", refuse_new)
    with (pytest.raises(ValueError, match="Read-only file system"),
          atomic_output_dir(tmp_path / "out", force=True) as tmp):
        (tmp / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "keep.txt").read_text() == "old"
