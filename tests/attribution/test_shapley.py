"""Exact and sampled Shapley values against Captum, an independent loop and closed forms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.attribution import _shapley, attribute

captum_attr = pytest.importorskip("captum.attr")

GROUPS = {"a": [0, 1, 2], "b": [3, 4], "c": [5], "d": [6, 7]}
FIRSTS = [0, 3, 5, 6]


def _mlp(d: int = 8, out: int = 1, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, out)).double()


def _randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _mask(shape: tuple[int, ...], groups: dict) -> torch.Tensor:
    mask = torch.zeros((1,) * (len(shape) - 1) + (shape[-1],), dtype=torch.long)
    for k, cols in enumerate(groups.values()):
        mask[..., cols] = k
    return mask


def _brute(f, x: torch.Tensor, b: torch.Tensor, groups: list) -> np.ndarray:
    """Shapley values by the subset formula, one coalition at a time (players cover all columns)."""
    g = len(groups)

    def v(s: tuple) -> np.ndarray:
        z = b.expand_as(x).clone()
        for j in s:
            z[..., groups[j]] = x[..., groups[j]]
        with torch.no_grad():
            return f(z).numpy()

    out = np.zeros((x.shape[0], g))
    for j in range(g):
        others = [k for k in range(g) if k != j]
        for r in range(g):
            w = math.factorial(r) * math.factorial(g - r - 1) / math.factorial(g)
            for s in itertools.combinations(others, r):
                out[:, j] += w * (v((*s, j)) - v(s))
    return out


class _Conv(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.head = nn.Conv1d(d, 8, 3, padding=1), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.conv(x.transpose(1, 2))).mean(dim=2)).squeeze(-1)


class _Additive(nn.Module):
    """f(x) = Σ_j h_j(x_{group j}) with h_j(u) = sin(a_j · u) + (c_j · u)²."""

    def __init__(self, groups: dict, d: int):
        super().__init__()
        self.groups = [list(c) for c in groups.values()]
        self.a, self.c = _randn(len(self.groups), d, seed=5), _randn(len(self.groups), d, seed=6)

    def term(self, j: int, x: torch.Tensor) -> torch.Tensor:
        u = x[:, self.groups[j]]
        return torch.sin(u @ self.a[j, : u.shape[1]]) + (u @ self.c[j, : u.shape[1]]) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(self.term(j, x) for j in range(len(self.groups)))


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn, self.p = fn, nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@pytest.mark.parametrize("kind", ["scalar", "row", "per_sample"])
def test_exact_matches_captum_and_subset_formula_on_mlp(kind):
    model, x = _mlp(), _randn(12, 8)
    base = {"scalar": 0.3, "row": _randn(8, seed=2), "per_sample": _randn(12, 8, seed=2)}[kind]
    ours = attribute(model, x, method="shapley", groups=GROUPS, baselines=base, batch_size=7)
    f = lambda t: model(t).squeeze(-1)  # noqa: E731
    cb = base.unsqueeze(0) if kind == "row" else base  # Captum wants a batch axis
    ref = captum_attr.ShapleyValues(f).attribute(x, baselines=cb, feature_mask=_mask(x.shape, GROUPS))
    np.testing.assert_allclose(ours.values, ref[:, FIRSTS].numpy(), rtol=0, atol=1e-6)  # Captum sums in float32
    b = torch.as_tensor(base, dtype=torch.float64)
    np.testing.assert_allclose(ours.values, _brute(f, x, b, list(GROUPS.values())), rtol=0, atol=1e-12)
    assert ours.names == list(GROUPS) and ours.axes == ("sample", "group")


def test_exact_matches_captum_on_conv1d_sequences():
    model, x = _Conv(6).double().eval(), _randn(8, 10, 6)
    groups = {"p": [0, 1], "q": [2], "r": [3, 4], "s": [5]}
    ours = attribute(model, x, method="shapley", groups=groups, baselines=-0.2, batch_size=9)
    ref = captum_attr.ShapleyValues(model).attribute(x, baselines=-0.2, feature_mask=_mask(x.shape, groups))
    np.testing.assert_allclose(ours.values, ref[:, 0, [0, 2, 3, 5]].numpy(), rtol=0, atol=1e-6)
    assert np.abs(ours.values).max() > 1e-3


@pytest.mark.parametrize("shape", [(10, 12), (6, 4, 12)])
def test_exact_matches_captum_on_small_transformer(shape):
    from featurelens.models import SmallTransformer

    torch.manual_seed(7)
    model = SmallTransformer(12, hidden_dim=16, n_heads=2).double().eval()
    x = _randn(*shape, seed=8)
    groups = {"u": [0, 1, 2], "v": [3, 4, 5], "w": [6, 7, 8], "z": [9, 10, 11]}
    ours = attribute(model, x, method="shapley", groups=groups, link="sigmoid", baselines=0.25)
    sv = captum_attr.ShapleyValues(lambda t: torch.sigmoid(model(t)))
    ref = sv.attribute(x, baselines=0.25, feature_mask=_mask(x.shape, groups))
    ref = ref[(slice(None),) + (0,) * (x.dim() - 2) + ([0, 3, 6, 9],)]
    np.testing.assert_allclose(ours.values, ref.numpy(), rtol=0, atol=1e-6)
    assert np.abs(ours.values).max() > 1e-3


def test_linear_model_closed_forms():
    torch.manual_seed(0)
    lin = nn.Linear(8, 1).double()
    w, x, b, bg = lin.weight.detach()[0], _randn(9, 8), _randn(8, seed=2), _randn(40, 8, seed=3)
    e = attribute(lin, x, method="shapley", baselines=b)  # every feature a player
    np.testing.assert_allclose(e.values, (w * (x - b)).numpy(), atol=1e-12)
    groups = {"a": [0, 1, 2], "b": [4, 5]}  # columns 3, 6, 7 are no player: they stay at x
    e = attribute(lin, x, method="shapley", groups=groups, baselines=b)
    want = np.stack([(w * (x - b))[:, c].sum(1).numpy() for c in groups.values()], axis=1)
    np.testing.assert_allclose(e.values, want, atol=1e-12)
    e = attribute(lin, x, method="shapley", groups=groups, baselines="background", background=bg)
    want = np.stack([(w * (x - bg.mean(0)))[:, c].sum(1).numpy() for c in groups.values()], axis=1)
    np.testing.assert_allclose(e.values, want, atol=1e-12)


@pytest.mark.parametrize("method", ["shapley", "shapley_sampling"])
def test_additive_model_gets_centred_terms(method):
    groups = {"a": [0, 1, 2], "b": [3, 4], "c": [5], "d": [6, 7]}
    model, x, b, bg = _Additive(groups, 8), _randn(10, 8), _randn(8, seed=2), _randn(30, 8, seed=3)
    opts = {"n_permutations": 2, "random_state": 0} if method == "shapley_sampling" else {}
    e = attribute(_Fn(model), x, method=method, groups=groups, baselines=b, **opts)
    want = np.stack([(model.term(j, x) - model.term(j, b[None])).numpy() for j in range(4)], axis=1)
    np.testing.assert_allclose(e.values, want, atol=1e-12)
    e = attribute(_Fn(model), x, method=method, groups=groups, baselines="background", background=bg, **opts)
    want = np.stack([(model.term(j, x) - model.term(j, bg).mean()).numpy() for j in range(4)], axis=1)
    np.testing.assert_allclose(e.values, want, atol=1e-12)
    if method == "shapley_sampling":  # every order gives the same contributions: zero standard error
        e4 = attribute(_Fn(model), x, method=method, groups=groups, baselines=b, n_permutations=4, random_state=1)
        np.testing.assert_allclose(e4.extras["std_error"], 0.0, atol=1e-12)
        assert np.isnan(e.extras["std_error"]).all()  # one pair: no standard error


def test_interaction_splits_equally_and_groups_are_players():
    x = _randn(7, 3)
    e = attribute(_Fn(lambda t: t[:, 0] * t[:, 1] + t[:, 2]), x, method="shapley")
    half = (x[:, 0] * x[:, 1] / 2).numpy()
    np.testing.assert_allclose(e.values, np.stack([half, half, x[:, 2].numpy()], 1), atol=1e-12)
    triple = _Fn(lambda t: t[:, 0] * t[:, 1] * t[:, 2])
    prod = (x[:, 0] * x[:, 1] * x[:, 2]).numpy()
    per_feature = attribute(triple, x, method="shapley")
    np.testing.assert_allclose(per_feature.values, np.stack([prod / 3] * 3, 1), atol=1e-12)
    as_group = attribute(triple, x, method="shapley", groups={"ab": [0, 1], "c": [2]})
    np.testing.assert_allclose(as_group.values, np.stack([prod / 2] * 2, 1), atol=1e-12)  # not 2/3 and 1/3


@pytest.mark.parametrize("method", ["shapley", "shapley_sampling"])
@pytest.mark.parametrize("base", ["zeros", "mean", "background"])
def test_efficiency_and_base_value(method, base):
    model, x, bg = _mlp(), _randn(15, 8), _randn(25, 8, seed=4)
    more = {} if base == "zeros" else {"background": bg}
    e = attribute(model, x, method=method, groups=GROUPS, baselines=base, random_state=0, **more)
    with torch.no_grad():
        fx = model(x).squeeze(-1).numpy()
        ref = {"zeros": torch.zeros(1, 8), "mean": bg.mean(0, keepdim=True), "background": bg}[base]
        v0 = model(ref.double()).mean().item()
    np.testing.assert_allclose(e.extras["output"], fx, atol=1e-14)
    np.testing.assert_allclose(e.extras["base_value"], v0, atol=1e-14)
    np.testing.assert_allclose(e.values.sum(1), fx - v0, atol=1e-12)
    assert np.abs(e.extras["efficiency_error"]).max() < 1e-12


def test_sampling_converges_to_exact_within_standard_errors():
    groups = {f"g{k}": [2 * k, 2 * k + 1] for k in range(8)}
    model, x = _mlp(d=16), _randn(20, 16)
    exact = attribute(model, x, method="shapley", groups=groups).values
    errors = []
    for n_perm in (4, 16, 64, 256):
        s = attribute(model, x, method="shapley_sampling", groups=groups, n_permutations=n_perm, random_state=0)
        errors.append(np.abs(s.values - exact).mean())
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[3] < errors[0] / 4
    se = s.extras["std_error"]
    assert se.shape == exact.shape and (se > 0).all()
    assert (np.abs(s.values - exact) <= 3 * se).mean() > 0.9


def test_sampling_is_seeded():
    model, x = _mlp(), _randn(10, 8)
    a, b, c = (
        attribute(model, x, method="shapley_sampling", groups=GROUPS, n_permutations=6, random_state=s)
        for s in (3, 3, 4)
    )
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.extras["std_error"], b.extras["std_error"])
    assert not np.allclose(a.values, c.values)
    gen = attribute(model, x, method="shapley_sampling", groups=GROUPS, n_permutations=6,
                    random_state=np.random.default_rng(3))
    np.testing.assert_array_equal(a.values, gen.values)
    assert a.params == {"baselines": "zeros", "n_players": 4, "n_permutations": 6, "random_state": 3}
    # a row's values do not depend on the other rows (one set of orders for all rows)
    part = attribute(model, x[:3], method="shapley_sampling", groups=GROUPS, n_permutations=6, random_state=3)
    np.testing.assert_allclose(part.values, a.values[:3], atol=1e-12)


@pytest.mark.parametrize("method", ["shapley", "shapley_sampling"])
def test_target_all_equals_each_target(method):
    model, x = _mlp(out=3), _randn(9, 8)
    opts = {"groups": GROUPS, "random_state": 2, "method": method}
    every = attribute(model, x, target="all", **opts)
    assert every.values.shape == (9, 4, 3) and every.axes == ("sample", "group", "output")
    for k in range(3):
        one = attribute(model, x, target=k, **opts)
        np.testing.assert_allclose(every.values[..., k], one.values, atol=1e-12)
        np.testing.assert_allclose(every.extras["base_value"][:, k], one.extras["base_value"], atol=1e-12)


def test_batching_blocks_and_background_subsample(monkeypatch):
    model, x, bg = _mlp(), _randn(11, 8), _randn(50, 8, seed=4)
    opts = {"method": "shapley", "groups": GROUPS, "baselines": "background"}
    full = attribute(model, x, background=bg, batch_size=10_000, **opts)
    monkeypatch.setattr(_shapley, "MAX_OUTPUTS_PER_BLOCK", 1000)  # 16 coalitions in 8 blocks
    small = attribute(model, x, background=bg, batch_size=13, **opts)
    np.testing.assert_allclose(small.values, full.values, atol=1e-12)
    sub = attribute(model, x, background=bg, max_background=10, random_state=5, **opts)
    idx = np.sort(np.random.default_rng(5).choice(50, size=10, replace=False))
    direct = attribute(model, x, background=bg[idx], **opts)
    np.testing.assert_allclose(sub.values, direct.values, atol=1e-12)
    assert sub.params["background_rows"] == 10 and sub.params["max_background"] == 10


def test_sequence_players_cover_all_time_steps():
    model, x = _Conv(4).double().eval(), _randn(5, 6, 4)
    groups = [[0, 1], [2], [3]]
    e = attribute(model, x, method="shapley", groups={"a": [0, 1], "b": [2], "c": [3]}, baselines=0.5)
    want = _brute(model, x, torch.full((4,), 0.5, dtype=torch.float64), groups)
    np.testing.assert_allclose(e.values, want, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "shapley", "groups": {"a": [0, 1], "b": [1, 2]}}, ValueError,
         "method 'shapley' needs disjoint feature groups, but groups 'a' and 'b' both contain feature 'x1'"),
        ({"method": "shapley_sampling", "groups": {"a": [0, 1], "b": [1, 2]}}, ValueError,
         "method 'shapley_sampling' needs disjoint"),
        ({"method": "shapley", "x": np.zeros((3, 15))}, ValueError, "15 players.*use method='shapley_sampling'"),
        ({"method": "shapley_sampling", "n_permutations": 3}, ValueError, "n_permutations must be even"),
        ({"method": "shapley_sampling", "n_permutations": 0}, ValueError, "n_permutations must be >= 2"),
        ({"method": "shapley_sampling", "n_permutations": 2.0}, TypeError, "n_permutations must be an int"),
        ({"method": "shapley", "baselines": "background"}, ValueError, "baselines='background' needs background="),
        ({"method": "shapley", "baselines": "background", "background": np.zeros((4, 3))}, ValueError,
         r"background rows have shape \(3,\)"),
        ({"method": "shapley", "background": np.zeros((4, 8))}, ValueError,
         "background= is used only with baselines='mean', 'median' or 'background'"),
        ({"method": "shapley", "max_background": 5}, ValueError, "max_background= applies only to"),
        ({"method": "shapley", "baselines": "middle"}, ValueError, "baselines must be one of"),
        ({"method": "shapley", "n_permutations": 4}, TypeError, "unexpected option.*'n_permutations'"),
        ({"method": "shapley_sampling", "n_samples": 4}, TypeError, "unexpected option.*'n_samples'"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    x = kwargs.pop("x", None)
    model = _mlp(d=8 if x is None else x.shape[1])
    with pytest.raises(exc, match=match):
        attribute(model, _randn(6, 8) if x is None else x, **kwargs)


def test_sampling_streams_orders_in_blocks_with_the_same_numbers(monkeypatch):
    model = _mlp(out=2)
    x = _randn(25, 8, seed=6)
    for target in (1, "all"):
        kw = dict(groups=GROUPS, n_permutations=10, random_state=5, target=target, baselines="zeros")
        whole = attribute(model, x, method="shapley_sampling", **kw)
        k = 2 if target == "all" else 1
        monkeypatch.setattr(_shapley, "MAX_OUTPUTS_PER_BLOCK", 8 * 4 * 25 * k * 2)  # two pairs per block
        seen = []
        real = _shapley.CoalitionGame.values

        def spy(self, z, *, desc, real=real, seen=seen):
            seen.append(z.shape[0])
            return real(self, z, desc=desc)

        monkeypatch.setattr(_shapley.CoalitionGame, "values", spy)
        blocked = attribute(model, x, method="shapley_sampling", **kw)
        monkeypatch.undo()
        assert seen == [2 + 4 * 3, 4 * 3, 2 * 3]  # ends + two pairs, two pairs, the fifth pair
        np.testing.assert_allclose(blocked.values, whole.values, rtol=0, atol=1e-14)
        np.testing.assert_allclose(blocked.extras["std_error"], whole.extras["std_error"], rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(blocked.extras["efficiency_error"], 0.0, atol=1e-12)


def test_absurd_permutation_count_is_refused_before_any_work():
    from featurelens.attribution import method_options

    model = _mlp()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"n_permutations=1000000000000 exceeds the maximum of 100000 orders"):
        attribute(model, _randn(6, 8), method="shapley_sampling", n_permutations=10**12, baselines="zeros")
    assert calls == []
    with pytest.raises(ValueError, match="n_permutations=100002 exceeds"):
        method_options("shapley_sampling", given={"n_permutations": 100_002})
