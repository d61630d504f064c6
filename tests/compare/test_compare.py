"""featurelens.compare: shares, differences, shifts, rank correlations, exact-name masks, weights, to_dict."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn.utils import prune

from featurelens.compare import (
    Comparison,
    compare,
    layer_sparsity,
    rank_correlations,
    unpruned_weights,
)
from featurelens.models.pruning import magnitude_prune

NAMES = [f"f{i}" for i in range(8)]


class Ten(nn.Module):
    """``layer1`` (input, 8 → 8) and ``layer10`` (8 → 8) of the same shape: a substring
    match of ``layer1`` would silently pick up ``layer10``'s mask."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer1 = nn.Linear(8, 8)
        self.layer10 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.layer10(torch.relu(self.layer1(x))))).squeeze(-1)


def _data(n: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(1))
    return x, 2 * x[:, 0] - x[:, 3] + 0.5 * x[:, 5]


def _hand_weights_share(model: nn.Module) -> np.ndarray:
    """The deep-hedging lottery-ticket notebook's mask-aware score from the state dict.

    Σ_j |W1_ji · M1_ji|, normalised.
    """
    state = model.state_dict()
    if "layer1.weight_orig" in state:
        w = state["layer1.weight_orig"] * state["layer1.weight_mask"]
    else:
        w = state["layer1.weight"]
    s = w.double().abs().sum(dim=0).numpy()
    return s / s.sum()


@pytest.fixture(scope="module")
def trio():
    dense = Ten(0)
    ticket10 = magnitude_prune(dense, amount=0.75, layers=["layer10"])  # only layer10 pruned
    ticket1 = magnitude_prune(dense, amount=0.5, layers=["layer1"])  # only layer1 pruned
    return {"dense": dense, "ticket10": ticket10, "ticket1": ticket1}


@pytest.fixture(scope="module")
def result(trio):
    x, y = _data()
    return compare(trio, x, y=y, feature_names=NAMES, random_state=0,
                   methods=("weights", "edge_scores", "integrated_gradients", "permutation"),
                   method_options={"permutation": {"metric": "mse", "n_repeats": 3}})


def test_masks_are_matched_by_exact_name_layer1_vs_layer10(trio, result):
    sp = result.sparsity.set_index(["model", "layer"])["sparsity"]
    assert sp[("ticket10", "layer1.weight")] == 0.0
    assert sp[("ticket10", "layer10.weight")] == 0.75
    assert sp[("ticket1", "layer1.weight")] == 0.5
    assert sp[("ticket1", "layer10.weight")] == 0.0
    assert sp[("ticket10", "total")] == pytest.approx(48 / (64 + 64 + 8))
    assert result.sparsity.set_index(["model", "layer"]).loc[("ticket1", "layer1.weight"), "pruned"]
    # layer1 of ticket10 is the dense layer1: its weight importance is exactly the dense one's
    w = result.differences.query("method == 'weights' and model == 'ticket10'")["difference"]
    assert np.array_equal(w.to_numpy(), np.zeros(8))
    np.testing.assert_allclose(result.shares("weights")["ticket1"], _hand_weights_share(trio["ticket1"]),
                               rtol=1e-12)
    assert not np.allclose(_hand_weights_share(trio["ticket1"]), _hand_weights_share(trio["dense"]))


def test_shares_differences_and_shifts_match_hand_computations(trio, result):
    for name, model in trio.items():
        np.testing.assert_allclose(result.shares("weights")[name].to_numpy(), _hand_weights_share(model),
                                   rtol=1e-12)
    imp = result.importance
    for (model, method), block in imp.groupby(["model", "method"]):
        raw = block["importance"].to_numpy()
        np.testing.assert_allclose(block["share"], raw / np.abs(raw).sum(), rtol=1e-12)
        expl = result.explanations[model][method]
        np.testing.assert_allclose(block["importance"], expl.importance().to_numpy(), rtol=0, atol=0)
        order = np.argsort(-block["share"].to_numpy(), kind="stable")
        assert block["rank"].to_numpy()[order].tolist() == list(range(1, 9))
    for method in result.methods:
        shares = result.shares(method)
        for model in ("ticket10", "ticket1"):
            got = result.differences.query("method == @method and model == @model").set_index("feature")
            np.testing.assert_allclose(got.loc[NAMES, "difference"], shares[model] - shares["dense"], rtol=0,
                                       atol=1e-15)
            diff = (shares[model] - shares["dense"]).to_numpy()
            shifts = result.shifts.query("method == @method and model == @model")
            gains = shifts[shifts["direction"] == "gain"]
            losses = shifts[shifts["direction"] == "loss"]
            pos = sorted(((d, f) for d, f in zip(diff, NAMES, strict=True) if d > 0), reverse=True)[:3]
            neg = sorted((d, f) for d, f in zip(diff, NAMES, strict=True) if d < 0)[:3]
            assert gains["feature"].tolist() == [f for _, f in pos]
            assert losses["feature"].tolist() == [f for _, f in neg]


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a, b = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if a == 0 and b == 0:
            continue
        if a == 0:
            tx += 1
        elif b == 0:
            ty += 1
        elif a == b:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / np.sqrt((conc + disc + tx) * (conc + disc + ty))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    return float(np.corrcoef(rx, ry)[0, 1])


