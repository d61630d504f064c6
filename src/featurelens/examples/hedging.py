"""Deep hedging of a European call: simulation, the recurrent MLP hedger, anchors and risk.

The deep-hedging lottery-ticket notebook hedges a short call on a Heston underlier with a network fed at each step
with 8 features (:data:`FEATURE_NAMES`): log(S/K), the last log return, sqrt(v), Δv, time
to maturity, the previous hedge, a trade-volume indicator (the size of the last rebalance,
``|δ_{k−1} − δ_{k−2}|``) and the cumulative P&L of the hedge book. This module provides

- :class:`Market` (GBM, exact; Heston, full-truncation Euler) and :class:`Paths`;
- :class:`HedgingTask` (strike, proportional cost, premium; fixed feature scales) and
  :func:`rollout` (the P&L accounting), :func:`hedge_with_model` (a per-step
  ``nn.Module`` ``(n, 8) → (n,)`` applied recurrently), and the anchors
  :func:`delta_hedge` (Black–Scholes) and :func:`no_hedge`;
- the risk measures :func:`expected_shortfall` and :func:`entropic_risk`, and :func:`risk_table`;
- :func:`make_hedger` (the network, also a ``load_model`` factory), :func:`train_hedger`
  (optionally adversarial) and :func:`attack_hedger` (FGSM/PGD on the observed market features).

pfhedge is an optional anchor in the issue; it is not a dependency of featurelens and
no pfhedge code path exists here (see ``docs/hedging.md`` for the measured pfhedge numbers).
"""

from featurelens.examples._hedging_market import (
    Market,
    Paths,
    bs_call_delta,
    bs_call_price,
    simulate_gbm,
    simulate_heston,
)
from featurelens.examples._hedging_rollout import (
    FEATURE_NAMES,
    MARKET_FEATURES,
    HedgeRun,
    HedgingTask,
    delta_hedge,
    entropic_risk,
    expected_shortfall,
    hedge_with_model,
    no_hedge,
    risk_table,
    rollout,
)
from featurelens.examples._hedging_train import (
    TrainConfig,
    attack_hedger,
    fit_hedger_,
    hedging_risk,
    make_hedger,
    train_hedger,
)

__all__ = [
    "FEATURE_NAMES",
    "MARKET_FEATURES",
    "HedgeRun",
    "HedgingTask",
    "Market",
    "Paths",
    "TrainConfig",
    "attack_hedger",
    "bs_call_delta",
    "bs_call_price",
    "delta_hedge",
    "entropic_risk",
    "expected_shortfall",
    "fit_hedger_",
    "hedge_with_model",
    "hedging_risk",
    "make_hedger",
    "no_hedge",
    "risk_table",
    "rollout",
    "simulate_gbm",
    "simulate_heston",
    "train_hedger",
]
