"""Robustness curves: a metric against perturbation strength, and their area summaries.

The superposition and spurious-correlation notebook's ``robustness_analysis`` perturbed every feature by absolute
amounts and "attacked" by ascending the loss of the *flipped* labels. Here
strengths are in units of each feature's standard deviation, perturbations can
be restricted to feature groups (with features that must never change), and
the attacks ascend the loss of the true labels (:mod:`featurelens.models.adversarial`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._metrics import Metric, get_metric
from featurelens._protocol import FrameResult, jsonable, records
from featurelens._validation import RandomState, check_int, check_option, check_random_state
from featurelens.data import FeatureSpec, as_tensor, resolve_names
from featurelens.models import OutputSelector, evaluate, model_device_dtype, preserve_model
from featurelens.models.adversarial import feature_scale, fgsm, pgd

PERTURBATIONS = ("gaussian", "dropout", "fgsm", "pgd")
DEFAULT_STRENGTHS: dict[str, tuple[float, ...]] = {
    "gaussian": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
    "dropout": (0.0, 0.1, 0.25, 0.5, 0.75, 1.0),
    "fgsm": (0.0, 0.05, 0.1, 0.25, 0.5, 1.0),
    "pgd": (0.0, 0.05, 0.1, 0.25, 0.5, 1.0),
}
_LINKS = ("auto", "identity", "sigmoid", "softmax")


@dataclass(frozen=True)
class RobustnessCurve(FrameResult):
    """A metric measured under one perturbation at increasing strengths.

    Attributes
    ----------
    perturbation : str
        ``"gaussian"``, ``"dropout"``, ``"fgsm"`` or ``"pgd"``.
    metric : str
        Metric name; ``higher_is_better`` gives its direction.
    table : pandas.DataFrame
        One row per strength: ``strength`` (noise std / ε in feature standard
        deviations, or the dropout probability), ``metric`` (mean over
        repeats), ``std`` (standard deviation over repeats, ``ddof=1``; 0 for a
        single repeat), ``n_repeats``, ``degradation`` (``clean − metric`` for
        higher-is-better metrics, ``metric − clean`` for losses: positive =
        worse).
    clean : float
        The metric on the unperturbed inputs.
    auc : float
        Normalised area under the metric curve, ``∫ metric(s) ds / (s_max −
        s_min)`` by the trapezoid rule over the measured strengths: the
        average metric over the strength range (equal to ``clean`` for a
        model the perturbation cannot hurt). A single strength gives its value.
    degradation_auc : float
        The same normalised area under the ``degradation`` column (area under
        the degradation curve; 0 = perfectly robust, in metric units).
    perturbed : list of str
        Names of the features that were perturbed.
    """

    perturbation: str
    metric: str
    higher_is_better: bool
    table: pd.DataFrame = field(repr=False)
    clean: float
    auc: float
    degradation_auc: float
    perturbed: list[str] = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: :attr:`table` (a copy), one row per strength."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: the scalars, ``perturbed`` and the table as records."""
        return jsonable({
            "perturbation": self.perturbation, "metric": self.metric, "higher_is_better": self.higher_is_better,
            "clean": self.clean, "auc": self.auc, "degradation_auc": self.degradation_auc,
            "perturbed": list(self.perturbed), "table": records(self.table),
        }, where="robustness curve")

    def _html_title(self) -> str:
        return f"RobustnessCurve: {self.metric} under {self.perturbation}"


