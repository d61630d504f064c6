"""Bad input on every command and every model format: exit 2, one line, no traceback, nothing written.

Each case runs ``featurelens`` in-process on a shared workspace (a table, groups, and one model in
each format the README lists: TorchScript ``.pt``, ``torch.export`` ``.pt2``, a state_dict with
``--factory``, a pickled checkpoint without ``--trust-checkpoint``) and checks the error policy of
``featurelens.cli``. Cases that must be refused before any expensive work name the functions that
would do it: they are replaced by a bomb, so a late refusal fails the case (exit 1).
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from featurelens.cli import main

FEATURES = ["a", "b", "c", "d"]
ATTRIBUTE = ("attribute", "--data", "data.csv", "--label", "label")
FORMATS = {"torchscript": ("--model", "model.pt"), "export": ("--model", "model.pt2"),
           "state_dict": ("--model", "weights.pt", "--factory", "badnet:build"), "pickled": ("--model", "pickled.pt")}
LOADING = ("featurelens.models", "load_model")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("badinput")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = (x[:, 0] > 0).astype(int)
    frame.to_csv(root / "data.csv", index=False)
    frame.assign(c=frame["c"].where(frame.index != 3, 1e300)).to_csv(root / "huge.csv", index=False)
    frame.assign(label=0.3 * frame["a"] + 0.1).to_csv(root / "regression.csv", index=False)
    (root / "groups.yaml").write_text("first: [a, b]\nsecond: [c, d]\n")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).eval()
    wide = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(net), root / "model.pt")
        batch = ({0: torch.export.Dim("batch")},)
        torch.export.save(torch.export.export(net, (torch.zeros(2, 4),), dynamic_shapes=batch), root / "model.pt2")
        torch.export.save(torch.export.export(wide, (torch.zeros(2, 5),), dynamic_shapes=batch), root / "wide.pt2")
    torch.save(net.state_dict(), root / "weights.pt")
    torch.save(net, root / "pickled.pt")
    (root / "badnet.py").write_text(textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    """))
    np.save(root / "plain.npy", np.arange(3))
    (root / "plain.npy").rename(root / "array.npz")  # an .npy under an .npz name: numpy advises unpickling
    (root / "notes.npz").write_text("not an archive")
    for r in range(4):
        run = pd.DataFrame(rng.normal(size=(20, 2)), columns=["m0", "m1"])
        run.insert(0, "step", np.arange(20))
        run.to_csv(root / f"run{r}.csv", index=False)
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("mine")
    return root


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if "__pycache__" not in p.parts)


def _case(args, match=None, *, guard=(), forbid=(), id=None):
    return pytest.param(tuple(args), match, tuple(guard), tuple(forbid), id=id)


UNWRITABLE = ("/proc/featurelens-out", "/proc/self/featurelens-out")
HUGE = "1000000000000"

