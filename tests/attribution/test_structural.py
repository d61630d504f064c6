"""weights / weights_x_std: mask-aware first-layer importance, input layer found by data flow."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from featurelens.attribution import Explanation, attribute, find_input_layer
from featurelens.models import MLP


def _prune(layer: nn.Linear, seed: int, keep: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(layer.weight.shape, generator=g) < keep).to(layer.weight.dtype)
    prune.custom_from_mask(layer, "weight", mask)
    return mask


def _hand(w: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    s = (w * mask).abs().sum(dim=0).numpy()
    return s / s.sum()


def _x(n: int = 40, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * torch.arange(1.0, d + 1, dtype=torch.float64)


def test_weights_pruned_mlp_with_layer1_and_layer10_matches_hand_formula():
    torch.manual_seed(0)
    model = MLP(5, hidden=(6,) * 9).double()  # layer1 .. layer10
    m1 = _prune(model.layer1, seed=1)
    _prune(model.layer10, seed=2, keep=0.1)
    exp = attribute(model, _x(), method="weights")
    expected = _hand(model.layer1.weight_orig.detach(), m1)
    assert exp.values is None and exp.scores.shape == (1, 5)
    np.testing.assert_allclose(exp.scores[0], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(exp.importance().to_numpy(), expected, rtol=0, atol=1e-15)
    assert exp.params["input_layer"] == "layer1" and exp.params["normalization"] == "sum"
    # the mask matters: the dense weights give different scores
    assert not np.allclose(expected, _hand(model.layer1.weight_orig.detach(), torch.ones_like(m1)))


def test_weights_input_layer_named_layer10_is_not_confused_with_layer1():
    torch.manual_seed(1)
    model = nn.Sequential(
        OrderedDict(layer10=nn.Linear(4, 6), act=nn.ReLU(), layer1=nn.Linear(6, 1))
    ).double()
    m10 = _prune(model.layer10, seed=3)
    _prune(model.layer1, seed=4)
    exp = attribute(model, _x(d=4), method="weights")
    assert exp.params["input_layer"] == "layer10"
    np.testing.assert_allclose(exp.scores[0], _hand(model.layer10.weight_orig.detach(), m10), atol=1e-15)


class OutputLayerFirst(nn.Module):
    """Module order (head, body) differs from data flow (body -> head)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 1)
        self.body = nn.Linear(3, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x))).squeeze(-1)


def test_input_layer_found_by_data_flow_not_module_order():
    torch.manual_seed(2)
    model = OutputLayerFirst().double()
    assert next(n for n, m in model.named_modules() if isinstance(m, nn.Linear)) == "head"
    x = _x(d=3)
    name, layer = find_input_layer(model, x)
    assert name == "body" and layer is model.body
    exp = attribute(model, x, method="weights")
    np.testing.assert_allclose(exp.scores[0], _hand(model.body.weight.detach(), torch.ones(8, 3)), atol=1e-15)


class TwoReaders(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(3, 4)
        self.c = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.a(x)) + torch.relu(self.b(x)))


class Standardises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin((x - 1.0) / 2.0)


class NoLinear(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=-1)


def test_input_feeding_two_linears_is_ambiguous():
    x = _x(d=3).float()
    with pytest.raises(ValueError, match=r"input feeds several nn.Linear layers: 'a', 'b'"):
        find_input_layer(TwoReaders(), x)
    with pytest.raises(ValueError, match=r"several nn.Linear layers: 'a', 'b'"):
        attribute(TwoReaders(), x, method="weights")


def test_no_linear_reads_the_input_unchanged():
    with pytest.raises(ValueError, match=r"no nn.Linear layer reads the model input .* that ran: 'lin'"):
        attribute(Standardises(), _x(d=3).float(), method="weights")
    with pytest.raises(ValueError, match=r"has no nn.Linear layer"):
        attribute(NoLinear(), _x(d=3).float(), method="weights")


def test_weights_x_std_matches_formula_inputs_and_background():
    torch.manual_seed(3)
    model = MLP(5, hidden=(7,)).double()
    mask = _prune(model.layer1, seed=5)
    x, bg = _x(seed=1), _x(n=300, seed=2) * 3
    w = (model.layer1.weight_orig * mask).detach().abs().sum(dim=0).numpy()
    for kw, data in (({}, x), ({"background": bg}, bg)):
        exp = attribute(model, x, method="weights_x_std", **kw)
        expected = w * data.std(dim=0).numpy()
        np.testing.assert_allclose(exp.scores[0], expected / expected.sum(), rtol=1e-13)
        np.testing.assert_allclose(exp.extras["input_std"], data.std(dim=0).numpy(), rtol=1e-13)


def test_weights_x_std_is_invariant_to_input_rescaling_and_weights_is_not():
    torch.manual_seed(4)
    model = MLP(5, hidden=(7,)).double()
    x = _x()
    scaled_model = MLP(5, hidden=(7,)).double()
    scaled_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        scaled_model.layer1.weight[:, 2] /= 100.0
    x_scaled = x.clone()
    x_scaled[:, 2] *= 100.0
    np.testing.assert_allclose(model(x).detach(), scaled_model(x_scaled).detach(), rtol=1e-10)
    a = attribute(model, x, method="weights_x_std").scores
    b = attribute(scaled_model, x_scaled, method="weights_x_std").scores
    np.testing.assert_allclose(a, b, rtol=1e-12)
    a = attribute(model, x, method="weights").scores
    b = attribute(scaled_model, x_scaled, method="weights").scores
    assert b[0, 2] < a[0, 2] / 10


