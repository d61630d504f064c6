"""Robustness curves: closed forms for noise and dropout, attack ordering, masks, areas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from featurelens.datasets import make_multifeature
from featurelens.models import MLP, train
from featurelens.reliance._robustness import normalised_area, robustness, robustness_curve


def _linear(w, b=0.0):
    lin = nn.Linear(len(w), 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w], dtype=torch.float64))
        lin.bias.fill_(b)
    return nn.Sequential(lin, nn.Flatten(0))


def test_normalised_area_trapezoid():
    assert normalised_area([0, 1, 3], [1.0, 0.5, 0.5]) == pytest.approx((0.75 * 1 + 0.5 * 2) / 3)
    assert normalised_area([0.2], [0.7]) == 0.7


def test_gaussian_noise_mse_matches_closed_form():
    # E[(w·(x + s σ z) + b − y)²] = mse_clean + s² Σ_j w_j² σ_j² for noise independent of the residual
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40000, 3)) * [1.0, 2.0, 0.5]
    w = np.array([0.5, -1.0, 2.0])
    y = X @ w + rng.normal(scale=0.3, size=40000)
    model = _linear(list(w))
    curve = robustness_curve(model, X, y, perturbation="gaussian", strengths=[0, 0.5, 1.0], metric="mse", n_repeats=2,
                             random_state=0)
    sigma = X.std(axis=0)
    expected = curve.clean + np.array([0, 0.25, 1.0]) * np.sum(w**2 * sigma**2)
    np.testing.assert_allclose(curve.table["metric"], expected, rtol=0.03)
    assert curve.clean == pytest.approx(np.mean((X @ w - y) ** 2))
    assert not curve.higher_is_better and curve.table["degradation"].iloc[-1] > 0


def test_dropout_full_strength_replaces_group_by_its_mean_and_immutable_is_kept():
    rng = np.random.default_rng(1)
    X = rng.normal(loc=[1.0, -2.0, 3.0, 0.5], size=(500, 4))
    y = X.sum(axis=1)
    model = _linear([1.0, 1.0, 1.0, 1.0])
    groups = {"a": [0, 1], "b": [2, 3]}
    curve = robustness_curve(model, X, y, perturbation="dropout", strengths=[0, 1.0], metric="mse", groups=groups,
                             perturb_groups=["a"], immutable=[1], random_state=0)
    x_ref = X.copy()
    x_ref[:, 0] = X[:, 0].mean()  # feature 1 is immutable, group b is not perturbed
    assert curve.table["metric"].iloc[-1] == pytest.approx(np.mean((x_ref.sum(axis=1) - y) ** 2), rel=1e-12)
    assert curve.perturbed == ["x0"]
    by_group = robustness_curve(model, X, y, perturbation="dropout", strengths=[1.0], metric="mse", groups=groups,
                                immutable=["b", 1], random_state=0)
    assert by_group.perturbed == ["x0"] and by_group.table["metric"].iloc[0] == curve.table["metric"].iloc[-1]
    half = robustness_curve(model, X, y, perturbation="dropout", strengths=[0.5], metric="mse", perturb_groups=["a"],
                            groups=groups, immutable=[1], n_repeats=20, random_state=0)
    # each row's x0 is dropped with probability 1/2: expected mse = var(x0) / 2
    assert half.table["metric"].iloc[0] == pytest.approx(X[:, 0].var() / 2, rel=0.1)


def test_model_that_ignores_perturbed_features_is_unaffected():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 3))
    y = (X[:, 2] > 0).astype(float)
    model = _linear([0.0, 0.0, 5.0])
    for kind in ("gaussian", "dropout", "fgsm", "pgd"):
        curve = robustness_curve(model, X, y, perturbation=kind, strengths=[0, 0.5, 1.0], immutable=[2], n_repeats=2,
                                 random_state=0)
        assert curve.table["metric"].tolist() == [curve.clean] * 3, kind
        assert curve.auc == curve.clean and curve.degradation_auc == 0


@pytest.fixture(scope="module")
def trained():
    data = make_multifeature(1200, n_groups=2, group_dim=3, random_state=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(6, hidden=(32,))
    train(model, data.X, data.y, epochs=40, lr=1e-2, train_batch_size=128, random_state=0, patience=None)
    return model, data


def test_attack_curves_on_trained_model_pgd_below_fgsm_below_clean(trained):
    model, data = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = robustness(model, data.X, data.y, perturbations=["fgsm", "pgd", "gaussian"], strengths=[0, 0.1, 0.25],
                       n_repeats=2, n_steps=20, random_state=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    f = table[table.perturbation == "fgsm"].set_index("strength")["metric"]
    p = table[table.perturbation == "pgd"].set_index("strength")["metric"]
    g = table[table.perturbation == "gaussian"].set_index("strength")["metric"]
    assert f[0] == p[0] == g[0] > 0.85
    assert all(p[s] <= f[s] < f[0] for s in (0.1, 0.25))
    assert f[0.25] < f[0.1] and p[0.25] < p[0.1]
    assert g[0.25] > f[0.25]  # random noise of the same size hurts less than the attack
    aucs = table.groupby("perturbation")["auc"].first()
    assert aucs["pgd"] <= aucs["fgsm"] < aucs["gaussian"]
    pgd_rows = table[table.perturbation == "pgd"]
    assert pgd_rows["auc"].iloc[0] == pytest.approx(normalised_area(pgd_rows["strength"], pgd_rows["metric"]))
    assert list(table.columns[:6]) == ["perturbation", "strength", "metric", "std", "n_repeats", "degradation"]


def test_group_restricted_attack_and_dataframe_names(trained):
    model, data = trained
    frame = pd.DataFrame(data.X, columns=data.feature_names)
    curve = robustness_curve(model, frame, data.y, perturbation="fgsm", strengths=[0, 0.25], groups=data.groups,
                             perturb_groups=["genuine_0"])
    full = robustness_curve(model, frame, data.y, perturbation="fgsm", strengths=[0, 0.25])
    assert curve.perturbed == data.groups["genuine_0"]
    assert full.table["metric"].iloc[1] < curve.table["metric"].iloc[1] < curve.clean


def test_seeded_curves_repeat():
    model = _linear([1.0, -1.0])
    X = np.random.default_rng(0).normal(size=(100, 2))
    y = (X[:, 0] > X[:, 1]).astype(float)
    a = robustness_curve(model, X, y, perturbation="pgd", strengths=[0.5], random_state=7, n_repeats=2)
    b = robustness_curve(model, X, y, perturbation="pgd", strengths=[0.5], random_state=7, n_repeats=2)
    pd.testing.assert_frame_equal(a.table, b.table)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"perturbation": "blur"}, ValueError, "perturbation must be one of"),
        ({"strengths": [0.5, 0.1]}, ValueError, "strictly increasing"),
        ({"strengths": [-1.0]}, ValueError, "finite and non-negative"),
        ({"strengths": "0.1"}, TypeError, "strengths must be a sequence"),
        ({"strengths": []}, ValueError, "non-empty"),
        ({"perturbation": "dropout", "strengths": [0.5, 2.0]}, ValueError, r"probabilities in \[0, 1\]"),
        ({"perturb_groups": ["a"]}, ValueError, "needs groups="),
        ({"groups": {"a": [0]}, "perturb_groups": ["b"]}, ValueError, "unknown group 'b'"),
        ({"groups": {"a": [0]}, "perturb_groups": "a"}, TypeError, "not a single str"),
        ({"immutable": [0, 1]}, ValueError, "no feature is left to perturb"),
        ({"immutable": ["zz"]}, ValueError, "unknown feature name 'zz'"),
        ({"immutable": "x0"}, TypeError, "not a single str"),
        ({"metric": "f1"}, ValueError, "metric must be one of"),
        ({"link": "tanh"}, ValueError, "link must be one of"),
        ({"n_repeats": 0}, ValueError, "n_repeats must be >= 1"),
        ({"y": np.zeros(3)}, ValueError, "y has 3 rows but X has 10"),
        ({"model": "m"}, TypeError, "model must be a torch.nn.Module"),
    ],
)
def test_robustness_curve_errors(kwargs, exc, match):
    args = {"model": _linear([1.0, 1.0]), "X": np.ones((10, 2)), "y": np.zeros(10)}
    args.update(kwargs)
    model, X, y = args.pop("model"), args.pop("X"), args.pop("y")
    with pytest.raises(exc, match=match):
        robustness_curve(model, X, y, **args)


def test_robustness_errors():
    with pytest.raises(TypeError, match="not a single str"):
        robustness(_linear([1.0]), np.ones((4, 1)), np.zeros(4), perturbations="fgsm")
    with pytest.raises(ValueError, match="at least one perturbation"):
        robustness(_linear([1.0]), np.ones((4, 1)), np.zeros(4), perturbations=[])
