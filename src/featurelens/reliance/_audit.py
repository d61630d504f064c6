"""One reliance audit: the pipeline every reliance front end (CLI, finance, healthcare) calls.

:func:`audit` validates every option first (cheap checks only), then runs
detection, robustness curves, the feature interaction matrix, importance per
time window, metrics per subgroup and the mitigation strategies, and returns
one :class:`RelianceAudit`; ``featurelens.report.save`` renders it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._metrics import accuracy, auc
from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.data import FeatureSpec, as_tensor
from featurelens.models import OutputSelector, evaluate, model_device_dtype, preserve_model
from featurelens.reliance._audit_result import RelianceAudit
from featurelens.reliance._detect import (
    SpuriousReport,
    _environment_labels,
    detect_spurious,
    group_spec,  # the JSON conversion SpuriousReport.to_dict uses
)
from featurelens.reliance._interactions import interaction_matrix
from featurelens.reliance._mitigate import _reinitialised
from featurelens.reliance._mitigation_eval import evaluate_mitigations
from featurelens.reliance._mitigation_strategies import NEEDS_VAL_ENV, STRATEGIES, _last_linear
from featurelens.reliance._robustness import PERTURBATIONS, RobustnessCurve, robustness_curve
from featurelens.reliance._stability import importance_over_windows, metrics_by_subgroup

#: Names of the mitigation strategies (:func:`featurelens.reliance.mitigate`), one source for help and docs.
MITIGATION_STRATEGIES: tuple[str, ...] = tuple(STRATEGIES)
#: Metrics the robustness curves and the mitigation table can measure on a binary classifier.
AUDIT_METRICS = ("accuracy", "auc", "log_loss")
#: Share of the training part held out for strategies that refit on held-out rows (``dfr``).
_VAL_SHARE = 0.2

Split = tuple[Any, Any]


@dataclass(frozen=True, eq=False)
class _Plan:
    """The validated inputs of one audit."""

    X: np.ndarray
    y: np.ndarray
    spec: FeatureSpec
    test: Split | None
    train: Split | None
    val: Split | None
    shifted: Split | None
    strategies: tuple[str, ...]
    perturbations: tuple[str, ...]
    subgroup_labels: list[str] | None


def _arrays(data: Any, *, name: str, ndims: tuple[int, ...] = (2, 3)) -> np.ndarray:
    t, _ = as_tensor(data, name=name, ndims=ndims)
    return t.detach().cpu().numpy()


def _binary(y: Any, n: int, *, name: str, both: bool) -> np.ndarray:
    """Labels ``(n,)`` that are 0/1 (``both``: both classes present), as given (float32 unless float64)."""
    labels = _arrays(y, name=name, ndims=(1,))
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} labels but its inputs have {n} rows")
    values = np.unique(labels)
    if not np.isin(values, (0.0, 1.0)).all():
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
        raise ValueError(f"{name} must hold binary 0/1 labels (the audit judges a binary classifier); "
                         f"got the values {shown}")
    if both and values.size < 2:
        raise ValueError(f"{name} holds a single class ({values[0]:g}); the audit needs both 0 and 1")
    return labels


def _split(split: Any, *, name: str, like: np.ndarray, both: bool) -> Split | None:
    if split is None:
        return None
    if not isinstance(split, tuple | list) or len(split) != 2:
        raise TypeError(f"{name} must be a pair (X, y), got {type(split).__name__}")
    x = _arrays(split[0], name=f"{name} X")
    if x.shape[1:] != like.shape[1:]:
        raise ValueError(f"{name} X has rows of shape {list(x.shape[1:])} but X has {list(like.shape[1:])}")
    return x, _binary(split[1], x.shape[0], name=f"{name} y", both=both)


def _check_model(model: nn.Module, X: np.ndarray) -> None:
    """Check that the model takes ``X``'s rows and returns one logit per row (a binary classifier)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device, dtype = model_device_dtype(model)
    rows = torch.as_tensor(X[:2]).to(device=device, dtype=dtype)
    try:
        with preserve_model(model, eval_mode=True), torch.no_grad():
            out = model(rows)
    except Exception as exc:  # the model's own error: say what it was given
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"model rejects inputs of shape {list(rows.shape)}: {reason}") from None
    if not isinstance(out, torch.Tensor) or out.reshape(rows.shape[0], -1).shape[1] != 1:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must return one logit per row (a binary classifier); got output {shape} "
                         f"for {rows.shape[0]} rows")


def _check_names(items: Sequence[str], *, name: str, spec: FeatureSpec) -> None:
    if isinstance(items, str):
        raise TypeError(f"{name} must be a list of feature or group names, not the single str {items!r}")
    for item in items:
        if item not in spec.names and item not in spec.group_names:
            raise ValueError(f"{name}: {item!r} is neither a feature nor a group; groups are "
                             f"{', '.join(map(repr, spec.group_names))}")


