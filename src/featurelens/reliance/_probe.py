"""Probes: how well one feature group alone predicts the label, and whether that relation holds.

A probe is a small supervised model from one group's features to the label,
scored out of fold (k-fold cross-validation), so its score measures the
group-label relation in the data, independently of the model under study.

Probe inputs. Tabular groups ``(n, k)`` are used as they are. Sequence groups
``(n, T, k)`` are summarised per feature ``j`` by three statistics over the
``T`` time steps, in this column order: the mean ``(1/T) sum_t x[:, t, j]``,
the population standard deviation (``ddof=0``) and the last time step's value
``x[:, T-1, j]``, ``(n, 3k)`` (columns ``0..k-1`` means, ``k..2k-1`` stds,
``2k..3k-1`` last values). The probe's size does not grow with ``T``; the last
step is kept because a sequence's label usually refers to its end (a window
labelled by its last row, e.g. "the window ends on a Friday"), which a mean and
a std cannot see. Other information carried only by the order of the time
steps is not seen.

Probes (``probe=``):

* ``"quadratic"`` (default): the inputs and their squares, standardised, then
  L2 logistic regression (``C=1``) for binary labels or ridge regression
  (``alpha=1``) for continuous ones. Squares let a linear probe see relations
  carried by magnitudes (the superposition and spurious-correlation notebook's labels are sums of squares, for which a
  plain linear probe scores chance).
* ``"linear"``: the standardised inputs only, same estimators.
* ``"mlp"``: a one-hidden-layer (16 ReLU units) scikit-learn MLP with a
  fixed budget of 300 iterations (its convergence warnings are silenced: the
  budget is part of the probe's definition).

Relation per environment. The pooled out-of-fold probe scores ``s_i`` are
compared with the label inside each environment ``e``: binary labels give
``AUC_e`` (Mann-Whitney, ties averaged) with the Hanley-McNeil (1982)
standard error; continuous labels give Pearson ``r_e`` with the Fisher
standard error ``1 / sqrt(n_e - 3)`` of ``atanh(r_e)``. Using one probe
fitted on all environments keeps the direction of the relation fixed, so a
relation that reverses in an environment shows as ``AUC_e < 0.5`` (a probe
refitted inside the environment would learn the reversed direction and hide
it). Heterogeneity is Cochran's ``Q = sum_e w_e (t_e - t_bar)^2`` with
``w_e = 1 / se_e^2`` and ``t_bar`` the ``w``-weighted mean (``t = AUC`` or
``atanh(r)``), referred to ``chi2(E - 1)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from featurelens._metrics import auc
from featurelens._protocol import FrameResult, jsonable
from featurelens._validation import RandomState, check_int, check_option, check_random_state

PROBES = ("quadratic", "linear", "mlp")
#: smallest standard error used as a weight in Cochran's Q (an AUC of exactly 0 or 1 has SE 0)
MIN_SE = 1e-3


def label_kind(y: np.ndarray) -> str:
    """``"binary"`` if every label is 0 or 1 (both present), else ``"continuous"``."""
    values = np.unique(y)
    if np.isin(values, (0.0, 1.0)).all():
        if values.size < 2:
            raise ValueError("y holds a single class; the relation of a group to it is undefined")
        return "binary"
    return "continuous"


def probe_inputs(xg: np.ndarray) -> np.ndarray:
    """Probe inputs of one group: ``(n, k)`` as is; ``(n, T, k)`` -> ``(n, 3k)``.

    For sequences, per feature: the mean over time, the population standard
    deviation over time (``ddof=0``) and the value at the last time step
    ``T - 1``, as the column blocks ``[mean | std | last]`` (see the module
    docstring).
    """
    xg = np.asarray(xg, dtype=np.float64)
    if xg.ndim == 3:
        return np.concatenate([xg.mean(axis=1), xg.std(axis=1), xg[:, -1, :]], axis=1)
    return xg


def _with_squares(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z, z * z], axis=1)


def probe_estimator(probe: str, kind: str, seed: int):
    if probe == "mlp":
        cls = MLPClassifier if kind == "binary" else MLPRegressor
        return make_pipeline(StandardScaler(), cls(hidden_layer_sizes=(16,), max_iter=300, random_state=seed))
    head = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=100) if kind == "binary" else Ridge(alpha=1.0)
    steps = [StandardScaler()]
    if probe == "quadratic":
        steps += [FunctionTransformer(_with_squares), StandardScaler()]
    return make_pipeline(*steps, head)


def fit_probe(est, z: np.ndarray, y: np.ndarray):
    """``est.fit(z, y)`` with scikit-learn's convergence warnings silenced (fixed iteration budgets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(z, y)


def probe_scores(est, z: np.ndarray, kind: str) -> np.ndarray:
    if kind != "binary":
        return est.predict(z)
    if hasattr(est, "decision_function"):
        return est.decision_function(z)
    return est.predict_proba(z)[:, 1]


def relation(scores: np.ndarray, y: np.ndarray, kind: str) -> float:
    """AUC of ``scores`` for binary ``y`` (NaN with one class), Pearson r for continuous ``y``."""
    if kind == "binary":
        if np.unique(y).size < 2:
            return float("nan")
        return auc(torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(scores, dtype=torch.float64))
    if scores.size < 3 or np.std(scores) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(scores, y)[0, 1])


