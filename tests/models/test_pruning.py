"""featurelens.models.pruning: torch-equivalent masks, the floor, IMP with rewinding, checkpoints."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from featurelens.models import MLP, load_model
from featurelens.models.pruning import (
    copy_model,
    effective_weight,
    iterative_magnitude_pruning,
    magnitude_prune,
    make_permanent,
    pruning_masks,
    save_checkpoint,
    sparsity,
)

LAYERS = ("layer1", "layer2", "layer3")


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(6, (32, 32))


def _x(n: int = 64, d: int = 6) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(1))


def _y(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] - 0.5 * x[:, 3]


def _train(steps: int = 30):
    x = _x(128)
    y = _y(x)

    def train_fn(model: nn.Module) -> None:
        gen = torch.Generator().manual_seed(2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(x), (32,), generator=gen)
            opt.zero_grad()
            loss = ((model(x[idx]) - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()
        model.eval()

    return train_fn


class Ten(nn.Module):
    """Layers named ``layer1`` and ``layer10``: a substring match would confuse them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.layer1 = nn.Linear(4, 16)
        self.layer10 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer10(torch.relu(self.layer1(x)))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------- one shot


def test_layer_scope_equals_torch_l1_unstructured_also_when_repeated():
    model = _mlp()
    ours = magnitude_prune(model, amount=0.8)
    ours2 = magnitude_prune(ours, amount=0.5)
    ref = copy.deepcopy(model)
    for name in LAYERS:
        prune.l1_unstructured(getattr(ref, name), "weight", amount=0.8)
    assert all(torch.equal(getattr(ours, n).weight_mask, getattr(ref, n).weight_mask) for n in LAYERS)
    for name in LAYERS:  # torch prunes `amount` of the remaining weights on a second call
        prune.l1_unstructured(getattr(ref, name), "weight", amount=0.5)
    assert all(torch.equal(getattr(ours2, n).weight_mask, getattr(ref, n).weight_mask) for n in LAYERS)
    table = sparsity(ours).set_index("layer")
    assert table.loc["layer1.weight", "n_pruned"] == round(0.8 * 192) == 154
    assert table.loc["layer2.weight", "n_pruned"] == round(0.8 * 1024)
    assert table.loc["total", "n_pruned"] == 154 + 819 + 26
    x = _x()
    with torch.no_grad():
        assert torch.equal(ours(x), ref_out(model, ours, x))


