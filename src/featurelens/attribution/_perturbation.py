"""Perturbation attributions: feature/group ablation and permutation importance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from featurelens._metrics import get_metric
from featurelens._validation import check_int, check_random_state
from featurelens.attribution._baselines import per_row, resolve_baselines
from featurelens.attribution._engine import evaluate_perturbations, player_masks
from featurelens.attribution._explanation import Explanation
from featurelens.attribution._problem import Problem
from featurelens.data import as_tensor


def _to_sample_major(delta: torch.Tensor) -> np.ndarray:
    """``(P, n[, K])`` -> ``(n, P[, K])`` as float64 NumPy."""
    return delta.transpose(0, 1).detach().cpu().to(torch.float64).numpy()


def ablation(problem: Problem, *, baselines: Any = None, background: Any = None) -> Explanation:
    """Occlusion of one feature or group at a time.

    Definition: ``value[i, j] = f(x_i) − f(x_i with the columns of player j
    set to the baseline)`` (Captum ``FeatureAblation``'s sign), where ``f`` is
    the selected output. For sequences a player's columns are replaced at
    every time step. Overlapping groups are allowed: each group is ablated
    on its own.
    """
    x = problem.x
    base, base_desc = resolve_baselines(baselines, x, background=background)
    masks = player_masks(problem)
    g = masks.shape[0]
    fx = problem.forward_all()

    def build(p0: int, p1: int, i0: int, i1: int) -> torch.Tensor:
        rows = slice(i0, i1)
        xb = x[rows].unsqueeze(0)
        bb = per_row(base, x, rows).unsqueeze(0)
        return torch.where(masks[p0:p1], bb, xb).reshape((-1, *tuple(x.shape[1:])))

    out = evaluate_perturbations(problem, g, build, desc="ablation")
    values = _to_sample_major(fx.unsqueeze(0) - out)
    extras = {"output": fx.detach().cpu().double().numpy()}
    if base.dim() <= x.dim() - 1:
        extras["baseline"] = base.detach().cpu().double().numpy()
    return problem.explanation(values, method="ablation", params={"baselines": base_desc}, extras=extras)


def permutation(
    problem: Problem,
    *,
    n_repeats: int = 5,
    labels: Any = None,
    metric: str | Callable | None = None,
    higher_is_better: bool | None = None,
    random_state: Any = None,
) -> Explanation:
    """Permutation importance with repeats.

    For repeat ``r`` and player ``j`` the rows of player ``j``'s columns are
    shuffled jointly (all time steps of a sequence move together) by a
    permutation drawn as ``rng.permutation(n)`` from
    ``numpy.random.default_rng(random_state)``, in the order ``for r in
    repeats: for j in players``. Each player gets its own permutation.

    Per-sample values: ``value[i, j] = f(x_i) − mean_r f(x_i^{(r, j)})``.
    With ``labels``, repeat-level scores: ``score[r, j]`` is the metric's
    degradation, ``metric(y, f(X)) − metric(y, f(X^{(r, j)}))`` for metrics
    where higher is better and the reverse for losses, so a positive score
    means the player matters. ``importance()`` is then the mean score over
    repeats and ``importance_std_error()`` its standard error.

    ``metric=None`` with labels picks, by this rule: ``"log_loss"`` when the
    output is made a probability (``link="sigmoid"`` or ``"softmax"``),
    else ``"auc"`` for 0/1 labels and a single target, else ``"mse"``.
    """
    n_repeats = check_int(n_repeats, name="n_repeats", minimum=1)
    rng = check_random_state(random_state)
    x, n = problem.x, problem.n
    if n < 2:
        raise ValueError("permutation importance needs at least 2 rows")
    if labels is None and metric is not None:
        raise ValueError("metric= needs labels= (the true targets) to measure the model's degradation")
    if higher_is_better is not None and not callable(metric):
        raise ValueError("higher_is_better= applies only to a callable metric; named metrics know their direction")
    masks = player_masks(problem)
    g = masks.shape[0]
    fx = problem.forward_all()
    perms = np.stack([rng.permutation(n) for _ in range(n_repeats * g)])
    perms_t = torch.as_tensor(perms, device=x.device)
    player_of = torch.arange(n_repeats * g, device=x.device) % g

    def build(p0: int, p1: int, i0: int, i1: int) -> torch.Tensor:
        idx = perms_t[p0:p1, i0:i1]
        shuffled = x[idx]
        return torch.where(masks[player_of[p0:p1]], shuffled, x[i0:i1].unsqueeze(0)).reshape((-1, *tuple(x.shape[1:])))

    out = evaluate_perturbations(problem, n_repeats * g, build, desc="permutation")
    per_repeat = fx.unsqueeze(0) - out
    per_repeat = per_repeat.reshape((n_repeats, g, *tuple(per_repeat.shape[1:])))
    values = _to_sample_major(per_repeat.mean(dim=0))
    seed = int(random_state) if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) else None
    params: dict[str, Any] = {"n_repeats": n_repeats, "random_state": seed}
    extras = {"output": fx.detach().cpu().double().numpy()}
    scores = None
    if labels is not None:
        y, _ = as_tensor(labels, name="labels", dtype=torch.float64, ndims=(1, 2))
        if y.dim() == 2:
            if y.shape[1] != 1:
                raise ValueError(f"labels must have shape (n,), got {tuple(y.shape)}")
            y = y[:, 0]
        if y.shape[0] != n:
            raise ValueError(f"labels has {y.shape[0]} rows but the inputs have {n}")
        fx64 = fx.detach().cpu().double()
        m = get_metric(_auto_metric(y, fx64, problem.selector.link) if metric is None else metric, higher_is_better=higher_is_better)
        ref = m.fn(y, fx64)
        flat = out.detach().cpu().double()
        scores = np.array(
            [m.degradation(ref, m.fn(y, flat[p])) for p in range(n_repeats * g)], dtype=np.float64
        ).reshape(n_repeats, g)
        params.update(metric=m.name, higher_is_better=m.higher_is_better)
        extras["metric_baseline"] = np.array(ref)
    return problem.explanation(values, method="permutation", params=params, scores=scores, extras=extras)


def _auto_metric(y: torch.Tensor, pred: torch.Tensor, link: str) -> str:
    if link in ("sigmoid", "softmax"):
        return "log_loss"
    if pred.dim() == 1 and bool(((y == 0) | (y == 1)).all()):
        return "auc"
    return "mse"


#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
METHODS = {"ablation": ablation, "permutation": permutation}
