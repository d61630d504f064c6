"""Finance example: technical vs calendar features of a next-day-up classifier.

The finance study of the superposition and spurious-correlation study.

:func:`run_finance_example` (CLI: ``featurelens example finance [--quick]``)
generates daily bars with regime-switching returns (:func:`featurelens.datasets.make_ohlcv`)
and a planted calendar anomaly — Mondays and the first trading day of each
month rise ``calendar_effect`` standard deviations more often — that holds for
the first ``effect_share`` of the history and then disappears (as anomalies
do once traded on). It builds that study's features (SMA(20) as the gap of the
close to it, RSI(14) with Wilder's smoothing, the 20-day volume coefficient
of variation, day of week, month end) as windows of ``lookback`` days with
the next-day-up label, trains on the anomaly period (chronological
train / validation / test split), and judges the model, the detector and the
mitigations on the newest data where the anomaly is gone (the shifted test
set). Calendar features are immutable under attack (nobody can perturb the
date). Everything runs on one CPU thread in about a minute with the defaults.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from featurelens._validation import check_float, check_int
from featurelens.data import finance_windows, ohlcv_features, split_indices
from featurelens.datasets import make_ohlcv
from featurelens.examples._reliance_study import (
    Split,
    StudyResult,
    feature_moments,
    run_reliance_study,
    standardize,
)

STRATEGIES = ("randomize", "adversarial", "orthogonal")
LABEL = "next_day_up"


def finance_splits(
    *, n_days: int, calendar_effect: float, effect_share: float, lookback: int, random_state: int = 0
) -> dict[str, Any]:
    """Build the example's data: splits, feature spec, environments, windows and the CLI table.

    Returns a dict with ``splits`` (train, val, test, shifted :class:`Split`),
    ``spec``, ``environments`` (year of each test and shifted window's last
    day), ``table`` (the daily
    standardized features and label of the test and shifted period) and
    ``ground_truth``.
    """
    n = check_int(n_days, name="n_days", minimum=200)
    c = check_float(calendar_effect, name="calendar_effect", low=0.0)
    share = check_float(effect_share, name="effect_share", low=0.1, high=0.9)
    lookback = check_int(lookback, name="lookback", minimum=1)
    n_effect = round(n * share)
    effect = np.r_[np.full(n_effect, c), np.zeros(n - n_effect)]
    bars = make_ohlcv(n, calendar_effect=effect, random_state=random_state)
    features = ohlcv_features(bars, relative=True)
    w = finance_windows(features, lookback=lookback)
    # windows whose label day (the day after the window) falls after the anomaly ended are shifted
    cut = int(np.searchsorted(w.dates, bars["Date"].iloc[n_effect - 1], side="left"))
    tr, va, te = split_indices(cut, fractions=(0.6, 0.2, 0.2), shuffle=False, gap=lookback - 1)
    sh = np.arange(cut, len(w))
    X_tr, X_va, X_te, X_sh = standardize(w.X[tr], w.X[va], w.X[te], w.X[sh])
    splits = {"train": Split(X_tr, w.y[tr]), "val": Split(X_va, w.y[va]),
              "test": Split(X_te, w.y[te]), "shifted": Split(X_sh, w.y[sh])}
    # the daily rows behind the test and shifted windows, standardized like the training windows
    first_row = int(features.index.get_indexer([w.dates[te[0]]])[0]) - (lookback - 1)
    daily = features.iloc[first_row:].copy()
    names = w.feature_names
    mean, std = feature_moments(w.X[tr])
    daily[names] = (daily[names].to_numpy() - mean) / std
    return {
        "splits": splits,
        "spec": w.spec(),
        "environments": np.r_[w.dates[te].year, w.dates[sh].year],
        "table": daily.assign(year=daily.index.year).reset_index(drop=True),
        "ground_truth": {
            "spurious_group": "calendar",
            "calendar_effect": c,
            "anomaly ends": str(bars["Date"].iloc[n_effect - 1].date()),
            "rule": ("returns of Mondays and of the first trading day of each month are shifted up by "
                     f"{c} standard deviations until the anomaly ends, then not at all"),
        },
    }


def run_finance_example(
    out: str | os.PathLike,
    *,
    n_days: int = 3000,
    calendar_effect: float = 1.5,
    effect_share: float = 0.75,
    lookback: int = 5,
    epochs: int = 100,
    mitigation_epochs: int = 30,
    quick: bool = False,
    random_state: int = 0,
    force: bool = False,
    progress: bool = False,
) -> StudyResult:
    """Train, detect, attack, mitigate and report on synthetic market data (module docstring).

    Parameters
    ----------
    out : path
        Output directory: ``report/`` (HTML, figures, results.json), ``model.pt2``
        (``torch.export``), ``data.csv`` (daily standardized features and the
        ``next_day_up`` label of the test and shifted period) and ``groups.json``.
    n_days : int
        Business days generated (``>= 200``).
    calendar_effect : float
        Planted anomaly in standard deviations of the daily return.
    effect_share : float
        Share of the history with the anomaly, in ``[0.1, 0.9]``.
    lookback : int
        Days per window.
    epochs, mitigation_epochs : int
        Maximum epochs of the model and of each mitigation.
    quick : bool
        A smaller run for tests (1200 days, 15 / 8 epochs).
    random_state : int

    Returns
    -------
    StudyResult
    """
    if quick:
        n_days, epochs, mitigation_epochs = min(n_days, 1200), min(epochs, 15), min(mitigation_epochs, 8)
    data = finance_splits(n_days=n_days, calendar_effect=calendar_effect, effect_share=effect_share,
                          lookback=lookback, random_state=random_state)
    return run_reliance_study(
        out,
        title="featurelens example: does a next-day-up classifier rely on a calendar anomaly?",
        splits=data["splits"], spec=data["spec"], suspect="calendar",
        environments=data["environments"], window=63, strategies=STRATEGIES,
        immutable=list(data["spec"].groups_as_names()["calendar"]), table=data["table"], epochs=epochs,
        mitigation_epochs=mitigation_epochs,
        summary={"data": f"{n_days} business days of synthetic OHLCV bars (regime-switching returns)",
                 "features": "sma_gap, rsi (Wilder, 14), volume_cv (20) | day_of_week, month_end",
                 "label": "next_day_up: Close of the next day > Close of the window's last day"},
        ground_truth=data["ground_truth"],
        notes=["Detection runs on the in-distribution test windows and the shifted windows "
               "(environments: calendar years), i.e. on the newest labelled data.",
               "Attacks leave the calendar features unchanged (immutable).",
               f"Re-run the detector: featurelens reliance --model model.pt2 --data data.csv --groups "
               f"groups.json --label {LABEL} --lookback {lookback} --environments year --out OUT"],
        random_state=random_state, force=force, progress=progress,
    )
