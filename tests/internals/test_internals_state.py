"""Every public function leaves the model exactly as it found it, also when it raises."""

from __future__ import annotations

import pytest
import torch

from featurelens.internals import (
    capture,
    collect,
    default_layers,
    gradient_norms,
    intervene_weights,
    layer_summary,
    neuron_importance,
    patch,
    path_effects,
    resolve_modules,
    summarize_internals,
    zero_input_group,
)
from featurelens.internals.attention import attention_weights, record_attention
from featurelens.models import MLP, SmallTransformer
from featurelens.representation import average_jacobian, jacobian_overlap

#: public names that take no user model (sweeps train their own; result containers)
NO_MODEL = {"Activations", "InternalsReport", "InternalsSummary", "SweepResult", "architecture_sweep", "capacity_sweep",
            "scale_sweep", "token_data"}
GROUPS = {"a": [0, 1], "b": [2, 3]}


def _state(model):
    tensors = {k: v.detach().clone() for k, v in [*model.named_parameters(), *model.named_buffers()]}
    modules = {
        name: (
            m.training,
            list(m._forward_hooks), list(m._forward_pre_hooks),
            list(m._backward_hooks), list(getattr(m, "_backward_pre_hooks", {})),
        )
        for name, m in model.named_modules()
    }
    flags = {k: (p.requires_grad, p.grad is None) for k, p in model.named_parameters()}
    return tensors, modules, flags


def _assert_same(model, before):
    tensors, modules, flags = _state(model)
    assert modules == before[1]
    assert flags == before[2]
    assert tensors.keys() == before[0].keys()
    for k, v in before[0].items():
        assert torch.equal(tensors[k], v), k


def _block(cm, body=None):
    def run(model, x):
        with cm(model, x) as value:
            if body is not None:
                body(model, x)
        return value
    return run


def _forward(model, x):
    model(x)


def _boom(model, x):
    model(x)
    raise RuntimeError("boom")


OK = {
    "resolve_modules": lambda m, x: resolve_modules(m, ["layer*", torch.nn.ReLU]),
    "capture": _block(lambda m, x: capture(m, "layer1"), _forward),
    "collect": lambda m, x: collect(m, "act1", x, batch_size=3),
    "patch": _block(lambda m, x: patch(m, {"act1": "zero"}, neurons=[1]), _forward),
    "neuron_importance": lambda m, x: neuron_importance(m, "act1", x, batch_size=8),
    "intervene_weights": _block(lambda m, x: intervene_weights(m, {"layer1.weight": 0.0}), _forward),
    "zero_input_group": _block(lambda m, x: zero_input_group(m, x, [0, 2]), _forward),
    "path_effects": lambda m, x: path_effects(m, x, mediator="act1", columns=[1], target=0),
    "default_layers": lambda m, x: default_layers(m),
    "layer_summary": lambda m, x: layer_summary(m, x, max_rows=8),
    "gradient_norms": lambda m, x: gradient_norms(m, x, torch.arange(x.shape[0]) % 2, loss="ce", batch_size=4),
    "summarize_internals": lambda m, x: summarize_internals(m, x, groups=GROUPS, jacobian_rows=5),
    "average_jacobian": lambda m, x: average_jacobian(m, x, batch_size=4),
    "jacobian_overlap": lambda m, x: jacobian_overlap(m, x, GROUPS),
}

BAD = torch.zeros(4, 3, dtype=torch.float64)  # MLP.forward raises ValueError on this shape