def test_groups_sum_member_scores_and_file_round_trip(tmp_path):
    torch.manual_seed(5)
    model = MLP(5, hidden=(4,)).double()
    x = _x()
    single = attribute(model, x, method="weights").scores[0]
    grouped = attribute(model, x, method="weights", groups={"a": [0, 1], "b": [4], "c": [1, 2]})
    np.testing.assert_allclose(grouped.scores[0], [single[0] + single[1], single[4], single[1] + single[2]])
    np.testing.assert_allclose(grouped.extras["feature_scores"], single)
    loaded = Explanation.load(grouped.save(tmp_path / "w.npz"))
    np.testing.assert_array_equal(loaded.scores, grouped.scores)
    assert loaded.values is None and loaded.names == ["a", "b", "c"]


class PerStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(1, 2))


def test_per_time_step_linear_on_sequences_is_the_input_layer():
    torch.manual_seed(6)
    model = PerStep().double()
    x = torch.randn(20, 6, 3, dtype=torch.float64)
    name, _ = find_input_layer(model, x)
    assert name == "net.0"
    exp = attribute(model, x, method="weights_x_std")
    expected = model.net[0].weight.detach().abs().sum(0).numpy() * x.reshape(-1, 3).std(0).numpy()
    np.testing.assert_allclose(exp.scores[0], expected / expected.sum(), rtol=1e-13)


def test_weights_rejects_a_link_and_bad_background():
    model = MLP(5, hidden=(4,)).double()
    with pytest.raises(ValueError, match="link='sigmoid' does not apply"):
        attribute(model, _x(), method="weights", link="sigmoid")
    with pytest.raises(ValueError, match="background has 3 features but the inputs have 5"):
        attribute(model, _x(), method="weights_x_std", background=np.zeros((10, 3)))
    with pytest.raises(TypeError, match="unexpected option"):
        attribute(model, _x(), method="weights", background=_x())


def test_weights_leaves_model_mode_and_hooks_as_found():
    model = MLP(5, hidden=(4,), dropout=0.5).double().train()
    attribute(model, _x(), method="weights")
    assert model.training and all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())


def test_structural_methods_need_no_target_on_multi_output_models():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.randn(64, 4)
    for method in ("weights", "weights_x_std", "edge_scores"):
        e = attribute(model, x, method=method)
        assert e.scores.shape == (1, 4)
    with pytest.raises(ValueError, match="has 3 outputs"):
        attribute(model, x, method="ablation")


def test_input_layer_behind_a_size_one_axis_is_found_but_not_behind_a_flatten():
    from featurelens.models import SmallTransformer

    torch.manual_seed(0)
    model = SmallTransformer(5, hidden_dim=8, n_heads=2)
    x = torch.randn(16, 5)
    assert find_input_layer(model, x)[0] == "input_proj"  # the row becomes one token: x.unsqueeze(1)
    e = attribute(model, x, method="weights")
    w = model.input_proj.weight.detach().abs().sum(0)
    np.testing.assert_allclose(e.scores[0], (w / w.sum()).numpy(), rtol=1e-6)
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4, 1))  # (n, T, d) -> (n, T*d): columns are not features
    with pytest.raises(ValueError, match=r"no nn\.Linear layer reads the model input"):
        find_input_layer(flat, torch.randn(6, 3, 4))


def _leaky_chain(inplace: bool) -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 6), nn.LeakyReLU(0.1, inplace=inplace), nn.Linear(6, 4),
                         nn.ReLU(inplace=inplace), nn.Linear(4, 1)).double()


class _HalvesAfterUse(nn.Module):
    """``h.mul_(0.5)`` after ``l2`` read ``h``: the output, and so every score, is unaffected."""

    def __init__(self, edit: bool) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.l1, self.l2, self.edit = nn.Linear(5, 4).double(), nn.Linear(4, 1).double(), edit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.l1(x))
        y = self.l2(h)
        if self.edit:
            h.mul_(0.5)
        return y


@pytest.mark.parametrize(("edited", "plain"), [(lambda: _leaky_chain(True), lambda: _leaky_chain(False)),
                                              (lambda: _HalvesAfterUse(True), lambda: _HalvesAfterUse(False))],
                         ids=["inplace_activations", "edit_after_use"])
def test_edge_scores_are_unchanged_by_inplace_operations(edited, plain):
    """Hooks record copies: an in-place activation or a later in-place edit of a recorded
    activation gives the scores of the same model computed without in-place operations."""
    x = _x(60)
    got, want = attribute(edited(), x, method="edge_scores"), attribute(plain(), x, method="edge_scores")
    np.testing.assert_array_equal(got.scores, want.scores)
    for key, value in want.extras.items():
        np.testing.assert_array_equal(got.extras[key], value)
