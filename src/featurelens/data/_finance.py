"""Market data (OHLCV) and seed 002's finance features: technical vs calendar groups.

Seed 002 downloads daily bars with ``yfinance``, builds five features per day
(SMA(20) of the close, RSI(14), the 20-day rolling standard deviation of the
volume, the day of the week and a month-end flag) and cuts 30-day windows
whose label says whether the next close is above the last one. This module
builds the same features from any OHLCV table (a CSV with the columns
``Date, Open, High, Low, Close, Volume`` as written by common market-data
downloads, or the synthetic generator :func:`make_ohlcv`) without network
access, and keeps the seed's feature groups: ``technical`` (SMA, RSI, volume
std) and ``calendar`` (day of week, month end).

Definitions that differ from the seed, and why:

* **RSI** defaults to Wilder's smoothing (the definition of Wilder, 1978):
  the first average gain/loss is the simple mean of the first ``n`` changes,
  then ``avg_t = (avg_{t-1} * (n - 1) + value_t) / n``. The seed used a
  simple ``n``-day rolling mean (sometimes called Cutler's RSI); it is
  available as ``rsi_method="simple"``. Both give ``RSI = 100`` when the
  average loss is 0 and the average gain positive, and 50 when both are 0
  (the seed divided 0 by 0 there and produced NaN).
* **Month end** marks the last *trading* day of each month present in the
  data (the next row falls in another month). The seed used
  ``DatetimeIndex.is_month_end``, the last *calendar* day, which is never a
  trading day when a month ends on a weekend, so about a third of the month
  ends were missed. The final row, whose successor is unknown, is marked when
  it is the last business day of its month.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.data._spec import FeatureSpec
from featurelens.data._windows import sliding_windows

OHLCV_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")
TECHNICAL = ("sma", "rsi", "volume_std")
TECHNICAL_RELATIVE = ("sma_gap", "rsi", "volume_cv")
CALENDAR = ("day_of_week", "month_end")
LABEL = "next_day_up"


# -- indicators ------------------------------------------------------------------------------


def _as_series(values: Any, name: str) -> pd.Series:
    if isinstance(values, pd.Series):
        s = values
    elif isinstance(values, np.ndarray | list | tuple):
        s = pd.Series(np.asarray(values))
    else:
        raise TypeError(f"{name} must be a pandas Series or a 1-D array, got {type(values).__name__}")
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {s.shape}")
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        raise TypeError(f"{name} must hold numbers, got dtype {s.dtype}")
    return s.astype(np.float64)


def sma(close: Any, window: int = 20) -> pd.Series:
    """Simple moving average ``SMA_t = mean(close_{t-window+1} .. close_t)``.

    Parameters
    ----------
    close : pandas.Series or 1-D array
        Prices in time order, shape ``(n,)``.
    window : int
        Number of days averaged, ``>= 1``.

    Returns
    -------
    pandas.Series
        Shape ``(n,)``, float64, in the units of ``close``; NaN for the first
        ``window - 1`` rows.
    """
    window = check_int(window, name="window", minimum=1)
    return _as_series(close, "close").rolling(window=window, min_periods=window).mean()


def _wilder_average(values: np.ndarray, window: int) -> np.ndarray:
    """Wilder's running mean of ``values[1:]`` (``values[0]`` is the NaN of the first diff)."""
    from scipy.signal import lfilter  # imported here: featurelens.data should import fast

    n = values.shape[0]
    out = np.full(n, np.nan)
    if n <= window:
        return out
    seed = values[1 : window + 1].mean()
    out[window] = seed
    rest = values[window + 1 :]
    if rest.size:
        a = 1.0 / window
        # y_t = (1 - a) y_{t-1} + a x_t, started from y_window = seed
        out[window + 1 :] = lfilter([a], [1.0, -(1.0 - a)], rest, zi=[(1.0 - a) * seed])[0]
    return out


