"""Plain-JSON conversion shared by every result's ``to_dict()`` and every ``results.json``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any, *, where: str = "value") -> Any:
    """Convert ``obj`` to plain JSON types (NaN/inf → ``None``); ``TypeError`` naming ``where`` otherwise.

    NumPy scalars and arrays become Python numbers and lists, paths strings,
    mappings dicts with ``str`` keys, tuples lists.
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), where=where)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, where=f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), where=where)
    if isinstance(obj, list | tuple):
        return [jsonable(v, where=f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where} must be JSON-serialisable, got {type(obj).__name__}: {obj!r}")
