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


#: most permutation repeats (sklearn's default is 5; the standard error of the mean score falls as
#: 1/sqrt(n_repeats), so 10 000 repeats are already 45 times tighter than 5)
MAX_REPEATS = 10_000
#: perturbed rows whose outputs are held at once; repeats beyond are streamed block by block
MAX_ROWS_PER_BLOCK = 1 << 22
#: named metrics that compare a probability or score of one class with 0/1 labels
CLASS_METRICS = ("log_loss", "accuracy", "auc")


def permutation(
    problem: Problem,
    *,
    n_repeats: int = 5,
    y: Any = None,
    metric: str | Callable | None = None,
    higher_is_better: bool | None = None,
    random_state: Any = 0,
) -> Explanation:
    """Permutation importance with repeats.

    For repeat ``r`` and player ``j`` the rows of player ``j``'s columns are
    shuffled jointly (all time steps of a sequence move together) by a
    permutation drawn as ``rng.permutation(n)`` from
    ``numpy.random.default_rng(random_state)``, in the order ``for r in
    repeats: for j in players``. Each player gets its own permutation.

    Per-sample values: ``value[i, j] = f(x_i) − mean_r f(x_i^{(r, j)})``.
    With ``y``, repeat-level scores: ``score[r, j]`` is the metric's
    degradation, ``metric(y, f(X)) − metric(y, f(X^{(r, j)}))`` for metrics
    where higher is better and the reverse for losses, so a positive score
    means the player matters. ``importance()`` is then the mean score over
    repeats and ``importance_std_error()`` its standard error.

    ``metric=None`` with ``y`` picks, by this rule: ``"log_loss"`` when the
    output is made a probability (``link="sigmoid"`` or ``"softmax"``),
    else ``"auc"`` for 0/1 labels and a single target, else ``"mse"``.

    One class of a multi-class model (one-vs-rest): when ``target=c`` (an
    int) selects one of the model's ``K >= 2`` outputs, the labels are class
    indices in ``0..K-1`` and the metric is ``"log_loss"``, ``"accuracy"`` or
    ``"auc"`` (named, or picked by the rule above with a sigmoid/softmax
    link), the metric scores ``f`` (class ``c``'s probability or score)
    against the binary labels ``y == c``; ``params["one_vs_rest_class"]``
    records ``c``.

    Sizes: ``n_repeats`` is at most :data:`MAX_REPEATS`. Outputs of at most
    :data:`MAX_ROWS_PER_BLOCK` perturbed rows are held at once: repeats are
    drawn, evaluated and accumulated block by block (running sums in
    float64), so memory does not grow with ``n_repeats`` beyond the
    ``(n_repeats, n_players)`` scores.
    """
    n_repeats = _check_repeats(n_repeats)
    rng = check_random_state(random_state)
    n = problem.n
    if n < 2:
        raise ValueError("permutation importance needs at least 2 rows")
    if y is None and metric is not None:
        raise ValueError("metric= needs y= (the true labels) to measure the model's degradation")
    if higher_is_better is not None and not callable(metric):
        raise ValueError("higher_is_better= applies only to a callable metric; named metrics know their direction")
    y = None if y is None else _check_labels(y, n)
    masks = player_masks(problem)
    g = masks.shape[0]
    fx = problem.forward_all()
    scorer = None
    params: dict[str, Any] = {"n_repeats": n_repeats, "random_state": _seed_of(random_state)}
    extras = {"output": fx.detach().cpu().double().numpy()}
    if y is not None:
        fx64 = fx.detach().cpu().double()
        y, params_y = _one_vs_rest(y, fx64, problem, metric)
        m = get_metric(_auto_metric(y, fx64, problem.selector.link) if metric is None else metric,
                       higher_is_better=higher_is_better)
        ref = m.fn(y, fx64)
        scorer = (m, y, ref)
        params.update(metric=m.name, higher_is_better=m.higher_is_better, **params_y)
        extras["metric_baseline"] = np.array(ref)
    total, scores = _stream_permutations(problem, masks, fx, n_repeats * g, rng, scorer)
    values = _to_sample_major(total / n_repeats)
    if scores is not None:
        scores = scores.reshape(n_repeats, g)
    return problem.explanation(values, method="permutation", params=params, scores=scores, extras=extras)


def _check_repeats(n_repeats: Any) -> int:
    n_repeats = check_int(n_repeats, name="n_repeats", minimum=1)
    if n_repeats > MAX_REPEATS:
        raise ValueError(f"n_repeats={n_repeats} exceeds the maximum of {MAX_REPEATS} repeats "
                         "(the standard error falls as 1/sqrt(n_repeats); a few dozen are usually plenty)")
    return n_repeats


