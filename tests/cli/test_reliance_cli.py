"""Tests for `featurelens reliance` (featurelens.cli._reliance)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from featurelens.cli import main
from featurelens.datasets import make_biased, make_shifted
from featurelens.examples._reliance_study import save_exported, window_mlp
from featurelens.models import MLP, train
from featurelens.reliance import detect_spurious


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliance_cli")
    data = make_biased(900, n_groups=2, group_dim=3, bias_strength=0.9, random_state=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(data.X.shape[1], hidden=(16,))
    train(model, data.X[:600], data.y[:600], epochs=40, lr=1e-2, batch_size=64, random_state=0)
    model.eval()
    save_exported(model, data.X[:2], root / "model.pt2")
    frame = data.to_frame().iloc[600:].reset_index(drop=True)
    frame["site"] = np.where(np.arange(len(frame)) < 150, "a", "b")
    frame.to_csv(root / "data.csv", index=False)
    shifted = make_shifted(300, n_groups=2, group_dim=3, random_state=1).to_frame()
    shifted.to_csv(root / "shifted.csv", index=False)
    (root / "groups.yaml").write_text(yaml.safe_dump(data.groups))
    return {"root": root, "data": data, "model": model, "frame": frame}


def _args(files, out, *extra):
    r = files["root"]
    return ["reliance", "--model", str(r / "model.pt2"), "--data", str(r / "data.csv"),
            "--groups", str(r / "groups.yaml"), "--out", str(out), "--perturbation", "gaussian", *extra]


def test_reliance_matches_the_library(files, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(_args(files, out, "--environments", "site", "--seed", "3")) == 0
    printed = capsys.readouterr().out
    assert "spurious" in printed and "report written to" in printed
    res = json.loads((out / "results.json").read_text())
    frame = files["frame"]
    X = frame[files["data"].feature_names].to_numpy(np.float32)
    direct = detect_spurious(files["model"], X, frame["label"].to_numpy(np.float32),
                             groups=files["data"].spec(), environments=frame["site"].to_numpy(),
                             random_state=3)
    got = pd.DataFrame(res["detection"]["table"])
    np.testing.assert_allclose(got["reliance_permutation"], direct.table["reliance_permutation"], rtol=1e-9)
    np.testing.assert_allclose(got["probe_score"], direct.table["probe_score"], rtol=1e-9)
    assert res["detection"]["flagged"] == direct.flagged
    # the planted group is the one the model leans on most
    assert got.set_index("group")["reliance_permutation"].idxmax() == "spurious"
    assert res["summary"]["environments"] == "site"
    assert {"detection.png", "robustness.png", "interactions_ablation.png"} <= set(res["figures"])


def test_shifted_accuracy_is_reported(files, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(_args(files, out, "--environments", "site", "--shifted", str(files["root"] / "shifted.csv")))
    assert code == 0
    shifted = pd.read_csv(files["root"] / "shifted.csv")
    with torch.no_grad():
        logits = files["model"](torch.tensor(shifted[files["data"].feature_names].to_numpy(np.float32)))
    acc = float(((logits > 0).numpy() == (shifted["label"].to_numpy() > 0.5)).mean())
    res = json.loads((out / "results.json").read_text())
    assert res["summary"]["accuracy on the shifted data"] == pytest.approx(acc, abs=1e-12)
    assert f"{acc:.3f}" in capsys.readouterr().out


def _fails(argv, capsys, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("featurelens: error:") and len(err.strip().splitlines()) == 1
    assert match in err


def test_errors_leave_nothing(files, tmp_path, capsys):
    out = tmp_path / "rep"
    _fails(_args(files, out), capsys, "feature column(s) 'site' (str) are not numeric")  # not declared
    _fails(_args(files, out, "--mitigate", "jtt"), capsys, "--mitigate needs --shifted")
    _fails(_args(files, out, "--perturbation", "rotate"), capsys, "--perturbation 'rotate' is not available")
    shifted = str(files["root"] / "shifted.csv")
    _fails(_args(files, out, "--environments", "site", "--shifted", shifted, "--mitigate", "jtt", "--suspect", "nope"),
           capsys, "--suspect 'nope' is not a group")
    # the planted link is the same in both sites: relied upon but stable, so nothing is flagged
    _fails(_args(files, out, "--environments", "site", "--shifted", shifted, "--mitigate", "jtt"), capsys,
           "no group was flagged spurious; name the group to mitigate with --suspect")
    _fails(_args(files, out, "--environments", "site", "--shifted", shifted, "--mitigate", "jtt", "--suspect",
                 "spurious"), capsys, "cannot re-initialise parameter")  # exported model: needs --init copy
    _fails(_args(files, out, "--environments", "nope"), capsys, "column 'nope' not found")
    _fails(_args(files, out, "--environments", "label"), capsys, "cannot also be the --environments")
    _fails(_args(files, out, "--environments", "site", "--sequence-id", "label"), capsys,
           "cannot also be the --environments or --sequence-id")
    _fails(_args(files, out, "--sequence-id", "site"), capsys, "model rejects inputs of shape [2, 150, 9]")
    assert not out.exists()
    out.mkdir()
    _fails(_args(files, out, "--environments", "site"), capsys, "already exists")


def test_sequence_inputs(tmp_path, capsys):
    """--sequence-id groups rows into sequences; --lookback keeps the last rows of each."""
    rng = np.random.default_rng(0)
    n, T = 120, 4
    x = rng.standard_normal((n * T, 3)).astype(np.float32)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["pid"] = np.repeat(np.arange(n), T)
    frame["label"] = np.repeat((rng.random(n) < 0.5).astype(float), T)
    frame.to_csv(tmp_path / "seq.csv", index=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        seq_model = window_mlp(T, 3, hidden=(8,))  # (B, T, 3) inputs; --lookback 2 needs its own
        short_model = window_mlp(2, 3, hidden=(8,))
        series_model = window_mlp(3, 3, hidden=(8,))
    save_exported(seq_model, x.reshape(n, T, 3)[:2], tmp_path / "t.pt2")
    save_exported(short_model, x.reshape(-1, 2, 3)[:2], tmp_path / "s.pt2")
    save_exported(series_model, x[:6].reshape(2, 3, 3), tmp_path / "w.pt2")
    (tmp_path / "g.yaml").write_text("first: [a]\nrest: [b, c]\n")

    def run(model, data, *extra):
        return main(["reliance", "--model", str(tmp_path / model), "--data", str(tmp_path / data),
                     "--groups", str(tmp_path / "g.yaml"), "--perturbation", "gaussian", "-q", *extra])

    assert run("t.pt2", "seq.csv", "--sequence-id", "pid", "--out", str(tmp_path / "o1")) == 0
    res = json.loads((tmp_path / "o1" / "results.json").read_text())
    assert res["summary"]["inputs"] == "120 x [4, 3]"
    assert run("s.pt2", "seq.csv", "--sequence-id", "pid", "--lookback", "2", "--out", str(tmp_path / "o2")) == 0
    assert json.loads((tmp_path / "o2" / "results.json").read_text())["summary"]["inputs"] == "120 x [2, 3]"
    assert run("s.pt2", "seq.csv", "--sequence-id", "pid", "--lookback", "9", "--out", str(tmp_path / "o3")) == 2
    assert "the shortest sequence has 4 rows" in capsys.readouterr().err
    frame.iloc[:-1].to_csv(tmp_path / "ragged.csv", index=False)
    assert run("t.pt2", "ragged.csv", "--sequence-id", "pid", "--out", str(tmp_path / "o4")) == 2
    assert "sequences have 3 to 4 rows" in capsys.readouterr().err
    frame.drop(columns="pid").to_csv(tmp_path / "series.csv", index=False)
    assert run("w.pt2", "series.csv", "--lookback", "3", "--out", str(tmp_path / "o5")) == 0  # one series
    assert json.loads((tmp_path / "o5" / "results.json").read_text())["summary"]["inputs"] == f"{n * T - 2} x [3, 3]"
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


def test_sequences_take_the_last_rows_in_file_order():
    from featurelens.cli._reliance import _sequences

    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    y = np.array([0, 0, 1, 1, 0, 1, 0], dtype=np.float32)
    ids = np.array(["b", "b", "b", "a", "a", "a", "a"])
    env = np.array(["e0", "e0", "e1", "e1", "e1", "e1", "e2"])
    X, lab, e = _sequences(x, y, env, ids, 2)
    np.testing.assert_array_equal(X, [[x[1], x[2]], [x[5], x[6]]])  # sequence "b" first: file order
    np.testing.assert_array_equal(lab, [1, 0])
    np.testing.assert_array_equal(e, ["e1", "e2"])
    W, lw, ew = _sequences(x, y, env, None, 3)  # one series: windows, label of the last row
    assert W.shape == (5, 3, 2)
    np.testing.assert_array_equal(W[4], x[4:7])
    np.testing.assert_array_equal(lw, y[2:])
    np.testing.assert_array_equal(ew, env[2:])


def test_mitigation_judged_on_shifted(files, tmp_path):
    out = tmp_path / "rep"
    code = main(_args(files, out, "--environments", "site", "--shifted", str(files["root"] / "shifted.csv"),
                      "--mitigate", "randomize", "--suspect", "spurious", "--epochs", "3", "--init", "copy", "-q"))
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    table = pd.DataFrame(res["mitigation"]).set_index("strategy")
    assert list(table.index) == ["unmitigated", "randomize"]
    # the unmitigated row is the loaded model on the last 30 % of --data and on --shifted
    frame, names = files["frame"], files["data"].feature_names
    with torch.no_grad():
        logits = files["model"](torch.tensor(frame[names].to_numpy(np.float32)))
    pred = (logits > 0).numpy() == (frame["label"].to_numpy() > 0.5)
    held = np.random.default_rng(0).permutation(len(frame))[round(0.7 * len(frame)):]
    assert table.loc["unmitigated", "in_distribution"] == pytest.approx(pred[held].mean(), abs=1e-12)
    shifted = pd.read_csv(files["root"] / "shifted.csv")
    with torch.no_grad():
        sh_logits = files["model"](torch.tensor(shifted[names].to_numpy(np.float32)))
    sh_acc = ((sh_logits > 0).numpy() == (shifted["label"].to_numpy() > 0.5)).mean()
    assert table.loc["unmitigated", "shifted"] == pytest.approx(sh_acc, abs=1e-12)
    assert np.isfinite(table.loc["randomize", ["in_distribution", "shifted", "reliance"]].astype(float)).all()
    assert "mitigation.png" in res["figures"]
