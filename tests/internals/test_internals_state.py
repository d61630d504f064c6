"""Every public function leaves the model exactly as it found it, also when it raises."""

from __future__ import annotations

import pytest
import torch

from featurelens.internals import (
    capture,
    collect,
    intervene_weights,
    neuron_importance,
    patch,
    path_effects,
    resolve_modules,
    zero_input_group,
)
from featurelens.models._reference import MLP


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

    functions = {n for n in fi.__all__ if n != "Activations"}
    assert functions == set(OK) == {n for n in FAIL if n != "patch_raise_in_block"}


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
