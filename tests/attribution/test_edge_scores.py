"""Edge scores: closed forms, a slow reference loop from the definition, pykan, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from featurelens.attribution import EdgeScores, attribute, edge_scores
from featurelens.models import SmallTransformer

EPS = 1e-4


def _x(n: int = 200, d: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 3.0, d, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + 1.0


@pytest.mark.parametrize("k_out", [1, 3])
def test_linear_model_gives_absolute_standardised_coefficients(k_out):
    # f_k = w_k·x + b_k: A_1 = 1 per query, so A_0[k, i] = |w_ki| std(x_i) / (std(f_k) + eps),
    # the absolute standardised coefficient; feature scores average it over the K outputs.
    torch.manual_seed(0)
    lin = nn.Linear(5, k_out).double()
    x = _x()
    es = edge_scores(lin, x)
    w = lin.weight.detach()
    std_f = (x @ w.T).std(dim=0)
    expected = (w.abs() * x.std(dim=0) / (std_f[:, None] + EPS)).mean(dim=0)
    np.testing.assert_allclose(es.feature_scores, expected.numpy(), rtol=1e-12)
    np.testing.assert_allclose(es.node_scores[-1], np.full(k_out, 1 / k_out))
    single = edge_scores(lin, x, target=k_out - 1).feature_scores
    np.testing.assert_allclose(single, (w[-1].abs() * x.std(0) / (std_f[-1] + EPS)).numpy(), rtol=1e-12)


def test_invariant_to_rescaling_an_input_with_inverse_weights():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 8), nn.SiLU(), nn.Linear(8, 1)).double()
    scaled = nn.Sequential(nn.Linear(5, 8), nn.SiLU(), nn.Linear(8, 1)).double()
    scaled.load_state_dict(model.state_dict())
    with torch.no_grad():
        scaled[0].weight[:, 1] /= 250.0
    x = _x()
    xs = x.clone()
    xs[:, 1] *= 250.0
    a, b = edge_scores(model, x), edge_scores(scaled, xs)
    np.testing.assert_allclose(a.feature_scores, b.feature_scores, rtol=1e-10)
    for ea, eb in zip(a.edge_scores, b.edge_scores, strict=True):
        np.testing.assert_allclose(ea, eb, rtol=1e-10, atol=1e-14)


def _masked_mlp() -> nn.Sequential:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Linear(5, 7), nn.Tanh(), nn.Dropout(0.3), nn.BatchNorm1d(7),
        nn.Linear(7, 6), nn.LeakyReLU(0.1), nn.Linear(6, 2),
    ).double()
    g = torch.Generator().manual_seed(3)
    for i in (0, 4):
        prune.custom_from_mask(model[i], "weight", (torch.rand(model[i].weight.shape, generator=g) < 0.6).double())
    bn = model[3]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5, generator=g)
        bn.running_var.uniform_(0.2, 2.0, generator=g)
        bn.weight.uniform_(0.5, 2.0, generator=g)
        bn.bias.uniform_(-1.0, 1.0, generator=g)
    return model.train()  # left in train mode on purpose: edge_scores must evaluate it in eval mode


def _reference(model: nn.Sequential, x: torch.Tensor, start_layer: int | None = None):
    """Straight from the definition: explicit forward pass, loops over edges and queries."""
    w = [(model[i].weight_orig * model[i].weight_mask).detach() if i != 6 else model[i].weight.detach()
         for i in (0, 4, 6)]
    b = [model[i].bias.detach() for i in (0, 4, 6)]
    bn = model[3]
    z1 = x @ w[0].T + b[0]
    a1 = (torch.tanh(z1) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    z2 = a1.detach() @ w[1].T + b[1]
    a2 = F.leaky_relu(z2, 0.1)
    z3 = a2 @ w[2].T + b[2]
    ins, zs = [x, a1.detach(), a2], [z1, z2, z3]
    e_std, n_std = [], []
    for wl, a, z in zip(w, ins, zs, strict=True):
        e = torch.zeros(wl.shape, dtype=torch.float64)
        for j in range(wl.shape[0]):
            for i in range(wl.shape[1]):
                e[j, i] = torch.std(wl[j, i] * a[:, i])
        e_std.append(e)
        n_std.append(torch.stack([torch.std(z[:, j]) for j in range(wl.shape[0])]))
    return e_std, n_std


def _ref_propagate(e_std, n_std, start):
    a = start.clone()
    nodes, edges = [a], []
    for e, n in zip(reversed(e_std), reversed(n_std), strict=True):
        k_q, (out, inp) = a.shape[0], e.shape
        bk = torch.zeros(k_q, out, inp, dtype=torch.float64)
        prev = torch.zeros(k_q, inp, dtype=torch.float64)
        for k in range(k_q):
            for j in range(out):
                for i in range(inp):
                    bk[k, j, i] = a[k, j] * e[j, i] / (n[j] + EPS)
                    prev[k, i] += bk[k, j, i]
        a = prev
        nodes.insert(0, a)
        edges.insert(0, bk)
    return nodes, edges


def test_agrees_with_reference_loop_on_masked_three_layer_mlp():
    model = _masked_mlp()
    x = _x()
    es = edge_scores(model, x, batch_size=37)  # batches merged exactly
    assert model.training  # mode restored
    e_std, n_std = _reference(model, x)
    nodes, edges = _ref_propagate(e_std, n_std, torch.eye(2, dtype=torch.float64))
    for ours, ref in zip(es.edge_std + es.node_std, e_std + n_std, strict=True):
        np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-10)
    for ours, ref in zip(es.node_scores, nodes, strict=True):
        np.testing.assert_allclose(ours, ref.mean(0).numpy(), rtol=1e-10)
    for ours, ref in zip(es.edge_scores, edges, strict=True):
        np.testing.assert_allclose(ours, ref.mean(0).numpy(), rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(es.feature_scores, nodes[0].mean(0).numpy(), rtol=1e-10)
    assert es.layer_names == ["0", "4", "6"] and es.n_rows == 200
    # attribute(l, i): start from diag(node_scores[l]) at layer l (pykan)
    start = torch.diag(torch.as_tensor(es.node_scores[2]))
    ref_attr = _ref_propagate(e_std[:2], n_std[:2], start)[0][0]
    np.testing.assert_allclose(es.attribute(2, 3), ref_attr[3].numpy(), rtol=1e-10)
    np.testing.assert_allclose(es.attribute(2), ref_attr.numpy(), rtol=1e-10)
    np.testing.assert_allclose(es.attribute(3, 0) + es.attribute(3, 1), es.feature_scores, rtol=1e-10)
    np.testing.assert_allclose(es.normalized().sum(), 1.0)


def test_attribute_method_wraps_scores_with_groups_and_extras():
    model = _masked_mlp()
    x = _x()
    es = edge_scores(model, x, target=1)
    exp = attribute(model, x, method="edge_scores", target=1, groups={"ab": [0, 1], "e": [4]})
    np.testing.assert_allclose(exp.scores[0], [es.feature_scores[0] + es.feature_scores[1], es.feature_scores[4]],
                               rtol=1e-12)
    np.testing.assert_allclose(exp.extras["edge_scores.2"], es.edge_scores[1], rtol=1e-12)
    assert exp.values is None and exp.params["layers"] == ["0", "4", "6"]
    every = attribute(model, x, method="edge_scores", target="all")
    np.testing.assert_allclose(every.scores[0], edge_scores(model, x).feature_scores, rtol=1e-12)
    np.testing.assert_allclose(every.importance(normalize=True).to_numpy(), edge_scores(model, x).normalized())


def test_per_time_step_layers_equal_flattened_rows():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 2)).double()
    x = torch.randn(30, 7, 3, dtype=torch.float64)
    seq, flat = edge_scores(model, x), edge_scores(model, x.reshape(-1, 3))
    assert seq.n_rows == flat.n_rows == 210
    np.testing.assert_allclose(seq.feature_scores, flat.feature_scores, rtol=1e-12)


def test_pykan_multkan_returns_pykans_own_feature_score(tmp_path):
    kan = pytest.importorskip("kan")
    model = kan.KAN(width=[3, 4, 1], grid=3, k=3, seed=1, auto_save=False, ckpt_path=str(tmp_path / "m"))
    x = torch.rand(300, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = edge_scores(model, x, feature_names=["a", "b", "c"])
    model.get_act(x)
    np.testing.assert_allclose(ours.feature_scores, model.feature_score.detach().double().numpy(), rtol=1e-6)
    ref = model.attribute(1, 2, plot=False).detach().double().numpy()
    np.testing.assert_allclose(ours.attribute(1, 2), ref, rtol=1e-5)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return self.c(h + torch.relu(self.b(h)))


class FunctionalNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = nn.Linear(4, 6), nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(F.layer_norm(self.a(x), (6,)))


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = nn.Linear(4, 4), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.tanh(self.a(torch.tanh(self.a(x)))))


class SoftmaxHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.c = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.c(torch.relu(self.a(x))), dim=-1)


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.conv, self.c = nn.Linear(4, 4), nn.Conv1d(1, 1, 3, padding=1), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.conv(self.a(x).unsqueeze(1)).squeeze(1))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (SmallTransformer(4, n_heads=2, n_layers=1, hidden_dim=8), r"TransformerEncoderLayer\) is a transformer layer"),
        (nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 1)),
         r"LayerNorm\) is a normalisation"),
        (FunctionalNorm(), "between nn.Linear 'a' and nn.Linear 'c' the operations mix units"),
        (Residual(), "between nn.Linear 'b' and nn.Linear 'c' .* residual/skip"),
        (Twice(), "nn.Linear 'a' runs 2 times"),
        (SoftmaxHead(), "after the last nn.Linear 'c' the operations mix units .* without its final operation"),
        (Conv(), r"Conv1d\) is a convolution"),
        (nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=-1)), r"Softmax\) is a softmax"),
    ],
)
def test_clear_errors_where_propagation_is_undefined(model, match):
    x = torch.randn(50, 4)
    with pytest.raises(ValueError, match=match):
        edge_scores(model.eval(), x)


def test_errors_for_inputs_target_eps_and_layer():
    lin = nn.Linear(3, 2).double()
    x = _x(d=3)
    with pytest.raises(ValueError, match="at least 2 rows"):
        edge_scores(lin, x[:1])
    with pytest.raises(ValueError, match="target 2 is out of range"):
        edge_scores(lin, x, target=2)
    with pytest.raises(ValueError, match="eps must be"):
        edge_scores(lin, x, eps=-1.0)
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        edge_scores(lambda t: t, x)
    es = edge_scores(lin, x)
    assert isinstance(es, EdgeScores) and es.input_layer == ""
    with pytest.raises(ValueError, match=r"layer must be in \[0, 1\]"):
        es.attribute(2)
    with pytest.raises(ValueError, match=r"neuron must be in \[0, 2\)"):
        es.attribute(1, 2)
    with pytest.raises(ValueError, match="link='sigmoid' does not apply"):
        attribute(lin, x, method="edge_scores", target=0, link="sigmoid")
