"""Model-quality metrics on selected outputs, used by permutation importance.

Each metric maps ``(y_true, y_pred)`` to a float. ``y_pred`` is the
selected model output: ``(n,)`` for one target or ``(n, K)`` for every
output (``target="all"``). Classification metrics need probabilities: a
model that returns logits is explained with ``link="sigmoid"`` (binary) or
``link="softmax"`` (multi-class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

_EPS = 1e-12


@dataclass(frozen=True)
class Metric:
    """A named metric and its direction."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], float]
    higher_is_better: bool

    def degradation(self, reference: float, perturbed: float) -> float:
        """How much worse ``perturbed`` is than ``reference`` (positive = worse)."""
        return reference - perturbed if self.higher_is_better else perturbed - reference


def _check_probabilities(y_pred: torch.Tensor, metric: str) -> None:
    lo, hi = float(y_pred.min()), float(y_pred.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"metric {metric!r} needs probabilities in [0, 1], but the selected output ranges over "
            f"[{lo:.3g}, {hi:.3g}]; if the model returns logits, explain it with link='sigmoid' (one logit "
            "per row) or link='softmax' (one logit per class)"
        )


def _check_class_values(y_true: torch.Tensor, metric: str) -> None:
    """Class metrics need whole-number labels; a fractional one means a regression target."""
    frac = y_true != torch.round(y_true)
    if bool(frac.any()):
        bad = [float(f"{v:.4g}") for v in torch.unique(y_true[frac])[:3].tolist()]
        raise ValueError(
            f"metric {metric!r} needs class labels, but the labels hold non-integer values such as {bad} "
            "(a regression target?); use metric='mse' or metric='mae'"
        )


def _binary_labels(y_true: torch.Tensor, metric: str) -> torch.Tensor:
    _check_class_values(y_true, metric)
    ok = (y_true == 0) | (y_true == 1)
    if not bool(ok.all()):
        bad = torch.unique(y_true[~ok])[:5].tolist()
        raise ValueError(f"metric {metric!r} on one output needs binary labels 0/1, found label value(s) {bad}")
    return y_true


def _class_labels(y_true: torch.Tensor, k: int, metric: str) -> torch.Tensor:
    _check_class_values(y_true, metric)
    ok = (y_true >= 0) & (y_true < k)
    if not bool(ok.all()):
        bad = torch.unique(y_true[~ok])[:5].tolist()
        raise ValueError(f"metric {metric!r} needs class labels in 0..{k - 1}, found {bad}")
    return y_true.long()


def mse(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Mean squared error, averaged over rows (and outputs)."""
    if y_pred.dim() == 2 and y_true.dim() == 1:
        y_true = y_true[:, None]
    return float(((y_pred - y_true) ** 2).mean())


def mae(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Mean absolute error."""
    if y_pred.dim() == 2 and y_true.dim() == 1:
        y_true = y_true[:, None]
    return float((y_pred - y_true).abs().mean())


def log_loss(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Cross-entropy of probabilities, natural log; probabilities clipped to [1e-12, 1 − 1e-12].

    The labels are checked first (0/1 for ``(n,)``, classes ``0..K-1`` for
    ``(n, K)``), then that the output is a probability.
    """
    if y_pred.dim() == 1:
        y = _binary_labels(y_true, "log_loss").double()
        _check_probabilities(y_pred, "log_loss")
        p = y_pred.double().clamp(_EPS, 1 - _EPS)
        return float(-(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean())
    y = _class_labels(y_true, y_pred.shape[1], "log_loss")
    _check_probabilities(y_pred, "log_loss")
    p = y_pred.double().clamp(_EPS, 1 - _EPS)
    return float(-torch.log(p.gather(1, y[:, None])).mean())


def accuracy(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Share of correct predictions: ``p >= 0.5`` for binary, arg-max for ``(n, K)``.

    The labels are checked first, then that the output is a probability.
    """
    if y_pred.dim() == 1:
        y = _binary_labels(y_true, "accuracy")
        _check_probabilities(y_pred, "accuracy")
        return float(((y_pred >= 0.5).to(y.dtype) == y).double().mean())
    y = _class_labels(y_true, y_pred.shape[1], "accuracy")
    _check_probabilities(y_pred, "accuracy")
    return float((y_pred.argmax(dim=1) == y).double().mean())


def auc(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Area under the ROC curve (binary), the Mann–Whitney statistic with tied ranks averaged.

    Any monotone score works (probabilities or logits). Needs both classes.
    """
    if y_pred.dim() != 1:
        raise ValueError("metric 'auc' is defined here for one binary target; pick target=<int>")
    y = _binary_labels(y_true, "auc").cpu().numpy().astype(bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("metric 'auc' needs both classes among the labels")
    ranks = rankdata(y_pred.double().cpu().numpy())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


METRICS: dict[str, Metric] = {
    "mse": Metric("mse", mse, higher_is_better=False),
    "mae": Metric("mae", mae, higher_is_better=False),
    "log_loss": Metric("log_loss", log_loss, higher_is_better=False),
    "accuracy": Metric("accuracy", accuracy, higher_is_better=True),
    "auc": Metric("auc", auc, higher_is_better=True),
}


def get_metric(metric: str | Callable | Metric, *, higher_is_better: bool | None = None) -> Metric:
    """Resolve a metric name or callable.

    A callable ``fn(y_true, y_pred) -> float`` is taken as a loss (lower is
    better) unless ``higher_is_better=True``.
    """
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(map(repr, METRICS))} or a callable; got {metric!r}")
        return METRICS[metric]
    if callable(metric):
        name = getattr(metric, "__name__", type(metric).__name__)

        def fn(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
            value = float(metric(y_true, y_pred))
            if not np.isfinite(value):
                raise ValueError(f"metric {name!r} returned a non-finite value {value}")
            return value

        return Metric(name, fn, higher_is_better=bool(higher_is_better))
    raise TypeError(f"metric must be a name or a callable, got {type(metric).__name__}")

