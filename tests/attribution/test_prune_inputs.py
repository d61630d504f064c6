"""prune_inputs on the planted function of pykan's feature-attribution tutorial.

Exact outputs, persistence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from featurelens.attribution import PrunedInputs, attribute, edge_scores, prune_inputs
from featurelens.models import MLP, load_model


def _planted_function(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return x, x[:, 0] ** 2 + 0.3 * x[:, 1] + 0.1 * x[:, 2] ** 3 + 0.0 * x[:, 3]


def _silu_mlp() -> MLP:
    model = MLP(4, hidden=(16, 16))
    model.act1, model.act2 = nn.SiLU(), nn.SiLU()  # SiLU, pykan's base function
    return model


@pytest.fixture(scope="module")
def l1_model() -> nn.Module:
    """4-16-16-1 SiLU MLP, full-batch Adam (cosine lr), loss = MSE + 1e-3 · Σ|W_layer1|."""
    x, y = _planted_function(1000, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _silu_mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1000)
        for _ in range(1000):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean() + 1e-3 * model.layer1.weight.abs().sum()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def test_planted_function_ground_truth_ranking_and_pruning(l1_model):
    x, y = _planted_function(1000, seed=1)
    with torch.no_grad():
        assert float(((l1_model(x) - y) ** 2).mean().sqrt()) < 0.03
    es = edge_scores(l1_model, x)
    s = es.feature_scores
    assert s[0] > s[1] > s[2] > s[3], s
    assert s[2] > 0.05 and s[3] < 5e-3  # measured: [~5, 0.51, 0.095, ~0.001]
    pruned = prune_inputs(l1_model, es)
    assert pruned.keep.tolist() == [True, True, True, False]
    assert pruned.kept_names == ["x0", "x1", "x2"] and pruned.dropped_names == ["x3"]
    assert pruned.input_layer == "layer1" and pruned.model.layer1.weight.shape == (16, 3)


def test_pruned_model_equals_original_with_dropped_weight_columns_deleted(l1_model):
    x, _ = _planted_function(300, seed=2)
    before = {k: v.clone() for k, v in l1_model.state_dict().items()}
    pruned = prune_inputs(l1_model, edge_scores(l1_model, x), threshold=1e-2)
    keep = torch.as_tensor(pruned.keep)
    # reference: the original model with the dropped columns' weights deleted (set to zero)
    ref = _silu_mlp()
    ref.load_state_dict(l1_model.state_dict())
    with torch.no_grad():
        ref.layer1.weight[:, ~keep] = 0.0
        out_ref = ref(x)
        out_new = pruned.model(pruned.select(x))
        out_zeroed = l1_model(torch.where(keep, x, torch.zeros_like(x)))
    np.testing.assert_allclose(out_new, out_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out_new, out_zeroed, rtol=0, atol=1e-6)
    for k, v in l1_model.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k])
    assert l1_model.layer1.weight.shape == (16, 4) and l1_model.in_features == 4
    assert pruned.model.in_features == 3


def _masked_net() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(5)
    model = MLP(5, hidden=(6,)).double()
    mask = (torch.rand(6, 5, generator=torch.Generator().manual_seed(6)) < 0.7).double()
    prune.custom_from_mask(model.layer1, "weight", mask)
    return model, torch.randn(60, 5, dtype=torch.float64)


def test_pruning_masks_are_kept_and_the_file_round_trips(tmp_path):
    model, x = _masked_net()
    scores = np.array([0.5, 0.001, 0.2, 0.3, 0.0])
    pruned = prune_inputs(model, scores, X=x, feature_names=list("abcde"))
    keep = pruned.keep
    assert keep.tolist() == [True, False, True, True, False] and pruned.kept_names == ["a", "c", "d"]
    lay = pruned.model.layer1
    assert torch.equal(lay.weight_mask, model.layer1.weight_mask[:, keep])
    assert torch.equal(lay.weight_orig, model.layer1.weight_orig[:, keep])
    expected = model(torch.where(torch.as_tensor(keep), x, torch.zeros_like(x))).detach()
    np.testing.assert_allclose(pruned.model(x[:, keep]).detach(), expected, atol=1e-12)

    path = pruned.save(tmp_path / "pruned.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["keep"].tolist() == keep.tolist() and raw["feature_names"] == list("abcde")
    assert raw["input_layer"] == "layer1" and "layer1.weight_mask" in raw["model_state_dict"]
    back = PrunedInputs.load(path, factory=lambda: MLP(5, hidden=(6,)).double())
    assert back.kept_names == ["a", "c", "d"] and not back.model.training
    np.testing.assert_allclose(back.model(x[:, keep]).detach(), expected, atol=1e-12)
    assert torch.equal(back.model.layer1.weight_mask, lay.weight_mask)
    narrow = load_model(path, factory=lambda: MLP(3, hidden=(6,)).double())
    np.testing.assert_allclose(narrow(x[:, keep]).detach(), expected, atol=1e-12)


def test_scores_from_explanation_series_and_reordered_names():
    model, x = _masked_net()
    exp = attribute(model, x, method="weights", feature_names=list("abcde"))
    by_exp = prune_inputs(model, exp, threshold=0.19)
    assert by_exp.input_layer == "layer1"
    assert by_exp.keep.tolist() == (exp.scores[0] > 0.19).tolist()
    series = pd.Series([0.0, 0.3, 0.0, 0.4, 0.5], index=list("edcba"))
    by_series = prune_inputs(model, series, feature_names=list("abcde"), X=x)
    assert by_series.kept_names == ["a", "b", "d"]
    declared = prune_inputs(model, [1.0, 1.0, 0.0, 1.0, 1.0])  # MLP declares its input_layer
    assert declared.model.layer1.weight_orig.shape == (6, 4)


def test_prune_inputs_errors(tmp_path):
    model, x = _masked_net()
    grouped = attribute(model, x, method="weights", groups={"g": [0, 1]})
    with pytest.raises(ValueError, match="scores groups"):
        prune_inputs(model, grouped, X=x)
    with pytest.raises(ValueError, match="scores cover 3"):
        prune_inputs(model, [1.0, 1.0, 1.0], X=x)
    with pytest.raises(ValueError, match="nothing would be kept"):
        prune_inputs(model, np.zeros(5), X=x)
    with pytest.raises(ValueError, match="NaN or inf"):
        prune_inputs(model, [np.nan] * 5, X=x)
    with pytest.raises(TypeError, match="scores must be"):
        prune_inputs(model, "abc")
    with pytest.raises(ValueError, match="differ"):
        prune_inputs(model, pd.Series(np.ones(5), index=list("vwxyz")), feature_names=list("abcde"))
    plain = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match="cannot tell which layer reads the inputs"):
        prune_inputs(plain, np.ones(5))
    with pytest.raises(ValueError, match="no module at path 'nope'"):
        prune_inputs(plain, np.ones(5), layer="nope")
    torch.save(plain.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a featurelens pruned-inputs file"):
        PrunedInputs.load(tmp_path / "plain.pt", factory=lambda: plain)
