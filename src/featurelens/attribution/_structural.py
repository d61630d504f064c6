"""Structural attributions read from weights: first-layer weights and edge scores.

All three are global, data-independent (``weights``) or data-set-level
(``weights_x_std``, ``edge_scores``) scores: the :class:`Explanation` holds them as
``scores`` of shape ``(1, n_players)`` (one "repeat") and ``values=None``. With groups,
a group's score is the sum of its member features' scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from featurelens.attribution._edge_scores import edge_scores
from featurelens.attribution._explanation import Explanation
from featurelens.attribution._problem import Problem
from featurelens.data import as_tensor
from featurelens.models import effective_weight, find_input_layer


def _group(problem: Problem, col: np.ndarray) -> np.ndarray:
    """Feature scores ``(d,)`` -> player scores ``(1, n_players)`` (group = sum of members)."""
    masks = problem.spec.masks().numpy().astype(np.float64)
    return (masks @ col)[None, :]


def _no_link(problem: Problem, method: str) -> None:
    if problem.selector.link != "identity":
        raise ValueError(
            f"method {method!r} reads weights and activations up to the last Linear layer; "
            f"link={problem.selector.link!r} does not apply to it"
        )


def _normalised(col: np.ndarray) -> np.ndarray:
    total = col.sum()
    return col / total if total > 0 else np.zeros_like(col)


def _input_weight_sums(problem: Problem) -> tuple[str, np.ndarray]:
    name, layer = find_input_layer(problem.model, problem.x)
    return name, effective_weight(layer).to(torch.float64).abs().sum(dim=0).cpu().numpy()


def weights(problem: Problem) -> Explanation:
    """Score features by their first-layer weights, mask-aware, with the input layer found by data flow.

    The deep-hedging lottery-ticket notebook's score.

    Definition: with ``W`` the input layer's effective weight
    (``weight_orig * weight_mask`` for a layer pruned with
    ``torch.nn.utils.prune``) and ``j`` running over its output units,
    ``s_i = Σ_j |W_ji|``, normalised to ``Σ_i s_i = 1`` (all zeros stay zero).
    The input layer is the ``nn.Linear`` whose forward input is the model input
    (see :func:`find_input_layer`). The score does not depend on the data
    values, the target or the output; it ignores the scale of the inputs (see
    ``"weights_x_std"``).
    """
    _no_link(problem, "weights")
    name, col = _input_weight_sums(problem)
    col = _normalised(col)
    return problem.explanation(
        None, method="weights",
        params={"input_layer": name, "normalization": "sum",
                "score_label": "share of Σ|input-layer weight| (sums to 1)"},
        axes=("sample", problem.level), scores=_group(problem, col), extras={"feature_scores": col},
    )


def weights_x_std(problem: Problem, *, background: Any = None) -> Explanation:
    """First-layer weight importance times each input's standard deviation.

    Definition: ``s_i ∝ std(x_i) · Σ_j |W_ji|``, normalised to sum 1, with ``W``
    as in ``"weights"`` and ``std`` the unbiased standard deviation of column
    ``i`` over the rows (and time steps) of ``background`` if given, else of the
    explained inputs. Unlike raw ``|W|`` it is invariant to rescaling an input
    together with the inverse rescaling of its weight column.
    """
    _no_link(problem, "weights_x_std")
    name, col = _input_weight_sums(problem)
    d = problem.x.shape[-1]
    if background is None:
        data, source = problem.x, "inputs"
    else:
        data, _ = as_tensor(background, name="background", dtype=torch.float64)
        if data.shape[-1] != d:
            raise ValueError(f"background has {data.shape[-1]} features but the inputs have {d}")
        source = "background"
    flat = data.reshape(-1, d).to(torch.float64)
    if flat.shape[0] < 2:
        raise ValueError(f"weights_x_std needs at least 2 rows in the {source} to take standard deviations")
    std = flat.std(dim=0).cpu().numpy()
    col = _normalised(col * std)
    return problem.explanation(
        None, method="weights_x_std", params={"input_layer": name, "normalization": "sum", "std_of": source,
                "score_label": "share of Σ|input-layer weight| × input std (sums to 1)"},
        axes=("sample", problem.level), scores=_group(problem, col),
        extras={"feature_scores": col, "input_std": std},
    )


def edge_scores_method(problem: Problem, *, eps: float = 1e-4) -> Explanation:
    """Compute pykan's std-propagation edge scores (see :func:`featurelens.attribution.edge_scores`).

    ``target=None`` (single-output models) or ``"all"``: the mean over one
    identity query per output of the last Linear layer (pykan's convention);
    ``target=k``: only output unit ``k`` of the last Linear layer. Scores are
    the raw feature scores ``A_0`` (``importance(normalize=True)`` gives the
    sum-normalised ones); a group's score is the sum of its members'. Extras:
    ``feature_scores`` ``(d,)``, ``node_scores.<l>`` and ``edge_scores.<l>``
    (``l`` = 0..L and 1..L), ``edge_std.<l>``, ``node_std.<l>`` and ``queries``.
    """
    _no_link(problem, "edge_scores")
    target = problem.selector.target
    if target == "all":
        target = None
    elif isinstance(target, tuple):
        if len(target) != 1:
            raise ValueError(f"edge_scores takes target=<int>, a unit of the last Linear layer; got {target!r}")
        target = target[0]

    es = edge_scores(
        problem.model, problem.x, eps=eps, target=target, output=problem.selector.output,
        feature_names=list(problem.spec.names), batch_size=problem.batch_size,
    )
    extras: dict[str, np.ndarray] = {"feature_scores": es.feature_scores, "queries": es.queries}
    for i, s in enumerate(es.node_scores):
        extras[f"node_scores.{i}"] = s
    for i, (b, e, n) in enumerate(zip(es.edge_scores, es.edge_std, es.node_std, strict=True), start=1):
        extras[f"edge_scores.{i}"] = b
        extras[f"edge_std.{i}"] = e
        extras[f"node_std.{i}"] = n
    params = {"eps": es.eps, "input_layer": es.input_layer, "layers": es.layer_names, "n_rows": es.n_rows,
              "score_label": "edge score (std flow relative to output score 1, pykan)"}
    return problem.explanation(
        None, method="edge_scores", params=params, axes=("sample", problem.level),
        scores=_group(problem, es.feature_scores), extras=extras,
    )


#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
METHODS: dict[str, Callable[..., Explanation]] = {
    "weights": weights,
    "weights_x_std": weights_x_std,
    "edge_scores": edge_scores_method,
}

# read from weights (and input statistics): no output needs selecting, even for multi-output models
for _fn in METHODS.values():
    _fn.target_free = True  # type: ignore[attr-defined]
