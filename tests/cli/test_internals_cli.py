"""``featurelens internals`` and ``featurelens sweep``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from featurelens.cli import main
from featurelens.models import MLP


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = MLP(4, (6,), 1).eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), tmp_path / "script.pt")
    (tmp_path / "netfactory.py").write_text(
        "from featurelens.models import MLP\n\ndef build():\n    return MLP(4, (6,), 1)\n"
    )
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(50, 4)), columns=["a", "b", "c", "d"])
    df["y"] = (df["a"] > 0).astype(int)
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "g.yaml").write_text("first: [a, b]\nsecond: [c, d]\n")
    return tmp_path


def test_internals_command(files, capsys):
    out = files / "out"
    code = main(["internals", "--model", str(files / "m.pt"), "--factory", "netfactory:build",
                 "--data", str(files / "d.csv"), "--label", "y",
                 "--groups", str(files / "g.yaml"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "representation per layer" in printed and "group overlap" in printed
    # captured stdout is no terminal: the table keeps every column name whole (not cut at 80 columns)
    header = next(line for line in printed.splitlines() if "effective_rank" in line)
    assert all(c in header for c in ("participation_ratio", "interference", "fraction_inactive")), header
    assert "…" not in printed
    res = json.loads((out / "results.json").read_text())
    assert [r["layer"] for r in res["internals"]["layers"]] == ["layer1", "act1"]
    assert set(res["internals"]["overlap"]) == {"input weights (layer1)", "Jacobian (act1)"}
    assert (out / "group_overlap.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--groups", "missing.yaml"], "missing.yaml"),
        (["--layer", "layer9"], "unknown module path 'layer9'"),
        (["--max-rows", "1"], "--max-rows must be at least 2"),
        (["--label", "nope"], "nope"),
    ],
)
def test_internals_bad_input(files, capsys, args, message):
    out = files / "bad"
    base = ["internals", "--model", str(files / "m.pt"), "--factory", "netfactory:build",
            "--data", str(files / "d.csv"), "--out", str(out)]
    if "--label" not in args:
        base += ["--label", "y"]
    code = main(base + [a if a != "missing.yaml" else str(files / a) for a in args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_internals_torchscript_is_refused(files, capsys):
    code = main(["internals", "--model", str(files / "script.pt"), "--data", str(files / "d.csv"), "--label", "y",
                 "--out", str(files / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "TorchScript module" in err and len(err.strip().splitlines()) == 1
    assert not (files / "o").exists()


def test_sweep_command(tmp_path, capsys):
    out = tmp_path / "s"
    code = main(["sweep", "capacity", "--quick", "--epochs", "1", "--n-samples", "120", "--out", str(out), "-q"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["sweep"] == "capacity" and len(res["table"]) == 4
    table = pd.read_csv(out / "capacity.csv")
    assert list(table["hidden_dim"]) == [4, 16, 4, 16]
    assert table["overlap_mean"].to_numpy() == pytest.approx([r["overlap_mean"] for r in res["table"]])


def test_sweep_bad_kind(tmp_path, capsys):
    code = main(["sweep", "width", "--out", str(tmp_path / "s")])
    assert code == 2 and "KIND must be one of capacity, scale, architectures" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["capacity", "--n-samples", "1000000000000"], "--n-samples 1000000000000 exceeds the maximum of 1,000,000"),
        (["scale", "--epochs", "1000000000"], "--epochs 1000000000 exceeds the maximum of 10,000"),
    ],
)
def test_sweep_refuses_absurd_sizes_before_generating(tmp_path, capsys, args, message):
    code = main(["sweep", *args, "--out", str(tmp_path / "s"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
