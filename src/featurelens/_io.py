"""Atomic file and directory writes, and pickle-free ``.npz`` files.

Nothing featurelens writes is ever half-written: files go to a temporary name
in the destination's directory and are renamed into place; output directories
are built under a temporary name and renamed when complete. A write the
operating system refuses (a read-only file system, ``/proc``, a full disk, no
permission) raises ``ValueError`` naming the path and the OS reason
(``os.strerror``), after the temporaries are removed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: OS errors that mean "this destination cannot be written", whatever file raised them
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _reason(exc: OSError) -> str:
    """Return the OS reason of ``exc``: ``os.strerror(errno)``, else its text, else its type."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc).strip() or type(exc).__name__


class WriteError(ValueError):
    """A write the operating system refused; ``path`` and ``reason`` (``os.strerror``) say where and why."""

    def __init__(self, what: str, path: Path, reason: str):
        super().__init__(f"cannot write {what} {str(path)!r}: {reason}")
        self.path, self.reason = path, reason


def _write_error(what: str, path: Path, exc: OSError) -> WriteError:
    return WriteError(what, path, _reason(exc))


def _is_under(name: object, root: Path) -> bool:
    if not isinstance(name, (str, os.PathLike)):
        return False
    try:
        return Path(name).absolute().is_relative_to(root.absolute())
    except (OSError, ValueError):
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error("file", path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error("file", path, exc) from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_dir(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Validate an output directory before any work starts.

    Raises ``ValueError`` if ``path`` exists and ``force`` is false, if it
    exists and is not a directory, if its parent directory is missing, or if
    the parent cannot be written: a probe directory is created in the parent
    and removed at once, so read-only file systems, ``/proc`` and missing
    permissions are reported (with the OS reason) before any work starts.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {str(path)!r} exists and is not a directory")
    if path.exists() and not force:
        raise ValueError(f"output directory {str(path)!r} already exists; pass force=True to replace it")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"parent directory of output {str(path)!r} does not exist")
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.probe-"))
    except OSError as exc:
        raise _write_error("output directory", path, exc) from None
    return path


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``path`` on success.

    Yields the temporary directory to write into. On an exception the
    temporary directory is removed and ``path`` is left exactly as it was.
    With ``force=True`` an existing ``path`` is replaced only after the new
    directory is complete.
    """
    path = check_output_dir(path, force=force)
    parent = path.absolute().parent
    try:
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.tmp-"))
    except OSError as exc:
        raise _write_error("output directory", path, exc) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; give the usual directory mode
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, WriteError) and _is_under(exc.path, tmp):  # a file of ours: name the directory
            raise WriteError("output directory", path, exc.reason) from None
        if isinstance(exc, OSError) and (exc.errno in _WRITE_ERRNOS or _is_under(exc.filename, tmp)):
            raise _write_error("output directory", path, exc) from None
        raise
    try:
        _move_into_place(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error("output directory", path, exc) from None


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` to ``path``; an existing ``path`` is removed only after."""
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(dir=path.absolute().parent, prefix=f".{path.name}.old-"))
        os.rmdir(old)
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        if old is not None:  # put the previous directory back
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], *, compressed: bool = False) -> Path:
    """Write ``arrays`` as one ``.npz`` file, atomically (see :func:`atomic_write_bytes`)."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def read_npz(path: str | os.PathLike, *, what: str) -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` file ``path``, read with ``allow_pickle=False``.

    ``ValueError`` naming ``what`` (e.g. ``"featurelens explanation file"``)
    when the file is missing, is not an ``.npz`` (zip) archive (e.g. a
    ``.npy``, a pickle or a text file), holds object arrays (which featurelens
    never unpickles) or is otherwise unreadable. No message suggests
    unpickling.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {str(p)!r} does not exist")
    if not zipfile.is_zipfile(p):
        raise ValueError(f"{str(p)!r} is not a {what}: it is not an .npz (zip) archive")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {key: _member(z, key, p, what) for key in z.files}
    except _ObjectArrayError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{str(p)!r} is not a {what}: {_read_reason(exc)}") from None


class _ObjectArrayError(ValueError):
    """An ``.npz`` member holds Python objects (it would need unpickling)."""


def _member(z: Any, key: str, path: Path, what: str) -> np.ndarray:
    try:
        return z[key]
    except ValueError as exc:
        if "allow_pickle" not in str(exc):  # numpy's refusal of an object array
            raise
        raise _ObjectArrayError(f"{str(path)!r} is not a {what}: array {key!r} holds Python objects, which "
                                "featurelens never loads (the files it writes hold none)") from None


def _read_reason(exc: BaseException) -> str:
    """First line of ``exc`` (else its type), with any advice to unpickle dropped."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return type(exc).__name__ if "pickle" in first.lower() else first
