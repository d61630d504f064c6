"""Tests for `featurelens reliance` (featurelens.cli._reliance)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from featurelens.cli import main
from featurelens.datasets import make_biased, make_shifted
from featurelens.examples import save_exported, window_mlp
from featurelens.models import MLP, train
from featurelens.reliance import MITIGATION_STRATEGIES, detect_spurious


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliance_cli")
    data = make_biased(900, n_groups=2, group_dim=3, bias_strength=0.9, random_state=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(data.X.shape[1], hidden=(16,))
    train(model, data.X[:600], data.y[:600], epochs=40, lr=1e-2, train_batch_size=64, random_state=0)
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
    assert {"detection.png", "robustness.png", "interactions_features.png"} <= set(res["figures"])


def test_shifted_accuracy_is_reported(files, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(_args(files, out, "--environments", "site", "--shifted", str(files["root"] / "shifted.csv")))
    assert code == 0
    shifted = pd.read_csv(files["root"] / "shifted.csv")
    with torch.no_grad():
        logits = files["model"](torch.tensor(shifted[files["data"].feature_names].to_numpy(np.float32)))
    acc = float(((logits >= 0).numpy() == (shifted["label"].to_numpy() > 0.5)).mean())
    auc = roc_auc_score(shifted["label"], logits.numpy().reshape(-1))
    res = json.loads((out / "results.json").read_text())
    assert res["scores"]["shifted test accuracy"] == pytest.approx(acc, abs=1e-12)
    assert res["scores"]["shifted test auc"] == pytest.approx(auc, abs=1e-12)
    printed = capsys.readouterr().out
    assert f"shifted test accuracy: {acc:.3f}" in printed and f"shifted test auc: {auc:.3f}" in printed


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
    _fails(_args(files, out, "--environments", "site", "--shifted", shifted, "--mitigate", "jtt", "--init", "copy"),
           capsys, "no group was flagged spurious; name the group to mitigate with --suspect")
    _fails(_args(files, out, "--environments", "site", "--shifted", shifted, "--mitigate", "jtt", "--suspect",
                 "spurious"), capsys, "cannot re-initialise parameter")  # exported model: needs --init copy
    _fails(_args(files, out, "--environments", "nope"), capsys, "--environments 'nope': column not found in")
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
    assert "lookback (9) exceeds the shortest sequence, which has 4 rows" in capsys.readouterr().err
    frame.iloc[:-1].to_csv(tmp_path / "ragged.csv", index=False)
    assert run("t.pt2", "ragged.csv", "--sequence-id", "pid", "--out", str(tmp_path / "o4")) == 2
    assert "sequences have 3 to 4 rows" in capsys.readouterr().err
    frame.drop(columns="pid").to_csv(tmp_path / "series.csv", index=False)
    assert run("w.pt2", "series.csv", "--lookback", "3", "--out", str(tmp_path / "o5")) == 0  # one series
    assert json.loads((tmp_path / "o5" / "results.json").read_text())["summary"]["inputs"] == f"{n * T - 2} x [3, 3]"
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()


def test_mitigation_judged_on_shifted(files, tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(_args(files, out, "--environments", "site", "--shifted", str(files["root"] / "shifted.csv"),
                      "--mitigate", "randomize", "--suspect", "spurious", "--epochs", "3", "--init", "copy"))
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
    # the terminal shows the mitigation table and the shifted accuracy (full width: stdout is not a terminal)
    printed = capsys.readouterr().out
    assert f"shifted test accuracy: {sh_acc:.3f}" in printed
    assert "mitigation of group 'spurious' (accuracy;" in printed
    for label, row in table.iterrows():
        line = next(li for li in printed.splitlines() if f" {label} " in li and "±" in li)
        for col in ("in_distribution", "shifted"):
            assert f"{row[col]:.3f}" in line, (label, col)
        assert f"{row['reliance']:.4f} ± {row['reliance_se']:.4f}" in line


def _boom(*args, **kwargs):
    raise AssertionError("expensive work started before the options were checked")


def _no_work(monkeypatch):
    """Any detection, curve, interaction or mitigation (or the audit itself) fails the test."""
    import featurelens.cli._reliance as command
    import featurelens.reliance as reliance

    for name in ("detect_spurious", "robustness", "robustness_curve", "interaction_matrix", "evaluate_mitigations"):
        monkeypatch.setattr(reliance, name, _boom)
    monkeypatch.setattr(command, "audit", _boom, raising=False)


def test_bad_options_are_refused_before_any_work(files, tmp_path, capsys, monkeypatch):
    """--mitigate magic, --suspect nope, ... are refused before detection (not after ~50 s of it)."""
    _no_work(monkeypatch)
    out = tmp_path / "rep"
    shifted = str(files["root"] / "shifted.csv")
    env = ("--environments", "site", "--shifted", shifted)
    _fails(_args(files, out, *env, "--mitigate", "magic"), capsys, "--mitigate 'magic' is not a mitigation strategy")
    _fails(_args(files, out, *env, "--mitigate", "jtt", "--suspect", "nope"), capsys,
           "--suspect 'nope' is not a group of")
    _fails(_args(files, out, *env, "--mitigate", "jtt", "--mitigate", "jtt"), capsys, "given more than once")
    _fails(_args(files, out, *env, "--mitigate", "jtt", "--init", "warm"), capsys,
           "--init 'warm': choose reset or copy")
    _fails(_args(files, out, *env, "--immutable", "nope"), capsys,
           "--immutable 'nope' is neither a feature nor a group")
    assert not out.exists()


def test_model_checks_of_the_audit_come_first_and_in_cli_words(files, tmp_path, capsys):
    out = tmp_path / "rep"
    env = ("--environments", "site", "--shifted", str(files["root"] / "shifted.csv"))
    # an exported model cannot be re-initialised (audit checks it before detection; test_audit.py proves the order)
    _fails(_args(files, out, *env, "--mitigate", "jtt", "--suspect", "spurious"), capsys,
           "--init reset cannot re-initialise parameter")
    err_line = "pass --init copy to start from the model's weights"
    assert main(_args(files, out, *env, "--mitigate", "jtt", "--suspect", "spurious")) == 2
    assert err_line in capsys.readouterr().err
    _fails(_args(files, out, *env, "--mitigate", "dfr", "--suspect", "spurious"), capsys,
           "strategy 'dfr' needs a model whose last layer is an nn.Linear")
    assert not out.exists()


def test_label_that_is_not_binary_names_the_column(files, tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    frame = files["frame"].copy()
    frame.loc[:3, "label"] = 2
    frame.to_csv(tmp_path / "three.csv", index=False)
    r = files["root"]
    argv = ["reliance", "--model", str(r / "model.pt2"), "--data", str(tmp_path / "three.csv"), "--groups",
            str(r / "groups.yaml"), "--environments", "site", "--out", str(tmp_path / "rep")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--label 'label': column 'label' of" in err and "must hold binary 0/1 labels" in err
    assert "it holds 0, 1, 2" in err and "metric" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "rep").exists()


_NUMBER_WORDS = {8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve"}


def test_help_readme_and_docs_list_the_library_strategies(capsys):
    """One source of truth: reliance.MITIGATION_STRATEGIES."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert main(["reliance", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"judge on --shifted \(([^)]*)\); repeatable", help_text).group(1)
    assert tuple(listed.split(", ")) == MITIGATION_STRATEGIES
    readme = " ".join((root / "README.md").read_text().split())
    assert f"{_NUMBER_WORDS[len(MITIGATION_STRATEGIES)]} mitigation strategies judged on shifted data" in readme
    guide = (root / "docs" / "reliance.md").read_text()
    row = next(line for line in guide.splitlines() if line.startswith("| `--mitigate NAME`"))
    listed = re.search(r"one of ((?:`[a-z_]+`, )*`[a-z_]+`)", row).group(1)
    assert tuple(re.findall(r"`([a-z_]+)`", listed)) == MITIGATION_STRATEGIES
    page = (root / "docs" / "reliance_robustness.md").read_text().split("| strategy | definition |", 1)[1]
    table = page.split("\n\n", 1)[0]
    assert tuple(sorted(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))) == MITIGATION_STRATEGIES
