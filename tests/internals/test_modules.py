from __future__ import annotations

import pytest
from torch import nn

from featurelens.internals import resolve_modules


def test_exact_glob_type_instance_list(mlp, transformer):
    assert list(resolve_modules(mlp, "layer1")) == ["layer1"]
    assert list(resolve_modules(transformer, "transformer_layers.*.linear2")) == [
        "transformer_layers.0.linear2", "transformer_layers.1.linear2"]
    assert list(resolve_modules(mlp, nn.ReLU)) == ["act1", "act2"]
    assert resolve_modules(mlp, mlp.layer2) == {"layer2": mlp.layer2}
    assert list(resolve_modules(mlp, ["layer3", nn.Linear])) == ["layer3", "layer1", "layer2"]
    assert list(resolve_modules(mlp, mlp)) == ["<model>"]


def test_layer1_does_not_match_layer10():
    m = nn.Sequential()
    for i in (1, 10):
        m.add_module(f"layer{i}", nn.Linear(2, 2))
    assert list(resolve_modules(m, "layer1")) == ["layer1"]


@pytest.mark.parametrize(
    ("spec", "err", "match"),
    [
        ("layer4", ValueError, r"unknown module path 'layer4'.*'layer1'"),
        ("", ValueError, "unknown module path"),
        ("blocks.*", ValueError, r"module glob 'blocks\.\*' matches no submodule"),
        (nn.Conv1d, ValueError, "no submodule of type Conv1d"),
        (nn.Linear(2, 2), ValueError, "not a submodule"),
        ([], ValueError, "empty list"),
        (3, TypeError, "module spec must be"),
    ],
)
def test_errors(mlp, spec, err, match):
    with pytest.raises(err, match=match):
        resolve_modules(mlp, spec)


def test_model_type_error():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        resolve_modules("not a model", "x")
