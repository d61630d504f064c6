"""Deep-hedging example: closed forms, simulation moments, P&L accounting, the trained hedger."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featurelens.examples.hedging import (
    FEATURE_NAMES,
    HedgingTask,
    Market,
    Paths,
    TrainConfig,
    attack_hedger,
    bs_call_delta,
    bs_call_price,
    delta_hedge,
    entropic_risk,
    expected_shortfall,
    fit_hedger_,
    hedge_with_model,
    hedging_risk,
    make_hedger,
    no_hedge,
    risk_table,
    rollout,
    simulate_gbm,
    simulate_heston,
    train_hedger,
)


def test_bs_price_textbook_value_and_parity():
    # Hull's example: S = K = 100, T = 1, sigma = 0.2, r = 0.05 gives 10.4506
    price = bs_call_price(100.0, 100.0, 1.0, 0.2, rate=0.05)
    assert float(price) == pytest.approx(10.450583572185565, abs=1e-9)
    # put-call parity against the put from the same d1, d2 written out independently
    s, k, t, v, r = 1.1, 1.0, 0.3, 0.25, 0.02
    d1 = (math.log(s / k) + (r + v * v / 2) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    put = k * math.exp(-r * t) * cdf(-d2) - s * cdf(-d1)
    assert float(bs_call_price(s, k, t, v, rate=r)) - put == pytest.approx(s - k * math.exp(-r * t), abs=1e-12)


@pytest.mark.parametrize("spot,tau,sigma", [(1.0, 0.08, 0.2), (0.9, 0.5, 0.3), (1.2, 0.02, 0.15)])
def test_bs_delta_is_finite_difference_of_price(spot, tau, sigma):
    h = 1e-5
    fd = (bs_call_price(spot + h, 1.0, tau, sigma) - bs_call_price(spot - h, 1.0, tau, sigma)) / (2 * h)
    assert float(bs_call_delta(spot, 1.0, tau, sigma)) == pytest.approx(float(fd), abs=1e-8)


def test_bs_price_matches_monte_carlo_on_gbm():
    paths = simulate_gbm(200_000, sigma=0.2, maturity=0.25, n_steps=5, random_state=0, dtype=torch.float64)
    payoff = torch.clamp(paths.spot[:, -1] - 1.0, min=0.0)
    se = float(payoff.std()) / math.sqrt(payoff.numel())
    assert abs(float(payoff.mean()) - float(bs_call_price(1.0, 1.0, 0.25, 0.2))) < 4 * se


def test_gbm_moments():
    mu, sigma, t = 0.3, 0.25, 0.5
    paths = simulate_gbm(100_000, mu=mu, sigma=sigma, maturity=t, n_steps=10, random_state=1,
                         dtype=torch.float64)
    st = paths.spot[:, -1]
    assert paths.spot.shape == (100_000, 11) and torch.all(paths.spot[:, 0] == 1.0)
    se = float(st.std()) / math.sqrt(st.numel())
    assert abs(float(st.mean()) - math.exp(mu * t)) < 4 * se  # E[S_T] = S_0 e^{mu T}
    assert float(torch.log(st).var()) == pytest.approx(sigma**2 * t, rel=0.02)
    assert torch.all(paths.variance == sigma**2)


def test_heston_variance_mean_reversion_and_martingale():
    kappa, theta, v0, xi, t, n = 3.0, 0.04, 0.09, 0.1, 1.0, 50
    paths = simulate_heston(100_000, kappa=kappa, theta=theta, xi=xi, rho=-0.7, v0=v0, mu=0.1,
                            maturity=t, n_steps=n, random_state=2, dtype=torch.float64)
    dt = t / n
    # with rare truncation, full-truncation Euler has E[V_{k+1}] = E[V_k] + kappa (theta - E[V_k]) dt
    euler = theta + (v0 - theta) * (1 - kappa * dt) ** np.arange(n + 1)
    mean_v = paths.variance.mean(0).numpy()
    se = paths.variance.std(0).numpy() / math.sqrt(paths.n_paths)
    assert np.all(np.abs(mean_v - euler) < 4 * se + 1e-12)
    # and the continuous-time mean theta + (v0 - theta) e^{-kappa t} up to the O(dt) scheme bias
    exact = theta + (v0 - theta) * np.exp(-kappa * dt * np.arange(n + 1))
    assert np.max(np.abs(mean_v - exact)) < 2e-3
    st = paths.spot[:, -1]
    assert abs(float(st.mean()) - math.exp(0.1 * t)) < 4 * float(st.std()) / math.sqrt(st.numel())
    # correlation of the log-return with the variance increment is rho for small dt
    dlog = torch.diff(torch.log(paths.spot[:, :2]), dim=1).squeeze(1)
    dv = torch.diff(paths.variance[:, :2], dim=1).squeeze(1)
    assert float(torch.corrcoef(torch.stack([dlog, dv]))[0, 1]) == pytest.approx(-0.7, abs=0.02)


def test_heston_is_seeded():
    a = simulate_heston(50, random_state=7)
    b = simulate_heston(50, random_state=7)
    assert torch.equal(a.spot, b.spot) and torch.equal(a.variance, b.variance)
    assert not torch.equal(a.spot, simulate_heston(50, random_state=8).spot)


def test_pnl_accounting_on_a_hand_made_path():
    spot = torch.tensor([[1.0, 1.1, 0.9, 1.2]], dtype=torch.float64)
    paths = Paths(spot, torch.full_like(spot, 0.04), 0.1)
    task = HedgingTask(Market("gbm", n_steps=3, maturity=0.3), strike=1.0, cost=0.01, premium=0.05)
    hedges = [0.5, 0.8, 0.2]
    seen = []

    def decide(k, x, raw):
        seen.append(raw.clone())
        return torch.full((1,), hedges[k], dtype=torch.float64)

    run = rollout(task, paths, decide)
    gains = 0.5 * 0.1 + 0.8 * (-0.2) + 0.2 * 0.3
    costs = 0.01 * (0.5 * 1.0 + 0.3 * 1.1 + 0.6 * 0.9)
    assert float(run.pnl) == pytest.approx(0.05 - 0.2 + gains - costs, abs=1e-12)
    raw = torch.cat(seen)  # rows k = 0, 1, 2; columns in FEATURE_NAMES order
    assert raw[:, 0].tolist() == pytest.approx([0.0, math.log(1.1), math.log(0.9)])
    assert raw[:, 1].tolist() == pytest.approx([0.0, math.log(1.1), math.log(0.9 / 1.1)])
    assert raw[:, 2].tolist() == pytest.approx([0.2] * 3)
    assert raw[:, 3].tolist() == pytest.approx([0.0] * 3)
    assert raw[:, 4].tolist() == pytest.approx([0.3, 0.2, 0.1])
    assert raw[:, 5].tolist() == pytest.approx([0.0, 0.5, 0.8])
    assert raw[:, 6].tolist() == pytest.approx([0.0, 0.5, 0.3])
    assert raw[:, 7].tolist() == pytest.approx([0.05, 0.05 + 0.05 - 0.005, 0.095 - 0.16 - 0.0033])
    assert torch.allclose(run.inputs[0], raw / task.feature_scale().double())
    assert run.hedges.tolist() == [hedges]


def test_no_hedge_and_delta_hedge_anchors():
    task = HedgingTask(Market("gbm"), premium=0.01)
    paths = task.market.simulate(4000, random_state=3, dtype=torch.float64)
    assert torch.allclose(no_hedge(task, paths).pnl, 0.01 - task.payoff(paths), atol=0, rtol=0)
    run = delta_hedge(task, paths)
    tau = torch.tensor([task.market.maturity - k * task.market.dt for k in range(task.market.n_steps)])
    expect = bs_call_delta(paths.spot[:, :-1], 1.0, tau.double(), 0.2)
    assert torch.allclose(run.hedges, expect, atol=1e-12)
    # with the BS premium, the discrete delta hedge's P&L has mean ~0 and small spread
    task = HedgingTask(Market("gbm"), premium=float(bs_call_price(1.0, 1.0, 20 / 250, 0.2)))
    pnl = delta_hedge(task, paths).pnl
    assert abs(float(pnl.mean())) < 4 * float(pnl.std()) / math.sqrt(pnl.numel())
    assert float(pnl.std()) < 0.2 * float(no_hedge(task, paths).pnl.std())


def test_risk_measures_match_their_definitions():
    rng = np.random.default_rng(0)
    pnl = rng.normal(0.0, 1.0, 1001)
    worst = np.sort(-pnl)[::-1][: math.ceil(0.1 * 1001)]
    assert float(expected_shortfall(torch.tensor(pnl), alpha=0.1)) == pytest.approx(worst.mean(), rel=1e-12)
    lam = 2.0
    assert float(entropic_risk(torch.tensor(pnl), lam=lam)) == pytest.approx(
        np.log(np.mean(np.exp(-lam * pnl))) / lam, rel=1e-10)
    table = risk_table({"a": torch.tensor(pnl)}, alpha=0.1, lam=lam)
    assert table.loc["a", "pnl_std"] == pytest.approx(pnl.std(ddof=1))
    assert float(hedging_risk(torch.tensor(pnl), criterion="entropic", lam=lam)) == table.loc["a", "entropic_2"]


def test_make_hedger_is_seeded_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a, b = make_hedger(random_state=5), make_hedger(random_state=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a(torch.zeros(3, len(FEATURE_NAMES))).shape == (3,)


@pytest.fixture(scope="module")
def trained():
    task = HedgingTask(Market("gbm"), cost=0.0)
    model = make_hedger()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net, history = train_hedger(model, task, TrainConfig(n_paths=1000, epochs=150), random_state=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched
    return task, net, history


def test_trained_hedger_acceptance(trained):
    """Issue 6: lower ES than unhedged, within 20 % of the BS delta hedge's ES (GBM, no costs)."""
    task, net, history = trained
    paths = task.market.simulate(20_000, random_state=99)
    with torch.no_grad():
        es = {name: float(expected_shortfall(run.pnl, alpha=0.1)) for name, run in
              {"net": hedge_with_model(net, task, paths), "delta": delta_hedge(task, paths),
               "none": no_hedge(task, paths)}.items()}
    assert es["net"] < es["none"]
    assert abs(es["net"] - es["delta"]) <= 0.2 * es["delta"]
    # stricter: the hedging error alone (premium = BS price, so ES measures only the residual risk)
    premium = float(bs_call_price(1.0, 1.0, task.market.maturity, 0.2))
    assert abs((es["net"] - premium) - (es["delta"] - premium)) <= 0.2 * (es["delta"] - premium)
    assert history[-1] < history[0]


