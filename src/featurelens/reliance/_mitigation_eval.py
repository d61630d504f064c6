"""Before/after tables of mitigation strategies, and the acceptance benchmark.

The benchmark runs on the superposition and spurious-correlation notebook's data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._metrics import METRICS, get_metric
from featurelens._protocol import FrameResult, records
from featurelens._validation import RandomState, check_float, check_int, check_random_state
from featurelens.attribution import attribute
from featurelens.data import as_tensor, resolve_names
from featurelens.datasets import make_biased, make_shifted
from featurelens.models import MLP, model_device_dtype, train
from featurelens.reliance._mitigate import Mitigated, _suspect_columns, mitigate
from featurelens.reliance._robustness import predict, resolve_link

Split = tuple[Any, Any]


@dataclass
class MitigationTable(FrameResult):
    """Before/after comparison of mitigation strategies.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model, the unmitigated one first (``strategy ==
        "unmitigated"``). Columns: ``in_distribution`` (metric on the
        held-out test set), ``shifted`` (metric on the shifted set; with
        several shifted sets one column ``shifted_<name>`` each), ``reliance``
        (permutation importance of the suspect group on the test set: the
        metric's mean degradation when the group's columns are shuffled across
        rows, over ``n_repeats``) and ``reliance_se`` (its standard error),
        the changes against the unmitigated model ``in_distribution_change``,
        ``shifted_change`` (or ``shifted_<name>_change``; in metric units, so
        0.10 = 10 accuracy points) and ``reliance_reduction`` (``1 −
        reliance / reliance_unmitigated``), and ``seconds`` (training time).
    models : dict of str to nn.Module
        The mitigated models by strategy label.
    results : dict of str to Mitigated
    metric : str
    suspect : str
    """

    table: pd.DataFrame
    models: dict[str, nn.Module] = field(repr=False)
    results: dict[str, Mitigated] = field(repr=False)
    metric: str
    suspect: str

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: :attr:`table` (a copy), one row per model, the unmitigated one first."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: ``metric``, ``suspect`` and the table as records (the models are not JSON)."""
        return {"metric": self.metric, "suspect": self.suspect, "table": records(self.table, where="mitigation")}

    def _html_title(self) -> str:
        return f"MitigationTable: strategies acting on group {self.suspect!r} ({self.metric})"

    def meets(self, *, shifted_gain: float = 0.10, reliance_cut: float = 0.5, shifted: str | None = None) -> pd.Series:
        """Tell, per strategy, whether it meets both goals.

        True where the strategy raises the shifted metric by ``shifted_gain`` and cuts reliance by
        ``reliance_cut``.
        """
        col = "shifted_change" if shifted is None else f"shifted_{shifted}_change"
        if col not in self.table:
            raise ValueError(f"no column {col!r}; the shifted sets are named in the table's columns")
        t = self.table.set_index("strategy")
        return (t[col] >= shifted_gain) & (t["reliance_reduction"] >= reliance_cut)


def _split(split: Any, name: str) -> Split:
    if not (isinstance(split, (tuple, list)) and len(split) == 2):
        raise TypeError(f"{name} must be a tuple (X, y)")
    return split[0], split[1]


def _score(model: nn.Module, X: Any, y: Any, metric: Any, link: str, *, name: str) -> float:
    device, dtype = model_device_dtype(model)
    Xt, _ = as_tensor(X, name=f"{name} X", dtype=dtype, device=device)
    yt, _ = as_tensor(y, name=f"{name} y", dtype=torch.float64, ndims=(1, 2))
    yt = yt[:, 0] if yt.dim() == 2 and yt.shape[1] == 1 else yt
    if yt.shape[0] != Xt.shape[0]:
        raise ValueError(f"{name} y has {yt.shape[0]} rows but {name} X has {Xt.shape[0]}")
    return float(metric.fn(yt, predict(model, Xt, link)))


def _reliance(model, X, y, *, cols, suspect, names, metric, link, n_repeats, seed) -> tuple[float, float]:
    named = metric.name in METRICS
    exp = attribute(
        model, X, method="permutation", groups={suspect: [names[c] for c in cols]}, feature_names=names,
        y=y, metric=metric.name if named else metric.fn,
        higher_is_better=None if named else metric.higher_is_better,
        link=None if link == "identity" else link, target="all" if link == "softmax" else None,
        n_repeats=n_repeats, random_state=seed,
    )
    scores = np.asarray(exp.scores)[:, 0]
    se = float(scores.std(ddof=1) / np.sqrt(scores.size)) if scores.size > 1 else 0.0
    return float(scores.mean()), se


