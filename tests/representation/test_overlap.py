import numpy as np
import pytest
import torch
from torch import nn

from featurelens.representation import average_jacobian, group_overlap, jacobian_overlap


def test_orthogonal_blocks_zero_and_identical_blocks_one():
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 6)))
    w = np.hstack([q[:, :2], q[:, 2:5], q[:, :2] @ np.array([[1.0, 2.0], [3.0, -1.0]])])
    df = group_overlap(torch.from_numpy(w), {"a": [0, 1], "b": [2, 3, 4], "c": [5, 6]})
    assert list(df.index) == ["a", "b", "c"]
    np.testing.assert_allclose(np.diag(df.to_numpy()), 1.0)
    assert df.loc["a", "b"] == pytest.approx(0.0, abs=1e-12)
    assert df.loc["a", "c"] == pytest.approx(1.0)
    assert df.loc["b", "c"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(df.to_numpy(), df.to_numpy().T)


def test_partial_overlap_is_mean_cos_squared():
    # span{e1, e2} vs span{e1, cos t e2 + sin t e3}: angles 0 and t
    t = 0.7
    w = np.array([[1, 0, 1, 0], [0, 1, 0, np.cos(t)], [0, 0, 0, np.sin(t)]], dtype=float)
    df = group_overlap(w, {"g": ["u", "v"], "h": ["p", "q"]}, feature_names=["u", "v", "p", "q"])
    assert df.loc["g", "h"] == pytest.approx((1 + np.cos(t) ** 2) / 2)


def test_zero_block_gives_nan():
    w = np.array([[1.0, 0.0], [0.0, 0.0]])
    df = group_overlap(nn.Linear(2, 2).weight.detach() * 0 + torch.from_numpy(w).float(), {"a": [0], "b": [1]})
    assert np.isnan(df.loc["b", "b"]) and np.isnan(df.loc["a", "b"])


def test_linear_model_jacobian_equals_weight_and_state_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.5))
    model.train()
    x = torch.randn(50, 6)
    jac = average_jacobian(model, x, batch_size=16)
    np.testing.assert_allclose(jac, model[0].weight.detach().numpy(), atol=1e-6)
    assert model.training and model[1].training
    assert all(p.requires_grad for p in model.parameters())
    groups = {"a": [0, 1], "b": [2, 3, 4, 5]}
    np.testing.assert_allclose(
        jacobian_overlap(model, x, groups).to_numpy(),
        group_overlap(model[0].weight, groups).to_numpy(),
        atol=1e-5,
    )


def test_layer_fn_and_nonlinear_jacobian_against_loop():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    jac = average_jacobian(model, x, layer_fn=lambda z: model[:2](z), batch_size=3)
    ref = sum(torch.autograd.functional.jacobian(model[:2], x[i]) for i in range(7)) / 7
    np.testing.assert_allclose(jac, ref.numpy(), atol=1e-12)


def test_sequence_inputs_group_covers_every_time_step():
    model = nn.Linear(2, 3)
    x = torch.randn(4, 5, 2)  # Linear acts per time step; output (4, 5, 3)
    jac = average_jacobian(model, x)
    assert jac.shape == (15, 5, 2)
    df = jacobian_overlap(model, x, {"a": [0], "b": [1]})
    assert df.shape == (2, 2)


def test_errors():
    with pytest.raises(ValueError, match="feature_names has 2 names"):
        group_overlap(np.eye(3), {"a": [0]}, feature_names=["a", "b"])
    with pytest.raises(ValueError, match="unknown feature name"):
        group_overlap(np.eye(3), {"a": ["zz"]})
    with pytest.raises(ValueError, match="non-empty mapping"):
        group_overlap(np.eye(3), {})
    with pytest.raises(TypeError, match="model must be"):
        average_jacobian("m", torch.zeros(2, 2))
    with pytest.raises(ValueError, match="X must have shape"):
        average_jacobian(nn.Linear(2, 2), torch.zeros(2))
    with pytest.raises(TypeError, match="layer_fn must be callable"):
        average_jacobian(nn.Linear(2, 2), torch.zeros(2, 2), layer_fn=3)
