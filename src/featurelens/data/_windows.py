"""Sequence inputs for sequence models: sliding windows over a time-ordered table, or one sequence per id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

from featurelens._validation import check_int
from featurelens.data._inputs import as_tensor
from featurelens.data._spec import FeatureSpec, default_feature_names


@dataclass(frozen=True, eq=False)
class Windows:
    """Windows cut from a table by :func:`sliding_windows` or :func:`sequence_windows`.

    Attributes
    ----------
    X : numpy.ndarray
        Shape ``(m, lookback, d)``; ``X[i]`` is rows ``s_i .. s_i+lookback-1``
        of the input, oldest first. A fresh writable array (not a view).
    y : numpy.ndarray or None
        Shape ``(m,)`` (or ``(m, ...)`` for multi-column labels): ``y[i]`` is
        the label at row ``label_index[i]``; ``None`` when no labels were given.
    feature_names : list of str
        Names of the ``d`` columns (DataFrame columns, else ``x0 .. x{d-1}``).
    end_index : numpy.ndarray
        Shape ``(m,)``, int64: row index (position) of each window's last row,
        ``s_i + lookback - 1``. Increasing, so it orders windows in time.
    label_index : numpy.ndarray or None
        Shape ``(m,)``, int64: ``end_index + horizon``; ``None`` without labels.
    lookback, horizon : int
        The parameters the windows were cut with.
    stride : int or None
        Rows between the starts of consecutive windows; ``None`` for one
        sequence per id (:func:`sequence_windows` with ``ids``).
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]
    end_index: np.ndarray
    label_index: np.ndarray | None
    lookback: int
    horizon: int
    stride: int | None

    def __len__(self) -> int:
        return self.X.shape[0]

    def to_tensors(
        self, dtype: torch.dtype = torch.float32, *, y_dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(X, y)`` as tensors of shapes ``(m, lookback, d)`` and ``(m,)``.

        ``y`` gets ``y_dtype`` (default ``dtype``); it is ``None`` without labels.
        When ``dtype`` equals ``X.dtype`` the tensor shares memory with ``X``
        (windows can be large); call ``.clone()`` before editing it in place.
        """
        x = torch.from_numpy(self.X).to(dtype)
        if self.y is None:
            return x, None
        return x, torch.from_numpy(np.asarray(self.y)).to(y_dtype or dtype)

    def spec(self) -> FeatureSpec:
        """Return a :class:`FeatureSpec` over the ``d`` columns (shared by all time steps)."""
        return FeatureSpec(self.feature_names)


def _labels_to_numpy(y: Any, n: int) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        arr = y.detach().cpu().numpy()
    elif isinstance(y, pd.DataFrame | pd.Series):
        arr = y.to_numpy()
    elif isinstance(y, np.ndarray | list | tuple):
        arr = np.asarray(y)
    else:
        raise TypeError(
            f"y must be a numpy.ndarray, torch.Tensor, pandas Series or list, got {type(y).__name__}"
        )
    if arr.ndim == 0:
        raise ValueError("y must have one label per row, got a scalar")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"y must hold numbers or bools, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValueError(f"y has {arr.shape[0]} labels but X has {n} rows; they must match")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr.reshape(n, -1)).all(axis=1))
        raise ValueError(f"y holds NaN or inf in {bad.size} row(s), first at row {int(bad[0])}")
    return arr


def sliding_windows(
    X: Any, y: Any = None, *, lookback: int, horizon: int = 1, stride: int = 1
) -> Windows:
    """Cut a time-ordered table into overlapping windows of ``lookback`` rows.

    Window ``i`` starts at row ``s_i = i * stride`` and covers rows
    ``[s_i, s_i + lookback)``. With labels, its label is
    ``y[s_i + lookback - 1 + horizon]``:

    * ``horizon=1`` (default): the row *after* the window, i.e. the window
      ``X[t - lookback : t]`` predicts ``y[t]`` (the convention of the superposition and
      spurious-correlation study);
    * ``horizon=0``: the window's own last row.

    Windows whose label row would lie past the end are dropped. Without
    labels ``horizon`` has no effect and every full window is returned.

    The windows are gathered with :func:`numpy.lib.stride_tricks.sliding_window_view`
    (no Python loop) and copied, so the result is ``m * lookback * d``
    values.

    Parameters
    ----------
    X : numpy.ndarray, torch.Tensor or pandas.DataFrame
        Shape ``(n, d)``, rows in time order, real numbers without NaN/inf.
        float64 stays float64; other dtypes become float32.
    y : array-like, optional
        Shape ``(n,)`` (or ``(n, k)``), one label per row; bools become 0/1.
    lookback : int
        Rows per window, ``1 <= lookback <= n``.
    horizon : int
        Steps from a window's last row to its label row, ``>= 0``.
    stride : int
        Rows between the starts of consecutive windows, ``>= 1``.

    Returns
    -------
    Windows
        ``X`` ``(m, lookback, d)``, ``y`` ``(m,)`` or ``None``, feature names,
        ``end_index`` and ``label_index`` (row positions), where
        ``m = len(range(0, n_last + 1, stride))`` and ``n_last`` is the last
        admissible start, ``n - lookback`` without labels and
        ``n - lookback - horizon`` with labels.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D or has NaN/inf; ``lookback < 1``,
        ``lookback > n``, ``horizon < 0`` or ``stride < 1``; ``len(y) != n``;
        or ``lookback + horizon > n`` so that no window has a label.
    TypeError
        For non-numeric ``X`` or ``y`` or non-int parameters.
    """
    lookback = check_int(lookback, name="lookback", minimum=1)
    horizon = check_int(horizon, name="horizon", minimum=0)
    stride = check_int(stride, name="stride", minimum=1)
    t, names = as_tensor(X, name="X", ndims=(2,))
    data = t.cpu().numpy()
    n, d = data.shape
    if lookback > n:
        raise ValueError(f"lookback ({lookback}) exceeds the number of rows of X ({n})")
    labels = None if y is None else _labels_to_numpy(y, n)

    last_start = n - lookback if labels is None else n - lookback - horizon
    if last_start < 0:
        raise ValueError(
            f"no window has a label: lookback + horizon = {lookback + horizon} exceeds the "
            f"{n} rows of X"
        )
    starts = np.arange(0, last_start + 1, stride, dtype=np.int64)
    view = sliding_window_view(data, lookback, axis=0)  # (n - lookback + 1, d, lookback)
    windows = view.transpose(0, 2, 1)[starts]  # fancy indexing: one C-contiguous copy
    end_index = starts + (lookback - 1)
    label_index = None if labels is None else end_index + horizon
    return Windows(
        X=windows,
        y=None if labels is None else labels[label_index],
        feature_names=names if names is not None else default_feature_names(d),
        end_index=end_index,
        label_index=label_index,
        lookback=lookback,
        horizon=horizon,
        stride=stride,
    )


def _sequence_ids(ids: Any, n: int) -> np.ndarray:
    """Codes ``(n,)`` int64 of ``ids``, numbered in order of first appearance."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    keys = ids.to_numpy() if isinstance(ids, pd.Series | pd.Index) else np.asarray(ids)
    if keys.ndim != 1 or keys.shape[0] != n:
        raise ValueError(f"ids must hold one sequence id per row of X ({n}), got shape {keys.shape}")
    codes, _ = pd.factorize(keys, sort=False)
    if (codes < 0).any():
        raise ValueError(f"ids has missing values (first at row {int(np.flatnonzero(codes < 0)[0])}); "
                         "every row needs a sequence id")
    return codes.astype(np.int64)


def sequence_windows(X: Any, y: Any = None, *, lookback: int | None = None, ids: Any = None) -> Windows:
    """Sequence-model inputs from rows: windows of one time series, or one sequence per id.

    * ``ids=None``: the rows are one time series in time order, cut into every
      window of ``lookback`` consecutive rows, each labelled by its own last
      row (:func:`sliding_windows` with ``horizon=0``, ``stride=1``).
    * ``ids`` given: rows with equal ids form one sequence (its rows in file
      order; sequences in order of their first row). Sequence ``j`` is its
      last ``lookback`` rows (all of them with ``lookback=None``, when every
      sequence has the same length), labelled by its last row.

    Parameters
    ----------
    X : numpy.ndarray, torch.Tensor or pandas.DataFrame
        Shape ``(n, d)``, real numbers without NaN/inf. float64 stays float64;
        other dtypes become float32.
    y : array-like, optional
        Shape ``(n,)`` (or ``(n, k)``), one label per row; bools become 0/1.
    lookback : int, optional
        Rows per window (``1 <= lookback``); required without ``ids``.
    ids : array-like of shape (n,), optional
        Sequence id of each row (any hashable values, no missing ones).

    Returns
    -------
    Windows
        ``X`` ``(m, lookback, d)``, ``y`` ``(m,)`` (the labels of the last
        rows) or ``None``, and ``end_index`` = ``label_index``, the row
        position of each window's last row; ``horizon`` is 0. Without ``ids``
        ``m = n - lookback + 1`` and ``stride`` is 1; with ``ids`` ``m`` is
        the number of distinct ids and ``stride`` is ``None``.

    Raises
    ------
    ValueError
        If ``lookback`` is missing without ``ids`` or is below 1; the
        sequences have different lengths and ``lookback`` is None; a sequence
        is shorter than ``lookback``; ``ids`` or ``y`` do not have one entry
        per row; ``ids`` has missing values; or ``X`` is not 2-D or has NaN/inf.
    TypeError
        For non-numeric ``X`` or ``y`` or a non-int ``lookback``.
    """
    if ids is None:
        if lookback is None:
            raise ValueError("lookback is required without ids: the rows are one series cut into windows "
                             "of lookback rows")
        return sliding_windows(X, y, lookback=lookback, horizon=0)
    if lookback is not None:
        lookback = check_int(lookback, name="lookback", minimum=1)
    t, names = as_tensor(X, name="X", ndims=(2,))
    data = t.cpu().numpy()
    n, d = data.shape
    codes = _sequence_ids(ids, n)
    labels = None if y is None else _labels_to_numpy(y, n)
    counts = np.bincount(codes)
    if lookback is None:
        if counts.min() != counts.max():
            raise ValueError(f"sequences have {counts.min()} to {counts.max()} rows; give a lookback "
                             f"(at most {counts.min()}) to use the last rows of each")
        lookback = int(counts[0])
    elif counts.min() < lookback:
        raise ValueError(f"lookback ({lookback}) exceeds the shortest sequence, which has {counts.min()} rows")
    by_sequence = np.argsort(codes, kind="stable")  # rows grouped by sequence, file order within each
    stops = np.cumsum(counts)
    rows = by_sequence[(stops - lookback)[:, None] + np.arange(lookback)]  # (m, lookback), last rows of each
    end_index = rows[:, -1].astype(np.int64)
    return Windows(
        X=data[rows],
        y=None if labels is None else labels[end_index],
        feature_names=names if names is not None else default_feature_names(d),
        end_index=end_index,
        label_index=None if labels is None else end_index.copy(),
        lookback=lookback,
        horizon=0,
        stride=None,
    )
