"""model_device_dtype and preserve_model: restore modes, flags, and detect leaked hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featurelens.models import MLP, model_device_dtype, preserve_model
from featurelens.models._state import set_eval


def test_model_device_dtype():
    assert model_device_dtype(MLP(3, (4,))) == (torch.device("cpu"), torch.float32)
    assert model_device_dtype(MLP(3, (4,)).double()) == (torch.device("cpu"), torch.float64)
    assert model_device_dtype(nn.ReLU()) == (torch.device("cpu"), torch.float32)
    buffered = nn.Module()
    buffered.register_buffer("steps", torch.zeros(1, dtype=torch.long))
    buffered.register_buffer("scale", torch.ones(1, dtype=torch.float64))
    assert model_device_dtype(buffered) == (torch.device("cpu"), torch.float64)


def test_restores_mixed_modes_and_flags():
    model = MLP(3, (4,), dropout=0.5).train()
    model.drop1.eval()
    model.layer1.bias.requires_grad_(False)
    with preserve_model(model, freeze=True) as inside:
        assert inside is model
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert model.training and model.layer1.training and not model.drop1.training
    assert not model.layer1.bias.requires_grad and model.layer1.weight.requires_grad


def test_eval_mode_false_keeps_mode():
    model = MLP(3, (4,)).train()
    with preserve_model(model, eval_mode=False):
        assert model.training
        model.eval()  # changes inside the block are undone
    assert model.training


def test_restores_on_exception():
    model = MLP(3, (4,)).train()
    with pytest.raises(KeyError, match="boom"), preserve_model(model, freeze=True):
        raise KeyError("boom")
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_rejects_non_module():
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got function"), preserve_model(lambda x: x):
        pass


@pytest.mark.parametrize(
    "register",
    [
        lambda m: m.register_forward_hook(lambda *a: None),
        lambda m: m.register_forward_pre_hook(lambda *a: None),
        lambda m: m.register_full_backward_hook(lambda *a: None),
        lambda m: m.register_full_backward_pre_hook(lambda *a: None),
    ],
)
def test_detects_leaked_hooks(register):
    model = MLP(3, (4,))
    with pytest.raises(RuntimeError, match="left hooks on the model"), preserve_model(model):
        register(model.layer1)


def test_removed_hooks_are_fine():
    model = MLP(3, (4,))
    with preserve_model(model):
        handle = model.layer1.register_forward_hook(lambda *a: None)
        model(torch.zeros(2, 3))
        handle.remove()


def test_exported_programs():
    torch.manual_seed(0)
    model = MLP(3, (4,)).eval()
    exported = torch.export.export(model, (torch.zeros(2, 3),)).module()
    with pytest.raises(NotImplementedError):
        exported.eval()
    assert set_eval(exported) is exported and not exported.training
    exported.training = True
    with preserve_model(exported):
        assert not exported.training
        torch.testing.assert_close(exported(torch.ones(2, 3)), model(torch.ones(2, 3)))
    assert exported.training
