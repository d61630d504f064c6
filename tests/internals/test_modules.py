from __future__ import annotations

import pytest
import torch
from torch import nn

from featurelens.internals import resolve_modules
from featurelens.models import load_model


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


def _exported(model, x, path):
    """``model`` saved with torch.export (dynamic batch) and loaded back with load_model."""
    program = torch.export.export(model, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.export.save(program, path)
    return load_model(path, map_location=None)


def test_exported_submodules_resolve_by_name_and_original_type(mlp, x4, tmp_path):
    ex = _exported(mlp, x4, tmp_path / "m.pt2")
    assert list(resolve_modules(ex, nn.Linear)) == ["layer1", "layer2", "layer3"]
    assert list(resolve_modules(ex, nn.ReLU)) == ["act1", "act2"]
    assert list(resolve_modules(ex, "act*")) == ["act1", "act2"]
    with pytest.raises(ValueError,
                       match=r"unknown module path 'layer4' in MLP; close names: 'layer3', 'layer2', 'layer1'"):
        resolve_modules(ex, "layer4")


def test_exported_modules_whose_call_changed_are_skipped_or_refused(transformer, tmp_path):
    ex = _exported(transformer, torch.randn(4, 5, 3, dtype=torch.float64), tmp_path / "t.pt2")
    found = resolve_modules(ex, "transformer_layers.*")
    assert "transformer_layers.0.linear1" in found and "transformer_layers.0" not in found
    assert "transformer_layers.1.self_attn" not in found
    with pytest.raises(ValueError, match=r"'transformer_layers\.0\.self_attn' of the exported program cannot be "
                                         r"hooked: .* \(and 1 more matching module\(s\) alike\); re-export with"):
        resolve_modules(ex, nn.MultiheadAttention)
    with pytest.raises(ValueError, match=r"preserve_module_call_signature=\('transformer_layers\.1',\)"):
        resolve_modules(ex, "transformer_layers.1")
    with pytest.raises(ValueError, match="cannot be hooked"):
        resolve_modules(ex, dict(ex.named_modules())["transformer_layers.0"])


def test_flat_exported_graph_is_refused(mlp, x4):
    flat = torch.export.export(mlp, (x4,)).module()  # submodules hold parameters, no code runs in them
    with pytest.raises(ValueError, match=r"torch.fx graph that calls none of its submodules .*torch.export.unflatten"):
        resolve_modules(flat, "layer1")
    traced = torch.fx.symbolic_trace(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))  # calls its leaves: hooks fire
    assert list(resolve_modules(traced, "0")) == ["0"]