FAIL = {
    "resolve_modules": (lambda m, x: resolve_modules(m, "layer9"), ValueError, "unknown module path"),
    "capture": (_block(lambda m, x: capture(m, "layer1"), _boom), RuntimeError, "boom"),
    "collect": (lambda m, x: collect(m, "act1", BAD), ValueError, "MLP expects input"),
    "patch": (_block(lambda m, x: patch(m, {"act1": torch.zeros(1, 6)}), _forward),
              ValueError, "has shape"),
    "patch_raise_in_block": (_block(lambda m, x: patch(m, {"act1": "zero"}), _boom), RuntimeError, "boom"),
    "neuron_importance": (lambda m, x: neuron_importance(m, "act1", BAD), ValueError, "MLP expects input"),
    "intervene_weights": (_block(lambda m, x: intervene_weights(m, {"layer1.weight": 1.0}), _boom),
                          RuntimeError, "boom"),
    "zero_input_group": (_block(lambda m, x: zero_input_group(m, x, [0]), _boom), RuntimeError, "boom"),
    "path_effects": (lambda m, x: path_effects(m, BAD, mediator="act1", columns=[0], target=0),
                     ValueError, "MLP expects input"),
    "default_layers": (lambda m, x: default_layers(m.state_dict()), TypeError, "model must be a torch.nn.Module"),
    "layer_summary": (lambda m, x: layer_summary(m, BAD), ValueError, "MLP expects input"),
    "gradient_norms": (lambda m, x: gradient_norms(m, x, torch.tensor([0, 5] * 5), loss="ce"),
                       ValueError, r"y in \[0, K\)"),
    "summarize_internals": (lambda m, x: summarize_internals(m, x, groups={"a": [0, 9]}),
                            ValueError, "out of range|index"),
    "average_jacobian": (lambda m, x: average_jacobian(m, BAD), ValueError, "MLP expects input"),
    "jacobian_overlap": (lambda m, x: jacobian_overlap(m, x, {"a": ["nope"]}), ValueError, "nope"),
}


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = MLP(4, (6, 5), 2, dropout=0.2).double()  # training mode, with dropout
    m.layer2.bias.requires_grad_(False)
    m.layer1.register_forward_hook(lambda *a: None)  # the user's own hooks stay
    m.act1.register_forward_pre_hook(lambda *a: None)
    return m


def test_every_public_function_is_covered():
    import featurelens.internals as fi
    import featurelens.internals.attention as fa
    import featurelens.representation as fr

    functions = {n for n in fi.__all__ if n not in NO_MODEL}
    functions |= {n for n in fa.__all__ if n != "attention_statistics"}  # statistics take no model
    functions |= {n for n in fr.__all__ if n in ("average_jacobian", "jacobian_overlap")}
    assert functions == set(OK) | set(ATTENTION)
    assert set(OK) == {n for n in FAIL if n != "patch_raise_in_block"}
    assert set(ATTENTION) == set(ATTENTION_FAIL)


@pytest.mark.parametrize("name", sorted(OK))
def test_state_unchanged_on_success(model, name):
    x = torch.randn(10, 4, dtype=torch.float64)
    before = _state(model)
    OK[name](model, x)
    _assert_same(model, before)
    assert model.training and model.drop1.training


@pytest.mark.parametrize("name", sorted(FAIL))
def test_state_unchanged_on_error(model, name):
    x = torch.randn(10, 4, dtype=torch.float64)
    fn, err, match = FAIL[name]
    before = _state(model)
    with pytest.raises(err, match=match):
        fn(model, x)
    _assert_same(model, before)


def _record(m, x):
    with record_attention(m) as rec:
        m(x)
    return rec


def _record_boom(m, x):
    with record_attention(m):
        _boom(m, x)


ATTENTION = {
    "attention_weights": lambda m, x: attention_weights(m, x, batch_size=3),
    "record_attention": _record,
}
ATTENTION_FAIL = {
    "attention_weights": (lambda m, x: attention_weights(m, x[:, :, :2]), ValueError, "expects input"),
    "record_attention": (_record_boom, RuntimeError, "boom"),
}


@pytest.fixture
def transformer():
    torch.manual_seed(0)
    m = SmallTransformer(3, n_heads=2, n_layers=2, hidden_dim=8, dropout=0.2).double()  # training mode
    m.input_proj.bias.requires_grad_(False)
    m.transformer_layers[0].self_attn.register_forward_hook(lambda *a: None)
    return m


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_attention_state_unchanged_on_success(transformer, name):
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    before = _state(transformer)
    ATTENTION[name](transformer, x)
    _assert_same(transformer, before)
    assert transformer.training


@pytest.mark.parametrize("name", sorted(ATTENTION_FAIL))
def test_attention_state_unchanged_on_error(transformer, name):
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    fn, err, match = ATTENTION_FAIL[name]
    before = _state(transformer)
    with pytest.raises(err, match=match):
        fn(transformer, x)
    _assert_same(transformer, before)
