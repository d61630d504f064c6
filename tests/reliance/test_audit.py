"""Tests for featurelens.reliance._audit: audit() equals its steps run by hand; options checked first."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from featurelens.datasets import make_biased, make_shifted
from featurelens.models import MLP, train
from featurelens.reliance import (
    MITIGATION_STRATEGIES,
    audit,
    detect_spurious,
    evaluate_mitigations,
    importance_over_windows,
    interaction_matrix,
    metrics_by_subgroup,
    robustness,
)
from featurelens.reliance import _audit as audit_module

SEED = 3


@pytest.fixture(scope="module")
def setup():
    data = make_biased(900, n_groups=2, group_dim=3, bias_strength=0.9, random_state=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MLP(data.X.shape[1], hidden=(16,))
    train(model, data.X[:600], data.y[:600], epochs=40, lr=1e-2, train_batch_size=64, random_state=0)
    model.eval()
    shifted = make_shifted(300, n_groups=2, group_dim=3, random_state=1)
    X, y = data.X[600:].astype(np.float32), data.y[600:].astype(np.float32)
    return {
        "model": model, "spec": data.spec(), "names": list(data.feature_names),
        "X": X, "y": y, "train": (data.X[:400].astype(np.float32), data.y[:400].astype(np.float32)),
        "test": (data.X[400:600].astype(np.float32), data.y[400:600].astype(np.float32)),
        "shifted": (shifted.X.astype(np.float32), shifted.y.astype(np.float32)),
        "environments": np.where(np.arange(300) < 150, "a", "b"),
        "subgroups": np.where(np.arange(300) % 3 == 0, "odd", "even"),
    }


@pytest.fixture(scope="module")
def full(setup):
    s = setup
    return audit(s["model"], s["X"], s["y"], groups=s["spec"], environments=s["environments"], test=s["test"],
                 train=s["train"], shifted=s["shifted"], strategies=["randomize"], suspect="spurious",
                 perturbations=["gaussian", "fgsm"], immutable=["genuine_1"], window=50, subgroups=s["subgroups"],
                 subgroup_name="parity", epochs=2, title="audit <b>test</b>", summary={"rows": 300},
                 ground_truth={"spurious_group": "spurious"}, notes=["a note"], random_state=SEED)


def test_every_step_equals_the_library_call_by_hand(setup, full):
    s, model = setup, setup["model"]
    X_te, y_te = s["test"]
    det = detect_spurious(model, s["X"], s["y"], groups=s["spec"], environments=s["environments"],
                          random_state=SEED)
    pd.testing.assert_frame_equal(full.detection.table, det.table)
    rob = robustness(model, X_te, y_te, perturbations=("gaussian", "fgsm"), metric="accuracy", groups=s["spec"],
                     feature_names=s["names"], immutable=list(s["spec"].groups_as_names()["genuine_1"]),
                     random_state=SEED)
    pd.testing.assert_frame_equal(full.robustness_frame(), rob)
    assert list(full.robustness) == ["gaussian", "fgsm"] and full.robustness_metric == "accuracy"
    inter = interaction_matrix(model, X_te, groups=None, feature_names=s["names"], baselines="mean",
                               background=s["train"][0])
    pd.testing.assert_frame_equal(full.interactions["features"], inter)
    win = importance_over_windows(model, X_te, y_te, groups=s["spec"], window=50, random_state=SEED).table
    pd.testing.assert_frame_equal(full.windows, win)
    labels = [f"{g} ({e})" for g, e in zip(s["subgroups"], s["environments"], strict=True)]
    sub = metrics_by_subgroup(model, s["X"], s["y"], subgroups=labels, metrics=("auc", "accuracy"), link="sigmoid")
    pd.testing.assert_frame_equal(full.subgroups, sub.rename(columns={"subgroup": "parity"}))
    mit = evaluate_mitigations(model, ["randomize"], train=s["train"], test=s["test"], shifted=s["shifted"],
                               groups=s["spec"], suspect="spurious", epochs=2, random_state=SEED)
    pd.testing.assert_frame_equal(full.mitigation.table.drop(columns="seconds"), mit.table.drop(columns="seconds"))
    assert full.mitigated_group == "spurious"


def test_scores_match_an_independent_computation(setup, full):
    model = setup["model"]
    for part, (X, y) in (("in-distribution test", setup["test"]), ("shifted test", setup["shifted"])):
        with torch.no_grad():
            logits = model(torch.from_numpy(X)).reshape(-1).numpy()
        assert full.scores[f"{part} accuracy"] == pytest.approx(np.mean((logits >= 0) == (y == 1)), abs=1e-12)
        assert full.scores[f"{part} auc"] == pytest.approx(roc_auc_score(y, logits), abs=1e-12)
    assert list(full.scores) == ["in-distribution test accuracy", "in-distribution test auc",
                                 "shifted test accuracy", "shifted test auc"]


def test_protocol_frame_dict_and_html(full):
    frame = full.to_frame()
    pd.testing.assert_frame_equal(frame, full.detection.table)
    frame.loc[0, "group"] = "edited"
    assert full.detection.table.loc[0, "group"] != "edited"  # a copy
    d = json.loads(json.dumps(full.to_dict(), allow_nan=False))
    assert d["detection"] == full.detection.to_dict()
    got = pd.DataFrame(d["robustness"])
    pd.testing.assert_frame_equal(got, full.robustness_frame(), check_dtype=False)
    assert [r["strategy"] for r in d["mitigation"]] == ["unmitigated", "randomize"]
    assert d["mitigation"][1]["shifted"] == full.mitigation.table.loc[1, "shifted"]
    assert d["interactions"]["features"]["spurious_0"]["spurious_1"] == \
        full.interactions["features"].loc["spurious_0", "spurious_1"]
    assert d["scores"] == full.scores and d["summary"] == {"rows": 300} and d["notes"] == ["a note"]
    assert d["mitigated_group"] == "spurious" and d["ground_truth"] == {"spurious_group": "spurious"}
    page = full._repr_html_()
    assert "audit &lt;b&gt;test&lt;/b&gt;" in page and "<b>test</b>" not in page
    assert "genuine_0" in page and "randomize" in page and "mitigation of group spurious" in page


def _held_out_accuracy(model, X, y, rows):
    with torch.no_grad():
        logits = model(torch.from_numpy(X[rows])).reshape(-1).numpy()
    return float(np.mean((logits >= 0) == (y[rows] == 1)))


@pytest.mark.parametrize("shuffle", [True, False])
def test_default_split_of_the_audited_rows(setup, shuffle):
    s, n = setup, 300
    res = audit(s["model"], s["X"], s["y"], groups=s["spec"], environments=s["environments"], shifted=s["shifted"],
                strategies=["group_dropout"], suspect="spurious", perturbations=[], epochs=1, shuffle=shuffle,
                random_state=SEED)
    order = np.random.default_rng(SEED).permutation(n) if shuffle else np.arange(n)
    held = order[round(0.7 * n):]
    assert res.mitigation.table.loc[0, "in_distribution"] == pytest.approx(
        _held_out_accuracy(s["model"], s["X"], s["y"], held), abs=1e-12)
    assert res.robustness is None and "in-distribution test accuracy" not in res.scores


def test_dfr_gets_a_validation_share_of_the_training_rows(setup):
    s, n = setup, 300
    res = audit(s["model"], s["X"], s["y"], groups=s["spec"], environments=s["environments"], shifted=s["shifted"],
                strategies=["dfr"], suspect="spurious", perturbations=[], random_state=SEED)
    assert list(res.mitigation.table["strategy"]) == ["unmitigated", "dfr"]
    held = np.random.default_rng(SEED).permutation(n)[round(0.7 * n):]  # the test rows stay the last 30 %
    assert res.mitigation.table.loc[0, "in_distribution"] == pytest.approx(
        _held_out_accuracy(s["model"], s["X"], s["y"], held), abs=1e-12)


def test_the_model_is_left_as_found(setup):
    s = setup
    model = setup["model"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        audit(model, s["X"], s["y"], groups=s["spec"], perturbations=["dropout"], random_state=SEED)
        assert model.training
    finally:
        model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_nothing_flagged_needs_a_suspect(setup):
    s = setup  # the planted link is the same in both environments: relied upon, stable, not flagged
    with pytest.raises(ValueError, match="no group was flagged spurious; name the group to mitigate with suspect="):
        audit(s["model"], s["X"], s["y"], groups=s["spec"], environments=s["environments"], shifted=s["shifted"],
              strategies=["randomize"], perturbations=[], random_state=SEED)


class _Scaled(nn.Module):
    """A model with a parameter no ``reset_parameters`` covers."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.scale = inner, nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.scale


