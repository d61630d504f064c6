"""``detect_spurious``: which feature groups a model relies on, and whether their relation to the label holds.

The superposition and spurious-correlation notebook's ``AutomatedDetector``/``EnhancedDetector`` measured "stability" by
correlating the model's predictions on different bootstrap resamples (which
says nothing about the group-label relation) and wrote the permuted group
into the wrong columns. Here every quantity has one definition:

* **reliance** of the model on group ``G``: permutation importance (the
  metric's degradation when ``G``'s columns are shuffled jointly across
  rows, mean and standard error over ``n_repeats``) and ablation (mean
  ``|f(x) - f(x with G at the baseline)|`` with its standard error over rows),
  both from :func:`featurelens.attribute`;
* **predictive power of G alone**: a cross-validated probe
  (:func:`~featurelens.reliance._probe.cross_val_probe`);
* **stability of the G-label relation**: the pooled out-of-fold probe scores'
  AUC (or Pearson r) per environment, their spread ``max - min`` and
  Cochran's heterogeneity test;
* **class-conditional shift**: the 1-Wasserstein distance between the two
  classes' values of each feature, in units of that feature's standard deviation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from featurelens._protocol import FrameResult, jsonable
from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_random_state,
)
from featurelens.attribution import Explanation, attribute
from featurelens.data import FeatureSpec, as_tensor, resolve_names
from featurelens.reliance._probe import (
    cross_val_probe,
    fit_probe,
    heterogeneity,
    label_kind,
    probe_estimator,
    probe_inputs,
    probe_scores,
    relation,
    relation_by_environment,
)

ENVIRONMENT_MODES = ("windows", "bootstrap")


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds of :func:`detect_spurious` (calibration: docs/reliance_detection.md).

    Attributes
    ----------
    min_reliance : float
        ``relied_upon`` iff permutation importance ``mean - z * std_error > min_reliance``
        (in the units of the metric: AUC points by default for binary labels).
    z : float
        Multiplier of the standard error in ``relied_upon``.
    min_spread : float
        ``unstable`` needs the relation's *excess spread* ``>= min_spread``:
        the spread across environments (``max_e - min_e`` of the
        per-environment AUC or r) times Higgins' ``I^2 = max(0, (Q - df) / Q)``,
        the share of the variation that sampling noise does not explain
        (Higgins & Thompson 2002). For bootstrap resamples: the 2.5-97.5 %
        quantile range of the per-resample relation (``I^2`` taken as 1).
    alpha : float
        ... and, with environments or time windows, Cochran's heterogeneity
        p-value ``< alpha / n_groups`` (Bonferroni over the groups).
    """

    min_reliance: float = 0.01
    z: float = 2.0
    min_spread: float = 0.08
    alpha: float = 0.01

    def __post_init__(self) -> None:
        check_float(self.min_reliance, name="min_reliance", low=0.0, inclusive=(False, True))
        check_float(self.z, name="z", low=0.0)
        check_float(self.min_spread, name="min_spread", low=0.0, inclusive=(False, True))
        check_float(self.alpha, name="alpha", low=0.0, high=1.0, inclusive=(False, True))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def verdict_of(row: pd.Series) -> str:
    """``"spurious"``, ``"relied upon"``, ``"unstable"`` or ``"neither"`` from a detection row's flags."""
    if bool(row.get("spurious", False)):
        return "spurious"
    if bool(row.get("relied_upon", False)):
        return "relied upon"
    if bool(row.get("unstable", False)):
        return "unstable"
    return "neither"