CASES = [
    # -- attribute, on each model format --------------------------------------------------------------
    *[_case([*ATTRIBUTE, *FORMATS[f], "--out", out, "-q"], f"cannot write output directory '{out}': ",
            id=f"attribute-{f}-unwritable-out") for f, out in (("torchscript", UNWRITABLE[0]),
                                                                ("export", UNWRITABLE[1]),
                                                                ("state_dict", UNWRITABLE[0]))],
    _case([*ATTRIBUTE, *FORMATS["pickled"], "--out", "o"], "contains pickled Python objects", forbid=["trust=True"],
          id="attribute-pickled-without-trust"),
    _case([*ATTRIBUTE, *FORMATS["torchscript"], "--method", "integrated_gradients", "--option", f"n_steps={HUGE}",
           "--out", "o"], f"--option n_steps={HUGE} exceeds the maximum of 1024 nodes", guard=[LOADING],
          id="attribute-torchscript-absurd-n-steps"),
    _case([*ATTRIBUTE, *FORMATS["export"], "--method", "integrated_gradients", "--option", "rule=riemann_left",
           "--option", "n_steps=100001", "--out", "o"], "exceeds the maximum of 100000 nodes", guard=[LOADING],
          id="attribute-export-absurd-riemann-steps"),
    _case([*ATTRIBUTE, *FORMATS["state_dict"], "--n-repeats", HUGE, "--out", "o"],
          f"--n-repeats {HUGE} exceeds the maximum of 10000 repeats", guard=[LOADING],
          id="attribute-state-dict-absurd-n-repeats"),
    _case([*ATTRIBUTE, *FORMATS["export"], "--method", "smoothgrad", "--option", f"n_samples={HUGE}", "--out", "o"],
          "exceeds the maximum of 10000 noisy copies", guard=[LOADING], id="attribute-export-absurd-noise-samples"),
    _case([*ATTRIBUTE, *FORMATS["torchscript"], "--method", "shapley_sampling", "--option", f"n_permutations={HUGE}",
           "--out", "o"], "exceeds the maximum of 100000 orders", guard=[LOADING],
          id="attribute-torchscript-absurd-permutations"),
    _case([*ATTRIBUTE, *FORMATS["torchscript"], "--batch-size", HUGE, "--out", "o"],
          "--batch-size must be between 1 and", guard=[LOADING], id="attribute-absurd-batch-size"),
    _case(["--threads", "100000", *ATTRIBUTE, *FORMATS["export"], "--out", "o"],
          "--threads must be between 1 and", guard=[LOADING], id="attribute-export-threads-100000"),
    _case(["attribute", "--data", "huge.csv", "--label", "label", *FORMATS["torchscript"], "--out", "o"],
          "overflow float32 in column(s) 'c'", forbid=["NaN"], id="attribute-torchscript-1e300-cell"),
    _case(["attribute", "--data", "huge.csv", "--label", "label", *FORMATS["export"], "--out", "o"],
          "overflow float32 in column(s) 'c'", forbid=["NaN"], id="attribute-export-1e300-cell"),
    _case([*ATTRIBUTE, "--model", "wide.pt2", "--out", "o"], None,  # the input-spec check of models/_loading.py
          id="attribute-export-wrong-width"),
    _case([*ATTRIBUTE, *FORMATS["torchscript"], "--target", "5", "--out", "o"], "--target 5 is out of range",
          forbid=["target="], id="attribute-torchscript-target-out-of-range"),
    _case([*ATTRIBUTE, *FORMATS["export"], "--link", "probit", "--out", "o"], "--link must be one of",
          id="attribute-export-bad-link"),
    _case([*ATTRIBUTE, *FORMATS["state_dict"], "--metric", "f1", "--out", "o"], "--metric must be one of",
          guard=[LOADING], id="attribute-state-dict-bad-metric-before-loading"),
    _case([*ATTRIBUTE, *FORMATS["torchscript"], "--method", "permutation", "--method", "ablation",
           "--baselines", "middle", "--out", "o"], "--baselines must be one of",
          guard=[LOADING, ("featurelens.attribution", "attribute")], id="attribute-bad-baselines-before-any-method"),
    _case(["attribute", "--data", "regression.csv", "--label", "label", *FORMATS["torchscript"], "--method",
           "permutation", "--metric", "accuracy", "--out", "o"], "needs class labels", forbid=["sigmoid"],
          id="attribute-accuracy-on-a-regression-target"),
    _case([*ATTRIBUTE, "--model", "weights.pt", "--out", "o"], "--factory", id="attribute-state-dict-without-factory"),
    _case([*ATTRIBUTE, "--model", "weights.pt", "--factory", "nomodule:build", "--out", "o"], "nomodule",
          id="attribute-state-dict-missing-factory-module"),
    _case([*ATTRIBUTE, *FORMATS["export"], "--out", "existing"], "already exists; pass --force",
          id="attribute-existing-out-without-force"),
    # -- internals --------------------------------------------------------------------------------------
    _case(["internals", "--data", "data.csv", "--label", "label", *FORMATS["torchscript"], "--out", "o"],
          "TorchScript module", id="internals-torchscript-has-no-hooks"),
    _case(["internals", "--data", "data.csv", *FORMATS["export"], "--out", UNWRITABLE[0]], "cannot write output",
          id="internals-export-unwritable-out"),
    _case(["internals", "--data", "data.csv", "--label", "label", *FORMATS["state_dict"], "--max-rows", "1",
           "--out", "o"], "--max-rows must be at least 2", id="internals-state-dict-max-rows"),
    _case(["internals", "--data", "data.csv", "--label", "label", *FORMATS["state_dict"], "--layer", "nope",
           "--out", "o"], "unknown module path 'nope'", id="internals-state-dict-unknown-layer"),
    _case(["internals", "--data", "huge.csv", "--label", "label", *FORMATS["state_dict"], "--out", "o"],
          "overflow float32 in column(s) 'c'", id="internals-state-dict-1e300-cell"),
    _case(["internals", "--data", "data.csv", "--label", "label", *FORMATS["pickled"], "--out", "o"],
          "--trust-checkpoint", id="internals-pickled-without-trust"),
    # -- sweep ------------------------------------------------------------------------------------------
    _case(["sweep", "width", "--out", "o"], "KIND must be one of", id="sweep-unknown-kind"),
    _case(["sweep", "capacity", "--n-samples", HUGE, "--out", "o", "-q"], "exceeds the maximum of 1,000,000",
          guard=[("featurelens.internals", "capacity_sweep")], id="sweep-absurd-n-samples"),
    _case(["sweep", "scale", "--epochs", "0", "--out", "o", "-q"], "--epochs must be >= 1", id="sweep-zero-epochs"),
    _case(["sweep", "architectures", "--out", UNWRITABLE[1], "-q"], "cannot write output",
          guard=[("featurelens.internals", "architecture_sweep")], id="sweep-unwritable-out"),
    # -- demo -------------------------------------------------------------------------------------------
    _case(["demo", "--out", UNWRITABLE[0], "-q"], "cannot write output directory",
          guard=[("featurelens.examples", "run_spurious_demo")], id="demo-unwritable-out"),
    _case(["demo", "--n-samples", HUGE, "--out", "o", "-q"], "exceeds the maximum of 1,000,000 rows",
          guard=[("featurelens.examples", "run_spurious_demo")], id="demo-absurd-n-samples"),
    _case(["demo", "--bias-strength", "2", "--out", "o", "-q"], "--bias-strength must be in", id="demo-bias-strength"),
    _case(["--threads", "0", "demo", "--out", "o", "-q"], "--threads must be between 1 and",
          guard=[("featurelens.examples", "run_spurious_demo")], id="demo-threads-0"),
    # -- reliance ---------------------------------------------------------------------------------------
    _case(["reliance", "--data", "huge.csv", "--groups", "groups.yaml", *FORMATS["torchscript"], "--out", "o"],
          "overflow float32 in column(s) 'c'", forbid=["NaN"], id="reliance-torchscript-1e300-cell"),
    _case(["reliance", "--data", "data.csv", "--groups", "groups.yaml", *FORMATS["torchscript"], "--shifted",
           "data.csv", "--mitigate", "magic", "--out", "o"], "magic",
          guard=[("featurelens.reliance", "detect_spurious")],  # validated by cli/_reliance.py before any work
          id="reliance-torchscript-unknown-mitigation-before-detection"),
    _case(["reliance", "--data", "data.csv", "--groups", "groups.yaml", *FORMATS["export"], "--shifted",
           "data.csv", "--mitigate", "jtt", "--suspect", "nope", "--out", "o"], "--suspect 'nope'",
          guard=[("featurelens.reliance", "detect_spurious")],
          id="reliance-export-unknown-suspect-before-detection"),
    _case(["reliance", "--data", "data.csv", "--groups", "groups.yaml", *FORMATS["state_dict"], "--perturbation",
           "rotate", "--out", "o"], "--perturbation 'rotate' is not available", id="reliance-state-dict-perturbation"),
    _case(["reliance", "--data", "data.csv", "--groups", "groups.yaml", *FORMATS["torchscript"], "--mitigate",
           "jtt", "--out", "o"], "--mitigate needs --shifted", id="reliance-mitigate-without-shifted"),
    _case(["reliance", "--data", "data.csv", "--groups", "groups.yaml", *FORMATS["pickled"], "--out", "o"],
          "--trust-checkpoint", id="reliance-pickled-without-trust"),
    _case(["reliance", "--data", "data.csv", "--groups", "groups.yaml", *FORMATS["export"], "--out", UNWRITABLE[0]],
          "cannot write output", guard=[LOADING], id="reliance-export-unwritable-out"),
    # -- compare ----------------------------------------------------------------------------------------
    _case(["compare", "--model", "a=model.pt", "--data", "data.csv", "--out", "o"], "at least twice",
          id="compare-one-model"),
    _case(["compare", "--model", "a=model.pt", "--model", "b", "--data", "data.csv", "--out", "o"], "NAME=PATH",
          id="compare-model-without-name"),
    _case(["compare", "--model", "a=model.pt", "--model", "b=model.pt2", "--data", "data.csv", "--format", "gif",
           "--out", "o"], "--format: 'gif' is not a figure format", guard=[LOADING], id="compare-bad-format"),
    _case(["compare", "--model", "a=model.pt", "--model", "b=weights.pt", "--factory", "badnet:build", "--data",
           "data.csv", "--reference", "c", "--out", "o"], "--reference 'c'", guard=[LOADING],
          id="compare-unknown-reference"),
    _case(["compare", "--model", "a=model.pt2", "--model", "b=model.pt2", "--data", "data.csv", "--label", "label",
           "--n-repeats", HUGE, "--out", "o"], f"--n-repeats {HUGE} exceeds", guard=[LOADING],
          id="compare-export-absurd-n-repeats"),
    _case(["compare", "--model", "a=model.pt", "--model", "b=pickled.pt", "--data", "data.csv", "--out", "o"],
          "--trust-checkpoint", id="compare-pickled-without-trust"),
    _case(["compare", "--model", "a=model.pt", "--model", "b=model.pt2", "--data", "data.csv",
           "--out", UNWRITABLE[1]], "cannot write output", guard=[LOADING], id="compare-unwritable-out"),
    # -- dynamics ---------------------------------------------------------------------------------------
    _case(["dynamics", "fit", "run*.csv", "--metrics", "m0,m1", "--out", UNWRITABLE[0], "-q"], "cannot write output",
          id="dynamics-fit-unwritable-out"),
    _case(["dynamics", "fit", "run*.csv", "--metrics", "m0,m1", "--max-states", "1000000000", "--out", "o", "-q"],
          "--max-states 1000000000 exceeds the maximum of 64",
          guard=[("featurelens.dynamics", "analyse_runs"), ("featurelens.dynamics._runs", "load_runs")],
          id="dynamics-fit-absurd-states"),
    _case(["dynamics", "fit", "run*.csv", "--metrics", "m0,m1", "--restarts", HUGE, "--out", "o", "-q"],
          "--restarts", guard=[("featurelens.dynamics", "analyse_runs")], id="dynamics-fit-absurd-restarts"),
    _case(["dynamics", "fit", "run*.csv", "--metrics", "m0,nope", "--out", "o", "-q"], "'nope'",
          id="dynamics-fit-missing-metric"),
    _case(["dynamics", "explain", "array.npz", "--transition", "0", "1"], "is not an .npz (zip) archive",
          forbid=["pickle"], id="dynamics-explain-npy-not-npz"),
    _case(["dynamics", "explain", "notes.npz", "--transition", "0", "1"], "is not a featurelens GaussianHMM file",
          forbid=["pickle"], id="dynamics-explain-text-file"),
    _case(["dynamics", "explain", "missing.npz", "--transition", "0", "1"], "does not exist",
          id="dynamics-explain-missing-model"),
    _case(["dynamics", "explain", "array.npz", "--transition", "0", "1", "--step", "middle"], "--step must be one of",
          id="dynamics-explain-bad-step"),
    # -- examples ---------------------------------------------------------------------------------------
    _case(["example", "nope"], "No such command 'nope'", id="example-unknown"),
    _case(["example", "tickets", "--format", "gif", "--out", "o", "-q"], "'gif' is not a figure format",
          id="example-tickets-bad-format"),
    _case(["example", "dynamics", "--out", UNWRITABLE[0], "-q"], "cannot write output",
          id="example-dynamics-unwritable"),
    _case(["example", "finance", "--out", UNWRITABLE[1], "-q"], "cannot write output", id="example-finance-unwritable"),
    _case(["example", "healthcare", "--seed", "-1", "--out", "o", "-q"], "--seed must be a non-negative int",
          id="example-healthcare-negative-seed"),
]