class _TwoOutputs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]


def _boom(*args, **kwargs):
    raise AssertionError("expensive work started before the options were checked")


def _bad_cases(s):
    X, y, spec, sh = s["X"], s["y"], s["spec"], s["shifted"]
    y3 = y.copy()
    y3[:4] = 2
    return [
        ({"strategies": ["magic"], "shifted": sh}, ValueError, "strategies must be one of 'adversarial'"),
        ({"strategies": ["randomize"], "shifted": sh, "suspect": "nope"}, ValueError, "suspect 'nope' is not a group"),
        ({"strategies": ["jtt", "jtt"], "shifted": sh}, ValueError, "lists 'jtt' more than once"),
        ({"strategies": ["jtt"]}, ValueError, "strategies need shifted="),
        ({"strategies": "jtt", "shifted": sh}, TypeError, "not the single str 'jtt'"),
        ({"strategies": ["jtt"], "shifted": sh, "init": "warm"}, ValueError, "init must be one of 'reset', 'copy'"),
        ({"perturbations": ["rotate"]}, ValueError, "perturbations must be one of 'gaussian'"),
        ({"perturbations": "gaussian"}, TypeError, "not the single str 'gaussian'"),
        ({"metric": "mse"}, ValueError, "metric must be one of 'accuracy', 'auc', 'log_loss'"),
        ({"immutable": ["nope"]}, ValueError, "immutable: 'nope' is neither a feature nor a group"),
        ({"environments": "weekly"}, ValueError, "environments must be None, 'windows', 'bootstrap'"),
        ({"environments": np.zeros(7)}, ValueError, r"environments must hold one label per row \(300\)"),
        ({"y": y3}, ValueError, "y must hold binary 0/1 labels .* got the values 0, 1, 2"),
        ({"y": np.ones_like(y)}, ValueError, "y holds a single class"),
        ({"shifted": (sh[0][:, :4], sh[1])}, ValueError, r"shifted X has rows of shape \[4\] but X has \[9\]"),
        ({"shifted": (sh[0], sh[1] * 3)}, ValueError, "shifted y must hold binary 0/1 labels"),
        ({"train": s["train"]}, ValueError, "give train and test together"),
        ({"window": 0}, ValueError, "window must be >= 1"),
        ({"subgroups": np.zeros(5)}, ValueError, r"subgroups must hold one label per row of X \(300\)"),
        ({"strategies": ["jtt"], "shifted": sh, "train_fraction": 1.0}, ValueError, "train_fraction must be"),
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"random_state": -1}, ValueError, "random_state must be a non-negative int"),
        ({"groups": {}}, ValueError, "groups must name at least one feature group"),
        ({"model": nn.Linear(4, 1), "X": X[:, :4]}, ValueError, "describes 9 features but X has 4"),
        ({"model": _TwoOutputs(), "groups": spec}, ValueError, r"one logit per row .* got output \[2, 2\]"),
        ({"model": nn.Linear(4, 1)}, ValueError, r"model rejects inputs of shape \[2, 9\]"),
        ({"model": "net"}, TypeError, "model must be a torch.nn.Module"),
        ({"model": _Scaled(s["model"]), "strategies": ["jtt"], "shifted": sh}, ValueError,
         r"init='reset' cannot re-initialise parameter\(s\) scale"),
        ({"model": nn.Sequential(nn.Flatten(1), _Scaled(nn.Identity()), nn.Sigmoid()), "X": X[:, :1],
          "groups": {"g": [0]}, "strategies": ["dfr"], "shifted": (sh[0][:, :1], sh[1])}, ValueError,
         "strategy 'dfr' needs a model whose last layer is an nn.Linear"),
    ]


def test_every_option_is_checked_before_any_expensive_work(setup, monkeypatch):
    for name in ("detect_spurious", "robustness_curve", "interaction_matrix", "importance_over_windows",
                 "metrics_by_subgroup", "evaluate_mitigations"):
        monkeypatch.setattr(audit_module, name, _boom)
    s = setup
    for change, exc, match in _bad_cases(s):
        kwargs = {"model": s["model"], "X": s["X"], "y": s["y"], "groups": s["spec"], **change}
        model, X, y = kwargs.pop("model"), kwargs.pop("X"), kwargs.pop("y")
        with pytest.raises(exc, match=match):
            audit(model, X, y, **kwargs)


def test_strategy_names_are_the_library_strategies():
    from featurelens.reliance._mitigation_strategies import STRATEGIES

    assert MITIGATION_STRATEGIES == tuple(STRATEGIES) and len(MITIGATION_STRATEGIES) == 9
