"""Ablation and permutation importance against Captum and an independent loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurelens._metrics import METRICS
from featurelens.attribution import attribute

captum_attr = pytest.importorskip("captum.attr")

GROUPS = {"a": [0, 1, 2], "b": [3, 4], "c": [5], "d": [6, 7]}


def _mlp(d: int = 8, out: int = 1, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, out)).double()


def _group_mask(d: int, groups: dict) -> torch.Tensor:
    mask = torch.zeros(1, d, dtype=torch.long)
    for k, cols in enumerate(groups.values()):
        mask[0, cols] = k
    return mask


@pytest.mark.parametrize("batch_size", [7, 64, 10_000])
def test_ablation_matches_captum_feature_ablation_float64(batch_size):
    model = _mlp()
    x = torch.randn(50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = attribute(model, x, method="ablation", groups=GROUPS, batch_size=batch_size)
    fa = captum_attr.FeatureAblation(lambda t: model(t).squeeze(-1))
    ref = fa.attribute(x, baselines=0.0, feature_mask=_group_mask(8, GROUPS))
    firsts = [cols[0] for cols in GROUPS.values()]
    np.testing.assert_allclose(ours.values, ref[:, firsts].numpy(), rtol=0, atol=1e-12)


def test_ablation_single_features_mean_baseline_matches_captum():
    model = _mlp()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 8, dtype=torch.float64, generator=gen)
    background = torch.randn(300, 8, dtype=torch.float64, generator=gen) + 0.5
    ours = attribute(model, x, method="ablation", baselines="mean", background=background)
    fa = captum_attr.FeatureAblation(lambda t: model(t).squeeze(-1))
    ref = fa.attribute(x, baselines=background.mean(0, keepdim=True))
    np.testing.assert_allclose(ours.values, ref.numpy(), atol=1e-12)
    assert ours.names == [f"x{i}" for i in range(8)]


def test_ablation_sequence_groups_cover_all_time_steps_matches_captum():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(5 * 4, 8), nn.GELU(), nn.Linear(8, 1)).double()
    x = torch.randn(30, 5, 4, dtype=torch.float64)
    groups = {"p": [0, 2], "q": [1], "r": [3]}
    ours = attribute(model, x, method="ablation", groups=groups, batch_size=16)
    mask = torch.zeros(1, 1, 4, dtype=torch.long)
    for k, cols in enumerate(groups.values()):
        mask[..., cols] = k
    ref = captum_attr.FeatureAblation(lambda t: model(t).squeeze(-1)).attribute(x, feature_mask=mask)
    np.testing.assert_allclose(ours.values, ref[:, 0, [0, 1, 3]].numpy(), atol=1e-12)


def test_ablation_all_targets_equals_per_target_calls():
    model = _mlp(out=3)
    x = torch.randn(20, 8, dtype=torch.float64)
    every = attribute(model, x, method="ablation", groups=GROUPS, target="all")
    assert every.values.shape == (20, 4, 3)
    for k in range(3):
        single = attribute(model, x, method="ablation", groups=GROUPS, target=k)
        np.testing.assert_allclose(every.values[..., k], single.values, atol=1e-12)


def test_ablation_closed_form_linear_model():
    torch.manual_seed(4)
    lin = nn.Linear(6, 1).double()
    x = torch.randn(25, 6, dtype=torch.float64)
    base = torch.randn(6, dtype=torch.float64)
    e = attribute(lin, x, method="ablation", baselines=base)
    expected = ((x - base) * lin.weight[0]).detach().numpy()
    np.testing.assert_allclose(e.values, expected, atol=1e-12)


def _loop_permutation(model, x, y, groups, n_repeats, seed, metric):
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        fx = torch.sigmoid(model(x)).squeeze(-1)
        ref = metric.fn(y, fx)
        scores = np.zeros((n_repeats, len(groups)))
        per_sample = np.zeros((len(x), len(groups)))
        for r in range(n_repeats):
            for j, cols in enumerate(groups.values()):
                perm = rng.permutation(len(x))
                xp = x.clone()
                xp[:, cols] = x[perm][:, cols]
                fp = torch.sigmoid(model(xp)).squeeze(-1)
                scores[r, j] = fp_deg = metric.degradation(ref, metric.fn(y, fp))
                assert np.isfinite(fp_deg)
                per_sample[:, j] += (fx - fp).numpy() / n_repeats
    return scores, per_sample


@pytest.mark.parametrize("metric", ["log_loss", "accuracy", "auc"])
@pytest.mark.parametrize("batch_size", [13, 100_000])
def test_permutation_matches_independent_loop(metric, batch_size):
    model = _mlp()
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(60, 8, dtype=torch.float64, generator=gen)
    y = (x[:, 0] + x[:, 3] > 0).double()
    e = attribute(model, x, method="permutation", groups=GROUPS, y=y, metric=metric, n_repeats=4,
                  random_state=11, link="sigmoid", batch_size=batch_size)
    scores, per_sample = _loop_permutation(model, x, y, GROUPS, 4, 11, METRICS[metric])
    np.testing.assert_allclose(e.scores, scores, atol=1e-12)
    np.testing.assert_allclose(e.values, per_sample, atol=1e-12)
    np.testing.assert_allclose(e.importance().to_numpy(), scores.mean(0), atol=1e-12)
    np.testing.assert_allclose(e.importance_std_error().to_numpy(), scores.std(0, ddof=1) / 2, atol=1e-12)


def test_permutation_same_seed_same_numbers_and_planted_feature_ranks_first():
    torch.manual_seed(6)
    x = torch.randn(400, 5, dtype=torch.float64)
    lin = nn.Linear(5, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0, 0.5, 0.0, 0.0]]))
        lin.bias.zero_()
    y = lin(x).squeeze(-1).detach()
    a = attribute(lin, x, method="permutation", y=y, metric="mse", random_state=3)
    b = attribute(lin, x, method="permutation", y=y, metric="mse", random_state=3)
    np.testing.assert_array_equal(a.scores, b.scores)
    imp = a.importance()
    assert imp.idxmax() == "x0"
    # a zero-weight feature changes nothing at all
    assert imp["x1"] == 0.0 and imp["x3"] == 0.0
    # closed form: E[(w (x - x'))^2] = 2 w^2 var(x) for an independent copy
    assert imp["x0"] == pytest.approx(2 * 9.0, rel=0.2)


def test_permutation_auto_metric_rule():
    model = _mlp()
    x = torch.randn(30, 8, dtype=torch.float64)
    y = (x[:, 0] > 0).double()
    e = attribute(model, x, method="permutation", y=y, link="sigmoid", random_state=0)
    assert e.params["metric"] == "log_loss"
    assert attribute(model, x, method="permutation", y=y, random_state=0).params["metric"] == "auc"
    assert attribute(model, x, method="permutation", y=x[:, 1], random_state=0).params["metric"] == "mse"


def test_perturbation_leaves_model_untouched():
    model = _mlp()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    attribute(model, torch.randn(10, 8), method="ablation")
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float64


def test_model_restored_when_method_raises():
    model = _mlp()
    model.train()
    with pytest.raises(ValueError, match="needs probabilities"):
        attribute(model, torch.randn(10, 8), method="permutation", y=torch.ones(10), metric="accuracy")
    assert model.training


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "lime"}, ValueError, "method must be one of"),
        ({"method": "ablation", "n_repeats": 3}, TypeError, "unexpected option.*'n_repeats'"),
        ({"method": "permutation", "baselines": "zeros"}, ValueError, "takes no baselines"),
        ({"method": "permutation", "metric": "mse"}, ValueError, "metric= needs y"),
        ({"method": "permutation", "y": np.ones(3)}, ValueError, "y has 3 rows"),
        ({"method": "permutation", "n_repeats": 0}, ValueError, "n_repeats must be >= 1"),
        ({"method": "permutation", "y": np.ones(12), "metric": "f1"}, ValueError, "metric must be one of"),
        ({"method": "ablation", "baselines": "mean"}, ValueError, "needs background="),
        ({"method": "ablation", "baselines": "middle"}, ValueError, "baselines must be one of"),
        ({"method": "ablation", "baselines": np.zeros(5)}, ValueError, r"baselines has shape \(5,\)"),
        ({"method": "ablation", "baselines": "mean", "background": np.zeros((4, 3))}, ValueError,
         "background has 3 features"),
        ({"method": "ablation", "groups": {"a": ["nope"]}}, ValueError, "unknown feature name 'nope'"),
        ({"method": "ablation", "groups": {"a": []}}, ValueError, "group 'a' is empty"),
        ({"method": "ablation", "groups": {"a": [9]}}, ValueError, "index 9 out of range"),
        ({"method": "ablation", "feature_names": ["a"]}, ValueError, "feature_names has 1 names"),
        ({"method": "ablation", "batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"method": "ablation", "target": 2}, ValueError, "target=2 is out of range"),
        ({"method": "ablation", "link": "probit"}, ValueError, "link must be one of"),
        ({"method": "ablation", "background": np.zeros((4, 8))}, ValueError, "background= is used only with"),
        ({"method": "permutation", "y": np.ones(12), "metric": "mse", "higher_is_better": True}, ValueError,
         "higher_is_better= applies only to a callable"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    model = _mlp()
    with pytest.raises(exc, match=match):
        attribute(model, torch.randn(12, 8, dtype=torch.float64), **kwargs)


def test_bad_inputs_and_models():
    model = _mlp()
    with pytest.raises(ValueError, match="model failed on inputs of shape"):
        attribute(model, torch.randn(5, 3), method="ablation")
    x = torch.randn(5, 8)
    x[2, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in column.*index 4"):
        attribute(model, x, method="ablation")
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module"):
        attribute(lambda t: t, torch.randn(5, 8), method="ablation")
    with pytest.raises(TypeError, match=r"X must be a torch\.Tensor"):
        attribute(model, [[1.0] * 8], method="ablation")
    multi = _mlp(out=3)
    with pytest.raises(ValueError, match="has 3 outputs"):
        attribute(multi, torch.randn(5, 8), method="ablation")


@pytest.mark.parametrize("shape", [(24, 12), (16, 5, 12)])
def test_ablation_matches_captum_on_small_transformer(shape):
    from featurelens.models import SmallTransformer

    torch.manual_seed(7)
    model = SmallTransformer(12, hidden_dim=16, n_heads=2).double().eval()
    x = torch.randn(*shape, dtype=torch.float64)
    groups = {"u": [0, 1, 2, 3], "v": [4, 5, 6, 7], "w": [8, 9, 10, 11]}
    ours = attribute(model, x, method="ablation", groups=groups, link="sigmoid", baselines=0.25, batch_size=10)
    mask = torch.zeros((1,) * (x.dim() - 1) + (12,), dtype=torch.long)
    for k, cols in enumerate(groups.values()):
        mask[..., cols] = k
    fa = captum_attr.FeatureAblation(lambda t: torch.sigmoid(model(t)))
    ref = fa.attribute(x, baselines=0.25, feature_mask=mask)
    ref = ref[(slice(None),) + (0,) * (x.dim() - 2) + ([0, 4, 8],)]
    np.testing.assert_allclose(ours.values, ref.numpy(), rtol=0, atol=1e-6)
    assert np.abs(ours.values).max() > 1e-3


def test_feature_spec_must_match_dataframe_columns():
    import pandas as pd

    from featurelens.data import FeatureSpec

    model = _mlp(d=2)
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(10, 2)), columns=["b", "a"])
    spec = FeatureSpec(["a", "b"], {"only_a": ["a"]})
    with pytest.raises(ValueError, match="names feature 0 'a' but the inputs call it 'b'"):
        attribute(model, frame, method="ablation", groups=spec)
    same = attribute(model, frame[["a", "b"]], method="ablation", groups=spec)
    assert same.names == ["only_a"]


def test_callable_metric_direction_and_numpy_seed_recorded():
    model = _mlp()
    x = torch.randn(40, 8, dtype=torch.float64)
    y = x[:, 0].clone()

    def neg_mse(t, p):
        return -float(((t - p) ** 2).mean())

    a = attribute(model, x, method="permutation", y=y, metric=neg_mse, higher_is_better=True,
                  random_state=np.int64(3))
    b = attribute(model, x, method="permutation", y=y, metric="mse", random_state=3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-12)
    assert a.params["random_state"] == 3 and a.params["metric"] == "neg_mse"


def test_overlapping_groups_are_ablated_one_at_a_time():
    model = _mlp()
    x = torch.randn(15, 8, dtype=torch.float64)
    overlapping = {"ab": [0, 1, 2], "bc": [2, 3], "c": [3]}
    e = attribute(model, x, method="ablation", groups=overlapping)
    for j, (name, cols) in enumerate(overlapping.items()):
        alone = attribute(model, x, method="ablation", groups={name: cols})
        np.testing.assert_allclose(e.values[:, j], alone.values[:, 0], atol=1e-12)


def test_tensor_array_and_dataframe_inputs_agree():
    import pandas as pd

    model = _mlp()
    x = torch.randn(30, 8, dtype=torch.float64)
    names = [f"f{i}" for i in range(8)]
    frame = pd.DataFrame(x.numpy(), columns=names)
    a = attribute(model, x, method="permutation", random_state=1, feature_names=names)
    b = attribute(model, x.numpy(), method="permutation", random_state=1, feature_names=names)
    c = attribute(model, frame, method="permutation", random_state=1)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values, c.values)
    assert c.names == names and a.data_fingerprint == c.data_fingerprint


def test_method_options_lists_keyword_options():
    from featurelens.attribution import METHODS, method_options

    assert method_options("permutation") == ["n_repeats", "y", "metric", "higher_is_better", "random_state"]
    assert set(METHODS) >= {"ablation", "permutation", "saliency", "integrated_gradients", "shapley", "edge_scores"}
    with pytest.raises(ValueError, match="method must be one of"):
        method_options("lime")


class _GRUNet(nn.Module):
    def __init__(self, d: int = 4):
        super().__init__()
        self.gru, self.head = nn.GRU(d, 6, batch_first=True), nn.Linear(6, 1)

    def forward(self, x):
        return self.head(self.gru(x)[0][:, -1]).squeeze(-1)


def test_ablation_matches_captum_on_gru_sequences():
    torch.manual_seed(8)
    model = _GRUNet().double().eval()
    x = torch.randn(20, 7, 4, dtype=torch.float64)
    groups = {"p": [0, 3], "q": [1], "r": [2]}
    ours = attribute(model, x, method="ablation", groups=groups, baselines=0.1, batch_size=9)
    mask = torch.zeros(1, 1, 4, dtype=torch.long)
    for k, cols in enumerate(groups.values()):
        mask[..., cols] = k
    ref = captum_attr.FeatureAblation(model).attribute(x, baselines=0.1, feature_mask=mask)
    np.testing.assert_allclose(ours.values, ref[:, 0, [0, 1, 2]].numpy(), atol=1e-10)


def test_method_options_given_other_options():
    from featurelens.attribution import method_options

    plain = method_options("smoothgrad", given={})
    assert "n_steps" not in plain and "baselines" not in plain and "n_samples" in plain
    assert "n_steps" in method_options("smoothgrad", given={"base": "integrated_gradients"})
    assert method_options("ablation", given={"x": 1}) == method_options("ablation")


def _softmax_class_loop(model, x, y, groups, n_repeats, seed, cls):
    """Independent one-vs-rest reference: sklearn's binary log loss of p(class cls) against y == cls."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(seed)
    yb = (y == cls).numpy().astype(int)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)[:, cls].numpy()
        ref = log_loss(yb, p, labels=[0, 1])
        scores = np.zeros((n_repeats, len(groups)))
        for r in range(n_repeats):
            for j, cols in enumerate(groups.values()):
                xp = x.clone()
                xp[:, cols] = x[rng.permutation(len(x))][:, cols]
                pp = torch.softmax(model(xp), dim=1)[:, cls].numpy()
                scores[r, j] = log_loss(yb, pp, labels=[0, 1]) - ref
    return scores