def test_train_hedger_copies_a_pruned_model_after_a_forward_pass():
    from featurelens.models.pruning import magnitude_prune

    model = magnitude_prune(make_hedger(), amount=0.5)
    model(torch.zeros(3, 8))  # the pruning pre-hook leaves a non-leaf ``weight`` that deepcopy refuses
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained, history = train_hedger(model, HedgingTask(), TrainConfig(n_paths=16, epochs=2), random_state=0)
    assert len(history) == 2 and trained is not model
    assert torch.equal(trained.layer1.weight_mask, model.layer1.weight_mask)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())

def test_training_is_reproducible():
    task = HedgingTask(Market("heston"), cost=1e-3)
    cfg = TrainConfig(n_paths=64, epochs=3, criterion="entropic")
    a, ha = train_hedger(make_hedger(), task, cfg, random_state=4)
    b, hb = train_hedger(make_hedger(), task, cfg, random_state=4)
    assert ha == hb
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # fit_hedger_ trains in place, reports every epoch, and gives the same result
    model, seen = make_hedger(), []
    hc = fit_hedger_(model, task, cfg, random_state=4, on_epoch=lambda e, m: seen.append((e, m is model)))
    assert hc == ha and seen == [(1, True), (2, True), (3, True)] and not model.training
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), model.parameters(), strict=True))


