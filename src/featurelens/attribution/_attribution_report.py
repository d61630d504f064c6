"""``AttributionReport``: several explanations of one model, with their context, as one result.

What the attribution report renders (``featurelens attribute``, the demo):
one :class:`Explanation` per method, a data and model summary, the planted
ground truth of synthetic data, the training history and, optionally, the
model-internals summary. The numbers the report shows are computed here
(:meth:`AttributionReport.to_dict`); ``featurelens.report.save`` renders them.

Definitions
-----------
* importance per player: :meth:`Explanation.importance`; for values with an
  ``"output"`` axis (and no ``scores``) the mean over outputs, with the
  standard error over samples of the per-sample mean over outputs;
* normalised importance: importance divided by the sum of its absolute values
  within the method (NaN ignored; all-zero stays zero);
* report order of the players: the first method's importance, descending
  (stable; NaN last);
* checks (with ground truth naming a planted player): per method the top
  player, the planted player's rank (1 = most important; ties share the better
  rank; NaN ranks last) and its normalised share;
* best epoch: the epoch with the lowest validation loss.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featurelens._protocol import FrameResult, jsonable
from featurelens.attribution._explanation import Explanation

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss")
SPURIOUS_KEYS = ("spurious_group", "spurious_feature")
_METHOD_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _check_explanations(explanations: Any) -> dict[str, Explanation]:
    """Non-empty mapping of safe method keys to explanations of one set of names."""
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


def _check_history(history: Any) -> pd.DataFrame | None:
    """Return the training history frame, columns ``epoch, train_loss, val_loss`` (other columns dropped)."""
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
    """Return the planted player named by ``ground_truth`` (``None`` if there is none)."""
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


def player_importance(expl: Explanation) -> tuple[pd.Series, pd.Series, str | None]:
    """Return the importance and standard error per player, reducing an ``"output"`` axis.

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
    reduction = f"mean over {imp.shape[1]} model outputs"
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


def _float_dict(series: pd.Series) -> dict[str, float | None]:
    return {str(k): jsonable(float(v)) for k, v in series.items()}


@dataclass(frozen=True, eq=False)
class AttributionReport(FrameResult):
    """Explanations of one model by several methods, with the context a report shows.

    Attributes
    ----------
    explanations : mapping of str to Explanation
        One explanation per method, keyed by the name used in the report and
        in ``explanations/<method>.npz`` (letters, digits, ``_``, ``.``, ``-``).
        All must explain the same set of names (features or groups).
    title : str
        Page title.
    summary : mapping
        Data and model summary, label → value (e.g. ``{"samples": 4000}``).
    ground_truth : mapping, optional
        What was planted, e.g. ``{"spurious_group": "spurious",
        "bias_strength": 0.8}``; it must name the planted player under
        ``"spurious_group"`` or ``"spurious_feature"`` (``None`` for none).
    history : pandas.DataFrame, optional
        Training history with columns ``epoch, train_loss, val_loss`` (others dropped).
    notes : tuple of str
        Free-text notes listed at the top of the page.
    internals : InternalsSummary, optional
        From :func:`featurelens.internals.summarize_internals`; adds the
        model-internals section.

    Raises
    ------
    ValueError, TypeError
        On construction, naming the argument: empty or mismatched
        explanations, a bad method key, a history without its columns, ground
        truth naming an unknown player, an empty title, notes given as one string.
    """

    explanations: Mapping[str, Explanation]
    title: str = "featurelens attribution report"
    summary: Mapping[str, Any] = field(default_factory=dict)
    ground_truth: Mapping[str, Any] | None = None
    history: pd.DataFrame | None = None
    notes: Sequence[str] = ()
    internals: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError(f"title must be a non-empty string, got {self.title!r}")
        if isinstance(self.notes, str) or not isinstance(self.notes, Sequence):
            raise TypeError(f"notes must be a sequence of strings, got {type(self.notes).__name__}; "
                            "wrap one note in a list")
        if self.summary is None:
            object.__setattr__(self, "summary", {})
        if not isinstance(self.summary, Mapping):
            raise TypeError(f"summary must be a mapping of label to value, got {type(self.summary).__name__}")
        internals = self.internals
        if internals is not None and not (
            hasattr(internals, "layers") and callable(getattr(internals, "to_dict", None))
        ):
            raise TypeError(f"internals must be an InternalsSummary (featurelens.internals.summarize_internals), "
                            f"got {type(internals).__name__}")
        explanations = _check_explanations(self.explanations)
        spurious_name(self.ground_truth, next(iter(explanations.values())).names)
        object.__setattr__(self, "explanations", explanations)
        object.__setattr__(self, "history", _check_history(self.history))
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))
        jsonable(dict(self.summary), where="summary")

    @property
    def planted(self) -> str | None:
        """The planted player named by :attr:`ground_truth` (``None`` without one)."""
        return spurious_name(self.ground_truth, next(iter(self.explanations.values())).names)

    def _importances(self) -> tuple[dict[str, pd.Series], dict[str, pd.Series], dict[str, str | None], list[str]]:
        imps, ses, reductions = {}, {}, {}
        for key, expl in self.explanations.items():
            imps[key], ses[key], reductions[key] = player_importance(expl)
        players = ranked(imps[next(iter(imps))])
        return ({k: v.reindex(players) for k, v in imps.items()}, {k: v.reindex(players) for k, v in ses.items()},
                reductions, players)

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: importance per player (rows, report order) and method (columns)."""
        imps, _, _, players = self._importances()
        first = next(iter(self.explanations.values()))
        return pd.DataFrame(imps, index=pd.Index(players, name=first.level))

    def to_dict(self) -> dict[str, Any]:
        """Every number the report shows, as plain JSON types (NaN → ``None``).

        Keys ``title, summary, players, level, importance,
        importance_normalized, std_error, ground_truth, checks, training,
        explanations, notes, internals``; the schema is that of
        ``results.json`` (``docs/report_schema.md``) without the format header,
        the figure list and the per-explanation file names.
        """
        imps, ses, reductions, players = self._importances()
        spurious = self.planted
        checks = None
        if self.ground_truth is not None:
            checks = {}
            if spurious is not None:
                for key, imp in imps.items():
                    checks[key] = {
                        "top": ranked(imp)[0],
                        "spurious_rank": rank_of(imp, spurious),
                        "spurious_share": jsonable(float(normalized(imp)[spurious])),
                    }
        training = None
        if self.history is not None:
            history = self.history
            rows = jsonable(history.to_dict(orient="records"), where="history")
            val = history["val_loss"].to_numpy(dtype=np.float64)
            best = None if np.all(np.isnan(val)) else jsonable(history["epoch"].iloc[int(np.nanargmin(val))])
            training = {"history": rows, "best_epoch": best}
        return {
            "title": self.title,
            "summary": jsonable(dict(self.summary), where="summary"),
            "players": players,
            "level": next(iter(self.explanations.values())).level,
            "importance": {k: _float_dict(v) for k, v in imps.items()},
            "importance_normalized": {k: _float_dict(normalized(v)) for k, v in imps.items()},
            "std_error": {k: _float_dict(v) for k, v in ses.items()},
            "ground_truth": jsonable(None if self.ground_truth is None else dict(self.ground_truth),
                                     where="ground_truth"),
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
                }
                for k, e in self.explanations.items()
            },
            "notes": list(self.notes),
            "internals": None if self.internals is None else jsonable(self.internals.to_dict(), where="internals"),
        }

    def _html_title(self) -> str:
        return f"AttributionReport: {self.title} (importance per method)"