@dataclass(frozen=True)
class ProbeResult(FrameResult):
    """A cross-validated probe of one group.

    Attributes
    ----------
    score : float
        Pooled out-of-fold AUC (binary labels) or ``R^2`` (continuous labels,
        ``1 - SS_res / SS_tot`` of the out-of-fold predictions).
    metric : str
        ``"auc"`` or ``"r2"``.
    oof : numpy.ndarray
        ``(n,)`` out-of-fold probe scores (decision values or predictions).
    fold_scores : numpy.ndarray
        ``(n_folds,)`` the metric on each held-out fold.
    """

    score: float
    metric: str
    oof: np.ndarray
    fold_scores: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: one row per fold, columns ``fold`` (0-based) and the metric (``auc`` or ``r2``)."""
        return pd.DataFrame({"fold": np.arange(len(self.fold_scores)), self.metric: self.fold_scores})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: ``score``, ``metric``, ``fold_scores`` and the ``oof`` scores (NaN as ``None``)."""
        return jsonable({"score": self.score, "metric": self.metric, "fold_scores": self.fold_scores,
                         "oof": self.oof}, where="probe")

    def _html_title(self) -> str:
        return f"ProbeResult: pooled out-of-fold {self.metric} {self.score:.4g}"


def cross_val_probe(
    X: np.ndarray,
    y: np.ndarray,
    *,
    probe: str = "quadratic",
    n_folds: int = 5,
    random_state: RandomState = 0,
) -> ProbeResult:
    """Fit ``probe`` on ``n_folds - 1`` folds, score the held-out fold, for every fold.

    Parameters
    ----------
    X : ndarray ``(n, k)`` or ``(n, T, k)``
        One group's features (see :func:`probe_inputs`).
    y : ndarray ``(n,)``
        Binary 0/1 or continuous labels (:func:`label_kind`).
    probe : {"quadratic", "linear", "mlp"}
    n_folds : int
        ``>= 2``; folds are stratified for binary labels, shuffled with a seed drawn from ``random_state``.
    random_state : int, Generator or None

    Returns
    -------
    ProbeResult
    """
    probe = check_option(probe, name="probe", options=PROBES)
    n_folds = check_int(n_folds, name="n_folds", minimum=2)
    rng = check_random_state(random_state)
    y = np.asarray(y, dtype=np.float64)
    kind = label_kind(y)
    z = probe_inputs(X)
    if kind == "binary" and min((y == 1).sum(), (y == 0).sum()) < n_folds:
        raise ValueError(f"y needs at least n_folds={n_folds} rows of each class for the probe")
    if y.size < 2 * n_folds:
        raise ValueError(f"the probe needs at least 2 * n_folds = {2 * n_folds} rows, got {y.size}")
    seed = int(rng.integers(0, 2**31 - 1))
    split = (StratifiedKFold if kind == "binary" else KFold)(n_splits=n_folds, shuffle=True, random_state=seed)
    oof = np.empty(y.size)
    folds = []
    for train_idx, test_idx in split.split(z, y):
        est = fit_probe(probe_estimator(probe, kind, seed), z[train_idx], y[train_idx])
        oof[test_idx] = probe_scores(est, z[test_idx], kind)
        folds.append(_fold_metric(oof[test_idx], y[test_idx], kind))
    score = _fold_metric(oof, y, kind)
    return ProbeResult(score, "auc" if kind == "binary" else "r2", oof, np.asarray(folds))


def _fold_metric(pred: np.ndarray, y: np.ndarray, kind: str) -> float:
    if kind == "binary":
        return relation(pred, y, kind)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return float("nan") if ss_tot == 0 else 1.0 - float(((y - pred) ** 2).sum()) / ss_tot


def auc_standard_error(a: float, n_pos: int, n_neg: int) -> float:
    """Hanley-McNeil (1982) standard error of an AUC ``a`` from ``n_pos`` positives and ``n_neg`` negatives."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return float(np.sqrt(max(var, 0.0)))


def relation_by_environment(scores: np.ndarray, y: np.ndarray, environments: np.ndarray) -> pd.DataFrame:
    """Measure the score-label relation inside each environment (see the module docstring).

    Returns
    -------
    DataFrame, one row per environment (sorted): ``environment``, ``n``,
    ``relation`` (AUC or Pearson r; NaN where undefined: one class, fewer
    than 4 rows or constant scores), ``std_error`` (Hanley-McNeil for AUC,
    Fisher ``1 / sqrt(n - 3)`` on the ``atanh`` scale for r).
    """
    y = np.asarray(y, dtype=np.float64)
    kind = label_kind(y)
    rows = []
    for env in np.unique(environments):
        m = environments == env
        ye, se_ = y[m], scores[m]
        rel = relation(se_, ye, kind) if m.sum() >= 4 else float("nan")
        if np.isnan(rel):
            err = float("nan")
        elif kind == "binary":
            err = auc_standard_error(rel, int((ye == 1).sum()), int((ye == 0).sum()))
        else:
            err = 1.0 / np.sqrt(m.sum() - 3)
        rows.append({"environment": env, "n": int(m.sum()), "relation": rel, "std_error": err})
    return pd.DataFrame(rows, columns=["environment", "n", "relation", "std_error"])


def heterogeneity(per_env: pd.DataFrame, kind: str) -> tuple[float, int, float]:
    """Cochran's ``Q``, its degrees of freedom ``E - 1`` and the ``chi2`` p-value over the defined environments.

    ``Q`` and the p-value are NaN with fewer than two defined environments.
    """
    ok = per_env.dropna(subset=["relation", "std_error"])
    if len(ok) < 2:
        return float("nan"), max(len(ok) - 1, 0), float("nan")
    t = ok["relation"].to_numpy(dtype=np.float64)
    if kind == "continuous":
        t = np.arctanh(np.clip(t, -0.999999, 0.999999))
    w = 1.0 / np.maximum(ok["std_error"].to_numpy(dtype=np.float64), MIN_SE) ** 2
    t_bar = float((w * t).sum() / w.sum())
    q = float((w * (t - t_bar) ** 2).sum())
    df = len(ok) - 1
    return q, df, float(stats.chi2.sf(q, df))
