from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurelens.internals import path_effects
from featurelens.models import OutputSelector


class TwoPath(nn.Module):
    """x -> med (Linear) -> head, plus a direct skip x -> output."""

    def __init__(self, d: int = 5, m: int = 3, nonlinear: bool = False) -> None:
        super().__init__()
        self.med = nn.Linear(d, m)
        self.head = nn.Linear(m, 1)
        self.skip = nn.Linear(d, 1)
        self.nonlinear = nonlinear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.med(x)
        if self.nonlinear:
            return (self.head(h) * self.skip(x)).squeeze(-1)
        return (self.head(h) + self.skip(x)).squeeze(-1)


@pytest.fixture
def linear_model():
    torch.manual_seed(3)
    return TwoPath().double().eval()


@pytest.mark.parametrize("baseline", [0.0, torch.tensor([0.5, -1.0], dtype=torch.float64)])
def test_closed_form_linear(linear_model, baseline):
    x = torch.randn(7, 5, dtype=torch.float64)
    cols = [1, 3]
    res = path_effects(linear_model, x, mediator="med", columns=cols, baselines=baseline)
    delta = torch.zeros_like(x)
    delta[:, cols] = (torch.as_tensor(baseline, dtype=torch.float64) - x[:, cols])
    m = linear_model
    nde = (delta @ m.skip.weight.T).squeeze(-1).detach().numpy()
    nie = (delta @ m.med.weight.T @ m.head.weight.T).squeeze(-1).detach().numpy()
    per = res["per_sample"]
    assert list(per.columns) == ["te", "nde", "nie", "residual"] and len(per) == 7
    np.testing.assert_allclose(per["nde"], nde, atol=1e-10, rtol=0)
    np.testing.assert_allclose(per["nie"], nie, atol=1e-10, rtol=0)
    np.testing.assert_allclose(per["te"], nde + nie, atol=1e-10, rtol=0)
    np.testing.assert_allclose(per["residual"], 0.0, atol=1e-10)
    assert res["mean"]["te"] == pytest.approx(float(np.mean(nde + nie)), abs=1e-10)


def test_nonlinear_reports_residual():
    torch.manual_seed(4)
    m = TwoPath(nonlinear=True).double().eval()
    x = torch.randn(6, 5, dtype=torch.float64)
    per = path_effects(m, x, mediator=m.med, columns=[0, 2])["per_sample"]
    np.testing.assert_allclose(per["residual"], per["te"] - per["nde"] - per["nie"], atol=1e-12)
    assert per["residual"].abs().max() > 1e-6


def test_multi_output_target(mlp, x4):
    per = path_effects(mlp, x4, mediator="act1", columns=[0], target=1)["per_sample"]
    with torch.no_grad():
        x0 = x4.clone()
        x0[:, 0] = 0
        te = (mlp(x0) - mlp(x4))[:, 1].numpy()
    np.testing.assert_allclose(per["te"], te, atol=1e-12)
    with pytest.raises(ValueError, match="pass target="):
        path_effects(mlp, x4, mediator="act1", columns=[0])


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"columns": []}, ValueError, "columns must be a non-empty sequence"),
        ({"columns": [9]}, ValueError, r"columns index 9 is out of range for inputs of shape \(10, 4\)"),
        ({"columns": [0], "baselines": torch.zeros(3)}, ValueError,
         r"baselines must be a number or a tensor of shape \(1,\)"),
        ({"columns": [0], "mediator": "act*"}, ValueError, "mediator must resolve to exactly one module"),
        ({"columns": [0], "output": 1}, TypeError, "output must be an OutputSelector"),
    ],
)
def test_errors(mlp, x4, kwargs, err, match):
    kwargs = {"mediator": "act1", "target": 0, **kwargs}
    with pytest.raises(err, match=match):
        path_effects(mlp, x4, **kwargs)


def test_mediator_called_twice(x4):
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(self.lin(x)).sum(-1)

    with pytest.raises(ValueError, match="must run exactly once per forward, ran 2 times"):
        path_effects(Twice().double(), x4, mediator="lin", columns=[0], output=OutputSelector())


@pytest.mark.parametrize("columns", [[0], [0, 2]])
def test_no_direct_path_with_inplace_activation_after_the_mediator(leaky_inplace, x3, columns):
    """Linear → LeakyReLU(inplace=True) → Linear has no direct path: NDE is exactly 0 and TE = NIE."""
    res = path_effects(leaky_inplace, x3, mediator="0", columns=columns)
    per = res["per_sample"]
    assert per["nde"].abs().max() <= 1e-7
    np.testing.assert_allclose(per["te"], per["nie"], atol=1e-7, rtol=0)
    with torch.no_grad():
        x0 = x3.clone()
        x0[:, columns] = 0
        te = (leaky_inplace(x0) - leaky_inplace(x3)).squeeze(-1).numpy()
    np.testing.assert_allclose(per["te"], te, atol=1e-12, rtol=0)
    assert np.abs(te).max() > 1e-3


def test_add_inplace_in_the_forward_after_the_mediator(add_inplace, x3):
    per = path_effects(add_inplace, x3, mediator="lin", columns=[1])["per_sample"]
    assert per["nde"].abs().max() <= 1e-7
    np.testing.assert_allclose(per["te"], per["nie"], atol=1e-7, rtol=0)
    with torch.no_grad():
        w = add_inplace.head.weight @ add_inplace.lin.weight  # the model is linear: TE = -x1 * (W_head W_lin)[:, 1]
    np.testing.assert_allclose(per["te"], (-x3[:, 1] * w[0, 1]).numpy(), atol=1e-10, rtol=0)