@dataclass(frozen=True, eq=False)
class SpuriousReport(FrameResult):
    """Result of :func:`detect_spurious`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per group (columns in docs/reliance_detection.md): reliance by
        permutation and ablation with standard errors, probe score alone,
        relation per environment (min, max, spread, heterogeneity ``Q`` and
        p-value), Wasserstein shift (mean and max over the group's features),
        ``score`` and the flags ``relied_upon``, ``unstable``, ``spurious``.
    evidence : dict
        Per group: ``permutation_scores`` (per repeat), ``relation_by_environment``
        (records ``environment, n, relation, std_error``), ``wasserstein``
        (feature -> distance) and ``reasons`` (sentences stating which
        thresholds the group passed or failed).
    thresholds : Thresholds
    environments : str
        ``"user"``, ``"windows"`` or ``"bootstrap"``.
    metric : str
        Metric of the permutation importance.
    relation_metric : str
        ``"auc"`` (binary labels) or ``"r"`` (continuous).
    """

    table: pd.DataFrame
    evidence: dict[str, dict[str, Any]] = field(repr=False)
    thresholds: Thresholds
    environments: str
    metric: str
    relation_metric: str

    @property
    def flagged(self) -> list[str]:
        """Groups with the ``spurious`` verdict."""
        return list(self.table.loc[self.table["spurious"], "group"])

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: :attr:`table` (a copy), one row per group."""
        return self.table.copy()

    def _html_title(self) -> str:
        return f"SpuriousReport: flagged {', '.join(map(str, self.flagged)) or 'none'}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable content (table records, evidence, thresholds)."""
        return {
            "table": jsonable(self.table.to_dict(orient="records"), where="table"),
            "evidence": jsonable(self.evidence, where="evidence"),
            "thresholds": self.thresholds.to_dict(),
            "environments": self.environments,
            "metric": self.metric,
            "relation_metric": self.relation_metric,
        }


def wasserstein_shift(x: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """Per-feature 1-Wasserstein distance between the classes, in units of the feature's std.

    ``x`` is ``(n, d)`` or ``(n, T, d)`` (all time steps of a row count as
    that row's values). Classes: ``y == 1`` vs ``y == 0`` for binary labels,
    ``y > median`` vs ``y <= median`` for continuous ones. A constant feature gives 0.
    """
    hi = y == 1 if kind == "binary" else y > np.median(y)
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape[-1])
    for j in range(x.shape[-1]):
        col = x[..., j]
        sd = col.std()
        if sd > 0 and hi.any() and (~hi).any():
            out[j] = wasserstein_distance(col[hi].ravel(), col[~hi].ravel()) / sd
    return out


