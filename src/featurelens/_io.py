"""Atomic file and directory writes, and pickle-free ``.npz`` files.

Nothing featurelens writes is ever half-written: files go to a temporary name
in the destination's directory and are renamed into place; output directories
are built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + ``os.replace``)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_output_dir(path: str | os.PathLike, *, force: bool = False) -> Path:
    """Validate an output directory before any work starts.

    Raises ``ValueError`` if ``path`` exists and ``force`` is false, if it
    exists and is not a directory, or if its parent directory is missing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {str(path)!r} exists and is not a directory")
    if path.exists() and not force:
        raise ValueError(f"output directory {str(path)!r} already exists; pass --force / force=True to replace it")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"parent directory of output {str(path)!r} does not exist")
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
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.tmp-"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700; give the usual directory mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{path.name}.old-"))
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
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
    when the file is missing or is not a readable pickle-free ``.npz``.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {str(p)!r} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{str(p)!r} is not a {what}: {exc}") from None
