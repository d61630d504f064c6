"""Tests for featurelens.datasets._ohlcv: regime-switching bars and the planted calendar effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurelens.data import check_ohlcv, ohlcv_features
from featurelens.datasets import RegimeParams, make_ohlcv


def test_generator_is_seeded_and_consistent():
    a = make_ohlcv(300, random_state=5)
    b = make_ohlcv(300, random_state=5)
    pd.testing.assert_frame_equal(a, b)
    assert (a["High"] >= a[["Open", "Close"]].max(axis=1)).all()
    assert (a["Low"] <= a[["Open", "Close"]].min(axis=1)).all()
    assert (a["Date"].dt.day_of_week < 5).all() and a["Date"].is_monotonic_increasing
    assert check_ohlcv(a).shape == (300, 6)


def test_regimes_set_the_return_law():
    bars = make_ohlcv(6000, regimes=RegimeParams(drift=(0.003, -0.003), volatility=(0.01, 0.03),
                                                 switch=(0.02, 0.02)), random_state=1)
    r = np.diff(np.log(bars["Close"].to_numpy()))
    state = bars["regime"].to_numpy()[1:]
    assert r[state == 0].mean() > 0.002 and r[state == 1].mean() < -0.001
    assert r[state == 0].std() == pytest.approx(0.01, rel=0.1)
    assert r[state == 1].std() == pytest.approx(0.03, rel=0.1)
    switches = np.mean(state[1:] != state[:-1])
    assert switches == pytest.approx(0.02, abs=0.006)


@pytest.mark.parametrize("effect", [0.0, 1.0])
def test_planted_calendar_effect_is_detectable(effect):
    f = ohlcv_features(make_ohlcv(3000, calendar_effect=effect, random_state=2))
    effect_day = (f["day_of_week"] == 4) | (f["month_end"] == 1)  # the label's day is Monday / month start
    gap = f["next_day_up"][effect_day].mean() - f["next_day_up"][~effect_day].mean()
    if effect == 0:
        assert abs(gap) < 0.06  # standard error of the gap ~ 0.025
    else:
        assert gap > 0.2  # Phi(1.0 + drift/vol) - Phi(drift/vol) ~ 0.33


def test_calendar_effect_per_day():
    effect = np.r_[np.full(1500, 1.5), np.zeros(1500)]  # an anomaly that disappears
    f = ohlcv_features(make_ohlcv(3000, calendar_effect=effect, random_state=6))
    effect_day = (f["day_of_week"] == 4) | (f["month_end"] == 1)
    early = np.arange(len(f)) < 1450
    gaps = [f["next_day_up"][effect_day & part].mean() - f["next_day_up"][~effect_day & part].mean()
            for part in (early, ~early)]
    assert gaps[0] > 0.25 and abs(gaps[1]) < 0.07
    with pytest.raises(ValueError, match=r"one value per day \(10\)"):
        make_ohlcv(10, calendar_effect=np.ones(3))
    with pytest.raises(ValueError, match="finite values >= 0"):
        make_ohlcv(3, calendar_effect=[0.0, -1.0, 0.0])


def test_generator_errors():
    with pytest.raises(ValueError, match="calendar_effect must be in"):
        make_ohlcv(10, calendar_effect=-1.0)
    with pytest.raises(ValueError, match="start must be a date"):
        make_ohlcv(10, start="yesterday-ish")
    with pytest.raises(TypeError, match="regimes must be a RegimeParams"):
        make_ohlcv(10, regimes={"drift": (0, 0)})
    with pytest.raises(ValueError, match=r"regimes\.switch must be in"):
        make_ohlcv(10, regimes=RegimeParams(switch=(0.0, 0.1)))