def row_labels(values: Any, n: int, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One label per row -> integer codes ``(n,)`` and the sorted distinct labels.

    Labels that are not numbers or strings (dates, objects) are kept as their ``str``.
    """
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    labels = np.asarray(values)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must hold one label per row ({n}), got shape {labels.shape}")
    codes, uniques = pd.factorize(labels, sort=True)
    if (codes < 0).any():
        raise ValueError(f"{name} holds missing values (NaN/None)")
    uniques = np.asarray(uniques)
    if uniques.dtype == object:
        uniques = np.array([u if isinstance(u, (str, int, float)) else str(u) for u in uniques], dtype=object)
    return codes, uniques


def row_targets(y: Any, n: int) -> np.ndarray:
    """Labels ``(n,)`` as float64 NumPy, one per row of ``X``."""
    yt, _ = as_tensor(y, name="y", dtype=torch.float64, ndims=(1,))
    if yt.shape[0] != n:
        raise ValueError(f"y has {yt.shape[0]} rows but X has {n}")
    return yt.numpy()


def group_spec(
    groups: Any, n_features: int, data_names: list[str] | None, feature_names: Any, *, purpose: str
) -> FeatureSpec:
    """Build a FeatureSpec from ``groups`` (required; ``purpose`` says why) over the ``n_features`` columns of ``X``."""
    if groups is None:
        raise ValueError(f"groups is required: {purpose}")
    spec = groups if isinstance(groups, FeatureSpec) else FeatureSpec(
        resolve_names(n_features, data_names=data_names, feature_names=feature_names), groups
    )
    if spec.n_features != n_features:
        raise ValueError(f"groups (a FeatureSpec) describes {spec.n_features} features but X has {n_features}")
    return spec


def _environment_labels(
    environments: Any, n: int, x_dim: int, n_windows: int
) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """Mode, per-row environment codes and the environment names."""
    if environments is None:
        environments = "windows" if x_dim == 3 else "bootstrap"
    if isinstance(environments, str):
        if environments not in ENVIRONMENT_MODES:
            raise ValueError(
                f"environments must be None, {', '.join(map(repr, ENVIRONMENT_MODES))} or one label per row; "
                f"got {environments!r}"
            )
        if environments == "windows":
            return "windows", np.arange(n) * n_windows // n, np.arange(n_windows)
        return "bootstrap", None, None
    codes, uniques = row_labels(environments, n, name="environments")
    if len(uniques) < 2:
        raise ValueError("environments must name at least 2 different environments")
    return "user", codes, uniques


def _bootstrap_relation(
    xg: np.ndarray, y: np.ndarray, kind: str, probe: str, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """Relation of a probe fitted on each bootstrap resample, scored on its out-of-bag rows."""
    z = probe_inputs(xg)
    n = y.size
    out = np.full(n_bootstrap, np.nan)
    for b in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        oob = np.setdiff1d(np.arange(n), idx)
        if oob.size < 4 or np.unique(y[idx]).size < 2:
            continue
        est = fit_probe(probe_estimator(probe, kind, int(rng.integers(0, 2**31 - 1))), z[idx], y[idx])
        out[b] = relation(probe_scores(est, z[oob], kind), y[oob], kind)
    return out


@dataclass(frozen=True)
class _Stability:
    """How a group's relation to the label varies over environments (or bootstrap resamples)."""

    per_env: pd.DataFrame
    q: float
    df: int
    p: float
    rel_min: float
    rel_max: float
    i2: float

    @property
    def spread(self) -> float:
        return self.rel_max - self.rel_min

    @property
    def excess(self) -> float:
        return self.spread * self.i2 if np.isfinite(self.spread) else 0.0

    def columns(self) -> dict[str, float]:
        return {"relation_min": self.rel_min, "relation_max": self.rel_max, "relation_spread": self.spread,
                "heterogeneity_q": self.q, "heterogeneity_df": self.df, "heterogeneity_p": self.p,
                "heterogeneity_i2": self.i2, "excess_spread": self.excess}


def _stability(
    oof: np.ndarray, xg: np.ndarray, y: np.ndarray, kind: str, *, mode: str, env: np.ndarray | None,
    env_names: np.ndarray | None, probe: str, n_bootstrap: int, rng: np.random.Generator,
) -> _Stability:
    """Relation per environment from the out-of-fold probe scores ``oof``, or per bootstrap resample."""
    if mode == "bootstrap":
        boot = _bootstrap_relation(xg, y, kind, probe, n_bootstrap, rng)
        ok = boot[~np.isnan(boot)]
        lo, hi = (np.quantile(ok, [0.025, 0.975]) if ok.size else (np.nan, np.nan))
        per_env = pd.DataFrame({"environment": np.arange(n_bootstrap), "relation": boot})
        return _Stability(per_env, float("nan"), 0, float("nan"), float(lo), float(hi), 1.0)
    per_env = relation_by_environment(oof, y, env)
    per_env["environment"] = env_names[per_env["environment"].to_numpy(dtype=np.int64)]
    q, df, p = heterogeneity(per_env, kind)
    i2 = max(0.0, (q - df) / q) if np.isfinite(q) and q > 0 else 0.0
    return _Stability(per_env, q, df, p, float(per_env["relation"].min()), float(per_env["relation"].max()), i2)


def _verdicts(
    reliance: float, reliance_se: float, st: _Stability, mode: str, n_groups: int, t: Thresholds
) -> dict[str, float | bool]:
    """``score``, ``relied_upon``, ``unstable`` and ``spurious`` of one group (see :func:`detect_spurious`)."""
    relied = bool(reliance - t.z * reliance_se > t.min_reliance)
    heterogeneous = mode == "bootstrap" or (np.isfinite(st.p) and st.p < t.alpha / n_groups)
    unstable = bool(st.excess >= t.min_spread and heterogeneous)
    score = min(max(reliance, 0.0) / t.min_reliance, st.excess / t.min_spread)
    return {"score": score, "relied_upon": relied, "unstable": unstable, "spurious": relied and unstable}


def _importances(
    model: nn.Module, X: Any, y: np.ndarray, *, metric: Any, n_repeats: int, baselines: Any,
    common: dict[str, Any], rng: np.random.Generator,
) -> tuple[Explanation, Explanation]:
    """Permutation importance (metric degradation on ``y``) and ablation of every group."""
    perm = attribute(model, X, method="permutation", y=y, metric=metric, n_repeats=n_repeats,
                     random_state=rng, **common)
    background = X if isinstance(baselines, str) and baselines in ("mean", "median") else None
    abl_opts = {"background": background} if background is not None else {}
    abl = attribute(model, X, method="ablation", baselines=baselines, **common, **abl_opts)
    return perm, abl


def detect_spurious(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    groups: Mapping[str, list] | FeatureSpec,
    feature_names: list[str] | None = None,
    environments: Any = None,
    n_windows: int = 4,
    n_bootstrap: int = 20,
    probe: str = "quadratic",
    n_folds: int = 5,
    n_repeats: int = 5,
    metric: Any = None,
    baselines: Any = "mean",
    target: Any = None,
    link: str | None = None,
    output: int | None = None,
    thresholds: Thresholds | None = None,
    batch_size: int | None = None,
    random_state: RandomState = 0,
) -> SpuriousReport:
    """Detect groups that a model relies on although their relation to the label is unstable.

    Parameters
    ----------
    model : nn.Module
        Trained model; left as it was found (mode, flags, weights).
    X : ndarray, tensor or DataFrame ``(n, d)`` or ``(n, T, d)``
        Labelled data (held-out data is best: reliance is measured on it).
    y : array-like ``(n,)``
        Binary 0/1 labels (relations are AUCs) or continuous ones (Pearson r, probe ``R^2``).
    groups : mapping or FeatureSpec
        The feature groups to judge (may overlap; at least one).
    feature_names : list of str, optional
        Names of the ``d`` columns (default: DataFrame columns, else ``x0..``).
    environments : None, "windows", "bootstrap" or array-like ``(n,)``
        Where the group-label relation must hold. An array gives one
        environment label per row (user-declared). ``"windows"``:
        ``n_windows`` contiguous blocks of rows (rows in time order). ``"bootstrap"``:
        ``n_bootstrap`` resamples, each probe refitted on the resample and
        scored on its out-of-bag rows (this measures sampling variability, not
        a change of environment). ``None``: ``"windows"`` for sequence inputs,
        ``"bootstrap"`` otherwise.
    n_windows, n_bootstrap : int
        Numbers of time windows / bootstrap resamples.
    probe : {"quadratic", "linear", "mlp"}
        Probe of the group alone (see :mod:`featurelens.reliance._probe`).
    n_folds : int
        Cross-validation folds of the probe.
    n_repeats : int
        Permutation repeats (``>= 2``, for the standard error).
    metric : str or callable, optional
        Metric of the permutation importance; default as in ``attribute``
        (``"auc"`` for 0/1 labels and a logit/score output, ``"log_loss"``
        with a probability link, ``"mse"`` otherwise).
    baselines : ablation baseline
        Default ``"mean"``: each column's mean over ``X``.
    target, link, output
        Output selection, as in :func:`featurelens.attribute`.
    thresholds : Thresholds, optional
        Default ``Thresholds()`` (calibrated on :func:`make_reliance_suite`).
    batch_size : int, optional
        Rows per model call.
    random_state : int, Generator or None
        Seeds permutations, probe folds and bootstrap resamples.

    Returns
    -------
    SpuriousReport

    Notes
    -----
    Verdicts: ``relied_upon`` = permutation importance significantly above
    ``min_reliance``; ``unstable`` = excess spread ``>= min_spread`` and
    (with environments or windows) heterogeneity p ``< alpha / n_groups``;
    ``spurious`` = both. The continuous "spurious and relied upon" score is
    ``min(max(reliance, 0) / min_reliance, excess_spread / min_spread)``: at
    least 1 exactly when both effect sizes pass their thresholds, and limited
    by the weaker of the two (its AUROC on the validation suite is in
    docs/reliance_detection.md).
    """
    thresholds = Thresholds() if thresholds is None else thresholds
    if not isinstance(thresholds, Thresholds):
        raise TypeError(f"thresholds must be a Thresholds, got {type(thresholds).__name__}")
    n_windows = check_int(n_windows, name="n_windows", minimum=2)
    n_bootstrap = check_int(n_bootstrap, name="n_bootstrap", minimum=2)
    n_repeats = check_int(n_repeats, name="n_repeats", minimum=2)
    rng = check_random_state(random_state)
    xt, data_names = as_tensor(X, name="X", dtype=torch.float64)
    n = xt.shape[0]
    y_np = row_targets(y, n)
    kind = label_kind(y_np)
    spec = group_spec(groups, xt.shape[-1], data_names, feature_names,
                      purpose="detect_spurious judges named feature groups")
    if not spec.has_groups:
        raise ValueError("groups must name at least one feature group")
    mode, env, env_names = _environment_labels(environments, n, xt.dim(), n_windows)
    x_np = xt.numpy()

    common = {"groups": spec, "feature_names": list(spec.names), "target": target, "link": link,
              "output": output, "batch_size": batch_size}
    perm, abl = _importances(model, X, y_np, metric=metric, n_repeats=n_repeats, baselines=baselines,
                             common=common, rng=rng)
    importance = pd.DataFrame({"perm": perm.importance(), "perm_se": perm.importance_std_error(),
                               "abl": abl.importance(), "abl_se": abl.importance_std_error()})
    shift = wasserstein_shift(x_np, y_np, kind)

    rows, evidence = [], {}
    n_groups = len(spec.group_names)
    for name, cols in spec.groups.items():
        row, evidence[name] = _judge_group(
            name, list(cols), x_np, y_np, kind, spec=spec, perm=perm, importance=importance, shift=shift, probe=probe,
            n_folds=n_folds, n_bootstrap=n_bootstrap, mode=mode, env=env, env_names=env_names,
            n_groups=n_groups, thresholds=thresholds, rng=rng,
        )
        rows.append(row)
    return SpuriousReport(
        table=pd.DataFrame(rows),
        evidence=evidence,
        thresholds=thresholds,
        environments=mode,
        metric=str(perm.params.get("metric")),
        relation_metric="auc" if kind == "binary" else "r",
    )


def _judge_group(name: str, cols: list[int], x_np: np.ndarray, y_np: np.ndarray, kind: str, *, spec: FeatureSpec,
                 perm: Explanation, importance: pd.DataFrame, shift: np.ndarray, probe: str, n_folds: int,
                 n_bootstrap: int,
                 mode: str, env: Any, env_names: Any, n_groups: int, thresholds: Thresholds,
                 rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return one group's row of the detection table and its evidence (probe, stability, verdicts).

    ``importance`` holds the permutation and ablation importance per group (columns ``perm``,
    ``perm_se``, ``abl``, ``abl_se``), computed once for all groups.
    """
    xg = x_np[..., cols]
    pr = cross_val_probe(xg, y_np, probe=probe, n_folds=n_folds, random_state=rng)
    st = _stability(pr.oof, xg, y_np, kind, mode=mode, env=env, env_names=env_names, probe=probe,
                    n_bootstrap=n_bootstrap, rng=rng)
    reliance, reliance_se = float(importance.at[name, "perm"]), float(importance.at[name, "perm_se"])
    w = shift[cols]
    row = {
        "group": name,
        "n_features": len(cols),
        "reliance_permutation": reliance,
        "reliance_permutation_se": reliance_se,
        "reliance_ablation": float(importance.at[name, "abl"]),
        "reliance_ablation_se": float(importance.at[name, "abl_se"]),
        "probe_score": pr.score,
        **st.columns(),
        "wasserstein_mean": float(w.mean()),
        "wasserstein_max": float(w.max()),
        **_verdicts(reliance, reliance_se, st, mode, n_groups, thresholds),
    }
    evidence = {
        "permutation_scores": perm.scores[:, perm.names.index(name)].tolist(),
        "probe_fold_scores": pr.fold_scores.tolist(),
        "relation_by_environment": st.per_env.to_dict(orient="records"),
        "wasserstein": {spec.names[c]: float(shift[c]) for c in cols},
        "reasons": _reasons(reliance, reliance_se, st.excess, st.p, mode, n_groups, thresholds),
    }
    return row, evidence


def _reasons(
    reliance: float, se: float, excess: float, p: float, mode: str, n_groups: int, t: Thresholds
) -> list[str]:
    lower = reliance - t.z * se
    where = "bootstrap resamples (95 % range)" if mode == "bootstrap" else f"{mode} environments (spread x I^2)"
    out = [
        f"permutation importance {reliance:.4g} (lower bound {lower:.4g} = mean - {t.z:g} SE) "
        f"{'>' if lower > t.min_reliance else '<='} min_reliance {t.min_reliance:g}",
        f"excess relation spread across {where} {excess:.4g} "
        f"{'>=' if excess >= t.min_spread else '<'} min_spread {t.min_spread:g}",
    ]
    if mode != "bootstrap":
        cut = t.alpha / n_groups
        verdict = "<" if np.isfinite(p) and p < cut else ">="
        out.append(f"heterogeneity p-value {p:.3g} {verdict} alpha / n_groups = {cut:.3g}")
    return out