@pytest.mark.parametrize("cls", [0, 2])
def test_permutation_one_class_of_a_multiclass_model_is_one_vs_rest(cls):
    model = _mlp(out=3, seed=7)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(90, 8, dtype=torch.float64, generator=gen)
    y = torch.bucketize(x[:, 0] + x[:, 3], torch.tensor([-0.5, 0.5], dtype=torch.float64)).double()  # classes 0..2
    e = attribute(model, x, method="permutation", groups=GROUPS, y=y, target=cls, link="softmax",
                  n_repeats=3, random_state=4)
    assert e.params["metric"] == "log_loss" and e.params["one_vs_rest_class"] == cls
    np.testing.assert_allclose(e.scores, _softmax_class_loop(model, x, y, GROUPS, 3, 4, cls), rtol=1e-9, atol=1e-12)
    # a named class metric is one-vs-rest too; accuracy of p >= 0.5 against y == cls
    acc = attribute(model, x, method="permutation", groups=GROUPS, y=y, target=cls, link="softmax",
                    metric="accuracy", n_repeats=2, random_state=4)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)[:, cls]
    assert acc.params["one_vs_rest_class"] == cls
    np.testing.assert_allclose(acc.extras["metric_baseline"], float(((p >= 0.5) == (y == cls)).double().mean()))


