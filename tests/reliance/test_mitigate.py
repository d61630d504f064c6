"""Mitigation: new models only, strategy mechanics against independent computations, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.datasets import make_biased
from featurelens.models import MLP, train
from featurelens.reliance._mitigate import infer_environments, mitigate
from featurelens.reliance._mitigation_strategies import STRATEGIES


@pytest.fixture(scope="module")
def setup():
    data = make_biased(1200, n_groups=1, group_dim=4, bias_strength=0.8, random_state=0)
    val = make_biased(600, n_groups=1, group_dim=4, bias_strength=0.8, random_state=1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(8, hidden=(16,))
    train(model, data.X, data.y, epochs=15, lr=1e-2, train_batch_size=64, random_state=0, patience=None)
    return model, data, val


@pytest.fixture(scope="module")
def envs(setup):
    # true (label, bias label) groups, so the strategy tests need no probe training
    _, data, val = setup
    return 2 * data.y.astype(int) + _bias_label(data.X), 2 * val.y.astype(int) + _bias_label(val.X)


def _bias_label(X: np.ndarray, k: int = 4) -> np.ndarray:
    return (np.einsum("ij,ij->i", X[:, -k:].astype(np.float64), X[:, -k:].astype(np.float64)) > k).astype(int)


def test_infer_environments_recovers_bias_alignment(setup):
    _, data, _ = setup
    env = infer_environments(data.X, data.y, groups=data.groups, suspect="spurious", feature_names=data.feature_names,
                             epochs=20, random_state=0)
    y = data.y.astype(int)
    aligned_true = _bias_label(data.X) == y
    aligned_inferred = (env % 2) == y  # env = 2·y + probe prediction
    assert set(np.unique(env)) == {0, 1, 2, 3}
    assert np.all(env // 2 == y)
    assert (aligned_inferred == aligned_true).mean() > 0.8


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_returns_a_new_model_and_leaves_the_original(setup, envs, strategy):
    model, data, val = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"environments": envs[0], "environments_val": envs[1]}
    res = mitigate(model, data.X, data.y, strategy=strategy, groups=data.groups, suspect="spurious",
                   feature_names=data.feature_names, X_val=val.X, y_val=val.y, epochs=2, train_batch_size=128,
                   random_state=0, **kw)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert res.model is not model and not res.model.training
    assert any(not torch.equal(before[k], v) for k, v in res.model.state_dict().items())
    assert res.strategy == strategy and len(res.history) >= 1
    again = mitigate(model, data.X, data.y, strategy=strategy, groups=data.groups, suspect="spurious",
                     feature_names=data.feature_names, X_val=val.X, y_val=val.y, epochs=2, train_batch_size=128,
                     random_state=0, **kw)
    for k, v in res.model.state_dict().items():  # seeded: bit-identical on one machine
        assert torch.equal(v, again.model.state_dict()[k]), (strategy, k)


def test_dfr_head_matches_independent_balanced_logistic_fit(setup):
    # one balanced subset = every row when the environments are already balanced: compare with sklearn directly
    from sklearn.linear_model import LogisticRegression

    model, data, val = setup
    env_val = np.arange(len(val.y)) % 2  # two equal environments
    res = mitigate(model, data.X, data.y, strategy="dfr", groups=data.groups, suspect="spurious",
                   feature_names=data.feature_names, X_val=val.X,
                   y_val=val.y, environments_val=env_val, options={"n_subsets": 1, "C": 0.5}, random_state=0)
    with torch.no_grad():
        z = model.act1(model.layer1(torch.as_tensor(val.X))).double().numpy()
    mu, sd = z.mean(axis=0), z.std(axis=0) + 1e-12
    ref = LogisticRegression(l1_ratio=1.0, C=0.5, solver="liblinear", max_iter=2000).fit((z - mu) / sd,
                                                                                         val.y.astype(int))
    logit_ref = ref.decision_function((z - mu) / sd)
    with torch.no_grad():
        logit = res.model(torch.as_tensor(val.X)).double().numpy()
    np.testing.assert_allclose(logit, logit_ref, atol=5e-3)  # liblinear stops at tol=1e-4; float32 head
    assert torch.equal(res.model.layer1.weight, model.layer1.weight)  # features frozen


def test_randomize_makes_the_suspect_group_irrelevant(setup):
    # with p=1 the suspect columns are shuffled within every batch; the model cannot use them
    model, data, _ = setup
    res = mitigate(model, data.X, data.y, strategy="randomize", groups=data.groups, suspect="spurious",
                   feature_names=data.feature_names, epochs=15,
                   train_batch_size=64, lr=1e-2, patience=None, random_state=0)
    w = res.model.layer1.weight.detach().abs()
    w0 = model.layer1.weight.detach().abs()
    share = lambda m: float(m[:, 4:].sum() / m.sum())  # noqa: E731  (columns 4..7 are the spurious group)
    assert share(w) < 0.5 * share(w0)


def test_jtt_upweights_exactly_the_original_models_errors(setup, monkeypatch):
    import featurelens.reliance._mitigation_strategies as strat

    model, data, _ = setup
    seen = {}
    real_fit = strat._fit

    def spy(ctx, **kw):
        seen.update(kw)
        return real_fit(ctx, **kw)

    monkeypatch.setattr(strat, "_fit", spy)
    mitigate(model, data.X, data.y, strategy="jtt", groups=data.groups, suspect="spurious",
             feature_names=data.feature_names, epochs=1,
             options={"upweight": 7.0}, random_state=0)
    with torch.no_grad():
        wrong = ((model(torch.as_tensor(data.X)) > 0).numpy() != (data.y > 0.5))
    np.testing.assert_array_equal(seen["sample_weight"], np.where(wrong, 7.0, 1.0))


def test_jtt_first_stage_trains_a_fresh_identifier_for_t_epochs(setup, monkeypatch):
    import featurelens.reliance._mitigation_strategies as strat

    model, data, _ = setup
    seen, identifiers = {}, []
    real_fit, real_train = strat._fit, strat.train

    def spy_fit(ctx, **kw):
        seen.update(kw)
        return real_fit(ctx, **kw)

    def spy_train(m, *a, **kw):
        identifiers.append((m, kw["epochs"]))
        return real_train(m, *a, **kw)

    monkeypatch.setattr(strat, "_fit", spy_fit)
    monkeypatch.setattr(strat, "train", spy_train)
    mitigate(model, data.X, data.y, strategy="jtt", groups=data.groups, suspect="spurious",
             feature_names=data.feature_names, epochs=1, options={"identification_epochs": 2, "upweight": 3.0},
             random_state=0)
    assert len(identifiers) == 2  # the identification model, then the final one
    ident, epochs = identifiers[0]
    assert epochs == 2 and ident is not model and identifiers[1][0] is not ident
    with torch.no_grad():
        wrong = ((ident(torch.as_tensor(data.X)) > 0).numpy() != (data.y > 0.5))
    np.testing.assert_array_equal(seen["sample_weight"], np.where(wrong, 3.0, 1.0))


def test_reweight_balances_environment_totals(setup, envs, monkeypatch):
    import featurelens.reliance._mitigation_strategies as strat

    model, data, _ = setup
    seen = {}
    real_fit = strat._fit

    def spy(ctx, **kw):
        seen.update(kw)
        return real_fit(ctx, **kw)

    monkeypatch.setattr(strat, "_fit", spy)
    mitigate(model, data.X, data.y, strategy="reweight", groups=data.groups, suspect="spurious",
             feature_names=data.feature_names, environments=envs[0], epochs=1, random_state=0)
    w, env = seen["sample_weight"], envs[0]
    totals = np.array([w[env == g].sum() for g in range(4)])
    np.testing.assert_allclose(totals, len(env) / 4)  # each environment carries the same total weight
    for g in range(4):
        assert np.all(w[env == g] == w[env == g][0])


def test_group_dro_weights_follow_the_exponentiated_group_losses():
    # independent loop: a model whose loss is constant per group; q ∝ exp(η Σ_t L_g) after t batches
    from featurelens.reliance._mitigation_strategies import Context, group_dro

    X = torch.zeros(8, 1)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.float64)
    env = np.array([0, 0, 0, 0, 1, 1, 1, 1])

    class Const(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return self.b.expand(x.shape[0]) * 0 + torch.tensor([2.0] * 4 + [-1.0] * 4)[: x.shape[0]] + self.b * 0

    captured = []
    import featurelens.reliance._mitigation_strategies as strat

    def fake_fit(ctx, batch_objective):
        net = ctx.model
        for _ in range(3):
            objective = batch_objective(net, X, torch.as_tensor(y, dtype=torch.float32), torch.arange(8))
            captured.append(float(objective.detach()))
        return net, None

    ctx = Context(model=Const(), original=Const(), X=X, y=y, suspect_cols=[0], environments=env, X_val=None,
                  y_val=None, env_val=None, loss="bce", train_options={}, rng=np.random.default_rng(0))
    orig = strat._fit
    strat._fit = fake_fit
    try:
        group_dro(ctx, eta=0.5)
    finally:
        strat._fit = orig
    l0 = float(nn.functional.binary_cross_entropy_with_logits(torch.tensor(2.0), torch.tensor(0.0)))
    l1 = float(nn.functional.binary_cross_entropy_with_logits(torch.tensor(-1.0), torch.tensor(1.0)))
    for t, value in enumerate(captured, start=1):
        q = np.array([np.exp(0.5 * t * l0), np.exp(0.5 * t * l1)])
        q /= q.sum()
        assert value == pytest.approx(q[0] * l0 + q[1] * l1, rel=1e-6)


def test_pcgrad_projects_conflicting_environment_gradients():
    from featurelens.reliance._mitigation_strategies import Context, pcgrad

    # a linear model with two environments whose gradients conflict: compare with the closed form
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.3, -0.2]]))
    model = nn.Sequential(lin, nn.Flatten(0))
    X = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    y = np.array([1.0, 0.0])
    env = np.array([0, 1])
    import featurelens.reliance._mitigation_strategies as strat

    grads = {}

    def fake_fit(ctx, batch_objective):
        obj = batch_objective(ctx.model, X, torch.as_tensor(y, dtype=torch.float32), torch.arange(2))
        obj.backward()
        grads["g"] = lin.weight.grad.clone().reshape(-1)
        return ctx.model, None

    ctx = Context(model=model, original=model, X=X, y=y, suspect_cols=[0], environments=env, X_val=None, y_val=None,
                  env_val=None, loss="bce", train_options={}, rng=np.random.default_rng(0))
    orig = strat._fit
    strat._fit = fake_fit
    try:
        pcgrad(ctx)
    finally:
        strat._fit = orig
    w = torch.tensor([0.3, -0.2])
    g = []
    for xi, yi in zip(X, y, strict=True):
        p = torch.sigmoid(w @ xi)
        g.append((p - yi) * xi)
    g0, g1 = g
    assert float(g0 @ g1) < 0  # the two environments conflict
    p0 = g0 - (g0 @ g1) / (g1 @ g1) * g1
    p1 = g1 - (g1 @ g0) / (g0 @ g0) * g0
    torch.testing.assert_close(grads["g"], p0 + p1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"strategy": "prayer"}, ValueError, "strategy must be one of"),
        ({"suspect": "nope"}, ValueError, "suspect must name one of the groups"),
        ({"options": {"zeal": 1}}, TypeError, "got unexpected option"),
        ({"momentum": 0.9}, TypeError, "unexpected option"),
        ({"init": "xavier"}, ValueError, "init must be one of"),
        ({"loss": "hinge"}, ValueError, "loss must be one of"),
        ({"strategy": "dfr"}, ValueError, "needs held-out data"),
        ({"X_val": np.zeros((4, 8))}, ValueError, "give both X_val and y_val"),
        ({"environments": [0, 1]}, ValueError, "one environment per row"),
        ({"environments_val": [0, 1]}, ValueError, "environments_val= needs X_val"),
        ({"strategy": "group_dro", "loss": "mse"}, ValueError, "needs environments="),
        ({"strategy": "jtt", "loss": "mse"}, ValueError, "needs a classification loss"),
        ({"options": {"p": 2.0}}, ValueError, "p must be in"),
        ({"y_train": np.zeros(5)}, ValueError, "y_train has 5 rows"),
        ({"model": "m"}, TypeError, "model must be a torch.nn.Module"),
    ],
)
def test_mitigate_errors(kwargs, exc, match):
    args = {"model": MLP(8, hidden=(4,)), "X_train": np.random.default_rng(0).normal(size=(40, 8)),
            "y_train": np.tile([0.0, 1.0], 20), "strategy": "randomize",
            "groups": {"a": [0, 1, 2, 3], "spurious": [4, 5, 6, 7]}, "suspect": "spurious", "epochs": 1}
    args.update(kwargs)
    model, X, y = args.pop("model"), args.pop("X_train"), args.pop("y_train")
    with pytest.raises(exc, match=match):
        mitigate(model, X, y, **args)


def test_reset_needs_resettable_modules():
    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(8))

        def forward(self, x):
            return x @ self.w

    with pytest.raises(ValueError, match="init='reset' cannot re-initialise parameter"):
        mitigate(Raw(), np.zeros((10, 8)), np.zeros(10), strategy="randomize", groups={"s": [0]}, suspect="s", epochs=1)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"model": "m"}, TypeError, "model must be a torch.nn.Module"),
        ({"strategies": "randomize"}, TypeError, "not a single str"),
        ({"strategies": []}, ValueError, "at least one strategy"),
        ({"strategies": {"x": {"p": 1.0}}}, ValueError, "needs a 'strategy' entry"),
        ({"train": np.zeros((4, 8))}, TypeError, r"train must be a tuple \(X, y\)"),
        ({"shifted": {}}, ValueError, "at least one"),
        ({"suspect": "nope"}, ValueError, "suspect must name one of the groups"),
        ({"n_repeats": 1}, ValueError, "n_repeats must be >= 2"),
        ({"metric": "f1"}, ValueError, "metric must be one of"),
    ],
)
def test_evaluate_mitigations_errors(kwargs, exc, match):
    from featurelens.reliance import evaluate_mitigations

    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    y = np.tile([0.0, 1.0], 20)
    args = {"model": MLP(8, hidden=(4,)), "strategies": ["randomize"], "train": (X, y), "test": (X, y),
            "shifted": (X, y), "groups": {"a": [0, 1, 2, 3], "spurious": [4, 5, 6, 7]}, "suspect": "spurious",
            "epochs": 1}
    args.update(kwargs)
    model, strategies = args.pop("model"), args.pop("strategies")
    with pytest.raises(exc, match=match):
        evaluate_mitigations(model, strategies, **args)


def test_evaluate_mitigations_small_run_and_meets_errors():
    from featurelens.reliance import evaluate_mitigations

    X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    y = (X[:, 4] > 0).astype(np.float32)
    model = MLP(8, hidden=(4,))
    seen: list[dict] = []
    res = evaluate_mitigations(model, {"rand": {"strategy": "randomize", "p": 1.0}}, train=(X, y), test=(X, y),
                               shifted={"a": (X, y), "b": (X, 1 - y)}, groups={"spurious": [4, 5]},
                               suspect="spurious", epochs=1, random_state=0, on_row=seen.append)
    assert list(res.table["strategy"]) == ["unmitigated", "rand"]
    assert [r["strategy"] for r in seen] == ["unmitigated", "rand"]
    assert seen[1]["shifted_a"] == res.table["shifted_a"].iloc[1]
    assert {"shifted_a", "shifted_b", "shifted_a_change", "shifted_b_change"} <= set(res.table.columns)
    t = res.table.set_index("strategy")
    assert t.loc["unmitigated", "shifted_a"] + t.loc["unmitigated", "shifted_b"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no column 'shifted_change'"):
        res.meets()
    assert res.meets(shifted="a").index.tolist() == ["unmitigated", "rand"]


def test_sequence_inputs_flatten_model():
    from featurelens.reliance import evaluate_mitigations

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3, 4)).astype(np.float32)  # (n, T, d)
    y = (X[:, -1, 3] > 0).astype(np.float32)  # the last feature is a perfect shortcut
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), MLP(12, hidden=(6,)))
    groups = {"core": [0, 1, 2], "shortcut": [3]}
    res = evaluate_mitigations(model, ["randomize", "group_dro", "dfr", "adversarial"], train=(X, y), val=(X, y),
                               test=(X, y), shifted=(X[::-1].copy(), y), groups=groups, suspect="shortcut",
                               environments=np.arange(80) % 2, environments_val=np.arange(80) % 2, epochs=1,
                               random_state=0)
    assert len(res.table) == 5 and np.isfinite(res.table["reliance"]).all()
    adv = res.results["adversarial"]
    assert adv.model is not model