def ref_out(model: nn.Module, pruned: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Independent forward pass of the pruned MLP: dense weights times masks, by hand."""
    h = x
    for i, name in enumerate(LAYERS):
        lin = getattr(model, name)
        w = lin.weight * getattr(pruned, name).weight_mask
        h = h @ w.T + lin.bias
        if i < len(LAYERS) - 1:
            h = torch.relu(h)
    return h.squeeze(-1)


def test_global_scope_equals_torch_global_unstructured_when_the_floor_does_not_bind():
    model = _mlp()
    ours = magnitude_prune(model, amount=0.8, scope="global", min_remaining=0.0)
    ref = copy.deepcopy(model)
    prune.global_unstructured([(getattr(ref, n), "weight") for n in LAYERS],
                              pruning_method=prune.L1Unstructured, amount=0.8)
    assert all(torch.equal(getattr(ours, n).weight_mask, getattr(ref, n).weight_mask) for n in LAYERS)
    assert sparsity(ours).set_index("layer").loc["total", "n_pruned"] == round(0.8 * 1248)


def test_floor_keeps_the_largest_weights_of_every_layer_and_prevents_collapse():
    model = _mlp()
    with torch.no_grad():
        model.layer3.weight.mul_(1e-3)  # tiny output layer: global pruning would remove all of it
    no_floor = magnitude_prune(model, amount=0.85, scope="global", min_remaining=0.0)
    assert int(no_floor.layer3.weight_mask.sum()) == 1  # only the unconditional one-weight floor
    ours = magnitude_prune(model, amount=0.85, scope="global", min_remaining=0.1)
    kept = ours.layer3.weight_mask.reshape(-1).bool()
    assert int(kept.sum()) == math.ceil(0.1 * 32) == 4
    w = model.layer3.weight.abs().reshape(-1)
    assert w[kept].min() > w[~kept].max()  # the protected ones are the layer's largest
    table = sparsity(ours).set_index("layer")
    assert table.loc["total", "n_pruned"] == round(0.85 * 1248)  # the others make up the difference
    for name, n in (("layer1.weight", 192), ("layer2.weight", 1024)):
        assert n - table.loc[name, "n_pruned"] >= math.ceil(0.1 * n)
    # the floor cannot be undercut: at most n - floor weights per layer are prunable
    full = sparsity(magnitude_prune(model, amount=1.0, scope="global", min_remaining=0.1)).set_index("layer")
    assert full.loc["total", "n_pruned"] == 1248 - (20 + 103 + 4)
    x = _x()
    with torch.no_grad():
        assert ours(x).std() > 0


def test_layers_and_exclude_select_by_exact_name_and_the_input_model_is_untouched():
    model = Ten()
    before = _state(model)
    out = magnitude_prune(model, amount=0.5, layers=["layer1"])
    assert set(pruning_masks(out)) == {"layer1.weight"}
    out = magnitude_prune(model, amount=0.5, exclude=["layer1"])
    assert set(pruning_masks(out)) == {"layer10.weight"}
    assert set(model.state_dict()) == set(before) and all(torch.equal(model.state_dict()[k], v)
                                                          for k, v in before.items())
    assert pruning_masks(model) == {} and not model.layer1._forward_pre_hooks


def test_pruning_masks_and_sparsity_use_exact_names():
    model = Ten()
    prune.custom_from_mask(model.layer1, "weight", (torch.arange(64).reshape(16, 4) % 4 == 0).float())
    masks = pruning_masks(model)
    assert list(masks) == ["layer1.weight"]
    table = sparsity(model)
    assert table["layer"].tolist() == ["layer1.weight", "total"]
    assert table["sparsity"].tolist() == [0.75, 0.75]
    dense = sparsity(Ten())
    assert dense["layer"].tolist() == ["total"] and dense["sparsity"].tolist() == [0.0]


# ---------------------------------------------------------------------------- lottery tickets


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_imp_reaches_target_without_collapse_and_rewinds_survivors_bit_identically(scope):
    model = _mlp()
    rewind = _state(model)  # the "early epoch"
    train = _train()
    train(model)
    seen: list[tuple[dict, dict]] = []

    def train_fn(net: nn.Module) -> None:
        seen.append((_state(net), pruning_masks(net)))
        train(net)

    ticket = iterative_magnitude_pruning(model, train_fn, target_sparsity=0.8, rounds=3, rewind_to=rewind,
                                         scope=scope, exclude=["layer3"], min_remaining=0.05)
    assert ticket.rounds == 3 and len(seen) == 3
    for k, (state, masks) in enumerate(seen):
        for name in ("layer1.weight", "layer2.weight"):
            assert torch.equal(state[name + "_orig"], rewind[name])  # bit-identical rewinding
            if k:
                prev = seen[k - 1][1][name]
                assert torch.all(masks[name] <= prev)  # masks only shrink
        assert torch.equal(state["layer3.weight"], rewind["layer3.weight"])
        assert torch.equal(state["layer1.bias"], rewind["layer1.bias"])
    table = sparsity(ticket.model).set_index("layer")
    assert set(table.index) == {"layer1.weight", "layer2.weight", "total"}
    assert abs(table.loc["total", "sparsity"] - 0.8) <= 0.01
    if scope == "layer":
        assert all(abs(table.loc[n, "sparsity"] - 0.8) <= 0.01 for n in ("layer1.weight", "layer2.weight"))
    assert all(table.loc[n, "n_pruned"] < table.loc[n, "n_weights"] for n in ("layer1.weight", "layer2.weight"))
    with torch.no_grad():
        assert ticket.model(_x()).std() > 1e-3
    hist = ticket.history
    assert hist["round"].max() == 3
    totals = hist[hist["layer"] == "total"]["sparsity"].tolist()
    assert totals == sorted(totals) and abs(totals[-1] - 0.8) <= 0.01
    expected_first = 1 - round(1216 * 0.2 ** (1 / 3)) / 1216 if scope == "global" else None
    if expected_first is not None:
        assert totals[0] == pytest.approx(expected_first, abs=1e-12)
    # the user's model is untouched
    assert pruning_masks(model) == {}


def test_imp_with_noop_training_leaves_exactly_the_rewound_weights():
    model = _mlp()
    rewind = _state(_mlp(seed=5))
    ticket = iterative_magnitude_pruning(model, lambda net: None, target_sparsity=0.8, rate=0.2,
                                         rewind_to=rewind)
    assert ticket.rounds == 8  # 0.8**7 = 0.21 > 0.2 >= 0.8**8
    state = ticket.model.state_dict()
    for name in LAYERS:
        orig, mask = state[f"{name}.weight_orig"], state[f"{name}.weight_mask"]
        assert torch.equal(orig, rewind[f"{name}.weight"])
        assert torch.equal(getattr(ticket.model, name).weight, rewind[f"{name}.weight"] * mask)
        assert int((mask == 0).sum()) == round(0.8 * mask.numel())  # 154, 819 and 26 (of 32)
    # the masks were chosen on the model's own trained weights of round 1, then rewound weights
    first = magnitude_prune(model, amount=1 - 0.8, layers=["layer2"])  # round 1 keeps 80 %
    assert ticket.history.query("round == 1 and layer == 'layer2.weight'")["n_pruned"].item() == \
        int((first.layer2.weight_mask == 0).sum())


def test_imp_rewinds_from_a_pruned_state_dict_and_without_rewinding_keeps_training():
    model = _mlp()
    pruned_state = _state(magnitude_prune(_mlp(seed=7), amount=0.3))
    ticket = iterative_magnitude_pruning(model, lambda net: None, target_sparsity=0.5, rounds=1,
                                         rewind_to=pruned_state)
    assert torch.equal(ticket.model.layer1.weight_orig, pruned_state["layer1.weight_orig"])
    kept = iterative_magnitude_pruning(model, lambda net: None, target_sparsity=0.5, rounds=2)
    assert torch.equal(kept.model.layer1.weight_orig, model.layer1.weight)


# ---------------------------------------------------------------------------- files


def test_checkpoint_round_trip_through_load_model_is_bit_identical(tmp_path):
    model = Ten()
    pruned = magnitude_prune(model, amount=0.7, layers=["layer10"])
    pruned = magnitude_prune(pruned, amount=0.6, layers=["layer1"])
    path = save_checkpoint(pruned, tmp_path / "ticket.pt", metadata={"epoch": 3, "note": "t"})
    loaded = load_model(path, factory=Ten)
    x = _x(50, 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert {k: torch.equal(v, pruning_masks(pruned)[k]) for k, v in pruning_masks(loaded).items()} == \
        {"layer1.weight": True, "layer10.weight": True}
    raw = torch.load(path, weights_only=True)
    assert raw["featurelens"]["epoch"] == 3 and raw["featurelens"]["sparsity"]["layer10.weight"] == pytest.approx(
        round(0.7 * 16) / 16)


def test_make_permanent_folds_masks_and_keeps_outputs():
    pruned = magnitude_prune(_mlp(), amount=0.8)
    perm = make_permanent(pruned)
    assert pruning_masks(perm) == {} and "layer1.weight" in dict(perm.named_parameters())
    assert torch.equal(perm.layer1.weight, pruned.layer1.weight)
    x = _x()
    with torch.no_grad():
        assert torch.equal(perm(x), pruned(x))
    assert pruning_masks(pruned)  # the input keeps its masks


class Cached(nn.Module):
    """Stores its last output with its graph in a buffer (as pfhedge's hedger does)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("prev_output", torch.zeros(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        self.prev_output = out
        return out


def test_copy_model_works_where_deepcopy_fails_and_keeps_gradients_flowing():
    model = Cached()
    pruned = magnitude_prune(model, amount=0.5)
    pruned(torch.ones(4, 3))  # non-leaf tensors now sit in the module (weight and prev_output)
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(pruned)
    twin = copy_model(pruned)
    assert torch.equal(twin.lin.weight_mask, pruned.lin.weight_mask) and not twin.prev_output.requires_grad
    twin(torch.ones(4, 3)).sum().backward()
    grad = twin.lin.weight_orig.grad
    assert grad is not None and torch.equal(grad == 0, twin.lin.weight_mask == 0)  # pruned entries get none
    assert pruned.lin.weight_orig.grad is None  # the copy is independent


# ---------------------------------------------------------------------------- errors


def test_bad_arguments_raise_naming_the_argument():
    model = Ten()
    with pytest.raises(ValueError, match=r"amount must be in \[0.0, 1.0\]"):
        magnitude_prune(model, amount=1.5)
    with pytest.raises(ValueError, match="scope must be one of"):
        magnitude_prune(model, amount=0.5, scope="row")
    with pytest.raises(ValueError, match="min_remaining must be in"):
        magnitude_prune(model, amount=0.5, min_remaining=1.0)
    with pytest.raises(ValueError, match="no module named exactly 'layer'"):
        magnitude_prune(model, amount=0.5, layers=["layer"])
    with pytest.raises(TypeError, match="layers must be a sequence"):
        magnitude_prune(model, amount=0.5, layers="layer1")
    with pytest.raises(ValueError, match="no layer left to prune"):
        magnitude_prune(model, amount=0.5, exclude=["layer1", "layer10"])
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        magnitude_prune("net", amount=0.5)
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(ValueError, match="module '1' \\(ReLU\\) has no 'weight' parameter"):
        magnitude_prune(seq, amount=0.5, layers=["1"])
    with pytest.raises(TypeError, match="train_fn must be callable"):
        iterative_magnitude_pruning(model, None, target_sparsity=0.5)
    with pytest.raises(ValueError, match="either rounds or rate"):
        iterative_magnitude_pruning(model, lambda m: None, target_sparsity=0.5, rounds=2, rate=0.2)
    with pytest.raises(ValueError, match="target_sparsity must be in"):
        iterative_magnitude_pruning(model, lambda m: None, target_sparsity=1.0)
    with pytest.raises(ValueError, match="rate must be in"):
        iterative_magnitude_pruning(model, lambda m: None, target_sparsity=0.5, rate=1.0)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        iterative_magnitude_pruning(model, lambda m: None, target_sparsity=0.5, rounds=0)
    with pytest.raises(TypeError, match="rewind_to must be a state dict"):
        iterative_magnitude_pruning(model, lambda m: None, target_sparsity=0.5, rewind_to=[1])
    partial = {k: v for k, v in model.state_dict().items() if k != "layer10.bias"}
    with pytest.raises(ValueError, match=r"rewind_to has no entry .layer10\.bias."):
        iterative_magnitude_pruning(model, lambda m: None, target_sparsity=0.5, rewind_to=partial)
    wrong = dict(model.state_dict(), **{"layer1.weight": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match=r"rewind_to\['layer1.weight'\] has shape \(3, 3\)"):
        iterative_magnitude_pruning(model, lambda m: None, target_sparsity=0.5, rewind_to=wrong)
    with pytest.raises(TypeError, match="metadata must be a mapping with str keys"):
        save_checkpoint(model, "unused.pt", metadata={1: 2})
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        pruning_masks(None)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        make_permanent(None)


# ---------------------------------------------------------------------------- one sparsity table


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_sparsity_with_dense_layers_counts_every_layer_and_reads_traced_models():
    model = Ten()
    prune.custom_from_mask(model.layer10, "weight", (torch.arange(16).reshape(1, 16) % 2 == 0).float())
    prune.custom_from_mask(model.layer1, "bias", torch.tensor([1.0, 0.0] * 8))
    table = sparsity(model, dense_layers=True)
    assert table["layer"].tolist() == ["layer1.weight", "layer1.bias", "layer10.weight", "total"]
    assert table["n_weights"].tolist() == [64, 16, 16, 96] and table["n_pruned"].tolist() == [0, 8, 8, 16]
    assert table["pruned"].tolist() == [False, True, True, True]
    only = sparsity(model)
    assert only["layer"].tolist() == ["layer1.bias", "layer10.weight", "total"]
    assert only["sparsity"].tolist() == [0.5, 0.5, 0.5] and only["pruned"].tolist() == [True, True, True]
    traced = torch.jit.trace(model, torch.zeros(2, 4))
    for dense in (False, True):
        pd.testing.assert_frame_equal(sparsity(traced, dense_layers=dense), sparsity(model, dense_layers=dense))
    assert {k: v.tolist() for k, v in pruning_masks(traced).items()} == {
        k: v.tolist() for k, v in pruning_masks(model).items()}
    assert torch.equal(effective_weight(traced.layer10), model.layer10.weight_orig.detach() * model.layer10.weight_mask)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        sparsity("model")