def _bomb(name):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"{name} ran: the bad input was not refused before the expensive work")

    return refuse


@pytest.mark.parametrize(("args", "match", "guard", "forbid"), CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(workspace, capsys, monkeypatch, args, match, guard,
                                                            forbid):
    monkeypatch.chdir(workspace)
    monkeypatch.syspath_prepend(str(workspace))
    monkeypatch.delitem(sys.modules, "badinput_net", raising=False)  # imported afresh, forgotten after
    for module, name in guard:
        monkeypatch.setattr(importlib.import_module(module), name, _bomb(f"{module}.{name}"))
    before = _listing(workspace)
    code = main(list(args))
    _out, err = capsys.readouterr()
    assert code == 2, err
    assert err.startswith("featurelens: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err
    if match is not None:
        assert match in err, err
    for word in forbid:
        assert word not in err, err
    assert "allow_pickle" not in err
    assert _listing(workspace) == before  # no output directory, temporary or probe left behind
    for path in UNWRITABLE:
        assert not (workspace / path.rsplit("/", 1)[1]).exists()


def test_battery_covers_every_command_and_model_format():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) >= 40
    for command in ("attribute", "internals", "sweep", "demo", "reliance", "compare", "dynamics-fit",
                    "dynamics-explain", "example"):
        assert any(i.startswith(command) for i in ids), command
    for fmt in ("torchscript", "export", "state-dict", "pickled"):
        assert sum(fmt in i for i in ids) >= 3, fmt
