"""Argument checks shared by every subpackage.

Every public function validates its arguments here so that messages have one
shape: what is wrong, the offending name, the value received and, where there
is one, the fix.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

RandomState = int | np.random.Generator | None


def check_random_state(random_state: RandomState, *, name: str = "random_state") -> np.random.Generator:
    """Return a NumPy ``Generator`` for ``random_state``.

    ``None`` draws fresh OS entropy, an ``int`` seeds a new generator (the same
    int always gives the same stream) and a ``Generator`` is used as is.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"{name} must be a non-negative int, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"{name} must be None, a non-negative int or a numpy.random.Generator, "
        f"got {type(random_state).__name__}"
    )


def check_int(value: Any, *, name: str, minimum: int | None = None) -> int:
    """Return ``value`` as int, raising ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(
    value: Any,
    *,
    name: str,
    low: float | None = None,
    high: float | None = None,
    inclusive: tuple[bool, bool] = (True, True),
) -> float:
    """Return ``value`` as float within ``[low, high]`` (bounds per ``inclusive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    lo_ok = low is None or (value >= low if inclusive[0] else value > low)
    hi_ok = high is None or (value <= high if inclusive[1] else value < high)
    if not (lo_ok and hi_ok):
        lb = "[" if inclusive[0] else "("
        rb = "]" if inclusive[1] else ")"
        raise ValueError(f"{name} must be in {lb}{low}, {high}{rb}, got {value}")
    return value


def check_option(value: Any, *, name: str, options: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``options``; the error lists them."""
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value
