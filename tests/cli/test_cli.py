"""The command line: success paths, exit codes and one-line errors that write nothing."""

from __future__ import annotations

import json
import pickle
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from torch import nn

from featurelens.cli import main

FEATURES = ["a", "b", "c", "d"]


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.body(x).squeeze(-1)


FACTORY_SRC = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

        def forward(self, x):
            return self.body(x).squeeze(-1)

    def build():
        return Net()
    """
)


@pytest.fixture()
def workspace(tmp_path, monkeypatch):
    """A CSV, a groups file, a TorchScript model and a state_dict + factory module in tmp_path."""
    monkeypatch.chdir(tmp_path)
    import warnings

    warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=DeprecationWarning)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = (x[:, 0] + 0.2 * x[:, 1] > 0).astype(int)
    frame.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "groups.yaml").write_text("first: [a, b]\nsecond: [c, d]\n")
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        net.body[0].weight[:, 0] *= 5
    torch.jit.save(torch.jit.script(net), tmp_path / "model.pt")
    (tmp_path / "mynet.py").write_text(FACTORY_SRC)
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, tmp_path / "weights.pt")
    return tmp_path


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_for_every_command(capsys):
    for args in ([], ["--help"], ["demo", "--help"], ["attribute", "--help"]):
        code, out, _ = _run(capsys, *args)
        assert code == 0, args
        assert "Usage" in out


def test_attribute_torchscript_with_groups(workspace, capsys):
    code, out, err = _run(capsys, "attribute", "--model", "model.pt", "--data", "data.csv", "--label", "label",
                          "--groups", "groups.yaml", "--link", "sigmoid", "--out", "rep", "--quiet")
    assert code == 0, err
    results = json.loads((workspace / "rep" / "results.json").read_text())
    assert set(results["importance"]) == {"ablation", "permutation"}
    assert set(results["importance"]["ablation"]) == {"first", "second"}
    # feature a carries the model (its weights were scaled up): group 'first' dominates
    assert results["importance"]["ablation"]["first"] > results["importance"]["ablation"]["second"]
    assert (workspace / "rep" / "index.html").is_file()
    assert out == ""


def test_attribute_state_dict_with_factory(workspace, capsys):
    code, out, err = _run(capsys, "attribute", "--model", "weights.pt", "--factory", "mynet:build",
                          "--data", "data.csv", "--label", "label", "--method", "ablation", "--out", "rep2")
    assert code == 0, err
    results = json.loads((workspace / "rep2" / "results.json").read_text())
    imp = results["importance"]["ablation"]
    assert set(imp) == set(FEATURES) and max(imp, key=imp.get) == "a"
    assert "report written to" in out


def test_existing_output_needs_force(workspace, capsys):
    (workspace / "rep").mkdir()
    (workspace / "rep" / "keep.txt").write_text("mine")
    args = ["attribute", "--model", "model.pt", "--data", "data.csv", "--label", "label", "--out", "rep", "-q",
            "--method", "ablation"]
    code, _, err = _run(capsys, *args)
    assert code == 2 and "already exists" in err
    assert (workspace / "rep" / "keep.txt").read_text() == "mine"
    code, _, err = _run(capsys, *args, "--force")
    assert code == 0, err
    assert not (workspace / "rep" / "keep.txt").exists()


def _bad(workspace, name):
    """Create bad input files for the error-path table."""
    if name == "nan.csv":
        f = pd.read_csv(workspace / "data.csv")
        f.loc[3, "c"] = np.nan
        f.to_csv(workspace / name, index=False)
    elif name == "text.csv":
        f = pd.read_csv(workspace / "data.csv")
        f["b"] = "x"
        f.to_csv(workspace / name, index=False)
    elif name == "dup.csv":
        (workspace / name).write_text("a,a,c,d,label\n1,2,3,4,0\n")
    elif name == "emptygroup.yaml":
        (workspace / name).write_text("first: []\n")
    elif name == "badgroups.yaml":
        (workspace / name).write_text("first: [a, zzz]\n")
    elif name == "pickled.pt":
        torch.save(_Net(), workspace / name)
    elif name == "notyaml.yaml":
        (workspace / name).write_text("first: [a, b\n")
    return name


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"--model": "missing.pt"}, "missing.pt"),
        ({"--data": "missing.csv"}, "missing.csv"),
        ({"--label": "nolabel"}, "nolabel"),
        ({"--data": "nan.csv"}, "'c'"),
        ({"--data": "text.csv"}, "'b'"),
        ({"--groups": "badgroups.yaml"}, "unknown feature name 'zzz'"),
        ({"--groups": "emptygroup.yaml"}, "group 'first' is empty"),
        ({"--data": "dup.csv"}, "duplicate column name"),
        ({"--groups": "notyaml.yaml"}, "not valid YAML"),
        ({"--groups": "nogroups.yaml"}, "does not exist"),
        ({"--model": "pickled.pt"}, "--trust-checkpoint|trust=True"),
        ({"--model": "weights.pt"}, "factory"),
        ({"--model": "weights.pt", "--factory": "nomodule:build"}, "nomodule"),
        ({"--method": "lime"}, "'lime'"),
        ({"--target": "x"}, "--target"),
        ({"--baselines": "middle"}, "baselines must be one of"),
        ({"--metric": "f1"}, "metric must be one of"),
        ({"--link": "probit"}, "link must be one of"),
        ({"--n-repeats": "0"}, "--n-repeats must be >= 1"),
        ({"--bogus": "1"}, "No such option"),
        ({"--method": "ablation", "--metric": "auc"}, "--metric applies to --method permutation"),
        ({"--method": "permutation", "--background": "data.csv"}, "--background applies to methods with baselines"),
        ({"--option": "n_steps"}, "KEY=VALUE"),
        ({"--option": "n_steps=5"}, "not an option of ablation, permutation"),
        ({"--option": "n_repeats=[1"}, "not a number, bool or string"),
        ({"--baselines": "zeros", "--background": "data.csv"}, "--background is used only with"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(workspace, capsys, change, match):
    args = {"--model": "model.pt", "--data": "data.csv", "--label": "label", "--out": "rep"}
    for k, v in change.items():
        args[k] = _bad(workspace, v)
    flat = ["attribute", *[s for kv in args.items() for s in kv], "-q"]
    before = sorted(p.name for p in workspace.iterdir())
    code, _out, err = _run(capsys, *flat)
    assert code == 2, err
    assert err.startswith("featurelens: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    import re

    assert re.search(match, err), err
    assert sorted(p.name for p in workspace.iterdir()) == before


def test_missing_required_option_is_usage_error(workspace, capsys):
    code, _, err = _run(capsys, "attribute", "--model", "model.pt")
    assert code == 2 and err.count("\n") == 1 and "--data" in err


def test_internal_error_exits_1(workspace, capsys, monkeypatch):
    import featurelens.cli._commands as commands  # the command's own binding of attribute

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(commands, "attribute", boom)
    code, _, err = _run(capsys, "attribute", "--model", "model.pt", "--data", "data.csv", "--label", "label",
                        "--out", "rep", "-q")
    assert code == 1 and "internal error: RuntimeError: kaboom" in err and err.count("\n") == 1
    assert not (workspace / "rep").exists()


def test_trusted_pickle_loads_with_flag(workspace, capsys):
    _bad(workspace, "pickled.pt")
    code, _, err = _run(capsys, "attribute", "--model", "pickled.pt", "--trust-checkpoint", "--data", "data.csv",
                        "--label", "label", "--out", "rep", "-q", "--method", "ablation")
    assert code == 0, err
    assert pickle is not None


def test_numeric_baseline_and_all_targets_render(workspace, capsys):
    torch.manual_seed(1)
    multi = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    program = torch.export.export(multi, (torch.zeros(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, workspace / "multi.pt2")
    code, out, err = _run(capsys, "attribute", "--model", "multi.pt2", "--data", "data.csv", "--label", "label",
                          "--target", "all", "--method", "ablation", "--baselines", "0.5", "--out", "rep")
    assert code == 0, err
    assert "mean over outputs" in " ".join(out.split())
    results = json.loads((workspace / "rep" / "results.json").read_text())
    assert results["explanations"]["ablation"]["params"]["baselines"] == 0.5
    assert set(results["importance"]["ablation"]) == set(FEATURES)


def test_every_method_from_the_cli_with_options(workspace, capsys):
    args = ["attribute", "--model", "weights.pt", "--factory", "mynet:build", "--data", "data.csv", "--label", "label",
            "--groups", "groups.yaml", "--out", "rep3", "-q", "--baselines", "zeros"]
    for m in ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "shapley", "shapley_sampling",
              "weights", "weights_x_std", "edge_scores", "ablation", "permutation"):
        args += ["--method", m]
    args += ["--option", "n_steps=16", "--option", "rule=riemann_middle", "--option", "n_permutations=4"]
    code, _, err = _run(capsys, *args)
    assert code == 0, err
    results = json.loads((workspace / "rep3" / "results.json").read_text())
    assert len(results["importance"]) == 11
    assert results["explanations"]["integrated_gradients"]["params"]["n_steps"] == 16
    assert results["explanations"]["integrated_gradients"]["params"]["rule"] == "riemann_middle"
    # the first layer's weights of feature a were scaled by 5: group 'first' leads by weight
    assert results["importance"]["weights"]["first"] > results["importance"]["weights"]["second"]
    for method, imp in results["importance"].items():
        assert all(np.isfinite(v) for v in imp.values()), method


def test_tables_keep_full_method_names_off_a_terminal(workspace, capsys):
    """Captured stdout is no terminal: the table is printed at full width, not cut at 80 columns."""
    methods = ["integrated_gradients", "input_x_gradient", "shapley_sampling", "weights_x_std", "smoothgrad",
               "saliency", "ablation", "permutation"]
    args = ["attribute", "--model", "weights.pt", "--factory", "mynet:build", "--data", "data.csv", "--label", "label",
            "--out", "wide", "--option", "n_steps=8", "--option", "n_permutations=2", "--option", "n_samples=2"]
    code, out, err = _run(capsys, *args, *[s for m in methods for s in ("--method", m)])
    assert code == 0, err
    header = next(line for line in out.splitlines() if "feature" in line)
    assert all(m in header for m in methods), header
    assert "…" not in out and len(header) > 80


def test_threads_default_to_one_are_validated_and_restored(workspace, capsys, monkeypatch):
    import featurelens.cli._commands as attribution  # the command's own reference to attribute
    from featurelens.cli._app import DEFAULT_THREADS, max_threads

    seen = []

    def record(*a, **k):
        seen.append(torch.get_num_threads())
        raise ValueError("stop here")

    monkeypatch.setattr(attribution, "attribute", record)
    args = ["attribute", "--model", "model.pt", "--data", "data.csv", "--label", "label", "--out", "rep", "-q"]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _run(capsys, *args)[0] == 2
        assert _run(capsys, "--threads", str(max_threads()), *args)[0] == 2
        assert seen == [DEFAULT_THREADS, max_threads()] and DEFAULT_THREADS == 1
        assert torch.get_num_threads() == 2  # an in-process caller keeps its own setting
    finally:
        torch.set_num_threads(before)
    for bad in ("0", "100000", str(max_threads() + 1)):
        code, _, err = _run(capsys, "--threads", bad, *args)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--threads must be between 1 and {max_threads()} (the CPUs of this machine), got {bad}" in err
    assert len(seen) == 2  # refused before the command ran
    assert not (workspace / "rep").exists()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("target=3 is out of range for a model with 2 outputs",
         "--target 3 is out of range for a model with 2 outputs"),
        ("pass target=<int in [0, 3)> or target='all'", "pass --target <int in [0, 3)> or --target all"),
        ("n_repeats must be >= 1, got 0", "--n-repeats must be >= 1, got 0"),
        ("explain it with link='sigmoid' (one logit per row)", "explain it with --link sigmoid (one logit per row)"),
        ("it can only be opened with trust=True (CLI: --trust-checkpoint), and only", "it can only be opened with "
         "--trust-checkpoint, and only"),
        ("n_steps=5000 exceeds the maximum of 1024 nodes for rule='gausslegendre'",
         "--option n_steps=5000 exceeds the maximum of 1024 nodes for --option rule='gausslegendre'"),
        ("n_samples must be >= 1, got 0", "--option n_samples must be >= 1, got 0"),
        ("random_state must be a non-negative int, got -1", "--seed must be a non-negative int, got -1"),
        ("y has 3 rows but the inputs have 12", "--label has 3 rows but the inputs have 12"),
        ("metric= needs y= (the true labels)", "--metric needs --label (the true labels)"),
        ("label column 'target' not found; available columns: 'a', 'metric'",
         "label column 'target' not found; available columns: 'a', 'metric'"),
        ("the model output has shape (3,) for a batch", "the model output has shape (3,) for a batch"),
        ("output directory 'x' already exists; pass force=True to replace it",
         "output directory 'x' already exists; pass --force to replace it"),
    ],
)
def test_library_argument_names_become_attribute_options(message, expected):
    from featurelens.cli import app
    from featurelens.cli._app import _invoked, _option_names, cli_words

    command = _invoked(typer.main.get_command(app), ["--threads", "1", "attribute", "--model", "m.pt"])
    assert cli_words(message, _option_names(command)) == expected


def test_library_argument_names_become_the_invoked_commands_options():
    from featurelens.cli import app
    from featurelens.cli._app import _invoked, _option_names, cli_words

    root = typer.main.get_command(app)
    fit = _option_names(_invoked(root, ["dynamics", "fit", "r.csv"]))
    assert cli_words("n_restarts must be >= 1, got 0", fit) == "--restarts must be >= 1, got 0"
    assert (cli_words("covariance_type must be one of 'full', 'diag'", fit)
            == "--covariance must be one of 'full', 'diag'")
    compare = _option_names(_invoked(root, ["compare"]))
    assert cli_words("formats: 'gif' is not a figure format", compare) == "--format: 'gif' is not a figure format"
    internals = _option_names(_invoked(root, ["internals"]))
    assert cli_words("n_steps must be >= 1", internals) == "n_steps must be >= 1"  # not an internals option


def test_an_empty_reason_is_never_printed(workspace, capsys, monkeypatch):
    import featurelens.cli._commands as attribution  # the command's own reference to attribute

    def bare(*a, **k):
        raise ValueError()

    def bare_colon(*a, **k):
        try:
            raise MemoryError()
        except MemoryError as exc:
            raise ValueError("'m.pt2' could not be loaded as an exported program: ") from exc

    args = ["attribute", "--model", "model.pt", "--data", "data.csv", "--label", "label", "--out", "rep", "-q"]
    monkeypatch.setattr(attribution, "attribute", bare)
    assert _run(capsys, *args)[2] == "featurelens: error: ValueError\n"
    monkeypatch.setattr(attribution, "attribute", bare_colon)
    assert _run(capsys, *args)[2] == ("featurelens: error: 'm.pt2' could not be loaded as an exported program: "
                                      "MemoryError\n")


def _multiclass(workspace):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).eval()
    torch.jit.save(torch.jit.script(net), workspace / "multi.pt")
    frame = pd.read_csv(workspace / "data.csv")
    frame["label"] = np.digitize(frame["a"] + 0.5 * frame["b"], [-0.5, 0.5])  # classes 0, 1, 2
    frame.to_csv(workspace / "classes.csv", index=False)
    return net, frame


def test_attribute_one_class_of_a_multiclass_model_from_the_cli(workspace, capsys):
    from sklearn.metrics import log_loss

    net, frame = _multiclass(workspace)
    code, _, err = _run(capsys, "attribute", "--model", "multi.pt", "--data", "classes.csv", "--label", "label",
                        "--target", "2", "--link", "softmax", "--method", "permutation", "--n-repeats", "3",
                        "--groups", "groups.yaml", "--seed", "5", "--out", "rep", "-q")
    assert code == 0, err
    results = json.loads((workspace / "rep" / "results.json").read_text())
    params = results["explanations"]["permutation"]["params"]
    assert params["metric"] == "log_loss" and params["one_vs_rest_class"] == 2
    assert results["summary"]["permutation labels"] == "one-vs-rest: label == 2"
    # independent: sklearn's binary log loss of p(class 2) against label == 2, the same permutations
    x = torch.tensor(frame[FEATURES].to_numpy(np.float32))
    yb = (frame["label"].to_numpy() == 2).astype(int)
    rng = np.random.default_rng(5)
    with torch.no_grad():
        ref = log_loss(yb, torch.softmax(net(x), 1)[:, 2].double().numpy(), labels=[0, 1])
        scores = np.zeros((3, 2))
        for r in range(3):
            for j, cols in enumerate(([0, 1], [2, 3])):
                xp = x.clone()
                xp[:, cols] = x[rng.permutation(len(x))][:, cols]
                scores[r, j] = log_loss(yb, torch.softmax(net(xp), 1)[:, 2].double().numpy(), labels=[0, 1]) - ref
    got = results["importance"]["permutation"]
    np.testing.assert_allclose([got["first"], got["second"]], scores.mean(0), rtol=1e-6, atol=1e-9)
