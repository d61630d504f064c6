"""The :class:`GaussianHMM` file format, read and written without pickle.

Format (``format = "featurelens.GaussianHMM"``, ``version = 1``): one uncompressed NumPy
``.npz`` archive holding

- ``startprob`` (K,), ``transmat`` (K, K), ``means`` (K, D) and ``covars`` ((K, D, D) for
  ``"full"``, (K, D) for ``"diag"``), all little-endian float64;
- ``metadata``: a uint8 array with UTF-8 JSON
  ``{"format", "version", "covariance_type", "n_states", "n_features", "feature_names"}``.

The archive is read with ``allow_pickle=False``, so loading never executes code, and written
atomically (temporary file + rename). Arrays round-trip bit for bit. This module knows the
file, not the model: :meth:`GaussianHMM.save` and :meth:`GaussianHMM.load` call it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from featurelens._io import atomic_write_npz, read_npz

FORMAT = "featurelens.GaussianHMM"
VERSION = 1
ARRAYS = ("startprob", "transmat", "means", "covars")


def write_hmm_file(path: str | Path, arrays: dict[str, np.ndarray], *, covariance_type: str,
                   feature_names: tuple[str, ...] | None) -> Path:
    """Write the four parameter ``arrays`` (keys :data:`ARRAYS`) and their metadata to ``path``."""
    k, d = np.shape(arrays["means"])
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "covariance_type": covariance_type,
        "n_states": int(k),
        "n_features": int(d),
        "feature_names": None if feature_names is None else list(feature_names),
    }
    out = {name: np.asarray(arrays[name], dtype="<f8") for name in ARRAYS}
    out["metadata"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    return atomic_write_npz(path, out)


def read_hmm_file(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return the parameter arrays and the metadata of a file written by :func:`write_hmm_file`.

    ``ValueError`` naming the file when it is missing, not a pickle-free ``.npz``,
    lacks an array, or has another format or version.
    """
    path = Path(path)
    content = read_npz(path, what="featurelens GaussianHMM file")
    missing = [n for n in (*ARRAYS, "metadata") if n not in content]
    if missing:
        raise ValueError(f"{str(path)!r} is not a featurelens GaussianHMM file: missing {', '.join(missing)}")
    try:
        meta = json.loads(content["metadata"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{str(path)!r}: metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r}: format is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"{str(path)!r}: unsupported version {meta.get('version')!r} "
                         f"(this featurelens reads {VERSION})")
    return {name: content[name] for name in ARRAYS}, meta
