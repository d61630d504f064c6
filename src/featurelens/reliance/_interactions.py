"""Pairwise interactions between feature groups: joint-ablation contrasts and the Shapley interaction index.

Both play the coalition game of :mod:`featurelens.attribution._shapley`: for
an input row ``x`` the value of a coalition ``S`` of groups is the model's
selected output with the groups outside ``S`` replaced by the baseline
(``v(S) = f(x_S, b_{S̄})``), or averaged over background rows with
``baselines="background"``. Groups must be disjoint; features in no group
keep their values.

* :func:`interaction_matrix`: per row, the joint-ablation contrast
  ``Δ_ij(x) = f(x) − f(x∖i) − f(x∖j) + f(x∖ij)`` (``x∖S``: the groups in
  ``S`` at the baseline), averaged over rows. The superposition and spurious-correlation notebook's
  ``feature_interaction_analysis`` subtracted the sum of individual effects
  from the joint effect; this is the same contrast, written per sample.
* :func:`shapley_interactions`: the exact Shapley interaction index
  (Grabisch 1997) over all ``2**g`` coalitions,
  ``I_ij(x) = Σ_{S ⊆ N∖{i,j}} |S|! (g − |S| − 2)! / (g − 1)! · (v(S∪{i,j}) − v(S∪{i}) − v(S∪{j}) + v(S))``,
  averaged over rows. SHAP's "interaction values" put ``I_ij / 2`` off the
  diagonal; this is the full index.

Both matrices are symmetric by construction and vanish for additive models
``f(x) = Σ_G h_G(x_G)`` (every discrete second difference is 0). The diagonal
is 0: a group has no interaction with itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._validation import RandomState, check_option
from featurelens.attribution import MAX_EXACT_PLAYERS, Problem, build_problem, coalition_game, coalition_matrix
from featurelens.data import FeatureSpec
from featurelens.models import preserve_model

REDUCTIONS = ("mean", "mean_abs")


def _pairs(g: int) -> tuple[torch.Tensor, torch.Tensor]:
    ii, jj = torch.triu_indices(g, g, offset=1)
    return ii, jj


def _reduce(per_sample: torch.Tensor, reduce: str) -> np.ndarray:
    """``(P, n)`` per-pair, per-row values -> ``(P,)`` mean or mean absolute value."""
    vals = per_sample.abs() if reduce == "mean_abs" else per_sample
    return vals.mean(dim=1).cpu().numpy()


def _to_matrix(names: list[str], pair_values: np.ndarray) -> pd.DataFrame:
    g = len(names)
    m = np.zeros((g, g))
    ii, jj = (t.numpy() for t in _pairs(g))
    m[ii, jj] = pair_values
    m[jj, ii] = pair_values
    index = pd.Index(names, name="group")
    return pd.DataFrame(m, index=index, columns=pd.Index(names, name="with"))


def _problem(
    model: nn.Module, X: Any, groups: Any, feature_names: Any, target: Any, output: Any, link: Any,
    batch_size: Any, progress: bool,
) -> Problem:
    problem = build_problem(
        model, X, groups=groups, feature_names=feature_names, target=target, output=output,
        link=link, batch_size=batch_size, progress=progress,
    )
    if problem.selector.all_targets:
        raise ValueError("target='all' is not supported for interactions; pick one output with target=<int>")
    if len(problem.names) < 2:
        raise ValueError(f"interactions need at least 2 groups, got {len(problem.names)}")
    return problem


def interaction_matrix(
    model: nn.Module,
    X: Any,
    *,
    groups: Mapping[str, list] | FeatureSpec | None,
    baselines: Any = None,
    background: Any = None,
    max_background: int | None = None,
    reduce: str = "mean",
    target: Any = None,
    link: str | None = None,
    output: int | None = None,
    feature_names: list[str] | None = None,
    batch_size: int | None = None,
    random_state: RandomState = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Joint-ablation interaction of every pair of groups (see the module docstring).

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode and left as it was found.
    X : ndarray, tensor or DataFrame ``(n, d)`` or ``(n, T, d)``
    groups : mapping, FeatureSpec or None
        Disjoint groups (``None``: every feature is a player); at least 2 players.
    baselines, background, max_background
        The replacement values, as for ``attribute(method="shapley")``:
        ``None``/``"zeros"``, ``"mean"``/``"median"`` of ``background``, a
        number or array, or ``"background"`` (average over background rows).
    reduce : {"mean", "mean_abs"}
        Average of ``Δ_ij(x)`` over rows, or of ``|Δ_ij(x)|`` (interactions of
        opposite sign in different rows then do not cancel).
    target, link, output, feature_names, batch_size, progress
        As for :func:`featurelens.attribute` (one target).
    random_state : int, Generator or None
        Seeds the background subsample (``max_background``).

    Returns
    -------
    DataFrame ``(g, g)``, symmetric, zero diagonal, indexed by group names,
    in the units of the selected output. It costs ``1 + g + g (g − 1) / 2``
    model evaluations per row (times the background rows).
    """
    reduce = check_option(reduce, name="reduce", options=REDUCTIONS)
    with preserve_model(model, eval_mode=True):
        problem = _problem(model, X, groups, feature_names, target, output, link, batch_size, progress)
        game, _, _ = coalition_game(problem, method="interaction_matrix", baselines=baselines, background=background,
                                    max_background=max_background, random_state=random_state)
        g = game.g
        ii, jj = _pairs(g)
        full = torch.ones(1, g, dtype=torch.bool)
        minus_one = ~torch.eye(g, dtype=torch.bool)
        minus_two = torch.ones(ii.numel(), g, dtype=torch.bool)
        minus_two[torch.arange(ii.numel()), ii] = False
        minus_two[torch.arange(ii.numel()), jj] = False
        v = game.values(torch.cat([full, minus_one, minus_two]), desc="interaction coalitions")
        v_full, v_one, v_two = v[0], v[1 : 1 + g], v[1 + g :]
        delta = v_full.unsqueeze(0) - v_one[ii.to(v.device)] - v_one[jj.to(v.device)] + v_two
    return _to_matrix(problem.names, _reduce(delta, reduce))