def test_rank_correlations_match_hand_formulas_with_and_without_ties(result):
    for r in result.rank_correlation.itertuples():
        shares = result.shares(r.method)
        x, y = shares[r.model_a].to_numpy(), shares[r.model_b].to_numpy()
        assert r.kendall == pytest.approx(_kendall_tau_b(x, y), abs=1e-12)
        assert r.spearman == pytest.approx(_spearman(x, y), abs=1e-12)
    assert len(result.rank_correlation) == 4 * 3  # 4 methods × 3 pairs
    tied = pd.DataFrame({"model": ["a"] * 5 + ["b"] * 5 + ["c"] * 5, "method": "m",
                         "feature": list("vwxyz") * 3,
                         "share": [0.1, 0.1, 0.3, 0.2, 0.3, 0.5, 0.1, 0.1, 0.2, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2]})
    out = rank_correlations(tied, ["a", "b", "c"]).set_index(["model_a", "model_b"])
    x, y = np.array([0.1, 0.1, 0.3, 0.2, 0.3]), np.array([0.5, 0.1, 0.1, 0.2, 0.1])
    assert out.loc[("a", "b"), "kendall"] == pytest.approx(_kendall_tau_b(x, y), abs=1e-12)
    assert out.loc[("a", "b"), "kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert out.loc[("a", "b"), "spearman"] == pytest.approx(_spearman(x, y), abs=1e-12)
    assert np.isnan(out.loc[("a", "c"), "spearman"]) and np.isnan(out.loc[("b", "c"), "kendall"])  # constant c


def test_unpruned_weights_and_summary(trio, result):
    t = trio["ticket10"]
    state = t.state_dict()
    hand = np.concatenate([
        state["layer1.weight"].reshape(-1).double().numpy(),
        (state["layer10.weight_orig"] * state["layer10.weight_mask"])[state["layer10.weight_mask"] != 0]
        .double().numpy(),
        state["head.weight"].reshape(-1).double().numpy(),
    ])
    np.testing.assert_array_equal(unpruned_weights(t), hand)
    row = result.weight_summary.set_index("model").loc["ticket10"]
    assert row["n_weights"] == 136 and row["n_unpruned"] == 136 - 48 == hand.size
    assert row["mean"] == pytest.approx(hand.mean()) and row["std"] == pytest.approx(hand.std(ddof=1))
    assert row["q95"] == pytest.approx(np.quantile(hand, 0.95))
    with torch.no_grad():  # an exact zero in a dense layer is not a pruned weight
        dense = Ten(0)
        dense.layer1.weight[0, 0] = 0.0
    assert unpruned_weights(dense).size == 136
    assert layer_sparsity(dense).set_index("layer").loc["total", "n_pruned"] == 0


def test_permutations_are_paired_and_models_are_left_as_found(trio):
    x, y = _data(60)
    a = Ten(0)
    b = Ten(0)
    b.train()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    c = compare({"a": a, "b": b}, x, y=y, methods=("permutation", "integrated_gradients"),
                random_state=np.random.default_rng(3))
    assert np.array_equal(c.differences["difference"].to_numpy(), np.zeros(16))
    assert c.rank_correlation["spearman"].tolist() == [1.0, 1.0]
    assert b.training and all(torch.equal(b.state_dict()[k], v) for k, v in before.items())
    assert all(p.requires_grad for p in b.parameters())
    # without targets permutation measures the output change (still paired, still zero difference)
    c2 = compare({"a": a, "b": b}, x, methods=("permutation",), random_state=5)
    assert c2.settings["targets"] is False and np.array_equal(c2.differences["difference"], np.zeros(8))


def test_protocol_to_frame_to_dict_and_html(result):
    frame = result.to_frame()
    assert frame.equals(result.importance) and frame is not result.importance
    data = result.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["models"] == ["dense", "ticket10", "ticket1"] and data["features"] == NAMES
    for name in Comparison.TABLES:
        got = pd.DataFrame(data[name])
        want = getattr(result, name)
        assert list(got.columns) == list(want.columns) and len(got) == len(want)
    np.testing.assert_allclose(pd.DataFrame(data["importance"])["share"], result.importance["share"], rtol=0)
    html = result._repr_html_()
    assert "<table" in html and "weights: ticket10" in html and "reference dense" in html
    # the HTML shows the shares, 4 significant digits
    assert f"{result.shares('weights').loc['f0', 'ticket10']:.4g}" in html


def test_bad_arguments_raise_naming_the_argument(trio, result):
    x, _ = _data(20)
    dense = trio["dense"]
    with pytest.raises(TypeError, match="models must be a dict"):
        compare([dense, dense], x)
    with pytest.raises(ValueError, match="at least 2 models"):
        compare({"a": dense}, x)
    with pytest.raises(TypeError, match=r"models\['b'\] must be a torch\.nn\.Module"):
        compare({"a": dense, "b": 3}, x)
    with pytest.raises(TypeError, match="every name must be a non-empty str"):
        compare({"a": dense, "": dense}, x)
    with pytest.raises(ValueError, match="reference must be one of the model names"):
        compare({"a": dense, "b": dense}, x, reference="c", methods=("weights",))
    with pytest.raises(ValueError, match="'nope' is not a method"):
        compare({"a": dense, "b": dense}, x, methods=("nope",))
    with pytest.raises(ValueError, match=r"method_options: 'permutation' is not one of the methods"):
        compare({"a": dense, "b": dense}, x, methods=("weights",), method_options={"permutation": {}})
    with pytest.raises(ValueError, match="'n_stepz' is not an option of 'integrated_gradients'"):
        compare({"a": dense, "b": dense}, x, methods=("integrated_gradients",),
                method_options={"integrated_gradients": {"n_stepz": 3}})
    with pytest.raises(ValueError, match="compare one output at a time"):
        compare({"a": dense, "b": dense}, x, target="all")
    with pytest.raises(ValueError, match=r"model 'b', method 'weights': .*no nn\.Linear layer"):
        compare({"a": dense, "b": nn.Sequential(nn.ReLU())}, x, methods=("weights",))
    with pytest.raises(ValueError, match="n_top must be >= 1"):
        compare({"a": dense, "b": dense}, x, n_top=0)
    with pytest.raises(ValueError, match="method must be one of"):
        result.shares("saliency")
    assert isinstance(result, Comparison)


def test_prune_reparametrisation_on_any_weight_module_counts_as_a_layer():
    class WithNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.norm = nn.LayerNorm(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.lin(x))

    m = WithNorm()
    assert layer_sparsity(m)["layer"].tolist() == ["lin.weight", "total"]  # LayerNorm is no layer
    prune.custom_from_mask(m.norm, "weight", torch.tensor([1.0, 0.0, 1.0, 1.0]))
    table = layer_sparsity(m).set_index("layer")
    assert table.loc["norm.weight", "sparsity"] == 0.25 and table.loc["total", "n_pruned"] == 1


def test_every_method_sees_the_masked_weights(trio):
    """A pruned model and the same model with its masks folded in (a plain dense model with those
    zeros) get identical importances: the methods use ``weight_orig * weight_mask``, not ``weight_orig``."""
    from featurelens.models.pruning import make_permanent

    x, y = _data(50)
    pruned = trio["ticket1"]
    c = compare({"pruned": pruned, "folded": make_permanent(pruned), "unmasked_orig": _orig_as_dense(pruned)},
                x, y=y, methods=("weights", "edge_scores", "integrated_gradients"), random_state=0)
    d = c.differences.set_index("model")
    assert np.array_equal(d.loc["folded", "difference"].to_numpy(), np.zeros(24))
    assert np.abs(d.loc["unmasked_orig", "difference"].to_numpy()).max() > 1e-3


def _orig_as_dense(model: nn.Module) -> nn.Module:
    """The pruned model's ``weight_orig`` as plain weights (what a mask-blind method would read)."""
    dense = Ten(0)
    state = {k.removesuffix("_orig"): v for k, v in model.state_dict().items() if not k.endswith("_mask")}
    dense.load_state_dict(state)
    return dense
