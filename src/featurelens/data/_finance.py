"""Finance features from OHLCV tables (see :mod:`._ohlcv`): technical vs calendar groups.

The features follow the superposition and spurious-correlation notebook. The notebook
downloads daily bars with ``yfinance``, builds five features per day
(SMA(20) of the close, RSI(14), the 20-day rolling standard deviation of the
volume, the day of the week and a month-end flag) and cuts 30-day windows
whose label says whether the next close is above the last one. This module
builds the same features from any OHLCV table (a CSV with the columns
``Date, Open, High, Low, Close, Volume`` as written by common market-data
downloads, or the synthetic :func:`featurelens.datasets.make_ohlcv`) without network
access, and keeps the notebook's feature groups: ``technical`` (SMA, RSI, volume
std) and ``calendar`` (day of week, month end).

Definitions that differ from the notebook, and why:

* **RSI** defaults to Wilder's smoothing (the definition of Wilder, 1978):
  the first average gain/loss is the simple mean of the first ``n`` changes,
  then ``avg_t = (avg_{t-1} * (n - 1) + value_t) / n``. The notebook used a
  simple ``n``-day rolling mean (sometimes called Cutler's RSI); it is
  available as ``rsi_method="simple"``. Both give ``RSI = 100`` when the
  average loss is 0 and the average gain positive, and 50 when both are 0
  (the notebook divided 0 by 0 there and produced NaN).
* **Month end** marks the last *trading* day of each month present in the
  data (the next row falls in another month). The notebook used
  ``DatetimeIndex.is_month_end``, the last *calendar* day, which is never a
  trading day when a month ends on a weekend, so about a third of the month
  ends were missed. The final row, whose successor is unknown, is marked when
  it is the last business day of its month.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from featurelens._validation import check_int, check_option
from featurelens.data._ohlcv import check_ohlcv, last_trading_day_of_month
from featurelens.data._spec import FeatureSpec
from featurelens.data._windows import sliding_windows

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
    """Compute the simple moving average ``SMA_t = mean(close_{t-window+1} .. close_t)``.

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
    * ``method="simple"`` (as in the superposition and spurious-correlation notebook):
      ``G_t = mean(g_{t-n+1} .. g_t)``, ``L_t`` alike;

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
    """Compute daily features and the next-day-up label from an OHLCV table.

    The features of the superposition and spurious-correlation notebook. Columns, for day ``t``:

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
    ``next_day_up`` of its last day, ``Close_{t+1} > Close_t`` (the superposition and spurious-correlation
    notebook's ``_create_sequences``: the window ``X[t-lookback:t]`` predicts whether
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
        X=w.X,  # float32 already: the columns were cast before windowing
        y=np.asarray(w.y, dtype=np.float32),
        dates=features.index[w.label_index],
        feature_names=list(w.feature_names),
        groups={"technical": tech, "calendar": cal},
    )