def shapley_interaction_weights(g: int) -> torch.Tensor:
    """Float64 ``(2**g, g (g − 1) / 2)`` matrix ``W`` with ``I = V @ W`` for coalition values ``V (n, 2**g)``.

    Column ``p`` belongs to the pair ``(i, j)`` of ``torch.triu_indices(g, g, 1)[:, p]``.
    For coalition ``T`` and ``S = T ∖ {i, j}``: ``W[T, p] = ± |S|! (g − |S| − 2)! / (g − 1)!``
    with ``+`` when ``T`` holds both or neither of ``i, j`` and ``−`` when it holds one.
    """
    z = coalition_matrix(g)
    ii, jj = _pairs(g)
    zi, zj = z[:, ii], z[:, jj]
    s = z.sum(dim=1, keepdim=True) - zi.long() - zj.long()
    w = torch.tensor(
        [math.factorial(k) * math.factorial(g - k - 2) / math.factorial(g - 1) for k in range(g - 1)],
        dtype=torch.float64,
    )
    sign = torch.where(zi == zj, 1.0, -1.0).to(torch.float64)
    return sign * w[s]


def shapley_interactions(
    model: nn.Module,
    X: Any,
    *,
    groups: Mapping[str, list] | FeatureSpec | None,
    baselines: Any = None,
    background: Any = None,
    max_background: int | None = None,
    reduce: str = "mean",
    target: Any = None,
    link: str | None = None,
    output: int | None = None,
    feature_names: list[str] | None = None,
    batch_size: int | None = None,
    random_state: RandomState = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Exact Shapley interaction index of every pair of groups (see the module docstring).

    Parameters are those of :func:`interaction_matrix`; at most
    ``MAX_EXACT_PLAYERS`` (14) groups, since all ``2**g`` coalitions are
    evaluated per row.

    Returns
    -------
    DataFrame ``(g, g)``, symmetric, zero diagonal: the row-average (or mean
    absolute value, ``reduce="mean_abs"``) of ``I_ij(x)``.
    """
    reduce = check_option(reduce, name="reduce", options=REDUCTIONS)
    with preserve_model(model, eval_mode=True):
        problem = _problem(model, X, groups, feature_names, target, output, link, batch_size, progress)
        g = len(problem.names)
        if g > MAX_EXACT_PLAYERS:
            raise ValueError(
                f"shapley_interactions evaluates 2**g coalitions per row; {g} groups would need {2**g} "
                f"(at most {MAX_EXACT_PLAYERS} groups); use interaction_matrix or fewer, larger groups"
            )
        game, _, _ = coalition_game(problem, method="shapley_interactions", baselines=baselines, background=background,
                                    max_background=max_background, random_state=random_state)
        v = game.values(coalition_matrix(g), desc="shapley interaction coalitions")  # (2**g, n)
        inter = torch.einsum("cn,cp->pn", v - v[0], shapley_interaction_weights(g).to(v.device))
    return _to_matrix(problem.names, _reduce(inter, reduce))