def _shifted_sets(shifted: Split | Mapping[str, Split]) -> dict[str, Split]:
    """``name -> (X, y)``; one unnamed set is keyed ``""``."""
    sets = {str(k): _split(v, f"shifted[{k!r}]") for k, v in shifted.items()} if isinstance(shifted, Mapping) \
        else {"": _split(shifted, "shifted")}
    if not sets:
        raise ValueError("shifted must hold at least one (X, y) set")
    return sets


def _plan(strategies: Sequence[str] | Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``label -> {"strategy": name, **options}`` for every strategy to run."""
    if isinstance(strategies, str):
        raise TypeError("strategies must be a list of strategy names or a mapping, not a single str")
    plan = {s: {"strategy": s} for s in strategies} if not isinstance(strategies, Mapping) else \
        {str(k): dict(v) for k, v in strategies.items()}
    if not plan:
        raise ValueError("strategies must name at least one strategy")
    for label, spec in plan.items():
        if "strategy" not in spec:
            raise ValueError(f"strategies[{label!r}] needs a 'strategy' entry")
    return plan


def _with_changes(table: pd.DataFrame) -> pd.DataFrame:
    """Add the changes against the first (unmitigated) row and the reliance reduction."""
    base = table.iloc[0]
    table["in_distribution_change"] = table["in_distribution"] - base["in_distribution"]
    for col in [c for c in table.columns if c.startswith("shifted") and not c.endswith("_change")]:
        table[f"{col}_change"] = table[col] - base[col]
    ref = base["reliance"]
    table["reliance_reduction"] = 1 - table["reliance"] / ref if ref > 0 else np.nan
    return table


def evaluate_mitigations(
    model: nn.Module,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    train: Split,
    test: Split,
    shifted: Split | Mapping[str, Split],
    groups: Mapping[str, Sequence[str | int]],
    suspect: str,
    val: Split | None = None,
    environments: Any = None,
    environments_val: Any = None,
    metric: str = "accuracy",
    loss: str = "bce",
    feature_names: Sequence[str] | None = None,
    n_repeats: int = 5,
    random_state: RandomState = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    **train_options: Any,
) -> MitigationTable:
    """Apply each strategy to a new model and compare it with ``model`` before/after.

    Parameters
    ----------
    model : nn.Module
        The unmitigated model (trained on ``train``); never modified.
    strategies : sequence of str, or mapping label -> {"strategy": name, **options}
        Strategy names of :func:`mitigate`, or labelled variants, e.g.
        ``{"jtt_x10": {"strategy": "jtt", "upweight": 10}}``.
    train, test : (X, y)
        Training data for the strategies, and held-out in-distribution data.
    shifted : (X, y) or mapping name -> (X, y)
        Data where the suspect group's relation to the label is broken or
        reversed (e.g. :func:`featurelens.datasets.make_shifted`).
    groups, suspect
        Feature groups and the suspect group's name.
    val : (X, y), optional
        Held-out data for early stopping and DFR.
    environments, environments_val : optional
        Environment labels of the train / val rows (default inferred, see
        :func:`featurelens.reliance.infer_environments`).
    metric : str
        ``"accuracy"`` (default), ``"auc"``, ``"log_loss"``, ``"mse"`` or ``"mae"``.
    loss : {"bce", "ce", "mse"}
        Training loss of the strategies (and of the attack in ``adversarial``).
    n_repeats : int
        Permutation repeats of the reliance measure.
    random_state : int, numpy Generator or None
    on_row : callable, optional
        Called with each row (a dict of the metric columns, before the change
        columns are added) as soon as it is measured, e.g. ``print`` for long runs.
    **train_options
        Passed to :func:`mitigate` (``epochs``, ``train_batch_size``, ``lr``, ...).

    Returns
    -------
    MitigationTable
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n_repeats = check_int(n_repeats, name="n_repeats", minimum=2)
    m = get_metric(metric)
    rng = check_random_state(random_state)
    X_tr, y_tr = _split(train, "train")
    X_te, y_te = _split(test, "test")
    X_va, y_va = (None, None) if val is None else _split(val, "val")
    shifted_sets = _shifted_sets(shifted)
    plan = _plan(strategies)
    device, dtype = model_device_dtype(model)
    Xt, data_names = as_tensor(X_te, name="test X", dtype=dtype, device=device)
    names = resolve_names(Xt.shape[-1], data_names=data_names, feature_names=feature_names)
    cols = _suspect_columns(names, groups, suspect)
    link = resolve_link("auto", m, predict(model, Xt[:1], "identity"))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rel_seed = int(rng.integers(0, 2**31 - 1))

    def row(label: str, net: nn.Module, seconds: float) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": label, "in_distribution": _score(net, Xt, y_te, m, link, name="test")}
        for key, (xs, ys) in shifted_sets.items():
            out["shifted" if key == "" else f"shifted_{key}"] = _score(net, xs, ys, m, link,
                                                                       name=f"shifted {key}".strip())
        out["reliance"], out["reliance_se"] = _reliance(net, Xt, y_te, cols=cols, suspect=suspect, names=names,
                                                        metric=m, link=link, n_repeats=n_repeats, seed=rel_seed)
        out["seconds"] = seconds
        if on_row is not None:
            on_row(out)
        return out

    rows = [row("unmitigated", model, 0.0)]
    models: dict[str, nn.Module] = {}
    results: dict[str, Mitigated] = {}
    for label, spec in plan.items():
        spec = dict(spec)
        name = spec.pop("strategy")
        t0 = time.perf_counter()
        res = mitigate(
            model, X_tr, y_tr, strategy=name, groups=groups, suspect=suspect, environments=environments,
            X_val=X_va, y_val=y_va,
            environments_val=environments_val, loss=loss, feature_names=names, options=spec,
            random_state=int(rng.integers(0, 2**31 - 1)), **train_options,
        )
        seconds = time.perf_counter() - t0
        models[label], results[label] = res.model, res
        rows.append(row(label, res.model, seconds))
    if any(not torch.equal(before[k], v) for k, v in model.state_dict().items()):
        raise RuntimeError("a mitigation strategy modified the original model; this is a featurelens bug")
    table = _with_changes(pd.DataFrame(rows))
    return MitigationTable(table=table, models=models, results=results, metric=m.name, suspect=suspect)


def mitigation_benchmark(
    *,
    strategies: Sequence[str] | Mapping[str, Mapping[str, Any]] = (
        "randomize", "group_dropout", "adversarial", "group_dro", "reweight", "jtt", "dfr", "orthogonal",
        "pcgrad",
    ),
    n_train: int = 120000,
    n_test: int = 10000,
    n_groups: int = 5,
    group_dim: int = 10,
    bias_strength: float = 0.8,
    hidden: Sequence[int] = (128, 128),
    epochs: int = 100,
    train_batch_size: int = 128,
    lr: float = 1e-3,
    patience: int = 20,
    random_state: int = 0,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> MitigationTable:
    """Run the acceptance experiment: mitigate a planted shortcut, judge on shifted data.

    On the superposition and spurious-correlation notebook's data.
    Data: :func:`featurelens.datasets.make_biased` (``n_groups`` genuine groups
    of ``group_dim`` features and the group ``"spurious"``, ``bias_strength``
    0.8) for training (``n_train`` rows), validation and in-distribution test
    (``n_test`` rows each); shifted sets from :func:`featurelens.datasets.make_shifted`:
    ``"independent"`` (spurious group independent of the label) and
    ``"reversed"`` (its bias label is ``1 − y`` with probability
    ``bias_strength``). The unmitigated model is an
    :class:`featurelens.models.MLP` with ``hidden`` units trained by ERM on the
    training rows (early stopping on the validation rows); every strategy
    trains the same architecture from a fresh initialisation with the same
    budget. Environments are inferred (:func:`infer_environments`), never
    read from the generator. All data and seeds derive from ``random_state``.
    ``on_row`` is passed to :func:`evaluate_mitigations`.

    Returns
    -------
    MitigationTable
        With ``shifted_independent`` and ``shifted_reversed`` columns; check
        the acceptance criterion with ``.meets(shifted="independent")``.
    """
    bias_strength = check_float(bias_strength, name="bias_strength", low=0.0, high=1.0)
    rng = check_random_state(random_state)
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=7)]
    kw = {"n_groups": n_groups, "group_dim": group_dim}
    tr = make_biased(n_train, bias_strength=bias_strength, random_state=seeds[0], **kw)
    va = make_biased(n_test, bias_strength=bias_strength, random_state=seeds[1], **kw)
    te = make_biased(n_test, bias_strength=bias_strength, random_state=seeds[2], **kw)
    ind = make_shifted(n_test, mode="independent", random_state=seeds[3], **kw)
    rev = make_shifted(n_test, bias_strength=bias_strength, mode="reversed", random_state=seeds[4], **kw)
    with torch.random.fork_rng():
        torch.manual_seed(seeds[5])
        model = MLP(tr.X.shape[1], hidden=tuple(hidden))
    opts = {"epochs": epochs, "train_batch_size": train_batch_size, "lr": lr, "patience": patience}
    train(model, tr.X, tr.y, validation_data=(va.X, va.y), random_state=seeds[6], **opts)
    return evaluate_mitigations(
        model, strategies, train=(tr.X, tr.y), test=(te.X, te.y), val=(va.X, va.y),
        shifted={"independent": (ind.X, ind.y), "reversed": (rev.X, rev.y)}, groups=tr.groups,
        suspect="spurious", feature_names=tr.feature_names, random_state=random_state, on_row=on_row, **opts,
    )
