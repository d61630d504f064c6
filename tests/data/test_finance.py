"""Tests for featurelens.data._ohlcv (reader, checks, calendar) and ._finance (features, windows).

The features are those of the superposition and spurious-correlation notebook; the bars come from
:func:`featurelens.datasets.make_ohlcv` (tested in tests/datasets/test_ohlcv.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurelens.data import (
    FinanceData,
    check_ohlcv,
    finance_windows,
    ohlcv_features,
    read_ohlcv,
    rsi,
    sma,
)
from featurelens.datasets import make_ohlcv


def _rsi_loop(close: np.ndarray, n: int, wilder: bool) -> np.ndarray:
    """Independent reference: explicit loops over the textbook definitions."""
    out = np.full(close.size, np.nan)
    gains = [max(close[t] - close[t - 1], 0.0) for t in range(1, close.size)]
    losses = [max(close[t - 1] - close[t], 0.0) for t in range(1, close.size)]
    g = lo = None
    for t in range(n, close.size):  # RSI_t uses changes 1..t
        if wilder:
            if t == n:
                g, lo = sum(gains[:n]) / n, sum(losses[:n]) / n
            else:
                g = (g * (n - 1) + gains[t - 1]) / n
                lo = (lo * (n - 1) + losses[t - 1]) / n
        else:
            g, lo = sum(gains[t - n : t]) / n, sum(losses[t - n : t]) / n
        if lo == 0:
            out[t] = 100.0 if g > 0 else 50.0
        else:
            out[t] = 100.0 - 100.0 / (1.0 + g / lo)
    return out


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return make_ohlcv(400, calendar_effect=0.0, random_state=3)


def test_sma_equals_loop(bars):
    close = bars["Close"].to_numpy()
    got = sma(bars["Close"], 20).to_numpy()
    assert np.isnan(got[:19]).all()
    ref = np.array([close[t - 19 : t + 1].mean() for t in range(19, close.size)])
    np.testing.assert_allclose(got[19:], ref, rtol=1e-12)


@pytest.mark.parametrize("method", ["wilder", "simple"])
def test_rsi_equals_loop(bars, method):
    close = bars["Close"].to_numpy()
    got = rsi(close, 14, method=method).to_numpy()
    ref = _rsi_loop(close, 14, wilder=method == "wilder")
    assert np.isnan(got[:14]).all()
    np.testing.assert_allclose(got[14:], ref[14:], rtol=1e-10)
    assert ((got[14:] >= 0) & (got[14:] <= 100)).all()


def test_rsi_simple_equals_seed_formula(bars):
    """The superposition and spurious-correlation notebook's ``_calculate_rsi`` (pandas rolling means).

    Compared where it is defined.
    """
    close = bars["Close"]
    delta = close.diff()
    gain = delta.where(delta > 0, 0).rolling(window=14).mean()
    loss = (-delta.where(delta < 0, 0)).rolling(window=14).mean()
    seed = 100 - 100 / (1 + gain / loss)
    got = rsi(close, 14, method="simple")
    np.testing.assert_allclose(got[14:], seed[14:], rtol=1e-10)
    # Wilder's smoothing differs from the notebook's simple mean after the first value
    wilder = rsi(close, 14)
    assert wilder.iloc[14] == pytest.approx(got.iloc[14])
    assert np.abs(wilder[30:] - got[30:]).max() > 1.0


def test_rsi_edge_cases():
    up = np.arange(1.0, 31.0)
    assert (rsi(up, 14).to_numpy()[14:] == 100.0).all()
    assert (rsi(up[::-1], 14).to_numpy()[14:] == 0.0).all()
    assert (rsi(np.ones(30), 14).to_numpy()[14:] == 50.0).all()  # the notebook gives NaN (0 / 0)
    # hand value: changes +1, -1 alternating over n = 2 -> gains 0.5, losses 0.5 -> 50
    assert rsi([1.0, 2.0, 1.0], 2).iloc[2] == pytest.approx(50.0)
    # Wilder by hand, n = 2: changes +2, -1, +3: G2 = 1, L2 = 0.5; G3 = (1 + 3) / 2 = 2, L3 = 0.25
    r = rsi([10.0, 12.0, 11.0, 14.0], 2).to_numpy()
    assert r[2] == pytest.approx(100 - 100 / (1 + 2.0))
    assert r[3] == pytest.approx(100 - 100 / (1 + 8.0))


def test_features_match_pandas_and_hand(bars):
    f = ohlcv_features(bars, dropna=False)
    assert list(f.columns) == ["sma", "rsi", "volume_std", "day_of_week", "month_end", "next_day_up"]
    np.testing.assert_allclose(f["volume_std"].to_numpy()[19:],
                               bars["Volume"].rolling(20).std().to_numpy()[19:], rtol=1e-12)
    np.testing.assert_array_equal(f["day_of_week"].to_numpy(), bars["Date"].dt.day_of_week.to_numpy())
    close = bars["Close"].to_numpy()
    np.testing.assert_array_equal(f["next_day_up"].to_numpy()[:-1], (close[1:] > close[:-1]).astype(float))
    assert np.isnan(f["next_day_up"].iloc[-1])
    # month end: last trading day of each month, by an explicit loop over months
    dates = bars["Date"]
    expected = np.zeros(len(dates))
    for _, idx in dates.groupby(dates.dt.to_period("M")).groups.items():
        expected[max(idx)] = 1.0
    expected[-1] = f["month_end"].iloc[-1]  # the last row is judged by the calendar (tested below)
    np.testing.assert_array_equal(f["month_end"].to_numpy(), expected)
    clean = ohlcv_features(bars)
    assert not clean.isna().any().any() and len(clean) == len(bars) - 19 - 1


def test_month_end_on_weekend_is_the_friday():
    # January 2015 ends on a Saturday: the last trading day is Friday the 30th (the notebook's
    # is_month_end marks no day of that month)
    days = pd.bdate_range("2015-01-26", "2015-02-03")
    bars = pd.DataFrame({"Date": days, "Open": 1.0, "High": 1.0, "Low": 1.0,
                         "Close": np.linspace(1, 2, len(days)), "Volume": 1.0})
    f = ohlcv_features(bars, sma_window=2, rsi_window=1, volume_window=2, dropna=False)
    ends = f.index[f["month_end"] == 1].strftime("%Y-%m-%d").tolist()
    assert ends == ["2015-01-30"]
    # the notebook's yfinance index carries no frequency, so is_month_end means the calendar day
    assert not pd.DatetimeIndex(days.to_numpy()).is_month_end.any()


def test_relative_features(bars):
    f = ohlcv_features(bars, relative=True)
    raw = ohlcv_features(bars)
    close = bars.set_index("Date")["Close"].loc[f.index]
    np.testing.assert_allclose(f["sma_gap"], close / raw["sma"] - 1, rtol=1e-12)
    vol_mean = bars["Volume"].rolling(20).mean().set_axis(bars["Date"]).loc[f.index]
    np.testing.assert_allclose(f["volume_cv"], raw["volume_std"] / vol_mean, rtol=1e-12)


def test_windows_align_with_features(bars):
    f = ohlcv_features(bars, relative=True)
    w = finance_windows(f, lookback=30)
    assert isinstance(w, FinanceData)
    assert w.X.shape == (len(f) - 29, 30, 5) and w.X.dtype == np.float32
    assert w.groups == {"technical": ["sma_gap", "rsi", "volume_cv"],
                        "calendar": ["day_of_week", "month_end"]}
    for i in (0, 17, len(w) - 1):
        np.testing.assert_allclose(w.X[i], f.iloc[i : i + 30, :5].to_numpy(np.float32))
        assert w.y[i] == f["next_day_up"].iloc[i + 29]
        assert w.dates[i] == f.index[i + 29]
    assert w.spec().groups["calendar"] == (3, 4)
    np.testing.assert_array_equal(w.environments(), w.dates.year)
    assert set(np.unique(w.environments("quarter")) % 10) <= {1, 2, 3, 4}


def test_read_ohlcv_roundtrip(tmp_path, bars):
    frame = bars.drop(columns="regime").rename(columns=str.lower)
    frame["Adj Close"] = frame["close"]
    frame = frame.iloc[::-1]  # newest first, as some downloads write it
    path = tmp_path / "prices.csv"
    frame.to_csv(path, index=False)
    got = read_ohlcv(path)
    assert list(got.columns) == ["Date", "Open", "High", "Low", "Close", "Volume"]
    np.testing.assert_allclose(got["Close"], bars["Close"], rtol=1e-12)
    assert (got["Date"].to_numpy() == bars["Date"].to_numpy()).all()


def _bad(tmp_path, edit) -> str:
    frame = make_ohlcv(30, random_state=0).drop(columns="regime")
    frame = edit(frame)
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda f: f.drop(columns="Volume"), "missing column.*'Volume'"),
    (lambda f: f.assign(Close=["x", *list(f["Close"][1:])]),
     "column 'Close' has 1 missing or non-numeric value.*row 0"),
    (lambda f: f.assign(Date=[f["Date"][0]] * len(f)), "'Date' repeats"),
    (lambda f: f.assign(Low=-1.0), "prices .* must be positive"),
    (lambda f: f.assign(Volume=-5.0), "'Volume' has negative values"),
    (lambda f: f.assign(Date="not a date"), "'Date' holds values that are not dates"),
    (lambda f: f.iloc[:0], "has no rows"),
])
def test_read_ohlcv_errors(tmp_path, edit, match):
    with pytest.raises(ValueError, match=match):
        read_ohlcv(_bad(tmp_path, edit))


def test_read_ohlcv_missing_and_empty(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_ohlcv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        read_ohlcv(tmp_path / "empty.csv")


def test_argument_errors(bars):
    with pytest.raises(ValueError, match="method must be one of"):
        rsi(bars["Close"], method="ema")
    with pytest.raises(ValueError, match="window must be >= 1"):
        sma(bars["Close"], 0)
    with pytest.raises(TypeError, match="close must hold numbers"):
        sma(pd.Series(["a", "b"]))
    with pytest.raises(TypeError, match="close must be a pandas Series or a 1-D array"):
        rsi(3.0)
    with pytest.raises(TypeError, match="ohlcv must be a pandas DataFrame"):
        check_ohlcv(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="too few for the indicator windows"):
        ohlcv_features(bars.iloc[:15])
    f = ohlcv_features(bars)
    with pytest.raises(ValueError, match="no 'next_day_up' column"):
        finance_windows(f.drop(columns="next_day_up"))
    with pytest.raises(ValueError, match="indexed by date"):
        finance_windows(f.reset_index(drop=True))
    with pytest.raises(ValueError, match="technical and calendar columns"):
        finance_windows(f.drop(columns=["day_of_week", "month_end"]))
    with pytest.raises(TypeError, match="features must be the DataFrame"):
        finance_windows(f.to_numpy())
    with pytest.raises(ValueError, match=r"lookback .* exceeds"):
        finance_windows(f, lookback=10_000)