def rsi(close: Any, window: int = 14, *, method: str = "wilder") -> pd.Series:
    """Relative strength index on a 0–100 scale.

    With the close changes ``d_t = close_t - close_{t-1}``, gains
    ``g_t = max(d_t, 0)`` and losses ``l_t = max(-d_t, 0)``:

    * ``method="wilder"`` (default, Wilder 1978): ``G_n = mean(g_1 .. g_n)``
      and ``G_t = (G_{t-1} (n - 1) + g_t) / n`` for ``t > n``; ``L_t`` alike;
    * ``method="simple"`` (seed 002): ``G_t = mean(g_{t-n+1} .. g_t)``, ``L_t`` alike;

    then ``RSI_t = 100 - 100 / (1 + G_t / L_t)``, defined as 100 when
    ``L_t = 0 < G_t`` and as 50 when ``G_t = L_t = 0``.

    Parameters
    ----------
    close : pandas.Series or 1-D array
        Prices in time order, shape ``(n,)``.
    window : int
        ``n >= 1``.
    method : {"wilder", "simple"}

    Returns
    -------
    pandas.Series
        Shape ``(n,)``, float64 in ``[0, 100]``; NaN for the first ``n`` rows
        (the first change exists from row 1 on).
    """
    window = check_int(window, name="window", minimum=1)
    method = check_option(method, name="method", options=("wilder", "simple"))
    s = _as_series(close, "close")
    delta = s.diff().to_numpy()
    gain = np.where(delta > 0, delta, 0.0)
    loss = np.where(delta < 0, -delta, 0.0)
    gain[0] = loss[0] = np.nan
    if method == "wilder":
        avg_gain, avg_loss = _wilder_average(gain, window), _wilder_average(loss, window)
    else:
        avg_gain = pd.Series(gain).rolling(window, min_periods=window).mean().to_numpy()
        avg_loss = pd.Series(loss).rolling(window, min_periods=window).mean().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    value = np.where((avg_loss == 0) & (avg_gain > 0), 100.0, value)
    value = np.where((avg_loss == 0) & (avg_gain == 0), 50.0, value)
    return pd.Series(value, index=s.index, name="rsi")


