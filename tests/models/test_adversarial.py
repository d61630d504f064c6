"""FGSM / PGD in per-feature ℓ∞ boxes, adversarial training, and the training hooks they use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.datasets import make_multifeature
from featurelens.models import MLP, train
from featurelens.models._training import row_losses
from featurelens.models.adversarial import adversarial_train, feature_scale, fgsm, perturb, pgd


def _linear(w: list[float], b: float = 0.0, dtype=torch.float64) -> nn.Linear:
    lin = nn.Linear(len(w), 1).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w], dtype=dtype))
        lin.bias.fill_(b)
    return lin


class _Squeeze(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).squeeze(-1)


# -- perturb: the functional core ----------------------------------------------------------------


def test_perturb_one_step_is_sign_of_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, dtype=torch.float64, generator=g)
    w = torch.tensor([1.5, -2.0, 0.0, 0.3], dtype=torch.float64)
    eps = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    out = perturb(lambda z: (z * w).sum(), x, epsilon=eps)
    expected = x + eps * torch.sign(w)  # a zero gradient leaves the feature where it is
    assert torch.equal(out, expected)


def test_pgd_steps_reach_the_maximiser_inside_the_box():
    # maximise −Σ (z − c)²: the maximiser c lies inside the box for some entries, outside for others
    x = torch.zeros(3, 2, dtype=torch.float64)
    c = torch.tensor([[0.05, -0.5], [0.5, 0.02], [-0.03, 0.0]], dtype=torch.float64)
    eps, alpha = 0.2, 0.01
    out = perturb(lambda z: -((z - c) ** 2).sum(), x, epsilon=eps, n_steps=100, step_size=alpha)
    target = c.clamp(-eps, eps)  # the projection of the maximiser onto the box
    assert torch.all((out - target).abs() <= alpha + 1e-12)
    assert torch.all(out.abs() <= eps)


def test_random_start_stays_in_box_is_seeded_and_leaves_global_rng():
    x = torch.randn(200, 3)
    state = torch.get_rng_state()
    a = perturb(lambda z: z.sum() * 0, x, epsilon=0.5, random_start=True, random_state=3)
    b = perturb(lambda z: z.sum() * 0, x, epsilon=0.5, random_start=True, random_state=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    d = (a - x).abs()
    assert float(d.max()) <= 0.5 + 1e-6
    assert float(d.mean()) == pytest.approx(0.25, abs=0.03)  # |U(−ε, ε)| has mean ε/2


def test_mask_keeps_immutable_features_bit_identical_for_sequences():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, 3, generator=g)  # (n, T, d)
    mask = torch.tensor([True, False, True])
    out = perturb(lambda z: (z**3).sum(), x, epsilon=torch.tensor([0.3, 5.0, 0.1]), n_steps=4, random_start=True,
                  mask=mask, random_state=0)
    assert torch.equal(out[..., 1], x[..., 1])
    assert float((out[..., 0] - x[..., 0]).abs().max()) <= 0.3 + 1e-6
    assert float((out[..., 0] - x[..., 0]).abs().min()) > 0


# -- fgsm / pgd on models --------------------------------------------------------------------------


def test_fgsm_matches_closed_form_on_logistic_model_and_raises_the_true_label_loss():
    w = [2.0, -1.0, 0.5]
    model = _Squeeze(_linear(w, 0.1))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3)) * np.array([1.0, 3.0, 0.5])
    y = (rng.random(50) < 0.5).astype(np.float64)
    adv = fgsm(model, X, y, epsilon=0.25)
    std = X.std(axis=0)
    # d/dx BCE(logit, y) = (σ(logit) − y) w; σ − y is positive for y = 0, negative for y = 1
    expected = X + 0.25 * std * np.sign(np.array(w))[None, :] * np.where(y == 1, -1.0, 1.0)[:, None]
    np.testing.assert_allclose(adv.numpy(), expected, rtol=0, atol=1e-12)
    with torch.no_grad():
        before = row_losses("bce", model(torch.as_tensor(X)), torch.as_tensor(y))
        after = row_losses("bce", model(adv), torch.as_tensor(y))
    assert bool((after > before).all())


def test_scale_std_equals_explicit_scale_and_batching_does_not_matter():
    model = _Squeeze(_linear([1.0, 1.0, -1.0], dtype=torch.float32))
    rng = np.random.default_rng(1)
    X = (rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1]).astype(np.float32)
    y = (rng.random(40) < 0.5).astype(np.float32)
    a = fgsm(model, X, y, epsilon=0.5)
    b = fgsm(model, X, y, epsilon=0.5 * feature_scale(torch.as_tensor(X)), scale=None)
    c = fgsm(model, X, y, epsilon=0.5, scale=feature_scale(torch.as_tensor(X)).numpy(), batch_size=7)
    assert torch.equal(a, b) and torch.equal(a, c)
    p1 = pgd(model, X, y, epsilon=0.5, random_state=4)
    p2 = pgd(model, X, y, epsilon=0.5, random_state=4, batch_size=40)
    assert torch.equal(p1, p2)
    # budgets and masks broadcast over rows (leading axis 1) apply to every chunk
    e = 0.5 * feature_scale(torch.as_tensor(X))[None, :]
    keep = torch.tensor([[True, False, True]])
    assert torch.equal(fgsm(model, X, y, epsilon=e, scale=None, batch_size=7), b)
    assert torch.equal(fgsm(model, X, y, epsilon=0.5, mask=keep, batch_size=7),
                       fgsm(model, X, y, epsilon=0.5, mask=keep))


def test_pgd_random_start_does_not_depend_on_batch_size():
    """One random start for all rows: chunks of 7 rows give the rows of one call, and both
    equal the ascent written out by hand from that start."""
    model = _Squeeze(_linear([1.0, -2.0, 0.5]))
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 3))
    y = (rng.random(30) < 0.5).astype(np.float64)
    kw = {"epsilon": 0.3, "n_steps": 2, "step_size": 0.05, "random_state": 9}  # small steps: the start shows
    whole = pgd(model, X, y, **kw)
    assert torch.equal(pgd(model, X, y, batch_size=7, **kw), whole)
    Xt = torch.as_tensor(X)
    eps = 0.3 * feature_scale(Xt)
    u = torch.rand(Xt.shape, generator=torch.Generator().manual_seed(
        int(np.random.default_rng(9).integers(0, 2**63 - 1))), dtype=Xt.dtype)
    x = Xt + (2 * u - 1) * eps
    for _ in range(2):  # the same ascent by hand
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(row_losses("bce", model(xr), torch.as_tensor(y)).sum(), xr)
        x = torch.minimum(torch.maximum(x + 0.05 / 0.3 * eps * g.sign(), Xt - eps), Xt + eps)
    torch.testing.assert_close(whole, x, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def trained():
    data = make_multifeature(1500, n_groups=2, group_dim=3, random_state=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(6, hidden=(32,))
    train(model, data.X, data.y, epochs=40, lr=1e-2, train_batch_size=128, random_state=0, patience=None)
    return model, torch.as_tensor(data.X), torch.as_tensor(data.y)


def _acc(model, X, y) -> float:
    with torch.no_grad():
        return float(((model(X) > 0).float() == y).float().mean())


def _mean_loss(model, X, y) -> float:
    with torch.no_grad():
        return float(row_losses("bce", model(X), y).mean())


@pytest.mark.parametrize("eps", [0.1, 0.25])
def test_attacks_order_pgd_fgsm_clean_on_trained_model(trained, eps):
    model, X, y = trained
    clean = _acc(model, X, y)
    assert clean > 0.85
    x_f = fgsm(model, X, y, epsilon=eps)
    x_p = pgd(model, X, y, epsilon=eps, n_steps=20, random_state=0)
    acc_f, acc_p = _acc(model, x_f, y), _acc(model, x_p, y)
    assert acc_p <= acc_f < clean - 0.05
    assert _mean_loss(model, x_p, y) >= _mean_loss(model, x_f, y) > _mean_loss(model, X, y)
    # the superposition and spurious-correlation notebook's defect: stepping up the loss of the flipped labels
    # makes the model *more* accurate
    flipped = fgsm(model, X, 1 - y, epsilon=eps)
    assert _acc(model, flipped, y) > clean


def test_attack_leaves_model_as_found(trained):
    model, X, y = trained
    model.train()
    model.layer2.weight.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        pgd(model, X, y, epsilon=0.2, n_steps=3, random_state=0)
        assert model.training and not model.layer2.weight.requires_grad
        assert model.layer1.weight.requires_grad and model.layer1.weight.grad is None
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    finally:
        model.eval()
        model.layer2.weight.requires_grad_(True)


def test_pgd_mask_and_ce_loss():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).double()
    X = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    mask = np.array([True, True, False, True])
    adv = pgd(model, X, y, epsilon=0.3, mask=mask, random_state=1)
    assert torch.equal(adv[:, 2], X[:, 2])
    with torch.no_grad():
        assert float(row_losses("ce", model(adv), y).sum()) > float(row_losses("ce", model(X), y).sum())


# -- adversarial training ------------------------------------------------------------------------


def _robust_vs_weak(n: int, seed: int):
    """Tsipras et al.'s toy: one robust feature and many weak, non-robust ones."""
    rng = np.random.default_rng(seed)
    s = rng.choice([-1.0, 1.0], size=n)
    robust = s + 0.6 * rng.normal(size=n)
    weak = 0.3 * s[:, None] + rng.normal(size=(n, 30))
    return np.column_stack([robust, weak]).astype(np.float32), (s > 0).astype(np.float32)