def _permutation_sizes(given: dict) -> None:
    """Size checks of permutation's options alone (no data needed), for early refusal."""
    if given.get("n_repeats") is not None:
        _check_repeats(given["n_repeats"])


permutation.check_sizes = _permutation_sizes  # type: ignore[attr-defined]


def _stream_permutations(
    problem: Problem, masks: torch.Tensor, fx: torch.Tensor, n_perm: int, rng: np.random.Generator,
    scorer: tuple | None,
) -> tuple[torch.Tensor, np.ndarray | None]:
    """Sum over repeats of ``f(x) − f(x^{(r, j)})`` per player ``(g, n[, K])`` (float64), and the scores.

    Perturbation ``p`` is player ``p % g`` of repeat ``p // g``; blocks of
    perturbations are whole multiples of the engine's perturbations per call,
    so the model sees the same batches as in one unblocked evaluation.
    """
    x, n, g = problem.x, problem.n, masks.shape[0]
    per_call = max(1, problem.batch_size // n) if n < problem.batch_size else 1
    block = max(per_call, MAX_ROWS_PER_BLOCK // n // per_call * per_call)
    n_blocks = -(-n_perm // block)
    total = torch.zeros((g, *tuple(fx.shape)), dtype=torch.float64, device=fx.device)
    scores = None if scorer is None else np.empty(n_perm, dtype=np.float64)
    fx64 = fx.to(torch.float64)
    for b, p0 in enumerate(range(0, n_perm, block)):
        p1 = min(p0 + block, n_perm)
        perms_t = torch.as_tensor(np.stack([rng.permutation(n) for _ in range(p1 - p0)]), device=x.device)
        player_of = torch.arange(p0, p1, device=x.device) % g

        def build(q0: int, q1: int, i0: int, i1: int, perms_t=perms_t, player_of=player_of) -> torch.Tensor:
            shuffled = x[perms_t[q0:q1, i0:i1]]
            keep = x[i0:i1].unsqueeze(0)
            return torch.where(masks[player_of[q0:q1]], shuffled, keep).reshape((-1, *tuple(x.shape[1:])))

        desc = "permutation" if n_blocks == 1 else f"permutation ({b + 1}/{n_blocks})"
        out = evaluate_perturbations(problem, p1 - p0, build, desc=desc)
        total.index_add_(0, player_of, fx64.unsqueeze(0) - out.to(torch.float64))
        if scorer is not None:
            m, y, ref = scorer
            flat = out.detach().cpu().double()
            scores[p0:p1] = [m.degradation(ref, m.fn(y, flat[q])) for q in range(p1 - p0)]
    return total, scores


def _check_labels(labels: Any, n: int) -> torch.Tensor:
    y, _ = as_tensor(labels, name="y", dtype=torch.float64, ndims=(1, 2))
    if y.dim() == 2:
        if y.shape[1] != 1:
            raise ValueError(f"y must have shape (n,), got {tuple(y.shape)}")
        y = y[:, 0]
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows but the inputs have {n}")
    return y


def _one_vs_rest(y: torch.Tensor, pred: torch.Tensor, problem: Problem, metric: Any) -> tuple[torch.Tensor, dict]:
    """Labels ``y == c`` when one class ``c`` of a multi-class model is scored (see :func:`permutation`)."""
    sel = problem.selector
    k = sel.n_outputs or 1
    if pred.dim() != 1 or k < 2 or not isinstance(sel.target, int):
        return y, {}
    named = metric if isinstance(metric, str) else None
    if named is None and (metric is not None or sel.link not in ("sigmoid", "softmax")):
        return y, {}
    if named is not None and named not in CLASS_METRICS:
        return y, {}
    if not bool(((y == torch.round(y)) & (y >= 0) & (y < k)).all()):
        return y, {}
    return (y == sel.target).to(torch.float64), {"one_vs_rest_class": sel.target}


def _seed_of(random_state: Any) -> int | None:
    ok = isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)
    return int(random_state) if ok else None


def _auto_metric(y: torch.Tensor, pred: torch.Tensor, link: str) -> str:
    if link in ("sigmoid", "softmax"):
        return "log_loss"
    if pred.dim() == 1 and bool(((y == 0) | (y == 1)).all()):
        return "auc"
    return "mse"


#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
METHODS = {"ablation": ablation, "permutation": permutation}
