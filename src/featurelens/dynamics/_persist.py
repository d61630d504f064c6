"""Save and load :class:`GaussianHMM` without pickle.

Format (``format = "featurelens.GaussianHMM"``, ``version = 1``): one uncompressed NumPy
``.npz`` archive holding

- ``startprob`` (K,), ``transmat`` (K, K), ``means`` (K, D) and ``covars`` ((K, D, D) for
  ``"full"``, (K, D) for ``"diag"``), all little-endian float64;
- ``metadata``: a uint8 array with UTF-8 JSON
  ``{"format", "version", "covariance_type", "n_states", "n_features", "feature_names"}``.

The archive is read with ``allow_pickle=False``, so loading never executes code, and written
atomically (temporary file + rename). Arrays round-trip bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from featurelens._io import atomic_write_npz, read_npz
from featurelens.dynamics._hmm import GaussianHMM

FORMAT = "featurelens.GaussianHMM"
VERSION = 1
_ARRAYS = ("startprob", "transmat", "means", "covars")


def save_hmm(model: GaussianHMM, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (see the module docstring for the format); returns the path."""
    if not isinstance(model, GaussianHMM):
        raise TypeError(f"model must be a GaussianHMM, got {type(model).__name__}")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "covariance_type": model.covariance_type,
        "n_states": model.n_states,
        "n_features": model.n_features,
        "feature_names": None if model.feature_names is None else list(model.feature_names),
    }
    arrays = {name: np.asarray(getattr(model, name), dtype="<f8") for name in _ARRAYS}
    arrays["metadata"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    return atomic_write_npz(path, arrays)


def load_hmm(path: str | Path) -> GaussianHMM:
    """Read a model written by :func:`save_hmm`; ``ValueError`` for anything else."""
    path = Path(path)
    content = read_npz(path, what="featurelens GaussianHMM file")
    missing = [n for n in (*_ARRAYS, "metadata") if n not in content]
    if missing:
        raise ValueError(f"{str(path)!r} is not a featurelens GaussianHMM file: missing {', '.join(missing)}")
    try:
        meta = json.loads(content["metadata"].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{str(path)!r}: metadata is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r}: format is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ValueError(f"{str(path)!r}: unsupported version {meta.get('version')!r} (this featurelens reads {VERSION})")
    return GaussianHMM(
        content["startprob"],
        content["transmat"],
        content["means"],
        content["covars"],
        meta["covariance_type"],
        None if meta.get("feature_names") is None else tuple(meta["feature_names"]),
    )