def test_adversarial_training_is_robust_and_leaves_the_original_untouched():
    X, y = _robust_vs_weak(1500, 0)
    Xt, yt = (torch.as_tensor(a) for a in _robust_vs_weak(2000, 1))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(31, hidden=())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"epochs": 15, "lr": 2e-2, "train_batch_size": 100, "patience": None}
    plain = train(MLP(31, hidden=()), X, y, random_state=0, **kw).model
    robust, result = adversarial_train(model, X, y, epsilon=0.3, scale=None, mix=1.0, n_steps=2, random_state=0, **kw)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert robust is not model and result.model is robust
    assert len(result.history) == 15
    acc_plain = _acc(plain, pgd(plain, Xt, yt, epsilon=0.3, scale=None, random_state=0), yt)
    acc_robust = _acc(robust, pgd(robust, Xt, yt, epsilon=0.3, scale=None, random_state=0), yt)
    assert acc_robust > acc_plain + 0.04
    # the robust model leans on the robust feature: its weight share is larger
    share = lambda m: float(m.layer1.weight.detach()[0, 0].abs() / m.layer1.weight.detach().abs().sum())  # noqa: E731
    assert share(robust) > 2 * share(plain)


# -- training hooks used by adversarial training and mitigation ----------------------------------


def test_batch_objective_equal_to_mean_loss_reproduces_plain_training():
    data = make_multifeature(300, n_groups=2, group_dim=2, random_state=0)
    seen: list[torch.Tensor] = []

    def objective(net, xb, yb, rows):
        seen.append(rows.clone())
        out = net(xb)
        return nn.functional.binary_cross_entropy_with_logits(out, yb, reduction="sum") / yb.shape[0]

    def fit(**kw):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            m = MLP(4, hidden=(8,), dropout=0.1)
        return train(m, data.X, data.y, epochs=3, random_state=5, **kw)

    a, b = fit(), fit(batch_objective=objective)
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    np.testing.assert_allclose(a.history["train_loss"], b.history["train_loss"], rtol=1e-6)
    epoch1 = torch.cat(seen[: len(seen) // 3])
    assert sorted(epoch1.tolist()) == sorted(set(epoch1.tolist()))  # each training row once
    assert len(epoch1) == 240  # 20 % validation rows never reach the objective


def test_sample_weight_weights_rows_and_validation_loss():
    # two contradicting copies of the same rows: the weights decide which labels are learned
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    X, Y = np.vstack([x, x]), np.concatenate([y, 1 - y])
    w = np.concatenate([np.full(200, 9.0), np.ones(200)])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = MLP(2, hidden=(8,))
    res = train(m, X, Y, sample_weight=w, epochs=20, lr=2e-2, train_batch_size=50, validation_fraction=0.0,
                random_state=0)
    assert _acc(m, torch.as_tensor(x), torch.as_tensor(y)) > 0.9
    assert res.history["train_loss"].iloc[-1] < 0.45  # weighted mean: 0.9·small + 0.1·large
    # weighted validation loss is Σ w l / Σ w of the held-out rows
    res2 = train(MLP(2, hidden=(4,)), X, Y, sample_weight=w, epochs=1, patience=None, random_state=1)
    perm = np.random.default_rng(1).permutation(400)
    val = perm[:80]
    with torch.no_grad():
        losses = row_losses("bce", res2.model(torch.as_tensor(X[val])), torch.as_tensor(Y[val])).double().numpy()
    assert res2.history["val_loss"].iloc[0] == pytest.approx((losses * w[val]).sum() / w[val].sum(), rel=1e-5)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"objective": 3}, TypeError, "objective must be callable"),
        ({"x": np.zeros((2, 2))}, TypeError, "X must be a floating-point"),
        ({"n_steps": 0}, ValueError, "n_steps must be >= 1"),
        ({"epsilon": -0.1}, ValueError, "epsilon must be in"),
        ({"epsilon": torch.ones(3)}, ValueError, "epsilon of shape"),
        ({"epsilon": torch.tensor([0.1, -1.0])}, ValueError, "finite and non-negative"),
        ({"epsilon": "big"}, TypeError, "epsilon must be a number"),
        ({"step_size": -1.0}, ValueError, "step_size must be in"),
        ({"mask": [1, 0]}, TypeError, "mask must be boolean"),
        ({"mask": [True, False, True]}, ValueError, "mask has 3 entries"),
        ({"random_start": 1}, TypeError, "random_start must be a bool"),
        ({"objective": lambda z: z}, ValueError, "must return a scalar"),
        ({"objective": lambda z: z.sum() * float("nan")}, ValueError, "non-finite value"),
        ({"objective": lambda z: torch.tensor(1.0, requires_grad=True)}, ValueError, "does not depend"),
        ({"objective": lambda z: (z.abs() ** 0.5).sum()}, ValueError, "holds NaN or inf"),
    ],
)
def test_perturb_errors(kwargs, exc, match):
    args = {"objective": lambda z: z.sum(), "x": torch.zeros(4, 2), "epsilon": 0.1}
    args.update(kwargs)
    objective, x = args.pop("objective"), args.pop("x")
    with pytest.raises(exc, match=match):
        perturb(objective, x, **args)