def test_permutation_regression_metric_keeps_the_labels():
    model = _mlp(out=3, seed=7)
    x = torch.randn(40, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (40,)).double()
    e = attribute(model, x, method="permutation", y=y, target=1, metric="mse", n_repeats=2, random_state=0)
    assert "one_vs_rest_class" not in e.params
    with torch.no_grad():
        ref = float(((model(x)[:, 1] - y) ** 2).mean())
    np.testing.assert_allclose(e.extras["metric_baseline"], ref, rtol=1e-12)


def test_permutation_streams_repeats_in_blocks_with_the_same_numbers(monkeypatch):
    import featurelens.attribution._perturbation as perturbation

    model = _mlp()
    x = torch.randn(30, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    y = (x[:, 0] > 0).double()
    kw = dict(groups=GROUPS, y=y, link="sigmoid", n_repeats=6, random_state=2, batch_size=64)
    whole = attribute(model, x, method="permutation", **kw)
    seen = []
    real = perturbation.evaluate_perturbations

    def spy(problem, n_perturbations, build, *, desc):
        seen.append(n_perturbations)
        return real(problem, n_perturbations, build, desc=desc)

    monkeypatch.setattr(perturbation, "MAX_ROWS_PER_BLOCK", 5 * 30)
    monkeypatch.setattr(perturbation, "evaluate_perturbations", spy)
    blocked = attribute(model, x, method="permutation", **kw)
    assert len(seen) > 1 and max(seen) <= 5 and sum(seen) == 6 * len(GROUPS)  # never all 24 perturbations at once
    np.testing.assert_array_equal(blocked.scores, whole.scores)
    np.testing.assert_allclose(blocked.values, whole.values, rtol=0, atol=1e-15)
    scores, per_sample = _loop_permutation(model, x, y, GROUPS, 6, 2, METRICS["log_loss"])
    np.testing.assert_allclose(blocked.scores, scores, atol=1e-12)
    np.testing.assert_allclose(blocked.values, per_sample, atol=1e-12)


def test_absurd_repeat_count_is_refused_before_any_work():
    from featurelens.attribution import method_options

    model = _mlp()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"n_repeats=1000000000000 exceeds the maximum of 10000 repeats"):
        attribute(model, torch.randn(12, 8, dtype=torch.float64), method="permutation", n_repeats=10**12)
    assert calls == []
    with pytest.raises(ValueError, match="n_repeats=10001 exceeds"):
        method_options("permutation", given={"n_repeats": 10_001})
    assert "n_repeats" in method_options("permutation", given={"n_repeats": 10_000})