def normalised_area(strengths: Sequence[float], values: Sequence[float]) -> float:
    """``∫ v(s) ds / (s_max − s_min)`` by the trapezoid rule; one point gives its value."""
    s = np.asarray(strengths, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if s.size == 1:
        return float(v[0])
    return float(np.sum((v[1:] + v[:-1]) * np.diff(s)) / 2 / (s[-1] - s[0]))


def _check_strengths(strengths: Any, perturbation: str) -> np.ndarray:
    if strengths is None:
        strengths = DEFAULT_STRENGTHS[perturbation]
    if isinstance(strengths, (str, bytes)) or not isinstance(strengths, (Sequence, np.ndarray)):
        raise TypeError(f"strengths must be a sequence of numbers, got {type(strengths).__name__}")
    s = np.asarray(strengths, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("strengths must be a non-empty 1-D sequence of numbers")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("strengths must be finite and non-negative")
    if np.any(np.diff(s) <= 0):
        raise ValueError("strengths must be strictly increasing")
    if perturbation == "dropout" and s[-1] > 1:
        raise ValueError(f"dropout strengths are probabilities in [0, 1]; got {s[-1]:g}")
    return s


def spec_over(names: list[str], groups: Mapping[str, Sequence[str | int]] | FeatureSpec | None) -> FeatureSpec:
    """Build a FeatureSpec from ``groups`` over the features ``names`` of the inputs."""
    spec = groups if isinstance(groups, FeatureSpec) else FeatureSpec(names, groups)
    if spec.n_features != len(names):
        raise ValueError(f"groups describe {spec.n_features} features but the inputs have {len(names)}")
    return spec


def perturbation_mask(
    names: list[str],
    *,
    groups: Mapping[str, Sequence[str | int]] | FeatureSpec | None,
    perturb_groups: Sequence[str] | None,
    immutable: Sequence[str | int] | None,
) -> torch.Tensor:
    """Bool ``(d,)``: True on the features of ``perturb_groups`` (all without) minus ``immutable``."""
    spec = spec_over(names, groups)
    mask = torch.ones(len(names), dtype=torch.bool)
    if perturb_groups is not None:
        if isinstance(perturb_groups, str):
            raise TypeError("perturb_groups must be a list of group names, not a single str")
        if not spec.group_names:
            raise ValueError("perturb_groups= needs groups= (group name -> features)")
        mask[:] = False
        for g in perturb_groups:
            if g not in spec.groups:
                raise ValueError(f"perturb_groups: unknown group {g!r}; "
                                 f"groups are {', '.join(map(repr, spec.group_names))}")
            mask[list(spec.groups[g])] = True
    if immutable is not None:
        if isinstance(immutable, str):
            raise TypeError("immutable must be a list of feature names or indices, not a single str")
        members: list[str | int] = []
        for item in immutable:  # a group name (that is not also a feature name) stands for its features
            if isinstance(item, str) and item not in names and item in spec.groups:
                members.extend(i for i in spec.groups[item] if i not in members)
            elif item not in members:
                members.append(item)
        fixed = FeatureSpec(names, {"immutable": members}).groups["immutable"]
        mask[list(fixed)] = False
    if not bool(mask.any()):
        raise ValueError("no feature is left to perturb (perturb_groups minus immutable is empty)")
    return mask


def resolve_link(link: str | None, metric: Metric, out: torch.Tensor) -> str:
    """``"auto"``: sigmoid/softmax for classification metrics on logits, identity otherwise."""
    link = check_option("auto" if link is None else link, name="link", options=_LINKS)
    if link != "auto":
        return link
    if metric.name in ("accuracy", "log_loss", "auc"):
        return "softmax" if out.dim() == 2 and out.shape[1] > 1 else "sigmoid"
    return "identity"


def predict(model: nn.Module, X: torch.Tensor, link: str) -> torch.Tensor:
    """Model outputs after ``link``, in eval mode, as float64 on the CPU: ``(n,)`` or ``(n, K)``.

    :func:`featurelens.models.evaluate` with ``OutputSelector(target="all",
    link=link)``: each raw output is flattened to ``(rows, K)`` and cast to
    float64 before the link (softmax over the ``K`` outputs); one output
    (``K = 1``) gives ``(n,)``.
    """
    with preserve_model(model, eval_mode=True):
        out = evaluate(model, X, output=OutputSelector(target="all", link=link), dtype=torch.float64).cpu()
    return out[:, 0] if out.shape[1] == 1 else out


def _perturbed_inputs(
    kind: str,
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    s: float,
    *,
    mask: torch.Tensor,
    scale: torch.Tensor,
    mean: torch.Tensor,
    steps: int,
    rng: np.random.Generator,
) -> torch.Tensor:
    if s == 0:
        return X
    if kind == "fgsm":
        return fgsm(model, X, y, epsilon=s, scale=scale, mask=mask)
    if kind == "pgd":
        return pgd(model, X, y, epsilon=s, n_steps=steps, scale=scale, mask=mask, random_state=rng)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    if kind == "gaussian":
        z = torch.randn(X.shape, generator=gen, dtype=X.dtype).to(X.device)
        return torch.where(mask.to(X.device), X + s * scale * z, X)
    shape = (X.shape[0], *([1] * (X.dim() - 2)), X.shape[-1])  # one draw per (row, feature)
    drop = (torch.rand(shape, generator=gen, dtype=torch.float64) < s).to(X.device) & mask.to(X.device)
    return torch.where(drop, mean.expand_as(X), X)


def robustness_curve(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    perturbation: str = "gaussian",
    strengths: Sequence[float] | None = None,
    metric: str | Callable = "accuracy",
    higher_is_better: bool | None = None,
    link: str | None = None,
    groups: Mapping[str, Sequence[str | int]] | FeatureSpec | None = None,
    perturb_groups: Sequence[str] | None = None,
    immutable: Sequence[str | int] | None = None,
    feature_names: Sequence[str] | None = None,
    n_repeats: int = 5,
    n_steps: int = 10,
    random_state: RandomState = 0,
) -> RobustnessCurve:
    """Measure ``metric`` of ``model`` on ``(X, y)`` as the inputs are perturbed more and more.

    Perturbations (only on the selected features, see ``perturb_groups`` and
    ``immutable``; ``σ_j`` is feature ``j``'s population standard deviation
    over the rows (and time steps) of ``X``):

    * ``"gaussian"``: ``x_j + s σ_j z`` with ``z ~ N(0, 1)`` i.i.d. per entry.
    * ``"dropout"``: with probability ``s`` per (row, feature), feature ``j``
      is replaced by its mean over ``X`` (at every time step of a sequence).
    * ``"fgsm"``: one signed-gradient step of size ``s σ_j`` up the loss of
      the true labels (deterministic: one repeat).
    * ``"pgd"``: ``n_steps`` projected steps of ``2.5 s σ_j / n_steps`` in the box
      ``|x_j' − x_j| ≤ s σ_j`` from a random start, up the true-label loss.

    Parameters
    ----------
    model : nn.Module
        Returns raw scores (logits for classification); left as found.
    X : Tensor, ndarray or DataFrame
        ``(n, d)`` or ``(n, T, d)``.
    y : array-like of shape (n,)
        True labels / targets (also the labels the attacks use).
    perturbation : {"gaussian", "dropout", "fgsm", "pgd"}
    strengths : sequence of float, optional
        Strictly increasing, ``≥ 0`` (dropout: ``≤ 1``). Default
        ``DEFAULT_STRENGTHS[perturbation]``.
    metric : {"accuracy", "auc", "mse", "mae", "log_loss"} or callable
        From :mod:`featurelens._metrics`; a callable ``fn(y_true, y_pred) ->
        float`` is a loss unless ``higher_is_better=True``.
    link : {None, "auto", "identity", "sigmoid", "softmax"}
        Applied to the model output before the metric; ``None`` or ``"auto"`` uses
        sigmoid (one output) or softmax (``K`` outputs) for accuracy, AUC and
        log-loss, identity otherwise.
    groups, perturb_groups : optional
        Feature groups and the names of those to perturb (default: all features).
    immutable : sequence of feature names, indices or group names, optional
        Never perturbed (returned bit-identical); a group name stands for
        all its features.
    feature_names : sequence of str, optional
        Names of the ``d`` features (default: DataFrame columns or ``x0..``).
    n_repeats : int
        Repeats of the random perturbations (gaussian, dropout, pgd).
    n_steps : int
        PGD steps.
    random_state : int, numpy Generator or None

    Returns
    -------
    RobustnessCurve
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    kind = check_option(perturbation, name="perturbation", options=PERTURBATIONS)
    s_all = _check_strengths(strengths, kind)
    n_repeats = 1 if kind == "fgsm" else check_int(n_repeats, name="n_repeats", minimum=1)
    n_steps = check_int(n_steps, name="n_steps", minimum=1)
    m = get_metric(metric, higher_is_better=higher_is_better)
    rng = check_random_state(random_state)
    device, dtype = model_device_dtype(model)
    Xt, data_names = as_tensor(X, name="X", dtype=dtype, device=device)
    names = resolve_names(Xt.shape[-1], data_names=data_names, feature_names=feature_names)
    y64, _ = as_tensor(y, name="y", dtype=torch.float64, ndims=(1, 2))
    if y64.dim() == 2 and y64.shape[1] == 1:
        y64 = y64[:, 0]
    if y64.shape[0] != Xt.shape[0]:
        raise ValueError(f"y has {y64.shape[0]} rows but X has {Xt.shape[0]}")
    mask = perturbation_mask(names, groups=groups, perturb_groups=perturb_groups, immutable=immutable)
    y_model = y64.to(device=device, dtype=dtype)
    scale = feature_scale(Xt)
    mean = Xt.reshape(-1, Xt.shape[-1]).mean(dim=0)
    lk = resolve_link(link, m, predict(model, Xt[:1], "identity"))
    clean = m.fn(y64, predict(model, Xt, lk))
    rows = []
    for s in s_all:
        values = [clean] if s == 0 else [
            m.fn(y64, predict(model, _perturbed_inputs(kind, model, Xt, y_model, float(s), mask=mask, scale=scale,
                                                       mean=mean, steps=n_steps, rng=rng), lk))
            for _ in range(n_repeats)
        ]
        v = np.asarray(values)
        rows.append({
            "strength": float(s),
            "metric": float(v.mean()),
            "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n_repeats": int(v.size),
        })
    table = pd.DataFrame(rows, columns=["strength", "metric", "std", "n_repeats"])
    table["degradation"] = [m.degradation(clean, v) for v in table["metric"]]
    return RobustnessCurve(
        perturbation=kind,
        metric=m.name,
        higher_is_better=m.higher_is_better,
        table=table,
        clean=float(clean),
        auc=normalised_area(table["strength"], table["metric"]),
        degradation_auc=normalised_area(table["strength"], table["degradation"]),
        perturbed=[n for n, keep in zip(names, mask.tolist(), strict=True) if keep],
    )


def robustness(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    perturbations: Sequence[str] = PERTURBATIONS,
    strengths: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    random_state: RandomState = 0,
    **options: Any,
) -> pd.DataFrame:
    """Robustness curves for several perturbations in one tidy table.

    ``strengths`` is one sequence for all perturbations, a mapping
    perturbation -> sequence, or ``None`` for the defaults; ``options`` are
    passed to :func:`robustness_curve` (``metric``, ``groups``,
    ``perturb_groups``, ``immutable``, ``n_repeats``, ``n_steps``, ...). One
    generator built from ``random_state`` feeds every curve in order.

    Returns
    -------
    pandas.DataFrame
        Columns ``perturbation``, ``strength``, ``metric``, ``std``,
        ``n_repeats``, ``degradation``, and per perturbation its ``clean``,
        ``auc`` and ``degradation_auc`` (repeated on each of its rows).
    """
    if isinstance(perturbations, str):
        raise TypeError("perturbations must be a list of names, not a single str")
    rng = check_random_state(random_state)
    frames = []
    for kind in perturbations:
        s = strengths.get(kind) if isinstance(strengths, Mapping) else strengths
        curve = robustness_curve(model, X, y, perturbation=kind, strengths=s, random_state=rng, **options)
        t = curve.table.copy()
        t.insert(0, "perturbation", curve.perturbation)
        t["clean"], t["auc"], t["degradation_auc"] = curve.clean, curve.auc, curve.degradation_auc
        frames.append(t)
    if not frames:
        raise ValueError("perturbations must name at least one perturbation")
    return pd.concat(frames, ignore_index=True)
