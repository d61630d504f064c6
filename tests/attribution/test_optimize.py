"""optimize_input: deepdow's input optimisation, made exact for masks and safe for the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.attribution import optimize_input

TARGET = torch.tensor([0.1, 0.2, 0.3, 0.4])


def _allocation_net(seed: int = 0) -> nn.Module:
    """deepdow-style: (n, channels=2, lookback=3, assets=4) -> softmax weights (n, 4)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(24, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 4), nn.Softmax(dim=-1)
    )


def _init(k: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(k, 2, 3, 4, generator=torch.Generator().manual_seed(seed))


def _mse(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return ((model.eval()(x) - TARGET) ** 2).mean(dim=1).numpy()


def test_reaches_target_allocation_from_several_starts_and_restores_model():
    model = _allocation_net().train()
    model[1].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init = _init()
    x, hist = optimize_input(model, TARGET, init, n_iter=150)
    assert x.shape == init.shape and x.dtype == init.dtype and not x.requires_grad
    assert list(hist.columns) == [f"start_{s}" for s in range(4)] and len(hist) == 151
    assert hist.index.name == "iteration"
    assert (hist.iloc[-1] < 1e-4).all() and (hist.iloc[0] > 1e-3).all()
    assert model.training and all(m.training for m in model.modules())
    assert not model[1].weight.requires_grad and model[4].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    # the last history row is the model evaluated on exactly the returned x
    np.testing.assert_allclose(hist.iloc[-1].to_numpy(), _mse(model, x), rtol=1e-6)


def test_masked_entries_stay_bit_identical_and_model_sees_them():
    model = _allocation_net()
    init = _init()
    init[:, 1] = 5.0  # deepdow evaluated x * mask, i.e. zeros here, while returning 5.0
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[1] = False
    mask[0, 0, 2] = False
    x, hist = optimize_input(model, TARGET, init, mask=mask, n_iter=150)
    fixed = ~mask.expand_as(init)
    assert torch.equal(x[fixed], init[fixed])
    assert not torch.equal(x[~fixed], init[~fixed])
    np.testing.assert_allclose(hist.iloc[-1].to_numpy(), _mse(model, x), rtol=1e-6)
    assert (hist.iloc[-1] < 1e-4).all()
    everything_fixed = torch.zeros_like(init, dtype=torch.bool)
    x0, _ = optimize_input(model, TARGET, init, mask=everything_fixed, n_iter=5)
    assert torch.equal(x0, init)


def test_each_start_follows_its_own_loss():
    model = _allocation_net(seed=3)
    init = _init(k=3, seed=4)
    joint, hist = optimize_input(model, TARGET, init, n_iter=40, lr=0.05)
    for s in range(3):
        alone, h = optimize_input(model, TARGET, init[s : s + 1], n_iter=40, lr=0.05)
        np.testing.assert_allclose(alone[0], joint[s], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(h["start_0"], hist[f"start_{s}"], rtol=1e-4, atol=1e-7)


def test_bounds_distance_weight_and_zero_iterations():
    model = _allocation_net()
    init = _init() * 0.1
    x, _ = optimize_input(model, TARGET, init, n_iter=100, bounds=(-0.3, 0.3))
    assert float(x.abs().max()) <= 0.3 + 1e-7
    free, _ = optimize_input(model, TARGET, init, n_iter=100)
    near, hist = optimize_input(model, TARGET, init, n_iter=100, distance_weight=1.0)
    assert (near - init).norm() < (free - init).norm()
    expected = _mse(model, near) + ((near - init) ** 2).reshape(4, -1).sum(1).numpy()
    np.testing.assert_allclose(hist.iloc[-1].to_numpy(), expected, rtol=1e-6)
    same, hist0 = optimize_input(model, TARGET, init, n_iter=0)
    assert torch.equal(same, init) and len(hist0) == 1


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + 0.01 * torch.randn(x.shape[0], 2)


def test_random_state_seeds_stochastic_models_without_touching_global_rng():
    torch.manual_seed(0)
    model, init = Noisy(), torch.zeros(2, 3)
    state = torch.get_rng_state()
    a, _ = optimize_input(model, torch.zeros(2), init, n_iter=10, random_state=7)
    b, _ = optimize_input(model, torch.zeros(2), init, n_iter=10, random_state=7)
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    with pytest.raises(TypeError, match="random_state must be"):
        optimize_input(model, torch.zeros(2), init, random_state="seed")


class Flaky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return self.lin(x)


def test_model_state_restored_when_it_raises():
    model = Flaky().train()
    model.lin.bias.requires_grad_(False)
    with pytest.raises(ValueError, match=r"the model failed on inputs of shape .*: boom"):
        optimize_input(model, torch.zeros(2), torch.zeros(4, 3), n_iter=10)
    assert model.training and model.lin.weight.requires_grad and not model.lin.bias.requires_grad
    assert all(p.grad is None for p in model.parameters())
    net = _allocation_net().train()
    with pytest.raises(ValueError, match=r"target of shape \(5,\) does not broadcast"):
        optimize_input(net, torch.ones(5), _init(), n_iter=3)
    assert net.training and all(p.requires_grad for p in net.parameters())


def test_mask_and_argument_errors():
    model, init = _allocation_net(), _init()
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4, 2\) does not broadcast"):
        optimize_input(model, TARGET, init, mask=torch.ones(3, 4, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        optimize_input(model, TARGET, init, mask=torch.ones(2, 3, 4))
    with pytest.raises(TypeError, match=r"mask must be None or a boolean torch.Tensor"):
        optimize_input(model, TARGET, init, mask=np.ones((2, 3, 4), dtype=bool))
    with pytest.raises(ValueError, match="n_iter must be >= 0"):
        optimize_input(model, TARGET, init, n_iter=-1)
    with pytest.raises(ValueError, match="loss must be one of"):
        optimize_input(model, TARGET, init, loss="huber")
    with pytest.raises(ValueError, match="low exceeds high"):
        optimize_input(model, TARGET, init, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="init holds NaN"):
        optimize_input(model, TARGET, torch.full((1, 2, 3, 4), float("nan")))
