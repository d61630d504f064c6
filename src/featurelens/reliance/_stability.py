"""Group importance over time windows and per subgroup; model metrics per subgroup.

The superposition and spurious-correlation notebook's finance analysis (``temporal_stability``) computed an accuracy
drop per window of 100 rows and summarised it by a standard deviation; its
healthcare analysis compared AUC across insurance types. These functions
compute the same quantities with one definition each, on top of
:func:`featurelens.attribute`:

* importance of group ``G`` on a set of rows is the attribution method's
  ``Explanation.importance()`` (``"permutation"`` with labels: the metric's
  degradation, mean over repeats; ``"ablation"`` or permutation without
  labels: mean ``|Δ output|`` over rows), with its standard error;
* over windows, the **trend** is the ordinary least-squares slope of the
  importance against the window index (per window, with its standard error
  and two-sided p-value, ``scipy.stats.linregress``) and the **dispersion**
  the standard deviation across windows (``ddof=1``) and its ratio to the
  absolute mean (coefficient of variation).

With ``baselines="mean"``/``"median"`` the ablation baseline is computed once
from all rows, so every window or subgroup is ablated to the same reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from featurelens._metrics import METRICS, get_metric
from featurelens._protocol import FrameResult, records
from featurelens._validation import RandomState, check_int, check_option, check_random_state
from featurelens.attribution import attribute, build_problem
from featurelens.data import FeatureSpec, as_tensor
from featurelens.models import preserve_model
from featurelens.reliance._detect import group_spec, row_labels, row_targets

METHODS = ("permutation", "ablation")


@dataclass(frozen=True, eq=False)
class WindowImportance(FrameResult):
    """Result of :func:`importance_over_windows`.

    Attributes
    ----------
    table : DataFrame
        One row per (window, group): ``window`` (0-based), ``start``, ``stop``
        (row range ``[start, stop)``), ``group``, ``importance``, ``std_error``.
    summary : DataFrame
        One row per group: ``group``, ``n_windows``, ``mean``, ``std``
        (dispersion, ``ddof=1``), ``cv`` (``std / |mean|``, NaN for a zero
        mean), ``trend`` (OLS slope per window), ``trend_se``, ``trend_p``.
    """

    table: pd.DataFrame
    summary: pd.DataFrame = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: :attr:`table` (a copy), one row per (window, group)."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: ``table`` and ``summary`` as records."""
        return {"table": records(self.table, where="windows"), "summary": records(self.summary, where="summary")}


def _setup(X: Any, y: Any, groups: Any, feature_names: Any) -> tuple[torch.Tensor, np.ndarray | None, FeatureSpec]:
    xt, data_names = as_tensor(X, name="X")
    spec = group_spec(groups, xt.shape[-1], data_names, feature_names,
                      purpose="importance is reported per feature group")
    return xt, None if y is None else row_targets(y, xt.shape[0]), spec