def _check_strategies(strategies: Sequence[str], *, shifted: Any, init: str, model: nn.Module) -> tuple[str, ...]:
    if isinstance(strategies, str):
        raise TypeError(f"strategies must be a list of strategy names, not the single str {strategies!r}")
    names = tuple(strategies)
    for s in names:
        check_option(s, name="strategies", options=MITIGATION_STRATEGIES)
    twice = sorted({s for s in names if names.count(s) > 1})
    if twice:
        raise ValueError(f"strategies lists {', '.join(map(repr, twice))} more than once")
    if names and shifted is None:
        raise ValueError("strategies need shifted=(X, y): mitigations are judged where the suspect link is broken")
    check_option(init, name="init", options=("reset", "copy"))
    if init == "reset" and any(s not in NEEDS_VAL_ENV for s in names):  # dfr always starts from the weights
        _reinitialised(model, 0)  # raises now, before any expensive work, if a parameter cannot be reset
    if any(s in NEEDS_VAL_ENV for s in names):
        _last_linear(model)  # dfr refits the last nn.Linear: raises now if there is none
    return names


def _validate(model: nn.Module, X: Any, y: Any, *, groups: Any, feature_names: Any, environments: Any,
              test: Any, train: Any, val: Any, shifted: Any, strategies: Sequence[str], suspect: str | None,
              perturbations: Sequence[str], immutable: Sequence[str], metric: str, window: int | None,
              subgroups: Any, train_fraction: float, epochs: int, init: str,
              random_state: RandomState) -> _Plan:
    """Every check of :func:`audit` that needs no model evaluation beyond two rows."""
    x = _arrays(X, name="X")
    labels = _binary(y, x.shape[0], name="y", both=True)
    _check_model(model, x)
    data_names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else None
    spec = group_spec(groups, x.shape[-1], data_names, feature_names, purpose="the audit judges feature groups")
    if not spec.has_groups:
        raise ValueError("groups must name at least one feature group")
    _environment_labels(environments, x.shape[0], x.ndim, 4)
    if isinstance(perturbations, str):
        raise TypeError(f"perturbations must be a list of names, not the single str {perturbations!r}")
    for p in perturbations:
        check_option(p, name="perturbations", options=PERTURBATIONS)
    _check_names(immutable, name="immutable", spec=spec)
    check_option(metric, name="metric", options=AUDIT_METRICS)
    check_int(epochs, name="epochs", minimum=1)
    check_random_state(random_state)
    check_float(train_fraction, name="train_fraction", low=0.0, high=1.0, inclusive=(False, False))
    if (train is None) != (test is None):
        raise ValueError("give train and test together (mitigation training and held-out data), or neither "
                         "to split X, y by train_fraction")
    plan_test = _split(test, name="test", like=x, both=True)
    if window is not None:
        check_int(window, name="window", minimum=1)
    labels_sub = None
    if subgroups is not None:
        sub = np.asarray(subgroups)
        if sub.ndim != 1 or sub.shape[0] != x.shape[0]:
            raise ValueError(f"subgroups must hold one label per row of X ({x.shape[0]}), got shape {sub.shape}")
        env = None if environments is None or isinstance(environments, str) else np.asarray(environments)
        labels_sub = [f"{s}" for s in sub] if env is None else [f"{s} ({e})" for s, e in zip(sub, env, strict=True)]
    if suspect is not None and suspect not in spec.group_names:
        raise ValueError(f"suspect {suspect!r} is not a group; groups are {', '.join(map(repr, spec.group_names))}")
    names = _check_strategies(strategies, shifted=shifted, init=init, model=model)
    if names and train is None and round(train_fraction * x.shape[0]) in (0, x.shape[0]):
        raise ValueError(f"train_fraction={train_fraction} of {x.shape[0]} rows leaves no training or no test rows")
    return _Plan(X=x, y=labels, spec=spec, test=plan_test, train=_split(train, name="train", like=x, both=True),
                 val=_split(val, name="val", like=x, both=True),
                 shifted=_split(shifted, name="shifted", like=x, both=False),
                 strategies=names, perturbations=tuple(perturbations), subgroup_labels=labels_sub)


def _mitigation_data(plan: _Plan, *, train_fraction: float, shuffle: bool,
                     random_state: RandomState) -> tuple[Split, Split | None, Split]:
    """Train, validation and test data of the strategies: as given, or a split of ``X, y``."""
    if plan.train is not None:
        return plan.train, plan.val, plan.test
    n = len(plan.y)
    n_train = round(train_fraction * n)
    order = np.random.default_rng(random_state).permutation(n) if shuffle else np.arange(n)
    tr, te = order[:n_train], order[n_train:]
    val = plan.val
    if val is None and any(s in NEEDS_VAL_ENV for s in plan.strategies):
        n_fit = round((1 - _VAL_SHARE) * n_train)
        tr, va = tr[:n_fit], tr[n_fit:]
        val = (plan.X[va], plan.y[va])
    return (plan.X[tr], plan.y[tr]), val, (plan.X[te], plan.y[te])


