"""Per-column z-scores with constant columns mapped to 0 (used for training runs)."""

from __future__ import annotations

import numpy as np

#: a column whose standard deviation is at most this times ``max(1, |mean|)`` is constant
CONSTANT_RTOL = 1e-12


def zscore_columns(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Z-score every column of a 2-D array, mapping constant columns to 0.

    Parameters
    ----------
    X : numpy.ndarray
        Shape ``(T, D)``, float.

    Returns
    -------
    z : numpy.ndarray
        Shape ``(T, D)``: ``(X - mean) / std`` per column, 0 in a constant column.
    mean, std : numpy.ndarray
        Shape ``(D,)``: the column means and population standard deviations
        (``ddof=0``), as computed from ``X``.
    constant : numpy.ndarray
        Shape ``(D,)`` bool: ``std <= CONSTANT_RTOL * max(1, |mean|)``
        (``CONSTANT_RTOL = 1e-12``), the columns set to 0 in ``z``.
    """
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    constant = std <= CONSTANT_RTOL * np.maximum(1.0, np.abs(mean))
    z = np.where(constant, 0.0, (X - mean) / np.where(constant, 1.0, std))
    return z, mean, std, constant
