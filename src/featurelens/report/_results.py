"""Input checks, the numbers of an attribution report, and ``results.json``.

``results.json`` holds every number the report shows. Schema (format
``"featurelens.report"``, version 1; see also ``docs/report_schema.md``)::

    {
      "format": "featurelens.report",
      "version": 1,
      "featurelens_version": str,
      "title": str,
      "summary": {label: value},                    # as passed ({} if None)
      "players": [name, ...],                       # report order: first method's importance, descending
      "level": "feature" | "group",                 # the first explanation's player axis
      "importance": {method: {name: float}},
      "importance_normalized": {method: {name: float}},   # importance / sum(|importance|)
      "std_error": {method: {name: float}},
      "ground_truth": {...} | null,                 # as passed
      "checks": {method: {"top": name, "spurious_rank": int, "spurious_share": float}} | null,
      "training": {"history": [{"epoch", "train_loss", "val_loss"}], "best_epoch": int | null} | null,
      "explanations": {method: {"method", "level", "axes", "values_shape", "n_repeats",
                                "reduction", "params", "target", "model_fingerprint",
                                "data_fingerprint", "file"}},
      "figures": [file name, ...],
      "notes": [str, ...],
      "internals": {...} | null                     # model-internals section (report/_internals.py)
    }

``method`` is the key of the ``explanations`` mapping. Importance is
:meth:`Explanation.importance`; for values with an ``"output"`` axis (and no
``scores``) it is the mean over outputs, with the standard error computed over
samples of the per-sample mean over outputs (``reduction`` says so).
``spurious_rank`` is 1 for the most important player (ties share the better
rank; NaN ranks last). Floats are plain Python floats; NaN and infinities are
written as ``null``. ``checks`` is ``{}`` when the ground truth names no
planted player (``"spurious_group": None``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from featurelens._json import jsonable
from featurelens.attribution._explanation import Explanation

FORMAT_NAME = "featurelens.report"
FORMAT_VERSION = 1
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss")
SPURIOUS_KEYS = ("spurious_group", "spurious_feature")
_METHOD_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def format_number(value: Any) -> str:
    """Format a number the way the report prints it (4 significant digits).

    ``None``, NaN and infinities print as ``"—"``; ints and bools print as is;
    any other value prints with ``str``.
    """
    if value is None:
        return "—"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            return "—"
        return f"{value:.4g}"
    return str(value)


def _float_dict(series: pd.Series) -> dict[str, float | None]:
    return {str(k): jsonable(float(v)) for k, v in series.items()}


# -- validation ----------------------------------------------------------------------
def check_explanations(explanations: Any) -> dict[str, Explanation]:
    """Check the ``explanations`` mapping: non-empty, safe keys, one set of names."""
    if not isinstance(explanations, Mapping):
        raise TypeError(
            f"explanations must be a mapping of method name to Explanation, got {type(explanations).__name__}"
        )
    if not explanations:
        raise ValueError("explanations is empty; pass at least one {method: Explanation}")
    out: dict[str, Explanation] = {}
    for key, expl in explanations.items():
        if not isinstance(key, str) or not _METHOD_KEY.match(key):
            raise ValueError(
                f"explanation key {key!r} is not a valid method name (letters, digits, '_', '.', '-'; "
                "it names the file explanations/<method>.npz)"
            )
        if not isinstance(expl, Explanation):
            raise TypeError(f"explanations[{key!r}] must be an Explanation, got {type(expl).__name__}")
        out[key] = expl
    first, *rest = out
    ref = set(out[first].names)
    for key in rest:
        names = set(out[key].names)
        if names != ref:
            missing, extra = sorted(ref - names), sorted(names - ref)
            raise ValueError(
                f"explanations {first!r} and {key!r} explain different names: "
                f"missing in {key!r}: {missing}, extra in {key!r}: {extra}"
            )
    return out


def check_history(history: Any) -> pd.DataFrame | None:
    """Check the training history frame (columns ``epoch, train_loss, val_loss``)."""
    if history is None:
        return None
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a pandas DataFrame or None, got {type(history).__name__}")
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise ValueError(
            f"history is missing columns {missing}; it needs {list(HISTORY_COLUMNS)}, "
            f"got {list(history.columns)}"
        )
    if len(history) == 0:
        raise ValueError("history has no rows; pass None when there is no training history")
    return history.loc[:, list(HISTORY_COLUMNS)].reset_index(drop=True)


def spurious_name(ground_truth: Mapping[str, Any] | None, names: Sequence[str]) -> str | None:
    """The planted player named by ``ground_truth`` (``None`` if there is none)."""
    if ground_truth is None:
        return None
    if not isinstance(ground_truth, Mapping):
        raise TypeError(f"ground_truth must be a mapping or None, got {type(ground_truth).__name__}")
    key = next((k for k in SPURIOUS_KEYS if k in ground_truth), None)
    if key is None:
        raise ValueError(
            f"ground_truth must name the planted player under one of {list(SPURIOUS_KEYS)} "
            f"(use None for no planted player), got keys {sorted(map(str, ground_truth))}"
        )
    name = ground_truth[key]
    if name is None:
        return None
    if str(name) not in names:
        raise ValueError(f"ground_truth[{key!r}] = {name!r} is not among the explained names {list(names)}")
    return str(name)


# -- numbers ---------------------------------------------------------------------------
def player_importance(expl: Explanation) -> tuple[pd.Series, pd.Series, str | None]:
    """Importance and standard error per player, reducing an ``"output"`` axis.

    Returns ``(importance, std_error, reduction)`` where ``reduction`` is a
    sentence describing any reduction (``None`` if there was none).
    """
    imp, se = expl.importance(), expl.importance_std_error()
    if isinstance(imp, pd.Series):
        return imp.astype(np.float64), se.astype(np.float64), None
    # values with an "output" axis: per-sample |value| averaged over every non-sample axis
    axes = list(expl.axes)
    v = np.moveaxis(np.abs(expl.values.astype(np.float64)), [axes.index("sample"), axes.index(expl.level)], [0, 1])
    per_sample = v.reshape(v.shape[0], v.shape[1], -1).mean(axis=-1)
    n = per_sample.shape[0]
    mean = per_sample.mean(axis=0)
    std_error = per_sample.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
    index = pd.Index(expl.names, name=expl.level)
    k = imp.shape[1]
    reduction = f"mean over {k} model outputs"
    return pd.Series(mean, index=index, name=expl.method), pd.Series(std_error, index=index), reduction


def normalized(imp: pd.Series) -> pd.Series:
    """``imp`` divided by the sum of its absolute values (NaN ignored; all-zero stays zero)."""
    total = float(np.nansum(np.abs(imp.to_numpy(dtype=np.float64))))
    return imp / total if total > 0 else imp * 0.0


def ranked(imp: pd.Series) -> list[str]:
    """Names by descending importance (stable; NaN last)."""
    key = imp.to_numpy(dtype=np.float64)
    key = np.where(np.isnan(key), -np.inf, key)
    return [str(imp.index[i]) for i in np.argsort(-key, kind="stable")]


def rank_of(imp: pd.Series, name: str) -> int:
    """Rank of ``name`` (1 = most important; ties share the better rank; NaN ranks last)."""
    key = np.where(np.isnan(imp.to_numpy(dtype=np.float64)), -np.inf, imp.to_numpy(dtype=np.float64))
    own = key[list(imp.index).index(name)]
    return int(1 + np.sum(key > own)) if np.isfinite(own) else len(key)


def unit_of(expl: Explanation) -> str:
    """Unit of an explanation's per-sample values, from its target's link."""
    link = expl.target.get("link")
    return {"sigmoid": "probability", "softmax": "probability", "logit": "log-odds"}.get(link, "model output")


def importance_label(expl: Explanation) -> str:
    """What :meth:`Explanation.importance` measures, with its unit."""
    if expl.scores is not None:
        label = expl.params.get("score_label")
        if isinstance(label, str):
            return label
        metric = expl.params.get("metric")
        metric = metric if isinstance(metric, str) else "metric"
        return f"{metric} degradation when permuted ({metric} units)"
    return f"mean |attribution| ({unit_of(expl)})"


def build_results(
    *,
    title: str,
    explanations: Mapping[str, Explanation],
    summary: Mapping[str, Any] | None,
    ground_truth: Mapping[str, Any] | None,
    history: pd.DataFrame | None,
    notes: Sequence[str],
    version: str,
) -> dict[str, Any]:
    """Compute every number of the report; the returned dict is ``results.json``."""
    first = next(iter(explanations.values()))
    imps, ses, reductions = {}, {}, {}
    for key, expl in explanations.items():
        imp, se, reductions[key] = player_importance(expl)
        imps[key], ses[key] = imp, se
    players = ranked(imps[next(iter(imps))])
    imps = {k: v.reindex(players) for k, v in imps.items()}
    ses = {k: v.reindex(players) for k, v in ses.items()}
    spurious = spurious_name(ground_truth, players)
    checks = None
    if ground_truth is not None:
        checks = {}
        if spurious is not None:
            for key, imp in imps.items():
                checks[key] = {
                    "top": ranked(imp)[0],
                    "spurious_rank": rank_of(imp, spurious),
                    "spurious_share": jsonable(float(normalized(imp)[spurious])),
                }
    training = None
    if history is not None:
        rows = jsonable(history.to_dict(orient="records"), where="history")
        val = history["val_loss"].to_numpy(dtype=np.float64)
        best = None if np.all(np.isnan(val)) else jsonable(history["epoch"].iloc[int(np.nanargmin(val))])
        training = {"history": rows, "best_epoch": best}
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "featurelens_version": version,
        "title": title,
        "summary": jsonable(dict(summary or {}), where="summary"),
        "players": players,
        "level": first.level,
        "importance": {k: _float_dict(v) for k, v in imps.items()},
        "importance_normalized": {k: _float_dict(normalized(v)) for k, v in imps.items()},
        "std_error": {k: _float_dict(v) for k, v in ses.items()},
        "ground_truth": jsonable(None if ground_truth is None else dict(ground_truth), where="ground_truth"),
        "checks": checks,
        "training": training,
        "explanations": {
            k: {
                "method": e.method,
                "level": e.level,
                "axes": list(e.axes),
                "values_shape": None if e.values is None else list(e.values.shape),
                "n_repeats": None if e.scores is None else int(e.scores.shape[0]),
                "reduction": reductions[k],
                "params": jsonable(e.params, where=f"explanations[{k!r}].params"),
                "target": jsonable(e.target, where=f"explanations[{k!r}].target"),
                "model_fingerprint": e.model_fingerprint,
                "data_fingerprint": e.data_fingerprint,
                "file": f"explanations/{k}.npz",
            }
            for k, e in explanations.items()
        },
        "figures": [],
        "notes": [str(n) for n in notes],
    }
