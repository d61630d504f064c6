"""Synthetic daily OHLCV bars with regime-switching returns and a planted calendar effect.

:func:`make_ohlcv` generates the bars without network access; they have the layout that
:func:`featurelens.data.read_ohlcv` reads and :func:`featurelens.data.check_ohlcv` checks, and
:func:`featurelens.data.ohlcv_features` turns them into technical and calendar features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_random_state,
)
from featurelens.data import last_trading_day_of_month


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
    random_state: RandomState = 0,
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