def last_trading_day_of_month(dates: Any) -> np.ndarray:
    """Bool ``(n,)``: the row is the last row of its calendar month in ``dates``.

    ``dates`` must be increasing. The last row, whose successor is unknown,
    counts as a month end when it is the last business day (Mon–Fri) of its
    month.
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


# -- reading and generating OHLCV tables -----------------------------------------------------


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


@dataclass(frozen=True)
class RegimeParams:
    """Two-state regime-switching daily log returns (state 0 "calm", state 1 "turbulent").

    ``drift`` and ``volatility`` are the mean and standard deviation of the
    daily log return in each state; ``switch`` the daily probability of
    leaving each state.
    """

    drift: tuple[float, float] = (0.002, -0.002)
    volatility: tuple[float, float] = (0.01, 0.02)
    switch: tuple[float, float] = (0.02, 0.04)


def _check_effect(effect: Any, n: int) -> np.ndarray:
    if isinstance(effect, np.ndarray | list | tuple | pd.Series):
        c = np.asarray(effect, dtype=np.float64)
        if c.shape != (n,):
            raise ValueError(f"calendar_effect must be a number or hold one value per day ({n}), "
                             f"got shape {c.shape}")
        if not np.isfinite(c).all() or (c < 0).any():
            raise ValueError("calendar_effect must hold finite values >= 0")
        return c
    return np.full(n, check_float(effect, name="calendar_effect", low=0.0))


def make_ohlcv(
    n_days: int = 1500,
    *,
    start: str = "2015-01-01",
    calendar_effect: float | Any = 0.0,
    regimes: RegimeParams | None = None,
    initial_price: float = 100.0,
    random_state: RandomState = None,
) -> pd.DataFrame:
    """Synthetic daily bars with regime-switching returns and an optional calendar effect.

    Days are business days (Mon–Fri, no holidays) from ``start``. A hidden
    two-state Markov chain ``s_t`` (see :class:`RegimeParams`; started from
    its stationary law) sets the daily log return
    ``r_t = drift[s_t] + volatility[s_t] * (z_t + c * e_t)``, ``z_t ~ N(0, 1)``,
    where ``c = calendar_effect`` and ``e_t = 1`` on *calendar-effect days*,
    else 0. Calendar-effect days are Mondays and the first trading day of
    each month (the day after a month end): the close-to-close return of those
    days is shifted up by ``c`` standard deviations, so the next-day-up label
    of the day before is predictable from its ``day_of_week == 4`` (Friday)
    or ``month_end == 1`` features. With ``c = 0`` calendar features carry no
    information about the label; the regime (persistent, with opposite drifts)
    makes recent returns, hence the technical features, weakly predictive.

    Prices: ``Close_t = initial_price * exp(r_1 + .. + r_t)``;
    ``Open_t = Close_{t-1} * exp(0.2 * volatility[s_t] * u_t)``;
    ``High``/``Low`` extend ``max``/``min`` of Open and Close by
    ``exp(+-0.5 * volatility[s_t] * |v|)``; ``Volume_t`` is
    ``round(1e6 * exp(0.25 w_t + 0.3 |r_t| / volatility[s_t]))`` (volume
    rises with absolute returns); ``u, v, w ~ N(0, 1)``.

    Parameters
    ----------
    n_days : int
        Number of rows, ``>= 2``.
    start : str
        First date (a business day on or after it is used).
    calendar_effect : float or array-like of shape ``(n_days,)``
        ``c >= 0``, the planted shift in standard deviations; an array gives
        one value per day (e.g. an anomaly that disappears: ``c`` for the
        first days, then 0).
    regimes : RegimeParams, optional
    initial_price : float
        Price level before the first return, ``> 0``.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    pandas.DataFrame
        Columns ``Date, Open, High, Low, Close, Volume`` (``Date`` datetime64,
        the rest float64) and, for checking, ``regime`` (int, the hidden state).
    """
    n = check_int(n_days, name="n_days", minimum=2)
    c = _check_effect(calendar_effect, n)
    p0 = check_float(initial_price, name="initial_price", low=0.0, inclusive=(False, True))
    params = RegimeParams() if regimes is None else regimes
    if not isinstance(params, RegimeParams):
        raise TypeError(f"regimes must be a RegimeParams, got {type(params).__name__}")
    for fname in ("volatility", "switch"):
        for v in getattr(params, fname):
            check_float(v, name=f"regimes.{fname}", low=0.0, high=1.0, inclusive=(False, True))
    rng = check_random_state(random_state)
    try:
        dates = pd.bdate_range(start=start, periods=n)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start must be a date such as '2015-01-01', got {start!r} ({exc})") from None

    p01, p10 = params.switch
    state = np.empty(n, dtype=np.int64)
    state[0] = int(rng.random() < p01 / (p01 + p10))
    u_switch = rng.random(n)
    for t in range(1, n):  # a Markov chain is sequential; n is a few thousand
        leave = params.switch[state[t - 1]]
        state[t] = 1 - state[t - 1] if u_switch[t] < leave else state[t - 1]
    drift = np.asarray(params.drift, dtype=np.float64)[state]
    vol = np.asarray(params.volatility, dtype=np.float64)[state]
    month_end = last_trading_day_of_month(dates)
    effect_day = np.zeros(n, dtype=bool)
    effect_day[1:] = month_end[:-1]
    effect_day |= dates.day_of_week.to_numpy() == 0
    z = rng.standard_normal(n)
    r = drift + vol * (z + c * effect_day)
    close = p0 * np.exp(np.cumsum(r))
    prev = np.concatenate([[p0], close[:-1]])
    open_ = prev * np.exp(0.2 * vol * rng.standard_normal(n))
    high = np.maximum(open_, close) * np.exp(0.5 * vol * np.abs(rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-0.5 * vol * np.abs(rng.standard_normal(n)))
    volume = np.round(1e6 * np.exp(0.25 * rng.standard_normal(n) + 0.3 * np.abs(r) / vol))
    return pd.DataFrame({
        "Date": dates, "Open": open_, "High": high, "Low": low, "Close": close,
        "Volume": volume.astype(np.float64), "regime": state,
    })


# -- features and windows --------------------------------------------------------------------


def ohlcv_features(
    ohlcv: pd.DataFrame,
    *,
    sma_window: int = 20,
    rsi_window: int = 14,
    volume_window: int = 20,
    rsi_method: str = "wilder",
    relative: bool = False,
    dropna: bool = True,
) -> pd.DataFrame:
    """Seed 002's daily features and the next-day-up label from an OHLCV table.

    Columns, for day ``t``:

    * ``sma``: :func:`sma` of Close over ``sma_window`` days (price units);
      with ``relative=True`` it is replaced by ``sma_gap = Close_t / SMA_t - 1``
      (unitless, comparable across price levels);
    * ``rsi``: :func:`rsi` of Close over ``rsi_window`` days (``rsi_method``);
    * ``volume_std``: standard deviation (``ddof=1``, as pandas) of Volume
      over the last ``volume_window`` days (shares); with ``relative=True``
      ``volume_cv`` = that std divided by the mean volume of the same days;
    * ``day_of_week``: 0 = Monday .. 6 = Sunday;
    * ``month_end``: 1 on the last trading day of a month, else 0 (see
      :func:`last_trading_day_of_month` and the module docstring);
    * ``next_day_up``: 1 if ``Close_{t+1} > Close_t``, else 0; NaN on the last row.

    Parameters
    ----------
    ohlcv : pandas.DataFrame
        Checked by :func:`check_ohlcv` (any row order; sorted by date here).
    sma_window, rsi_window, volume_window : int
        Window lengths, each ``>= 2`` (``>= 1`` for ``rsi_window``).
    rsi_method : {"wilder", "simple"}
    relative : bool
        Use the scale-free ``sma_gap`` and ``volume_cv`` instead of ``sma`` and
        ``volume_std``.
    dropna : bool
        Drop the warm-up rows (where an indicator is still NaN) and the last
        row (no label), so that the table holds no NaN.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``date`` (DatetimeIndex), float64 columns: the three
        technical features, ``day_of_week``, ``month_end`` and ``next_day_up``.
    """
    sma_window = check_int(sma_window, name="sma_window", minimum=2)
    volume_window = check_int(volume_window, name="volume_window", minimum=2)
    rsi_window = check_int(rsi_window, name="rsi_window", minimum=1)
    if not isinstance(relative, bool) or not isinstance(dropna, bool):
        raise TypeError("relative and dropna must be bools")
    bars = check_ohlcv(ohlcv)
    close = bars["Close"]
    avg = sma(close, sma_window)
    vol_std = bars["Volume"].rolling(volume_window, min_periods=volume_window).std()
    out = pd.DataFrame(index=pd.DatetimeIndex(bars["Date"], name="date"))
    if relative:
        out["sma_gap"] = (close / avg - 1.0).to_numpy()
    else:
        out["sma"] = avg.to_numpy()
    out["rsi"] = rsi(close, rsi_window, method=rsi_method).to_numpy()
    if relative:
        vol_mean = bars["Volume"].rolling(volume_window, min_periods=volume_window).mean()
        out["volume_cv"] = (vol_std / vol_mean).to_numpy()
    else:
        out["volume_std"] = vol_std.to_numpy()
    out["day_of_week"] = out.index.day_of_week.to_numpy().astype(np.float64)
    out["month_end"] = last_trading_day_of_month(out.index).astype(np.float64)
    up = np.full(len(bars), np.nan)
    up[:-1] = (close.to_numpy()[1:] > close.to_numpy()[:-1]).astype(np.float64)
    out[LABEL] = up
    if dropna:
        out = out.dropna()
        if len(out) == 0:
            raise ValueError(
                f"ohlcv has {len(bars)} rows, too few for the indicator windows "
                f"(sma {sma_window}, rsi {rsi_window}, volume {volume_window}) plus a label"
            )
    return out


@dataclass(frozen=True, eq=False)
class FinanceData:
    """Windows of daily features with a next-day-up label, for sequence models.

    Attributes
    ----------
    X : numpy.ndarray
        ``(m, lookback, 5)`` float32: the five features of ``lookback``
        consecutive days, oldest first.
    y : numpy.ndarray
        ``(m,)`` float32 in {0, 1}: ``next_day_up`` of each window's last day.
    dates : pandas.DatetimeIndex
        ``(m,)``: the last day of each window.
    feature_names : list of str
    groups : dict of str to list of str
        ``technical`` (SMA, RSI, volume) and ``calendar`` (day of week, month end).
    """

    X: np.ndarray
    y: np.ndarray
    dates: pd.DatetimeIndex
    feature_names: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.X.shape[0]

    def spec(self) -> FeatureSpec:
        """``FeatureSpec(feature_names, groups)``."""
        return FeatureSpec(self.feature_names, self.groups)

    def environments(self, freq: str = "year") -> np.ndarray:
        """Time-window labels ``(m,)`` of the windows' last days: ``"year"`` or ``"quarter"``."""
        freq = check_option(freq, name="freq", options=("year", "quarter"))
        if freq == "year":
            return self.dates.year.to_numpy()
        return (self.dates.year * 10 + self.dates.quarter).to_numpy()


