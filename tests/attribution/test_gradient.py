"""Gradient methods against Captum (float64), closed forms and independent loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.attribution import attribute
from featurelens.models import SmallTransformer

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

RULES = ["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"]
GROUPS = {"a": [0, 1, 2], "b": [3], "c": [4, 5]}


def _mlp(d=6, out=1, act=nn.Tanh, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), act(), nn.Linear(16, 16), act(), nn.Linear(16, out)).to(dtype)


class _Conv(nn.Module):
    def __init__(self, d=4, out=1):
        super().__init__()
        self.conv, self.head = nn.Conv1d(d, 6, 3, padding=1), nn.Linear(6, out)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x.transpose(1, 2))).mean(-1)).squeeze(-1)


class _GRU(nn.Module):
    def __init__(self, d=4, out=1):
        super().__init__()
        self.gru, self.head = nn.GRU(d, 8, batch_first=True), nn.Linear(8, out)

    def forward(self, x):
        return self.head(self.gru(x)[0][:, -1]).squeeze(-1)


def _model(kind):
    """(model, x) pairs in float64: tabular MLP, Conv1d and GRU sequences, the transformer."""
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(2)
    if kind == "mlp":
        return _mlp(), torch.randn(7, 6, dtype=torch.float64, generator=gen)
    if kind == "transformer":
        model = SmallTransformer(6, hidden_dim=8, n_heads=2, n_layers=1, dropout=0.0).double().eval()
        return model, torch.randn(5, 4, 6, dtype=torch.float64, generator=gen)
    model = (_Conv() if kind == "conv" else _GRU()).double().eval()
    return model, torch.randn(5, 7, 4, dtype=torch.float64, generator=gen)


KINDS = ["mlp", "conv", "gru", "transformer"]


@pytest.mark.parametrize("kind", KINDS)
def test_saliency_and_input_x_gradient_match_captum(kind):
    model, x = _model(kind)
    sal = attribute(model, x, method="saliency")
    ixg = attribute(model, x, method="input_x_gradient")
    ref_sal = captum_attr.Saliency(model).attribute(x.clone(), abs=False)
    ref_ixg = captum_attr.InputXGradient(model).attribute(x.clone()).detach()
    np.testing.assert_allclose(sal.values, ref_sal.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ixg.values, ref_ixg.numpy(), rtol=0, atol=1e-6)
    abs_sal = attribute(model, x, method="saliency", abs=True)
    np.testing.assert_allclose(abs_sal.values, captum_attr.Saliency(model).attribute(x.clone()).numpy(), atol=1e-6)
    assert sal.axes == (("sample", "feature") if x.dim() == 2 else ("sample", "time", "feature"))
    assert np.abs(sal.values).max() > 1e-3 and (sal.values < 0).any()  # signed by default
    np.testing.assert_allclose(sal.extras["output"], model(x).detach().reshape(-1).numpy(), atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("kind", KINDS)
def test_integrated_gradients_matches_captum_for_every_rule(kind, rule):
    model, x = _model(kind)
    base = 0.1 * torch.randn(x.shape[1:], dtype=torch.float64)
    ours = attribute(model, x, method="integrated_gradients", rule=rule, n_steps=8, baselines=base, batch_size=11)
    ref = captum_attr.IntegratedGradients(model).attribute(x.clone(), baselines=base.unsqueeze(0), method=rule,
                                                           n_steps=8)
    # Captum's trapezoid weights are 1/n (ends 1/2n) and sum to (n-1)/n; ours sum to 1
    scale = 8 / 7 if rule == "riemann_trapezoid" else 1.0
    np.testing.assert_allclose(ours.values, scale * ref.numpy(), rtol=0, atol=1e-6)
    assert ours.params == {"n_steps": 8, "rule": rule, "baselines": f"array{list(base.shape)}"}


def test_captum_trapezoid_underestimates_a_linear_model_by_n_minus_1_over_n():
    lin = nn.Linear(5, 1).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    ref = captum_attr.IntegratedGradients(lin).attribute(x, method="riemann_trapezoid", n_steps=10, target=0)
    exact = (x * lin.weight[0]).detach().numpy()
    np.testing.assert_allclose(ref.detach().numpy(), 0.9 * exact, atol=1e-7)
    ours = attribute(lin, x, method="integrated_gradients", rule="riemann_trapezoid", n_steps=10)
    np.testing.assert_allclose(ours.values, exact, atol=1e-12)


def test_gauss_legendre_64_steps_is_complete_on_a_smooth_mlp():
    model = _mlp(d=10, act=nn.GELU, seed=3)
    x = torch.randn(200, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    e = attribute(model, x, method="integrated_gradients", n_steps=64)
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros(1, 10, dtype=torch.float64))).squeeze(-1).numpy()
    err = e.values.sum(axis=1) - gap
    np.testing.assert_allclose(e.extras["completeness_error"], err, atol=1e-12)
    assert np.max(np.abs(err) / np.abs(gap)) <= 1e-3
    assert e.extras["relative_completeness_error"].max() <= 1e-3


def test_tolerance_mode_meets_its_tolerance_on_a_relu_mlp():
    model = _mlp(d=8, act=nn.ReLU, seed=5)
    x = torch.randn(64, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    e = attribute(model, x, method="integrated_gradients", tolerance=1e-2, rule="riemann_trapezoid")
    steps = e.params["n_steps"]
    assert steps in (16, 32, 64, 128, 256, 512, 1024) and e.params["tolerance_met"] is True
    assert e.extras["relative_completeness_error"].max() <= 1e-2
    fixed = attribute(model, x, method="integrated_gradients", n_steps=steps, rule="riemann_trapezoid")
    np.testing.assert_allclose(e.values, fixed.values, atol=1e-12)
    if steps > 16:  # the previous count did not meet the tolerance
        half = attribute(model, x, method="integrated_gradients", n_steps=steps // 2, rule="riemann_trapezoid")
        assert half.extras["relative_completeness_error"].max() > 1e-2
    with pytest.warns(UserWarning, match=r"tolerance=1e-12 at max_steps=32"):
        capped = attribute(model, x, method="integrated_gradients", tolerance=1e-12, max_steps=32)
    assert capped.params["n_steps"] == 32 and capped.params["tolerance_met"] is False


@pytest.mark.parametrize("rule", RULES)
def test_closed_forms_on_a_linear_model(rule):
    torch.manual_seed(7)
    lin = nn.Linear(6, 1).double()
    w = lin.weight[0].detach()
    x = torch.randn(9, 6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    ig = attribute(lin, x, method="integrated_gradients", rule=rule, n_steps=5, baselines=b)
    np.testing.assert_allclose(ig.values, ((x - b) * w).numpy(), atol=1e-12)
    np.testing.assert_allclose(ig.extras["completeness_error"], 0.0, atol=1e-12)
    np.testing.assert_allclose(attribute(lin, x, method="saliency").values, w.expand(9, 6).numpy(), atol=1e-14)
    np.testing.assert_allclose(attribute(lin, x, method="input_x_gradient").values, (x * w).numpy(), atol=1e-14)
    grouped = attribute(lin, x, method="integrated_gradients", rule=rule, n_steps=5, baselines=b, groups=GROUPS)
    expect = np.stack([((x - b) * w)[:, cols].sum(1).numpy() for cols in GROUPS.values()], axis=1)
    np.testing.assert_allclose(grouped.values, expect, atol=1e-12)
    assert grouped.axes == ("sample", "group") and grouped.names == list(GROUPS)
    z = torch.randn(13, 6, dtype=torch.float64)
    eg = attribute(lin, x, method="integrated_gradients", rule=rule, n_steps=5, baselines="background", background=z)
    np.testing.assert_allclose(eg.values, ((x - z.mean(0)) * w).numpy(), atol=1e-12)


def test_background_averaging_is_the_mean_of_ig_over_rows_and_seeded_subsample():
    model = _mlp(seed=8)
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(10, 6, dtype=torch.float64, generator=gen)
    z = torch.randn(20, 6, dtype=torch.float64, generator=gen)
    kw = {"method": "integrated_gradients", "n_steps": 16, "batch_size": 64}
    e = attribute(model, x, baselines="background", background=z[:5], **kw)
    loop = np.mean([attribute(model, x, baselines=zk, **kw).values for zk in z[:5]], axis=0)
    np.testing.assert_allclose(e.values, loop, atol=1e-12)
    with torch.no_grad():
        gap = (model(x) - model(z[:5]).mean()).squeeze(-1).numpy()
    np.testing.assert_allclose(e.extras["completeness_error"], e.values.sum(1) - gap, atol=1e-12)
    a = attribute(model, x, baselines="background", background=z, max_background=5, random_state=3, **kw)
    b = attribute(model, x, baselines="background", background=z, max_background=5, random_state=3, **kw)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.params["n_background"] == 5 and a.params["random_state"] == 3
    per_sample = z[:10]
    e2 = attribute(model, x, baselines=per_sample, **kw)
    one = attribute(model, x[3:4], baselines=per_sample[3], **kw)
    np.testing.assert_allclose(e2.values[3:4], one.values, atol=1e-12)


def test_sequence_groups_sum_over_columns_and_time_steps():
    model, x = _model("gru")
    groups = {"p": [0, 2], "q": [1]}
    full = attribute(model, x, method="integrated_gradients", n_steps=6)
    grouped = attribute(model, x, method="integrated_gradients", n_steps=6, groups=groups)
    assert full.values.shape == (5, 7, 4) and grouped.values.shape == (5, 2)
    np.testing.assert_allclose(grouped.values[:, 0], full.values[..., [0, 2]].sum((1, 2)), atol=1e-12)
    np.testing.assert_allclose(grouped.values[:, 1], full.values[..., 1].sum(1), atol=1e-12)


class _NoVmap(nn.Module):
    """A backward hook calling ``.item()``: ``vmap`` cannot batch it."""

    def __init__(self):
        super().__init__()
        self.net = _mlp(out=3, seed=10)

    def forward(self, x):
        x = x.clone()
        if x.requires_grad:
            x.register_hook(lambda g: g * float(g.abs().sum().item() >= 0))
        return self.net(x)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
@pytest.mark.parametrize("vmap_ok", [True, False])
def test_all_targets_equals_per_target_calls_and_captum_loop(method, vmap_ok):
    model = _mlp(out=3, seed=10) if vmap_ok else _NoVmap().double()
    x = torch.randn(9, 6, dtype=torch.float64)
    if not vmap_ok:  # the batched backward really fails for this model
        xs = x.clone().requires_grad_()
        with pytest.raises(RuntimeError, match="item"):
            torch.autograd.grad(model(xs), xs, torch.eye(3)[:, None].expand(3, 9, 3).double(), is_grads_batched=True)
    opts = {"n_steps": 10} if method == "integrated_gradients" else {}
    every = attribute(model, x, method=method, target="all", groups=GROUPS, batch_size=20, **opts)
    assert every.values.shape == (9, 3, 3) and every.axes == ("sample", "group", "output")
    cap = captum_attr.IntegratedGradients(model) if opts else captum_attr.Saliency(model)
    for k in range(3):
        single = attribute(model, x, method=method, target=k, groups=GROUPS, **opts)
        np.testing.assert_allclose(every.values[..., k], single.values, atol=1e-12)
        ref = cap.attribute(x.clone(), target=k, **opts) if opts else cap.attribute(x.clone(), target=k, abs=False)
        ref = np.stack([ref[:, c].sum(1).numpy() for c in GROUPS.values()], axis=1)
        np.testing.assert_allclose(every.values[..., k], ref, atol=1e-6)
    if opts:
        assert every.extras["completeness_error"].shape == (9, 3)
        flat = attribute(model, x, method=method, target="all", **opts)
        assert flat.values.shape == (9, 6, 3) and flat.axes == ("sample", "feature", "output")


def test_smoothgrad_seeded_reproducible_and_zero_noise_equals_base():
    model = _mlp(seed=11)
    x = torch.randn(12, 6, dtype=torch.float64)
    a = attribute(model, x, method="smoothgrad", n_samples=8, random_state=0)
    b = attribute(model, x, method="smoothgrad", n_samples=8, random_state=0, batch_size=5)
    c = attribute(model, x, method="smoothgrad", n_samples=8, random_state=1)
    np.testing.assert_allclose(a.values, b.values, atol=1e-14)
    assert np.abs(a.values - c.values).max() > 1e-6
    assert a.params["random_state"] == 0 and a.params["noise_std_from"] == "inputs"
    for base, opts in [("saliency", {}), ("input_x_gradient", {}),
                       ("integrated_gradients", {"n_steps": 7, "baselines": 0.3})]:
        sg = attribute(model, x, method="smoothgrad", base=base, noise_level=0.0, n_samples=3, **opts)
        plain = attribute(model, x, method=base, **opts)
        np.testing.assert_allclose(sg.values, plain.values, atol=1e-12)


class _HalfSquare(nn.Module):
    """``f(x) = ½ Σ x_j²``, whose gradient is ``x``: saliency of a noisy copy returns it."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, x):
        return self.scale * (x * x).sum(-1)


