"""load_model(): every format round trip, pruning masks by exact path, trust, errors."""

from __future__ import annotations

import pickle
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from featurelens.models import MLP, load_model, resolve_factory

FACTORY_MODULE = "featurelens_test_factories"


def _mlp() -> MLP:
    torch.manual_seed(0)
    return MLP(4, (8,))


def _x(n: int = 7) -> torch.Tensor:
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(1))


def _same_output(a: nn.Module, b: nn.Module, n: int = 7) -> bool:
    with torch.no_grad():
        return torch.equal(a(_x(n)), b(_x(n)))


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / f"{FACTORY_MODULE}.py").write_text(
        textwrap.dedent(
            """
            import torch
            from featurelens.models import MLP

            NOT_CALLABLE = 3

            def build():
                torch.manual_seed(123)
                return MLP(4, (8,))

            def not_a_module():
                return "mlp"

            class Nets:
                @staticmethod
                def small():
                    return MLP(4, (8,))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, FACTORY_MODULE, raising=False)
    return FACTORY_MODULE


# --------------------------------------------------------------------------- formats


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_torchscript_round_trip_detected_by_content(tmp_path):
    model = _mlp().eval()
    path = tmp_path / "model.bin"
    torch.jit.save(torch.jit.trace(model, _x()), path)
    loaded = load_model(path)
    assert isinstance(loaded, torch.jit.ScriptModule) and not loaded.training
    assert _same_output(model, loaded)


def test_export_round_trip_dynamic_batch(tmp_path):
    model = _mlp().eval()
    program = torch.export.export(model, (_x(),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "model.pt"  # misleading suffix: detection is by content
    torch.export.save(program, path)
    loaded = load_model(path)
    assert not loaded.training and not any(m.training for m in loaded.modules())
    assert _same_output(model, loaded, n=11)


def test_export_with_fixed_batch_warns(tmp_path):
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(_mlp().eval(), (_x(),)), path)
    with pytest.warns(UserWarning, match="has a fixed batch size of 7"):
        load_model(path)


def test_export_in_training_mode_is_refused(tmp_path):
    torch.manual_seed(0)
    model = MLP(4, (8,), dropout=0.5).train()
    path = tmp_path / "model.pt2"
    dyn = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (_x(),), dynamic_shapes=dyn), path)
    with pytest.raises(ValueError, match=r"captured in training mode .*dropout.*model.eval\(\)"):
        load_model(path)


def test_export_with_pickled_payload_needs_trust(tmp_path):
    path = tmp_path / "model.pt2"
    dyn = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(_mlp().eval(), (_x(),), dynamic_shapes=dyn), path)
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("sample_inputs/model.pt"):
                buf = __import__("io").BytesIO()
                torch.save(nn.Linear(1, 1), buf)  # needs arbitrary unpickling
                data = buf.getvalue()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=r"pickled objects .* trust=True \(CLI: --trust-checkpoint\)"):
        load_model(evil)


def test_state_dict_with_factory_callable(tmp_path):
    model = _mlp()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, factory=lambda: MLP(4, (8,)).train())
    assert loaded is not model and not loaded.training
    assert _same_output(model.eval(), loaded)


@pytest.mark.parametrize("key", ["model_state_dict", "state_dict"])
def test_checkpoint_dict(tmp_path, key):
    model = _mlp()
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / "ckpt.pt"
    torch.save({key: model.state_dict(), "optimizer_state_dict": optimizer.state_dict(), "epoch": 3}, path)
    assert _same_output(model.eval(), load_model(path, factory=lambda: MLP(4, (8,))))


def test_legacy_serialization_format(tmp_path):
    model = _mlp()
    path = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    assert _same_output(model.eval(), load_model(path, factory=lambda: MLP(4, (8,))))


def test_factory_string(tmp_path, factory_module):
    model = _mlp()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    assert _same_output(model.eval(), load_model(path, factory=f"{factory_module}:build"))
    assert _same_output(model, load_model(path, factory=f"{factory_module}:Nets.small"))


def test_float64_state_dict_and_map_location(tmp_path):
    model = _mlp().double()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, factory=lambda: MLP(4, (8,)).double(), map_location=None)
    assert next(loaded.parameters()).dtype == torch.float64
    assert next(load_model(path, factory=lambda: MLP(4, (8,)).double()).parameters()).device.type == "cpu"


# --------------------------------------------------------------------------- pruning


def _pruned_mlp() -> MLP:
    torch.manual_seed(0)
    model = MLP(4, (8,) * 9, 1)  # Linear layers layer1 … layer10
    prune.l1_unstructured(model.layer1, "weight", amount=0.3)
    prune.random_unstructured(model.layer10, "weight", amount=0.8)
    prune.l1_unstructured(model.layer10, "bias", amount=1.0)
    return model.eval()


@pytest.mark.parametrize("wrap", [False, True])
def test_pruned_checkpoint_masks_on_exact_layers(tmp_path, wrap):
    pruned = _pruned_mlp()
    state = pruned.state_dict()
    assert "layer1.weight_orig" in state and "layer10.weight_mask" in state
    path = tmp_path / "pruned.pt"
    torch.save({"model_state_dict": state} if wrap else state, path)
    loaded = load_model(path, factory=lambda: MLP(4, (8,) * 9, 1))
    assert torch.equal(loaded.layer1.weight_mask, pruned.layer1.weight_mask)
    assert torch.equal(loaded.layer10.weight_mask, pruned.layer10.weight_mask)
    assert torch.equal(loaded.layer10.bias_mask, pruned.layer10.bias_mask)
    assert not hasattr(loaded.layer1, "bias_mask")  # `layer1` must not match `layer10`
    assert all(not hasattr(getattr(loaded, f"layer{i}"), "weight_mask") for i in range(2, 10))
    # the masked weight is correct before any forward pass (first-layer importance reads it)
    assert torch.equal(loaded.layer1.weight, pruned.layer1.weight)
    assert int((loaded.layer10.weight == 0).sum()) == round(0.8 * 8)
    assert _same_output(pruned, loaded)


def test_pruned_checkpoint_into_already_pruned_factory_model(tmp_path):
    pruned = _pruned_mlp()
    path = tmp_path / "pruned.pt"
    torch.save(pruned.state_dict(), path)

    def factory() -> MLP:
        model = MLP(4, (8,) * 9, 1)
        prune.identity(model.layer1, "weight")
        return model

    loaded = load_model(path, factory=factory)
    assert torch.equal(loaded.layer1.weight, pruned.layer1.weight)  # refreshed before a forward
    assert _same_output(pruned, loaded)


def test_pruned_checkpoint_shape_mismatch(tmp_path):
    path = tmp_path / "pruned.pt"
    torch.save(_pruned_mlp().state_dict(), path)
    with pytest.raises(ValueError, match=r"shape mismatch\(es\): layer1.weight_orig: "
                                         r"checkpoint \(8, 4\) vs model \(8, 5\)") as info:
        load_model(path, factory=lambda: MLP(5, (8,) * 9, 1))
    assert "unexpected" not in str(info.value) and "missing" not in str(info.value)


# --------------------------------------------------------------------------- trust


def test_pickled_module_needs_trust(tmp_path):
    model = _mlp().train()
    path = tmp_path / "full.pt"
    torch.save(model, path)
    with pytest.raises(ValueError,
                       match=r"full.pt.* only be opened with trust=True \(CLI: --trust-checkpoint\)") as info:
        load_model(path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    loaded = load_model(path, trust=True)
    assert isinstance(loaded, MLP) and not loaded.training
    assert _same_output(model.eval(), loaded)


def test_trusted_pickled_checkpoint_dict_uses_state_dict_path(tmp_path):
    model = _mlp()
    path = tmp_path / "ckpt.pt"
    torch.save({"model_state_dict": model.state_dict(), "config": {"seed": np.int64(3)}, "obj": nn.ReLU()}, path)
    with pytest.raises(ValueError, match="trust=True"):
        load_model(path, factory=lambda: MLP(4, (8,)))
    assert _same_output(model.eval(), load_model(path, factory=lambda: MLP(4, (8,)), trust=True))


# --------------------------------------------------------------------------- errors


def test_path_errors(tmp_path):
    with pytest.raises(ValueError, match=r"model file '.*nope.pt' does not exist"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(ValueError, match=r"model path '.*' is not a file"):
        load_model(tmp_path)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"'.*data.csv' is not a torch model file"):
        load_model(csv)
    npy = tmp_path / "arr.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="is not a torch model file"):
        load_model(npy)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a torch model file"):
        load_model(tmp_path / "empty.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("folder/readme.txt", "hi")
    with pytest.raises(ValueError, match="is not a torch model file"):
        load_model(tmp_path / "other.zip")


def test_content_errors(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_mlp().state_dict(), path)
    with pytest.raises(ValueError, match=r"holds a state dict.*pass factory= \(CLI: --factory module:function\)"):
        load_model(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match="holds a Tensor, not a model, state dict or checkpoint dict"):
        load_model(path)
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(ValueError, match=r"neither a state dict .* its keys are 'epoch', 'lr'"):
        load_model(path, factory=lambda: MLP(4, (8,)))


def test_state_dict_mismatch_lists_everything(tmp_path):
    state = _mlp().state_dict()
    state["layer9.weight"] = torch.zeros(2)
    del state["layer2.bias"]
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        load_model(path, factory=lambda: MLP(4, (6,)))
    msg = str(info.value)
    assert "factory" in msg and "weights.pt" in msg
    assert "1 missing key(s): layer2.bias" in msg
    assert "1 unexpected key(s): layer9.weight" in msg
    assert "layer1.weight: checkpoint (8, 4) vs model (6, 4)" in msg
    assert "layer2.weight: checkpoint (1, 8) vs model (1, 6)" in msg


def test_long_key_lists_are_truncated(tmp_path):
    state = {**_mlp().state_dict(), **{f"extra{i}": torch.zeros(1) for i in range(25)}}
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"25 unexpected key\(s\): extra0, .*extra9, … \(15 more\)"):
        load_model(path, factory=lambda: MLP(4, (8,)))


@pytest.mark.parametrize(
    ("suffix", "error", "match"),
    [
        ("no_colon", ValueError, "factory must have the form 'module:function', got 'no_colon'"),
        (":build", ValueError, "factory must have the form 'module:function'"),
        ("a:b:c", ValueError, "factory must have the form 'module:function'"),
        ("build:", ValueError, "factory must have the form 'module:function'"),
    ],
)
def test_factory_string_format_errors(suffix, error, match):
    with pytest.raises(error, match=match):
        resolve_factory(suffix)


def test_factory_resolution_errors(factory_module):
    with pytest.raises(ValueError,
                       match=r"factory 'no_such_module_xyz:build': cannot import module 'no_such_module_xyz'"):
        resolve_factory("no_such_module_xyz:build")
    with pytest.raises(ValueError, match=rf"factory '{factory_module}:missing': .* has no attribute 'missing'"):
        resolve_factory(f"{factory_module}:missing")
    with pytest.raises(TypeError, match=rf"factory '{factory_module}:NOT_CALLABLE' is not callable"):
        resolve_factory(f"{factory_module}:NOT_CALLABLE")
    build = resolve_factory(f"{factory_module}:not_a_module")
    with pytest.raises(TypeError,
                       match=rf"factory '{factory_module}:not_a_module' must return a torch.nn.Module, got str"):
        build()
    with pytest.raises(TypeError, match="factory '3' is not callable"):
        resolve_factory(3)
    with pytest.raises(TypeError, match=r"must return a torch.nn.Module, got int"):
        resolve_factory(lambda: 1)()
    assert isinstance(resolve_factory(f"{factory_module}:build")(), MLP)


def test_factory_error_surfaces_through_load_model(tmp_path, factory_module):
    path = tmp_path / "weights.pt"
    torch.save(_mlp().state_dict(), path)
    with pytest.raises(TypeError, match=r"must return a torch.nn.Module"):
        load_model(path, factory=f"{factory_module}:not_a_module")


def test_factory_that_raises_is_reported_as_bad_input(tmp_path):
    from featurelens.models import load_model

    def broken():
        raise RuntimeError("no such architecture")

    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    with pytest.raises(ValueError, match=r"factory .*broken.* raised RuntimeError: no such architecture"):
        load_model(tmp_path / "sd.pt", factory=broken)


# ---------------------------------------------------------------- exported programs: hierarchy, hooks, inputs


def _export(model: nn.Module, x: torch.Tensor, path, **kwargs) -> nn.Module:
    dyn = ({0: torch.export.Dim("batch", min=1)},)
    torch.export.save(torch.export.export(model.eval(), (x[:2],), dynamic_shapes=dyn, **kwargs), path)
    return load_model(path)


def _record(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, object]:
    """Every call's output of each named module, cloned at hook time (independent of featurelens' capture)."""
    seen: dict[str, object] = {}
    modules = dict(model.named_modules())

    def keep(name):
        def hook(module, args, output):
            seen[name] = tuple(o.clone() if isinstance(o, torch.Tensor) else o for o in output) if isinstance(
                output, (tuple, list)) else output.clone()
        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_export_keeps_layer_names_and_hooks_see_eager_activations(tmp_path):
    torch.manual_seed(0)
    eager = MLP(4, (6, 5), 1, activation="gelu").eval()
    x = _x(9)
    loaded = _export(eager, x, tmp_path / "m.pt2")
    names = [n for n, _ in eager.named_modules() if n]
    assert [n for n, _ in loaded.named_modules() if n] == names
    got, want = _record(loaded, names, x), _record(eager, names, x)
    assert list(got) == names
    for n in names:
        assert torch.equal(got[n], want[n]), n


def test_export_transformer_hooks_match_where_export_kept_the_call(tmp_path):
    from featurelens.internals import resolve_modules
    from featurelens.models import SmallTransformer, export_boundary_problems

    torch.manual_seed(0)
    eager = SmallTransformer(3, n_heads=2, n_layers=2, hidden_dim=8, dropout=0.0).eval()
    x = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(2))
    loaded = _export(eager, x, tmp_path / "t.pt2")
    problems = export_boundary_problems(loaded)
    # the dynamic batch size crosses the encoder layers' and attention's boundaries as extra values
    assert sorted(problems) == ["transformer_layers.0", "transformer_layers.0.self_attn",
                                "transformer_layers.1", "transformer_layers.1.self_attn"]
    assert "shape values" in problems["transformer_layers.0"]
    hooked = list(resolve_modules(loaded, "*"))
    assert "transformer_layers.1.linear2" in hooked and not set(hooked) & set(problems)
    got, want = _record(loaded, hooked, x), _record(eager, hooked, x)
    assert list(got) == list(want) and len(want) == 16  # the ModuleList and out_proj never run, in either model
    for n in want:  # attention: the exported graph's fused kernel vs the eager math, rounding only
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-5, msg=n)
    with pytest.raises(ValueError, match=r"'transformer_layers\.0' of the exported program cannot be hooked: "
                                         r".*preserve_module_call_signature=\('transformer_layers\.0',\)"):
        resolve_modules(loaded, "transformer_layers.0")


def test_export_with_preserved_signatures_hooks_every_module(tmp_path):
    from featurelens.models import SmallTransformer, export_boundary_problems

    torch.manual_seed(0)
    eager = SmallTransformer(3, n_heads=2, n_layers=1, hidden_dim=8, dropout=0.0).eval()
    x = torch.randn(6, 5, 3, generator=torch.Generator().manual_seed(2))
    names = ["transformer_layers.0", "transformer_layers.0.self_attn"]
    loaded = _export(eager, x, tmp_path / "t.pt2", preserve_module_call_signature=tuple(names))
    assert export_boundary_problems(loaded) == {}
    got, want = _record(loaded, names, x), _record(eager, names, x)
    assert want["transformer_layers.0.self_attn"][1] is None and got["transformer_layers.0.self_attn"][1] is None
    for n in names:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-5, msg=n)


def test_original_class_of_exported_submodules(tmp_path):
    from featurelens.models import SmallTransformer, original_class

    torch.manual_seed(0)
    mlp = _export(_mlp(), _x(), tmp_path / "m.pt2")
    assert original_class(mlp.layer1) is nn.Linear and original_class(mlp.act1) is nn.ReLU
    assert original_class(mlp) == "featurelens.models._reference.MLP"  # not imported, only named
    assert original_class(_mlp()) is MLP and original_class(nn.ReLU()) is nn.ReLU
    tr = _export(SmallTransformer(3, n_heads=2, n_layers=1, hidden_dim=8, dropout=0.0), torch.randn(4, 5, 3),
                 tmp_path / "t.pt2")
    named = dict(tr.named_modules())
    assert original_class(named["transformer_layers.0.norm1"]) is nn.LayerNorm
    assert original_class(named["transformer_layers"]) is type(named["transformer_layers"])  # never runs: no claim


def test_export_input_width_is_checked_against_the_program(tmp_path):
    loaded = _export(_mlp(), _x(), tmp_path / "m.pt2")
    with pytest.raises(ValueError, match=r"the exported program '.*m\.pt2' expects input 'x' of shape \(n, 4\), "
                                         r"got \(3, 5\): 4 features expected \(axis 1\), 5 received"):
        loaded(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"of shape \(n, 4\), got \(3, 2, 4\): 2 axes expected, 3 received"):
        loaded(torch.zeros(3, 2, 4))
    with pytest.raises(ValueError, match=r"takes 1 input\(s\) \('x'\), got 2"):
        loaded(torch.zeros(3, 4), torch.zeros(3, 4))
    assert torch.equal(loaded(_x(3)), _mlp().eval()(_x(3)))  # the check passes inputs that fit


def test_export_fixed_and_bounded_batch_are_named(tmp_path):
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(_mlp().eval(), (_x(),)), path)
    with pytest.warns(UserWarning, match="fixed batch size of 7"):
        fixed = load_model(path)
    with pytest.raises(ValueError, match=r"shape \(7, 4\), got \(3, 4\): axis 0 must be 7, got 3: the program was "
                                         r"exported with a fixed batch size; re-export it with dynamic_shapes"):
        fixed(_x(3))
    dyn = ({0: torch.export.Dim("batch", min=1, max=8)},)
    torch.export.save(torch.export.export(_mlp().eval(), (_x(),), dynamic_shapes=dyn), tmp_path / "b.pt2")
    bounded = load_model(tmp_path / "b.pt2")
    with pytest.raises(ValueError, match=r"shape \(1\.\.8, 4\), got \(9, 4\): axis 0 must be in \[1, 8\], got 9"):
        bounded(_x(9))


def test_export_load_failure_always_gives_a_reason(tmp_path, monkeypatch):
    path = tmp_path / "m.pt2"
    _export(_mlp(), _x(), path)

    def fail(*args, **kwargs):
        raise RuntimeError("")

    monkeypatch.setattr(torch.export, "load", fail)
    with pytest.raises(ValueError, match=r"could not be loaded as an exported program: RuntimeError: no reason given"):
        load_model(path)


def test_exported_model_can_be_copied_and_trained(tmp_path):
    import copy

    loaded = _export(_mlp(), _x(), tmp_path / "m.pt2")  # mitigations deep-copy a loaded model and train the copy
    before = loaded(_x(5)).detach().clone()
    twin = copy.deepcopy(loaded)
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    twin(_x(5)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(twin(_x(5)), before)  # the copy learned
    assert torch.equal(loaded(_x(5)), before) and all(p.grad is None for p in loaded.parameters())
    with pytest.raises(ValueError, match="4 features expected"):
        twin(torch.zeros(2, 5))  # the copy still checks its inputs
