"""The evaluation core: ``evaluate``, ``default_batch_size``, ``call_model`` and ``logit_accuracy``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from featurelens._metrics import accuracy
from featurelens.models import (
    MLP,
    OutputSelector,
    call_model,
    default_batch_size,
    evaluate,
    logit_accuracy,
)
from featurelens.models._evaluate import CPU_ROWS_PER_THREAD


def test_logit_accuracy_equals_accuracy_of_probabilities():
    torch.manual_seed(0)
    model = MLP(3, (4,), 1, dropout=0.5)  # training mode, with dropout
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    got = logit_accuracy(model, x, y)
    assert model.training and model.drop1.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    want = float(np.mean((logits.numpy() >= 0) == (y == 1)))
    assert got == want == accuracy(torch.from_numpy(y), torch.sigmoid(logits).double())


def test_logit_accuracy_needs_one_logit():
    with pytest.raises(ValueError, match="one logit per row"):
        logit_accuracy(MLP(3, (4,), 2), np.zeros((5, 3), dtype=np.float32), np.zeros(5))


def _model(out: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, out)).double()


def _rows(n: int = 23, d: int = 4) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


@pytest.mark.parametrize("batch_size", [1, 7, 23, 100])
def test_evaluate_equals_a_loop_of_selected_calls(batch_size):
    model, x = _model(), _rows()
    sel = OutputSelector(target=1, link="softmax")
    got = evaluate(model, x, output=sel, batch_size=batch_size)
    want = torch.cat([sel(model(x[i : i + batch_size]), x[i : i + batch_size].shape[0])
                      for i in range(0, x.shape[0], batch_size)])
    assert torch.equal(got, want) and got.shape == (23,) and not got.requires_grad
    with torch.no_grad():  # against the closed form on all rows at once
        np.testing.assert_allclose(got.numpy(), torch.softmax(model(x), dim=1)[:, 1].numpy(), rtol=1e-14)
    raw = evaluate(model, x, batch_size=batch_size)  # no selector: the raw output
    with torch.no_grad():
        np.testing.assert_allclose(raw.numpy(), model(x).numpy(), rtol=1e-14)


def test_evaluate_casts_before_the_link_and_keeps_the_graph_with_grad():
    model, x = _model(out=1).float(), _rows().float()
    p = evaluate(model, x, output=OutputSelector(target="all", link="sigmoid"), dtype=torch.float64, batch_size=5)
    with torch.no_grad():  # the link is taken on the float64 cast of each chunk's float32 output
        want = torch.cat([torch.sigmoid(model(x[i : i + 5]).double()) for i in range(0, x.shape[0], 5)])
    assert p.dtype == torch.float64 and torch.equal(p, want)
    xg = x.clone().requires_grad_(True)
    out = evaluate(model, xg, output=OutputSelector(), grad=True, batch_size=4)
    (g,) = torch.autograd.grad(out.sum(), xg)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(model(xr).sum(), xr)
    torch.testing.assert_close(g, ref, rtol=1e-6, atol=1e-7)
    with torch.enable_grad():  # grad=False gives no graph even where grad mode is on
        assert not evaluate(model, xg, output=OutputSelector()).requires_grad


def test_default_batch_size_is_rows_per_thread_over_steps():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert default_batch_size(torch.zeros(5, 3)) == 2 * CPU_ROWS_PER_THREAD == 2048
        assert default_batch_size(torch.zeros(5, 16, 3)) == 2048 // 16
        assert default_batch_size(torch.zeros(5, 5000, 3)) == 1
    finally:
        torch.set_num_threads(threads)


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.sum(1), x


def test_evaluate_errors_name_the_argument_and_the_shape():
    model, x = _model(), _rows()
    with pytest.raises(TypeError, match=r"X must be a torch\.Tensor"):
        evaluate(model, x.numpy())
    with pytest.raises(ValueError, match="at least one row"):
        evaluate(model, x[:0])
    with pytest.raises(TypeError, match="output must be an OutputSelector"):
        evaluate(model, x, output=1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        evaluate(model, x, batch_size=0)
    with pytest.raises(ValueError, match=r"the model failed on inputs of shape \(23, 5\) \(5 features\): "):
        evaluate(model, torch.zeros(23, 5, dtype=torch.float64), batch_size=4)  # the shape of all rows
    with pytest.raises(TypeError, match="pass output=<index>"):
        evaluate(_Pair(), x)
    torch.testing.assert_close(evaluate(_Pair(), x, output=OutputSelector(output=0)), x.sum(1))
    with pytest.raises(ValueError, match="its first axis must be the batch"):
        evaluate(nn.Flatten(0), x)
    with pytest.raises(ValueError, match=r"the model failed on inputs of shape \(2, 3\) \(3 features\): boom"):
        call_model(_Boom(), torch.zeros(2, 3))


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom\nsecond line")