@pytest.mark.parametrize(
    ("fn", "kwargs", "exc", "match"),
    [
        (fgsm, {"model": "m"}, TypeError, "model must be a torch.nn.Module"),
        (fgsm, {"y": np.zeros(3)}, ValueError, "y has 3 rows but X has 8"),
        (fgsm, {"scale": "mad"}, ValueError, "scale must be one of 'std'"),
        (fgsm, {"scale": np.ones(2)}, ValueError, "scale has 2 entries"),
        (fgsm, {"scale": -np.ones(3)}, ValueError, "scale must be non-negative"),
        (fgsm, {"loss": "hinge"}, ValueError, "loss must be one of"),
        (pgd, {"n_steps": 0}, ValueError, "n_steps must be >= 1"),
        (pgd, {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ],
)
def test_attack_errors(fn, kwargs, exc, match):
    args = {"model": _Squeeze(_linear([1.0, 2.0, 3.0])), "X": np.ones((8, 3)), "y": np.zeros(8), "epsilon": 0.1}
    args.update(kwargs)
    model, X, y = args.pop("model"), args.pop("X"), args.pop("y")
    with pytest.raises(exc, match=match):
        fn(model, X, y, **args)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"attack": "cw"}, ValueError, "attack must be one of"),
        ({"mix": 1.5}, ValueError, "mix must be in"),
        ({"loss": "hinge"}, ValueError, "loss must be one of"),
        ({"sample_weight": np.ones(8)}, TypeError, "does not take sample_weight"),
        ({"epsilon": torch.full((8, 3), 0.1)}, ValueError, "must not vary per row"),
    ],
)
def test_adversarial_train_errors(kwargs, exc, match):
    args = {"epsilon": 0.1, "epochs": 1}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        adversarial_train(MLP(3, hidden=(2,)), np.ones((8, 3)), np.zeros(8), **args)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"sample_weight": np.ones(3)}, ValueError, "sample_weight has 3 entries"),
        ({"sample_weight": -np.ones(10)}, ValueError, "sample_weight must be non-negative"),
        ({"sample_weight": np.zeros(10), "validation_fraction": 0.0}, ValueError, "every training row has weight 0"),
        ({"batch_objective": 3}, TypeError, "batch_objective must be callable"),
        ({"batch_objective": lambda *a: torch.tensor(1.0)}, ValueError, "depends on the model"),
        ({"batch_objective": lambda m, x, y, r: m(x).sum() * float("inf")}, ValueError, "NaN or inf"),
        ({"batch_objective": lambda m, x, y, r: m(x).sum(), "sample_weight": np.ones(10)}, ValueError,
         "cannot be combined"),
    ],
)
def test_training_hook_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        train(MLP(3, hidden=(2,)), np.ones((10, 3)), np.zeros(10), epochs=1, **kwargs)
