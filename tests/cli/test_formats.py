"""Every command that takes a model, on every model format the README lists.

TorchScript, a ``torch.export`` program (``.pt2``, dynamic batch), a state dict
with ``--factory`` and a checkpoint with pruning masks: each command either
succeeds with the numbers the library computes on the eager model, or exits 2
with the reason on one line and writes nothing. A table with one column too
many is refused by every command on every format, naming the widths.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn.utils import prune

from featurelens.attribution import attribute
from featurelens.cli import main
from featurelens.compare import layer_sparsity
from featurelens.data import FeatureSpec
from featurelens.internals import summarize_internals
from featurelens.models import MLP
from featurelens.reliance import detect_spurious

FEATURES = ["a", "b", "c", "d"]
GROUPS = {"first": ["a", "b"], "second": ["c", "d"]}
FACTORY = "featurelens_formats_factory"
FORMATS = {  # name -> (model arguments, which eager model the file holds)
    "torchscript": (["script.pt"], "dense"),
    "export": (["model.pt2"], "dense"),
    "state_dict": (["weights.pt", "--factory", f"{FACTORY}:build"], "dense"),
    "pruned": (["pruned.pt", "--factory", f"{FACTORY}:build"], "pruned"),
}
COMMANDS = ("attribute", "internals", "reliance", "compare")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    frame = pd.DataFrame(x[:, :4], columns=FEATURES)
    frame["y"] = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    frame.to_csv(root / "data.csv", index=False)
    wide = pd.DataFrame(x, columns=[*FEATURES, "e"]).assign(y=frame["y"])
    wide.to_csv(root / "wide.csv", index=False)
    (root / "groups.yaml").write_text("first: [a, b]\nsecond: [c, d]\n")
    (root / "groups_wide.yaml").write_text("first: [a, b]\nsecond: [c, d, e]\n")
    (root / f"{FACTORY}.py").write_text(
        "from featurelens.models import MLP\n\ndef build():\n    return MLP(4, (6,), 1)\n")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        dense = MLP(4, (6,), 1).eval()
    pruned = copy.deepcopy(dense)
    prune.l1_unstructured(pruned.layer1, "weight", amount=0.5)
    torch.save(dense.state_dict(), root / "weights.pt")
    torch.save({"model_state_dict": pruned.state_dict(), "epoch": 3}, root / "pruned.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(dense), root / "script.pt")
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(dense, (torch.zeros(2, 4),), dynamic_shapes=({0: batch},))
    torch.export.save(program, root / "model.pt2")
    X = frame[FEATURES].to_numpy(np.float32)
    return {"root": root, "models": {"dense": dense, "pruned": pruned}, "X": X,
            "y": frame["y"].to_numpy(np.float32), "refs": {}}


@pytest.fixture(autouse=True)
def _in_root(files, monkeypatch):
    monkeypatch.chdir(files["root"])  # --factory imports from the working directory
    monkeypatch.syspath_prepend(str(files["root"]))


def _reference(files, which: str, kind: str):
    """The library's result on the eager model (computed once per model and kind)."""
    key = (which, kind)
    if key not in files["refs"]:
        model, X = files["models"][which], files["X"]
        if kind == "ablation":
            files["refs"][key] = attribute(model, X, method="ablation", baselines="mean", background=X,
                                           groups=FeatureSpec(FEATURES), random_state=0).importance()
        elif kind == "internals":
            files["refs"][key] = summarize_internals(model, X, groups=GROUPS, feature_names=FEATURES,
                                                     random_state=0)
        else:
            files["refs"][key] = detect_spurious(model, X, files["y"], groups=FeatureSpec(FEATURES, GROUPS),
                                                 random_state=0).table
    return files["refs"][key]


def _run(command: str, fmt: str, out, data: str = "data.csv") -> list[str]:
    model_args = FORMATS[fmt][0]
    groups = "groups.yaml" if data == "data.csv" else "groups_wide.yaml"
    if command == "compare":
        model = ["--model", f"first={model_args[0]}", "--model", f"second={model_args[0]}", *model_args[1:]]
    else:
        model = ["--model", *model_args]
    extra = {
        "attribute": ["--label", "y", "--method", "ablation"],
        "internals": ["--label", "y", "--groups", groups],
        "reliance": ["--label", "y", "--groups", groups, "--perturbation", "gaussian"],
        "compare": ["--label", "y", "--method", "ablation"],
    }[command]
    return [command, *model, "--data", data, "--out", str(out), *extra, "-q"]