def test_smoothgrad_noise_has_the_documented_per_feature_std():
    gen = torch.Generator().manual_seed(12)
    scale = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    x = torch.randn(4000, 4, dtype=torch.float64, generator=gen) * scale
    eps = attribute(_HalfSquare(), x, method="smoothgrad", n_samples=1, noise_level=0.2,
                    random_state=0).values - x.numpy()
    np.testing.assert_allclose(eps.std(0), 0.2 * x.std(0, correction=0).numpy(), rtol=0.05)
    bg = torch.randn(500, 4, dtype=torch.float64, generator=gen) * 10
    e = attribute(_HalfSquare(), x, method="smoothgrad", n_samples=1, noise_level=0.2, background=bg, random_state=0)
    np.testing.assert_allclose((e.values - x.numpy()).std(0), 0.2 * bg.std(0, correction=0).numpy(), rtol=0.05)
    np.testing.assert_allclose(e.extras["noise_std"], 0.2 * bg.std(0, correction=0).numpy(), rtol=1e-12)


def test_float32_inputs_and_models_work():
    m64 = _mlp(seed=13)
    m32 = _mlp(seed=13, dtype=torch.float32)
    x = torch.randn(30, 6, dtype=torch.float64)
    for method, opts in [("saliency", {}), ("integrated_gradients", {"n_steps": 20}),
                         ("smoothgrad", {"random_state": 0})]:
        e32 = attribute(m32, x.float(), method=method, **opts)
        e64 = attribute(m64, x, method=method, **opts)
        assert e32.values.dtype == np.float64
        np.testing.assert_allclose(e32.values, e64.values, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad"])
def test_model_left_untouched(method):
    model = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 1))
    model.train()
    model[0].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    attribute(model, torch.randn(10, 6), method=method)
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "integrated_gradients", "rule": "simpson"}, ValueError, "rule must be one of"),
        ({"method": "integrated_gradients", "n_steps": 0}, ValueError, "n_steps must be >= 1"),
        ({"method": "integrated_gradients", "n_steps": 2.5}, TypeError, "n_steps must be an int"),
        ({"method": "integrated_gradients", "rule": "riemann_trapezoid", "n_steps": 1}, ValueError,
         "needs n_steps >= 2"),
        ({"method": "integrated_gradients", "tolerance": 0.0}, ValueError, r"tolerance must be in \(0.0"),
        ({"method": "integrated_gradients", "tolerance": -1}, ValueError, "tolerance must be in"),
        ({"method": "integrated_gradients", "max_steps": 64}, ValueError, "max_steps= is used only with tolerance="),
        ({"method": "integrated_gradients", "tolerance": 0.1, "n_steps": 64, "max_steps": 32}, ValueError,
         "max_steps must be >= 64"),
        ({"method": "integrated_gradients", "baselines": "background"}, ValueError, "needs background="),
        ({"method": "integrated_gradients", "baselines": "mean"}, ValueError, "needs background="),
        ({"method": "integrated_gradients", "background": np.zeros((3, 6))}, ValueError,
         "background= is used only with"),
        ({"method": "integrated_gradients", "max_background": 3}, ValueError, "max_background= is used only with"),
        ({"method": "integrated_gradients", "baselines": "background", "background": np.zeros((3, 5))}, ValueError,
         r"background rows have shape \(5,\)"),
        ({"method": "integrated_gradients", "baselines": np.zeros(4)}, ValueError, r"baselines has shape \(4,\)"),
        ({"method": "saliency", "abs": 1}, TypeError, "abs must be True or False"),
        ({"method": "saliency", "baselines": "zeros"}, ValueError, "takes no baselines"),
        ({"method": "saliency", "n_steps": 5}, TypeError, "unexpected option"),
        ({"method": "smoothgrad", "noise_level": -0.1}, ValueError, "noise_level must be in"),
        ({"method": "smoothgrad", "noise_level": "high"}, TypeError, "noise_level must be a number"),
        ({"method": "smoothgrad", "noise_level": float("inf")}, ValueError, "noise_level must be finite"),
        ({"method": "smoothgrad", "n_samples": 0}, ValueError, "n_samples must be >= 1"),
        ({"method": "smoothgrad", "base": "lime"}, ValueError, "base must be one of"),
        ({"method": "smoothgrad", "n_steps": 10}, ValueError, "n_steps= applies only to base='integrated_gradients'"),
        ({"method": "smoothgrad", "baselines": 0.5}, ValueError, "baselines= applies only to base="),
        ({"method": "smoothgrad", "background": np.zeros((5, 3))}, ValueError, "background has 3 features"),
        ({"method": "smoothgrad", "random_state": "x"}, TypeError, "random_state must be None"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        attribute(_mlp(), torch.randn(8, 6, dtype=torch.float64), **kwargs)


def test_non_differentiable_model_and_single_row_smoothgrad_errors():
    class Argmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 3)

        def forward(self, x):
            return self.lin(x).argmax(-1).double()

    with pytest.raises(ValueError, match="does not depend differentiably on the inputs"):
        attribute(Argmax(), torch.randn(4, 6), method="saliency")
    with pytest.raises(ValueError, match="needs 2 or more input rows"):
        attribute(_mlp(), torch.randn(1, 6, dtype=torch.float64), method="smoothgrad")
    one = attribute(_mlp(), torch.randn(1, 6, dtype=torch.float64), method="smoothgrad", noise_level=0.0)
    assert one.values.shape == (1, 6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "integrated_gradients", "n_steps": 10**12},
         r"n_steps=1000000000000 exceeds the maximum of 1024 nodes for rule='gausslegendre'; use a Riemann rule"),
        ({"method": "integrated_gradients", "n_steps": 100_001, "rule": "riemann_middle"},
         r"n_steps=100001 exceeds the maximum of 100000 nodes for rule='riemann_middle'"),
        ({"method": "integrated_gradients", "tolerance": 0.01, "max_steps": 2048},
         r"max_steps=2048 exceeds the maximum of 1024 nodes"),
        ({"method": "smoothgrad", "n_samples": 10**9}, r"n_samples=1000000000 exceeds the maximum of 10000"),
        ({"method": "smoothgrad", "base": "integrated_gradients", "n_steps": 5000},
         r"n_steps=5000 exceeds the maximum of 1024"),
    ],
)
def test_absurd_step_and_sample_counts_are_refused_before_any_work(kwargs, match):
    from featurelens.attribution import method_options

    model = _mlp()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=match):
        attribute(model, torch.randn(5, 6, dtype=torch.float64), **kwargs)
    assert calls == []
    given = {k: v for k, v in kwargs.items() if k != "method"}
    with pytest.raises(ValueError, match=match):  # refused from the option values alone, as the CLI does
        method_options(kwargs["method"], given=given)


def test_quadrature_refuses_absurd_node_counts_before_allocating():
    from featurelens.attribution._ig import MAX_N_STEPS, quadrature

    a, w = quadrature("riemann_left", MAX_N_STEPS)
    assert a.shape == (MAX_N_STEPS,) and np.isclose(w.sum(), 1.0)
    with pytest.raises(ValueError, match="exceeds the maximum of 100000 nodes"):
        quadrature("riemann_left", 10**12)
    with pytest.raises(ValueError, match="exceeds the maximum of 1024 nodes"):
        quadrature("gausslegendre", 1025)