def finance_windows(features: pd.DataFrame, *, lookback: int = 30, stride: int = 1) -> FinanceData:
    """Cut :func:`ohlcv_features` output into windows labelled by the next day's direction.

    Window ``i`` holds days ``s_i .. s_i + lookback - 1`` and its label is
    ``next_day_up`` of its last day, ``Close_{t+1} > Close_t`` (seed 002's
    ``_create_sequences``: the window ``X[t-lookback:t]`` predicts whether
    ``Close_t > Close_{t-1}``). Built with :func:`featurelens.data.sliding_windows`
    (``horizon=0`` on the already shifted label).

    Parameters
    ----------
    features : pandas.DataFrame
        From :func:`ohlcv_features` (with ``dropna=True``), DatetimeIndex.
    lookback, stride : int

    Returns
    -------
    FinanceData
    """
    if not isinstance(features, pd.DataFrame):
        raise TypeError(f"features must be the DataFrame of ohlcv_features, got {type(features).__name__}")
    if LABEL not in features.columns:
        raise ValueError(f"features has no {LABEL!r} column; build it with ohlcv_features")
    if not isinstance(features.index, pd.DatetimeIndex):
        raise ValueError("features must be indexed by date (a DatetimeIndex), as ohlcv_features returns it")
    names = [c for c in features.columns if c != LABEL]
    tech = [c for c in names if c not in CALENDAR]
    cal = [c for c in names if c in CALENDAR]
    if not tech or not cal:
        raise ValueError(f"features must hold technical and calendar columns, got {names}")
    w = sliding_windows(features[names].astype(np.float32), features[LABEL].to_numpy(),
                        lookback=lookback, horizon=0, stride=stride)
    return FinanceData(
        X=w.X.astype(np.float32),
        y=np.asarray(w.y, dtype=np.float32),
        dates=features.index[w.label_index],
        feature_names=list(w.feature_names),
        groups={"technical": tech, "calendar": cal},
    )