def test_errors():
    with pytest.raises(ValueError, match="model must be one of"):
        Market("bachelier")
    with pytest.raises(ValueError, match="sigma"):
        Market("gbm", sigma=-0.1)
    with pytest.raises(ValueError, match="rho"):
        Market("heston", rho=1.5)
    with pytest.raises(TypeError, match="market must be a Market"):
        HedgingTask(market="gbm")
    with pytest.raises(ValueError, match="cost"):
        HedgingTask(cost=-1.0)
    with pytest.raises(ValueError, match="n_paths"):
        simulate_gbm(0)
    with pytest.raises(ValueError, match="tau"):
        bs_call_price(1.0, 1.0, 0.0, 0.2)
    with pytest.raises(ValueError, match="sigma"):
        bs_call_delta(1.0, 1.0, 0.1, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        expected_shortfall(torch.zeros(3), alpha=0.0)
    with pytest.raises(ValueError, match="lam"):
        entropic_risk(torch.zeros(3), lam=-1.0)
    with pytest.raises(ValueError, match="criterion"):
        TrainConfig(criterion="mse")
    task = HedgingTask()
    paths = task.market.simulate(4, random_state=0)
    with pytest.raises(ValueError, match="offset must have shape"):
        hedge_with_model(make_hedger(), task, paths, offset=torch.zeros(4, 3, 8))
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        hedge_with_model("net", task, paths)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        train_hedger(None, task)


def test_attack_hedger_is_fgsm_on_market_features():
    task = HedgingTask(Market("heston"), cost=1e-3)
    paths = task.market.simulate(300, random_state=11)
    model = make_hedger(random_state=3)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    offset = attack_hedger(model, task, paths, epsilon=0.5)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    with torch.no_grad():
        x = hedge_with_model(model, task, paths).inputs
    std = x.reshape(-1, 8).std(0, correction=0)
    # independent FGSM: gradient of the ES with respect to an additive offset at 0
    zero = torch.zeros_like(x, requires_grad=True)
    (grad,) = torch.autograd.grad(expected_shortfall(hedge_with_model(model, task, paths, offset=zero).pnl), zero)
    expect = 0.5 * std * grad.sign()
    expect[..., 4:] = 0.0
    assert torch.allclose(offset, expect, atol=1e-6)
    assert torch.all(offset[..., 4:] == 0) and torch.all(offset.abs() <= 0.5 * std * (1 + 1e-5) + 1e-7)
    with torch.no_grad():
        clean = expected_shortfall(hedge_with_model(model, task, paths).pnl)
        attacked = expected_shortfall(hedge_with_model(model, task, paths, offset=offset).pnl)
    assert float(attacked) > float(clean)
    pgd = attack_hedger(model, task, paths, epsilon=0.5, n_steps=3, random_start=True, random_state=0)
    assert torch.equal(pgd, attack_hedger(model, task, paths, epsilon=0.5, n_steps=3, random_start=True,
                                          random_state=0))
    with torch.no_grad():
        assert float(expected_shortfall(hedge_with_model(model, task, paths, offset=pgd).pnl)) > float(clean)
    with pytest.raises(ValueError, match="features must index"):
        attack_hedger(model, task, paths, epsilon=0.5, features=(8,))
    with pytest.raises(ValueError, match="epsilon"):
        attack_hedger(model, task, paths, epsilon=-1.0)