def _importance_rows(
    model: nn.Module, x: torch.Tensor, y: np.ndarray | None, spec: FeatureSpec, method: str,
    options: dict[str, Any], parts: Sequence[tuple[np.ndarray | slice, str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Compute the importance of every group on each part ``(rows, where, columns)``: one record per (part, group)."""
    records = []
    for rows, where, columns in parts:
        opts = dict(options)
        if method == "permutation" and y is not None:
            opts["y"] = y[rows]
        elif method == "permutation":
            opts.pop("metric", None)
        x_rows = x[rows] if isinstance(rows, slice) else x[torch.as_tensor(rows)]
        try:
            exp = attribute(model, x_rows, method=method, groups=spec, **opts)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        imp, se = exp.importance(), exp.importance_std_error()
        records += [{**columns, "group": gname, "importance": float(imp[gname]), "std_error": float(se[gname])}
                    for gname in spec.group_names]
    return records


def _options(
    method: str, X: torch.Tensor, metric: Any, n_repeats: int, baselines: Any, target: Any, link: Any,
    output: Any, batch_size: Any, rng: np.random.Generator,
) -> dict[str, Any]:
    common = {"target": target, "link": link, "output": output, "batch_size": batch_size}
    if method == "permutation":
        return {**common, "metric": metric, "n_repeats": n_repeats, "random_state": rng}
    if metric is not None:
        raise ValueError("metric= applies to method='permutation' only")
    opts = {**common, "baselines": baselines}
    if isinstance(baselines, str) and baselines in ("mean", "median"):
        opts["background"] = X
    return opts


def importance_over_windows(
    model: nn.Module,
    X: Any,
    y: Any = None,
    *,
    groups: Mapping[str, list] | FeatureSpec,
    window: int,
    stride: int | None = None,
    method: str = "permutation",
    metric: Any = None,
    n_repeats: int = 5,
    baselines: Any = "mean",
    target: Any = None,
    link: str | None = None,
    output: int | None = None,
    feature_names: list[str] | None = None,
    batch_size: int | None = None,
    random_state: RandomState = 0,
) -> WindowImportance:
    """Group importance on consecutive windows of rows (rows in time order), with trend and dispersion.

    Parameters
    ----------
    model : nn.Module
    X : ``(n, d)`` or ``(n, T, d)``
        Rows in time order (e.g. sliding windows of a market series).
    y : array-like ``(n,)``, optional
        Labels; with ``method="permutation"`` importance is the metric's
        degradation, without them the mean ``|Δ output|``.
    groups : mapping or FeatureSpec
    window : int
        Rows per window (``>= 2``).
    stride : int, optional
        Start-to-start distance (default ``window``: non-overlapping). Only
        complete windows are used; at least 2 are needed.
    method : {"permutation", "ablation"}
    metric, n_repeats
        Permutation options (see ``attribute``).
    baselines : ablation baseline (default ``"mean"`` over all rows).
    target, link, output, feature_names, batch_size
        As for :func:`featurelens.attribute`.
    random_state : int, Generator or None
        Seeds the permutations.

    Returns
    -------
    WindowImportance
    """
    method = check_option(method, name="method", options=METHODS)
    window = check_int(window, name="window", minimum=2)
    stride = window if stride is None else check_int(stride, name="stride", minimum=1)
    n_repeats = check_int(n_repeats, name="n_repeats", minimum=1)
    rng = check_random_state(random_state)
    xt, y_np, spec = _setup(X, y, groups, feature_names)
    n = xt.shape[0]
    starts = list(range(0, n - window + 1, stride))
    if len(starts) < 2:
        raise ValueError(f"window={window} and stride={stride} give {len(starts)} complete window(s) of {n} rows; "
                         "need >= 2")
    opts = _options(method, xt, metric, n_repeats, baselines, target, link, output, batch_size, rng)
    parts = [(slice(start, start + window), f"window {w} (rows {start}..{start + window - 1})",
              {"window": w, "start": start, "stop": start + window}) for w, start in enumerate(starts)]
    table = pd.DataFrame(_importance_rows(model, xt, y_np, spec, method, opts, parts))
    summary = []
    for gname in spec.group_names:
        v = table.loc[table["group"] == gname, "importance"].to_numpy()
        mean, std = float(v.mean()), float(v.std(ddof=1))
        fit = stats.linregress(np.arange(v.size, dtype=np.float64), v)
        summary.append({
            "group": gname, "n_windows": int(v.size), "mean": mean, "std": std,
            "cv": std / abs(mean) if mean != 0 else float("nan"),
            "trend": float(fit.slope), "trend_se": float(fit.stderr), "trend_p": float(fit.pvalue),
        })
    return WindowImportance(table, pd.DataFrame(summary))


def _subgroup_labels(subgroups: Any, n: int, min_size: int) -> tuple[np.ndarray, list[tuple[int, Any]]]:
    codes, uniques = row_labels(subgroups, n, name="subgroups")
    sizes = np.bincount(codes, minlength=len(uniques))
    keep = [k for k in range(len(uniques)) if sizes[k] >= min_size]
    if not keep:
        raise ValueError(f"no subgroup has at least min_size={min_size} rows (sizes {sizes.tolist()})")
    return codes, [(k, uniques[k]) for k in keep]


def importance_by_subgroup(
    model: nn.Module,
    X: Any,
    y: Any = None,
    *,
    groups: Mapping[str, list] | FeatureSpec,
    subgroups: Sequence[Any] | np.ndarray | pd.Series,
    method: str = "permutation",
    metric: Any = None,
    n_repeats: int = 5,
    baselines: Any = "mean",
    min_size: int = 10,
    target: Any = None,
    link: str | None = None,
    output: int | None = None,
    feature_names: list[str] | None = None,
    batch_size: int | None = None,
    random_state: RandomState = 0,
) -> pd.DataFrame:
    """Group importance inside each subgroup of rows (e.g. per insurance type).

    Parameters are those of :func:`importance_over_windows`, with
    ``subgroups`` (one label per row) instead of windows; subgroups with fewer
    than ``min_size`` rows are skipped.

    Returns
    -------
    DataFrame with columns ``subgroup``, ``n``, ``group``, ``importance``, ``std_error``.
    """
    method = check_option(method, name="method", options=METHODS)
    min_size = check_int(min_size, name="min_size", minimum=2)
    n_repeats = check_int(n_repeats, name="n_repeats", minimum=1)
    rng = check_random_state(random_state)
    xt, y_np, spec = _setup(X, y, groups, feature_names)
    codes, kept = _subgroup_labels(subgroups, xt.shape[0], min_size)
    opts = _options(method, xt, metric, n_repeats, baselines, target, link, output, batch_size, rng)
    parts = []
    for k, label in kept:
        idx = np.flatnonzero(codes == k)
        parts.append((idx, f"subgroup {label!r}", {"subgroup": label, "n": int(idx.size)}))
    return pd.DataFrame(_importance_rows(model, xt, y_np, spec, method, opts, parts))


def metrics_by_subgroup(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    subgroups: Sequence[Any] | np.ndarray | pd.Series,
    metrics: Sequence[str] = ("auc",),
    min_size: int = 10,
    target: Any = None,
    link: str | None = None,
    output: int | None = None,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Compute model metrics per subgroup, plus all rows together.

    Like the superposition and spurious-correlation notebook's AUC by insurance type.

    Parameters
    ----------
    model : nn.Module
    X : ``(n, d)`` or ``(n, T, d)``
    y : array-like ``(n,)``
    subgroups : one label per row
    metrics : sequence of str
        Names from ``featurelens._metrics.METRICS`` (``"auc"``, ``"accuracy"``,
        ``"log_loss"``, ``"mse"``, ``"mae"``). Accuracy and log loss need
        probabilities: pass ``link="sigmoid"`` for a logit model.
    min_size : int
        Subgroups with fewer rows are skipped.
    target, link, output, batch_size
        Output selection as for :func:`featurelens.attribute`.

    Returns
    -------
    DataFrame with columns ``subgroup`` (``"(all)"`` for the last row), ``n``,
    ``positive_rate`` (share of ``y == 1``; NaN unless labels are 0/1),
    ``mean_output`` and one column per metric (NaN where undefined, e.g. AUC
    in a subgroup with one class).
    """
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics:
        raise TypeError("metrics must be a non-empty sequence of metric names")
    resolved = [get_metric(check_option(m, name="metrics[i]", options=METRICS))
                for m in metrics]
    min_size = check_int(min_size, name="min_size", minimum=2)
    xt, _ = as_tensor(X, name="X")
    y_np = row_targets(y, xt.shape[0])
    codes, kept = _subgroup_labels(subgroups, xt.shape[0], min_size)
    with preserve_model(model, eval_mode=True):
        problem = build_problem(model, xt, groups=None, feature_names=None, target=target, output=output,
                                link=link, batch_size=batch_size, progress=False)
        pred = problem.forward_all().detach().cpu().to(torch.float64)
    if pred.dim() != 1:
        raise ValueError("metrics_by_subgroup needs one output per row; pick one with target=<int>")
    yt = torch.as_tensor(y_np)
    binary = bool(np.isin(y_np, (0.0, 1.0)).all())
    parts = [(label, np.flatnonzero(codes == k)) for k, label in kept] + [("(all)", np.arange(y_np.size))]
    rows = []
    for label, idx in parts:
        ii = torch.as_tensor(idx)
        row: dict[str, Any] = {"subgroup": label, "n": int(idx.size),
                               "positive_rate": float(y_np[idx].mean()) if binary else float("nan"),
                               "mean_output": float(pred[ii].mean())}
        for m in resolved:
            if m.name == "auc" and np.unique(y_np[idx]).size < 2:
                row[m.name] = float("nan")
            else:
                row[m.name] = m.fn(yt[ii], pred[ii])
        rows.append(row)
    return pd.DataFrame(rows)
