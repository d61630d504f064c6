"""`featurelens compare`: three pruned/dense checkpoints, printed tables, files, errors (exit 2)."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from featurelens.cli import main
from featurelens.models import load_model
from featurelens.models.pruning import magnitude_prune, pruning_masks, save_checkpoint

MODULE = "featurelens_compare_cli_factories"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(
        """
        import torch
        from torch import nn

        class Ten(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer1 = nn.Linear(4, 6)
                self.layer10 = nn.Linear(6, 6)
                self.head = nn.Linear(6, 1)

            def forward(self, x):
                return self.head(torch.relu(self.layer10(torch.relu(self.layer1(x))))).squeeze(-1)

        def build():
            torch.manual_seed(0)
            return Ten()
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.chdir(tmp_path)
    build = __import__(MODULE).build
    dense = build()
    ticket = magnitude_prune(dense, amount=0.8, layers=["layer10"])
    robust = magnitude_prune(build(), amount=0.5, layers=["layer1"])
    models = {"dense": dense, "ticket": ticket, "robust": robust}
    for name, m in models.items():
        save_checkpoint(m, tmp_path / f"{name}.pt")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    frame = pd.DataFrame(x, columns=["logm", "ret", "vol", "ttm"])
    frame["y"] = 2 * x[:, 0] - x[:, 3]
    frame.drop(columns="y").to_csv(tmp_path / "features.csv", index=False)
    frame.to_csv(tmp_path / "data.csv", index=False)
    return tmp_path, models, build


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _base(ws):
    tmp = ws[0]
    return ["compare", "--model", f"dense={tmp / 'dense.pt'}", "--model", f"ticket={tmp / 'ticket.pt'}",
            "--model", f"robust={tmp / 'robust.pt'}", "--factory", f"{MODULE}:build", "--data", tmp / "data.csv"]


def test_checkpoints_reload_bit_identically(workspace):
    tmp, models, build = workspace
    x = torch.randn(30, 4, generator=torch.Generator().manual_seed(4))
    for name, m in models.items():
        loaded = load_model(tmp / f"{name}.pt", factory=build)
        with torch.no_grad():
            assert torch.equal(loaded(x), m(x))
        assert set(pruning_masks(loaded)) == set(pruning_masks(m))


def test_compare_prints_tables_and_writes_figures_json_and_html(workspace, capsys):
    tmp = workspace[0]
    out = tmp / "cmp"
    code, stdout, err = _run(capsys, *_base(workspace), "--label", "y", "--method", "weights,permutation",
                             "--metric", "mse", "--n-repeats", "2", "--format", "png,pdf", "--out", out)
    assert code == 0, err
    assert "importance share (weights" in stdout and "importance share (permutation" in stdout
    assert "difference of share vs 'dense'" in stdout and "sparsity per layer" in stdout
    assert "rank correlation" in stdout and f"report written to {out / 'index.html'}" in stdout
    for stem in ("importance", "difference", "weights", "sparsity"):
        assert (out / f"{stem}.png").read_bytes().startswith(b"\x89PNG")
        assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF-")
    data = json.loads((out / "results.json").read_text())
    sp = pd.DataFrame(data["sparsity"]).set_index(["model", "layer"])["sparsity"]
    assert sp[("ticket", "layer10.weight")] == pytest.approx(round(0.8 * 36) / 36)
    assert sp[("ticket", "layer1.weight")] == 0.0 and sp[("robust", "layer1.weight")] == 0.5
    assert sp[("robust", "layer10.weight")] == 0.0
    assert data["features"] == ["logm", "ret", "vol", "ttm"] and data["settings"]["targets"] is True
    assert data["summary"]["label column"] == "y"
    assert (out / "index.html").exists() and (out / "tables" / "differences.csv").exists()


def test_quiet_without_label_and_default_methods(workspace, capsys):
    tmp = workspace[0]
    args = [*_base(workspace)[:-1], tmp / "features.csv"]
    code, stdout, err = _run(capsys, *args, "--reference", "ticket", "--out", tmp / "q", "--quiet")
    assert code == 0, err
    assert stdout == ""
    data = json.loads((tmp / "q" / "results.json").read_text())
    assert data["reference"] == "ticket" and data["methods"] == ["weights", "edge_scores", "integrated_gradients",
                                                                  "permutation"]
    assert data["settings"]["targets"] is False


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (["--model", "nonsense"], "--model must look like NAME=PATH"),
        (["--model", "dense=x.pt"], "the name 'dense' is given twice"),
        (["--reference", "sparse"], "--reference 'sparse' is not one of the --model names"),
        (["--format", "gif"], "--format: 'gif' is not a figure format"),
        (["--method", "magic"], "--method 'magic' is not available"),
        (["--metric", "mse"], "--metric needs --label"),
        (["--label", "nope"], "nope"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(workspace, capsys, change, match):
    tmp = workspace[0]
    code, stdout, err = _run(capsys, *_base(workspace), *change, "--out", tmp / "bad")
    assert code == 2 and stdout == ""
    assert err.startswith("featurelens: error:") and match in err and err.count("\n") == 1
    assert not (tmp / "bad").exists()


def test_one_model_and_existing_output_are_errors(workspace, capsys):
    tmp = workspace[0]
    code, _, err = _run(capsys, "compare", "--model", f"dense={tmp / 'dense.pt'}", "--factory", f"{MODULE}:build",
                        "--data", tmp / "data.csv", "--out", tmp / "one")
    assert code == 2 and "at least twice" in err and not (tmp / "one").exists()
    (tmp / "exists").mkdir()
    code, _, err = _run(capsys, *_base(workspace), "--out", tmp / "exists")
    assert code == 2 and "already exists" in err
    code, _, err = _run(capsys, *_base(workspace)[:-4], "--data", tmp / "data.csv", "--out", tmp / "nofactory")
    assert code == 2 and "factory" in err and not (tmp / "nofactory").exists()
