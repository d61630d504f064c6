"""OHLCV tables (daily bars): validation, a CSV reader and the trading-day calendar.

Tables have the columns ``Date, Open, High, Low, Close, Volume`` as written by common
market-data downloads. :func:`featurelens.datasets.make_ohlcv` generates such bars with
regime-switching returns and an optional planted calendar effect, without network access.
The features built from these tables are in :mod:`._finance`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

OHLCV_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")


# -- calendar ----------------------------------------------------------------------------------


def last_trading_day_of_month(dates: Any) -> np.ndarray:
    """Mark the rows that are the last row of their calendar month in ``dates``.

    ``out[i]`` is true when ``dates[i + 1]`` falls in a later month than
    ``dates[i]``. The last row, whose successor is unknown, counts as a month
    end when it is the last business day (Mon–Fri) of its month.

    Parameters
    ----------
    dates : array-like of datetimes, shape ``(n,)``
        Increasing dates (e.g. the ``Date`` column of an OHLCV table).

    Returns
    -------
    numpy.ndarray
        Shape ``(n,)``, bool.
    """
    d = pd.DatetimeIndex(dates)
    if len(d) == 0:
        return np.zeros(0, dtype=bool)
    period = d.to_period("M").asi8
    out = np.empty(len(d), dtype=bool)
    out[:-1] = period[1:] != period[:-1]
    last = d[-1]
    out[-1] = last.normalize() == (last + pd.offsets.BMonthEnd(0)).normalize()
    return out


# -- reading and checking OHLCV tables -----------------------------------------------------


def _check_ohlcv(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"ohlcv must be a pandas DataFrame, got {type(frame).__name__}")
    lower = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in OHLCV_COLUMNS if c.lower() not in lower]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; an OHLCV table needs "
            f"{', '.join(OHLCV_COLUMNS)} (any case); found {', '.join(map(repr, map(str, frame.columns)))}"
        )
    out = pd.DataFrame({c: frame[lower[c.lower()]].to_numpy() for c in OHLCV_COLUMNS})
    if len(out) == 0:
        raise ValueError(f"{source} has no rows")
    try:
        with warnings.catch_warnings():  # pandas warns when it falls back to per-element parsing
            warnings.simplefilter("ignore", UserWarning)
            out["Date"] = pd.to_datetime(out["Date"])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}: column 'Date' holds values that are not dates ({exc})") from None
    for c in OHLCV_COLUMNS[1:]:
        col = pd.to_numeric(out[c], errors="coerce")
        bad = np.flatnonzero(~np.isfinite(col.to_numpy(dtype=np.float64)))
        if bad.size:
            raise ValueError(
                f"{source}: column {c!r} has {bad.size} missing or non-numeric value(s), first at "
                f"row {int(bad[0])}"
            )
        out[c] = col.astype(np.float64)
    if out["Date"].duplicated().any():
        first = out["Date"][out["Date"].duplicated()].iloc[0]
        raise ValueError(f"{source}: column 'Date' repeats {first.date()}; one row per day is needed")
    out = out.sort_values("Date", kind="stable").reset_index(drop=True)
    prices = out[["Open", "High", "Low", "Close"]].to_numpy()
    if (prices <= 0).any():
        raise ValueError(f"{source}: prices (Open, High, Low, Close) must be positive")
    if (out["Volume"] < 0).any():
        raise ValueError(f"{source}: column 'Volume' has negative values")
    return out


def check_ohlcv(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """Validate an OHLCV DataFrame and return a clean copy sorted by date.

    Column names are matched case-insensitively; the result has exactly the
    columns ``Date`` (datetime64), ``Open, High, Low, Close, Volume``
    (float64) and a fresh ``RangeIndex``. Other columns (e.g. ``Adj Close``)
    are dropped.

    Raises
    ------
    ValueError
        Missing columns (named), no rows, unparsable dates, missing or
        non-numeric values (column and first row named), repeated dates,
        non-positive prices or negative volumes.
    TypeError
        If ``ohlcv`` is not a DataFrame.
    """
    return _check_ohlcv(ohlcv, "ohlcv")


def read_ohlcv(path: str | os.PathLike) -> pd.DataFrame:
    """Read daily bars from a CSV file with a header row ``Date, Open, High, Low, Close, Volume``.

    The layout of common market-data downloads (extra columns such as
    ``Adj Close`` are ignored; names are matched case-insensitively). Rows are
    sorted by date. See :func:`check_ohlcv` for the checks.

    Raises
    ------
    ValueError
        If the file is missing or unreadable, or fails :func:`check_ohlcv`.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"OHLCV file {str(p)!r} does not exist")
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise ValueError(f"OHLCV file {str(p)!r} is empty") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read OHLCV file {str(p)!r}: {str(exc).splitlines()[0]}") from None
    return _check_ohlcv(frame, f"OHLCV file {str(p)!r}")