def _results(out) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_attribute(files, tmp_path, fmt):
    out = tmp_path / "out"
    assert main(_run("attribute", fmt, out)) == 0
    got = pd.Series(_results(out)["importance"]["ablation"])
    want = _reference(files, FORMATS[fmt][1], "ablation")
    np.testing.assert_allclose(got[want.index], want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_internals(files, tmp_path, fmt, capsys):
    out = tmp_path / "out"
    code = main(_run("internals", fmt, out))
    if fmt == "torchscript":  # compiled code calls no forward hooks: refused with the reason
        err = capsys.readouterr().err
        assert code == 2 and "TorchScript module" in err and "calls no forward hooks" in err
        assert len(err.strip().splitlines()) == 1 and not out.exists()
        return
    assert code == 0
    res = _results(out)["internals"]
    want = _reference(files, FORMATS[fmt][1], "internals")
    got = pd.DataFrame(res["layers"]).set_index("layer")
    assert list(got.index) == list(want.layers.index) == ["layer1", "act1"]  # the original layer names
    assert list(got["type"]) == ["Linear", "ReLU"]
    numeric = want.layers.select_dtypes("number").columns
    np.testing.assert_allclose(got[numeric].to_numpy(float), want.layers[numeric].to_numpy(float),
                               rtol=1e-6, atol=1e-9)
    jacobian = res["overlap"]["Jacobian (act1)"]["matrix"]
    np.testing.assert_allclose(jacobian, want.overlap["Jacobian (act1)"].to_numpy(), rtol=1e-5, atol=1e-7)
    if fmt == "export":  # input-weight overlap reads an nn.Linear's weight, which an exported program has not
        assert "input weights (layer1)" not in res["overlap"]
        assert any("no input-weight overlap" in n for n in res["notes"])
    else:
        np.testing.assert_allclose(res["overlap"]["input weights (layer1)"]["matrix"],
                                   want.overlap["input weights (layer1)"].to_numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_reliance(files, tmp_path, fmt):
    out = tmp_path / "out"
    assert main(_run("reliance", fmt, out)) == 0
    got = pd.DataFrame(_results(out)["detection"]["table"]).set_index("group")
    want = _reference(files, FORMATS[fmt][1], "reliance").set_index("group")
    for col in ("reliance_permutation", "reliance_ablation", "probe_score"):
        np.testing.assert_allclose(got.loc[want.index, col], want[col], rtol=1e-6, atol=1e-9, err_msg=col)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_compare(files, tmp_path, fmt):
    # TorchScript crashed in compare's sparsity ('OrderedDictWrapper' has no 'get'); a .pt2 counted
    # no weights at all (its Linear layers are InterpreterModules): both now count the eager layers
    out = tmp_path / "out"
    assert main(_run("compare", fmt, out)) == 0
    res = _results(out)
    want = _reference(files, FORMATS[fmt][1], "ablation")
    imp = pd.DataFrame(res["importance"])
    for name in ("first", "second"):
        got = imp[imp["model"] == name].set_index("feature")["importance"]
        np.testing.assert_allclose(got[want.index], want, rtol=1e-6, atol=1e-9)
    sparsity = pd.DataFrame(res["sparsity"])
    total = sparsity[(sparsity["model"] == "first") & (sparsity["layer"] == "total")].iloc[0]
    eager_total = layer_sparsity(files["models"][FORMATS[fmt][1]]).set_index("layer").loc["total"]
    assert (total["n_weights"], total["n_pruned"]) == (eager_total["n_weights"], eager_total["n_pruned"])
    assert eager_total["n_weights"] == 30 and eager_total["n_pruned"] == (12 if fmt == "pruned" else 0)


#: the expected width in each format's message (TorchScript: only what its interpreter says)
EXPECTED = {
    "export": "4 features expected (axis 1), 5 received",
    "state_dict": "MLP expects input of shape (B, 4)",
    "pruned": "MLP expects input of shape (B, 4)",
    "torchscript": "",
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_one_column_too_many_is_refused(files, tmp_path, capsys, fmt, command):
    out = tmp_path / "out"
    code = main(_run(command, fmt, out, data="wide.csv"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not out.exists()
    if fmt == "torchscript" and command == "internals":
        assert "TorchScript module" in err
        return
    assert EXPECTED[fmt] in err
    assert any(s in err for s in ("(40, 5)", "[40, 5]", "[2, 5]", "(2, 5)")), err  # the received width