def _scores(model: nn.Module, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy (a row is predicted 1 when ``sigmoid(logit) >= 0.5``) and AUC (when both classes occur)."""
    device, dtype = model_device_dtype(model)
    with preserve_model(model, eval_mode=True):
        prob = evaluate(model, torch.as_tensor(X).to(device=device, dtype=dtype),
                        output=OutputSelector(link="sigmoid")).cpu()
    labels = torch.as_tensor(y)
    out = {"accuracy": accuracy(labels, prob)}
    if np.unique(y).size == 2:
        out["auc"] = auc(labels, prob)
    return out


def _suspect(detection: SpuriousReport, suspect: str | None) -> str:
    if suspect is not None:
        return suspect
    if not detection.flagged:
        raise ValueError("no group was flagged spurious; name the group to mitigate with suspect=")
    return detection.flagged[0]


def audit(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    groups: Mapping[str, Sequence[str | int]] | FeatureSpec,
    feature_names: Sequence[str] | None = None,
    environments: Any = None,
    test: Split | None = None,
    train: Split | None = None,
    val: Split | None = None,
    shifted: Split | None = None,
    strategies: Sequence[str] = (),
    suspect: str | None = None,
    perturbations: Sequence[str] = PERTURBATIONS,
    immutable: Sequence[str] = (),
    metric: str = "accuracy",
    window: int | None = None,
    subgroups: Any = None,
    subgroup_name: str = "subgroup",
    train_fraction: float = 0.7,
    shuffle: bool = True,
    epochs: int = 20,
    init: str = "reset",
    title: str = "Reliance audit",
    summary: Mapping[str, Any] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    random_state: RandomState = 0,
) -> RelianceAudit:
    """Audit a binary classifier's reliance on feature groups: detection, robustness, interactions, mitigation.

    Every option is checked before any expensive work (the model runs on two
    rows to check its output). Then, in this order:

    1. :func:`detect_spurious` on ``X, y`` with ``environments``;
    2. one :func:`robustness_curve` per name of ``perturbations`` on ``test``
       (default ``X, y``), fed by one generator built from ``random_state``
       (as :func:`robustness`), ``immutable`` features left unchanged;
    3. the ablation interaction matrix of the features
       (:func:`interaction_matrix`, ``groups=None``, ``baselines="mean"``) on
       ``test``'s inputs (default ``X``), the means taken over ``train``'s
       inputs (default ``X``), keyed ``"features"``;
    4. with ``window``: :func:`importance_over_windows` on ``test``;
    5. with ``subgroups``: :func:`metrics_by_subgroup` (AUC, accuracy) on ``X, y``
       per subgroup label (``"label (environment)"`` with per-row environments);
    6. with ``strategies``: :func:`evaluate_mitigations` against the ``suspect``
       group, trained on ``train`` (with ``val``) and judged on ``test`` and on
       ``shifted``. Without ``train``/``test``, a ``train_fraction`` share of
       ``X, y`` trains (a random share with ``shuffle``, else the first rows)
       and the rest judges; a strategy that refits on held-out rows (``dfr``)
       then gets the last 20 % of the training share as ``val``;
    7. ``scores``: ``"in-distribution test accuracy"`` / ``"... auc"`` on
       ``test`` and ``"shifted test accuracy"`` / ``"... auc"`` on ``shifted``
       (AUC only when both classes occur).

    Parameters
    ----------
    model : nn.Module
        One logit per row (``(n,)`` or ``(n, 1)`` outputs); left as found.
    X : array-like of shape (n, d) or (n, T, d)
        The audited rows (held-out data is best).
    y : array-like of shape (n,)
        Binary 0/1 labels, both classes present.
    groups : mapping or FeatureSpec
        Feature groups to judge (names or indices over the last axis).
    feature_names : sequence of str, optional
        Names of the ``d`` features (default: DataFrame columns, else ``x0..``).
    environments : None, "windows", "bootstrap" or array-like of shape (n,)
        As in :func:`detect_spurious`.
    test, train, val : (X, y), optional
        Held-out in-distribution data, and the strategies' training and
        validation data (``train`` and ``test`` together or neither).
    shifted : (X, y), optional
        Data where the suspect link is broken (needed by ``strategies``).
    strategies : sequence of str
        Names from :data:`MITIGATION_STRATEGIES`, each at most once.
    suspect : str, optional
        The group to mitigate; default the first group flagged spurious.
    perturbations : sequence of str
        Names from :data:`featurelens.reliance.PERTURBATIONS`.
    immutable : sequence of str
        Features or groups the perturbations leave unchanged.
    metric : {"accuracy", "auc", "log_loss"}
        Metric of the robustness curves and of the mitigation table.
    window : int, optional
        Consecutive ``test`` rows per time window (step 4).
    subgroups : array-like of shape (n,), optional
        Subgroup label of each row of ``X`` (step 5); its column is named ``subgroup_name``.
    train_fraction : float
        In ``(0, 1)``; see step 6.
    shuffle : bool
        Random (True) or chronological (False) split of step 6.
    epochs : int
        Training epochs of each strategy.
    init : {"reset", "copy"}
        Strategies train the architecture from fresh weights or fine-tune the model's.
    title, summary, ground_truth, notes
        Stored on the result for the report.
    random_state : int, numpy Generator or None
        Passed to every random step (detection, curves, windows, the split,
        the mitigations); an int reproduces the audit.

    Returns
    -------
    RelianceAudit

    Raises
    ------
    ValueError
        Naming the argument: labels that are not 0/1, an unknown strategy,
        perturbation, metric or suspect group, a feature or group of
        ``immutable`` that does not exist, ``strategies`` without ``shifted``,
        ``init="reset"`` on a model whose parameters cannot be re-initialised,
        mismatched shapes, a model that rejects ``X`` or returns more than one
        output per row; after detection, ``strategies`` without ``suspect``
        when no group was flagged.
    TypeError
        If ``model`` is not an ``nn.Module`` or a list argument is a single str.
    """
    plan = _validate(model, X, y, groups=groups, feature_names=feature_names, environments=environments,
                     test=test, train=train, val=val, shifted=shifted, strategies=strategies, suspect=suspect,
                     perturbations=perturbations, immutable=immutable, metric=metric, window=window,
                     subgroups=subgroups, train_fraction=train_fraction, epochs=epochs, init=init,
                     random_state=random_state)
    spec, names = plan.spec, list(plan.spec.names)
    X_eval, y_eval = plan.test if plan.test is not None else (plan.X, plan.y)
    detection = detect_spurious(model, plan.X, plan.y, groups=spec, environments=environments,
                                random_state=random_state)
    curves = _curves(model, X_eval, y_eval, plan, metric=metric, immutable=immutable, random_state=random_state)
    background = plan.train[0] if plan.train is not None else plan.X
    interactions = {"features": interaction_matrix(model, X_eval, groups=None, feature_names=names,
                                                   baselines="mean", background=background)}
    over_time = None if window is None else importance_over_windows(
        model, X_eval, y_eval, groups=spec, window=window, random_state=random_state).table
    by_group = None if plan.subgroup_labels is None else metrics_by_subgroup(
        model, plan.X, plan.y, subgroups=plan.subgroup_labels, metrics=("auc", "accuracy"), link="sigmoid",
    ).rename(columns={"subgroup": subgroup_name})
    mitigation = target = None
    if plan.strategies:
        target = _suspect(detection, suspect)
        tr, va, te = _mitigation_data(plan, train_fraction=train_fraction, shuffle=shuffle,
                                      random_state=random_state)
        mitigation = evaluate_mitigations(model, list(plan.strategies), train=tr, val=va, test=te,
                                          shifted=plan.shifted, groups=spec, suspect=target, metric=metric,
                                          epochs=epochs, init=init, random_state=random_state)
    parts = (("in-distribution test", plan.test), ("shifted test", plan.shifted))
    scores = {f"{part} {k}": v for part, split in parts if split is not None
              for k, v in _scores(model, *split).items()}
    return RelianceAudit(
        detection=detection, robustness=curves, robustness_metric=metric, interactions=interactions,
        mitigation=mitigation, mitigated_group=target, windows=over_time, subgroups=by_group, scores=scores,
        title=title, summary=dict(summary or {}), ground_truth=None if ground_truth is None else dict(ground_truth),
        notes=tuple(str(n) for n in notes),
    )


def _curves(model: nn.Module, X: np.ndarray, y: np.ndarray, plan: _Plan, *, metric: str,
            immutable: Sequence[str], random_state: RandomState) -> dict[str, RobustnessCurve] | None:
    """One curve per perturbation, all fed by one generator (as :func:`featurelens.reliance.robustness`)."""
    if not plan.perturbations:
        return None
    rng = check_random_state(random_state)
    return {p: robustness_curve(model, X, y, perturbation=p, metric=metric, groups=plan.spec,
                                feature_names=list(plan.spec.names), immutable=list(immutable) or None,
                                random_state=rng)
            for p in plan.perturbations}
