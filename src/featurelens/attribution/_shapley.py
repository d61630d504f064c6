"""Shapley values over feature groups: exact enumeration and antithetic permutation sampling.

Both methods play the same cooperative game. The players are the feature
groups (or the single features when no groups are given); they must be
disjoint. Features in no group are not players and keep their input value in
every coalition. For an input row ``x`` the value of a coalition ``S`` is

* baseline Shapley (``baselines`` a name, number or array, see
  :func:`~featurelens.attribution.resolve_baselines`):
  ``v(S) = f(x_S, b_{S̄})``, the model on ``x`` with the columns of the
  players outside ``S`` replaced by the baseline ``b`` (one reference row,
  or one per sample);
* interventional Shapley (``baselines="background"``):
  ``v(S) = mean_k f(x_S, z^k_{S̄})`` over the background rows ``z^1..z^m``.

``f`` is the selected output. For sequences ``(n, T, d)`` a player covers its
columns at every time step. Every coalition value is evaluated through
:func:`~featurelens.attribution._engine.evaluate_perturbations`, so each model
call holds at most ``batch_size`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from featurelens._validation import check_int, check_random_state
from featurelens.attribution._baselines import per_row, resolve_background_sample, resolve_baselines
from featurelens.attribution._engine import evaluate_perturbations
from featurelens.attribution._explanation import Explanation
from featurelens.attribution._problem import Problem

#: exact Shapley values enumerate 2**g coalitions per row; beyond this many players use sampling
MAX_EXACT_PLAYERS = 14
#: model outputs held in memory at once (before averaging over background rows)
MAX_OUTPUTS_PER_BLOCK = 1 << 24
#: most orders of shapley_sampling (its standard error falls as 1/sqrt(n_permutations)); the orders
#: are drawn and evaluated in blocks, so memory does not grow with n_permutations
MAX_PERMUTATIONS = 100_000


# -- the game -------------------------------------------------------------------------------
class CoalitionGame:
    """Coalition values ``v(S)`` for every input row, for a list of coalitions.

    ``v(S)(x)`` is the selected model output at ``x`` with the players outside
    ``S`` replaced by the reference: ``ref`` is a baseline broadcastable to
    the rows (``interventional=False``) or ``m`` background rows
    ``(m, *x.shape[1:])`` over which the output is averaged
    (``interventional=True``). Build it with :func:`coalition_game`.

    Parameters
    ----------
    problem : Problem
        The model, inputs ``x`` ``(n, d)`` or ``(n, T, d)``, players and output.
    ref : Tensor
        The replacement values (see above), on the device of ``x``.
    interventional : bool
        Whether ``ref`` holds background rows to average over.

    Attributes
    ----------
    g : int
        Number of players.
    """

    def __init__(self, problem: Problem, ref: torch.Tensor, *, interventional: bool):
        self.problem, self.ref, self.interventional = problem, ref, interventional
        _, members = problem.spec.players()
        self.g = len(members)
        d = problem.x.shape[-1]
        owner = torch.full((d,), self.g, dtype=torch.long)  # column g of a coalition row is always True
        for j, cols in enumerate(members):
            owner[list(cols)] = j
        self.owner = owner.to(problem.x.device)

    def values(self, z: torch.Tensor, *, desc: str) -> torch.Tensor:
        """``v(S)`` for the coalitions ``z`` (bool ``(C, g)``, ``z[c, j]``: player ``j`` in ``S_c``).

        Returns float64 ``(C, n)``, or ``(C, n, K)`` with ``target="all"``.
        """
        p, x = self.problem, self.problem.x
        z = torch.cat([z.to(x.device), torch.ones(z.shape[0], 1, dtype=torch.bool, device=x.device)], dim=1)
        m = self.ref.shape[0] if self.interventional else 1
        k = (p.selector.n_outputs or 1) if p.selector.all_targets else 1
        block = max(1, MAX_OUTPUTS_PER_BLOCK // (m * p.n * k))
        n_blocks = -(-z.shape[0] // block)
        parts = []
        for b, c0 in enumerate(range(0, z.shape[0], block)):
            zb = z[c0 : c0 + block]
            label = desc if n_blocks == 1 else f"{desc} ({b + 1}/{n_blocks})"
            out = evaluate_perturbations(p, zb.shape[0] * m, self._builder(zb, m), desc=label).to(torch.float64)
            if self.interventional:
                out = out.reshape((zb.shape[0], m, *tuple(out.shape[1:]))).mean(dim=1)
            parts.append(out)
        return torch.cat(parts)

    def _builder(self, z: torch.Tensor, m: int) -> Callable[[int, int, int, int], torch.Tensor]:
        x, ref, owner = self.problem.x, self.ref, self.owner
        keep_shape = (1,) * (x.dim() - 2) + (x.shape[-1],)
        row_shape = tuple(x.shape[1:])

        def build(p0: int, p1: int, i0: int, i1: int) -> torch.Tensor:
            xb = x[i0:i1].unsqueeze(0)
            if self.interventional:
                idx = torch.arange(p0, p1, device=x.device)
                keep = z[idx // m][:, owner]
                other = ref[idx % m].unsqueeze(1)
            else:
                keep = z[p0:p1][:, owner]
                other = per_row(ref, x, slice(i0, i1)).unsqueeze(0)
            keep = keep.reshape((p1 - p0, 1, *keep_shape))
            return torch.where(keep, xb, other).reshape((-1, *row_shape))

        return build


def coalition_game(
    problem: Problem,
    *,
    method: str,
    baselines: Any,
    background: Any,
    max_background: int | None,
    random_state: Any,
) -> tuple[CoalitionGame, dict[str, Any], dict[str, np.ndarray]]:
    """Validate the baseline options of a coalition method; return its game, params and extras.

    Parameters
    ----------
    problem : Problem
        From :func:`build_problem`; its groups must be disjoint.
    method : str
        The method's name, used in error messages.
    baselines : None, str, number or array
        As for ``attribute(method="shapley")``: ``None``/``"zeros"``,
        ``"mean"``/``"median"`` of ``background``, a number or array, or
        ``"background"`` (average the output over background rows).
    background : array-like or None
        Reference rows for ``"mean"``, ``"median"`` and ``"background"``.
    max_background : int or None
        With ``baselines="background"``: at most this many background rows,
        subsampled with ``random_state``.
    random_state : int, Generator or None
        Seeds the background subsample.

    Returns
    -------
    game : CoalitionGame
        The coalition values of ``problem``.
    params : dict
        The baseline settings, as recorded in an :class:`Explanation`'s params.
    extras : dict of str to ndarray
        ``{"baseline": ...}`` (float64) when the baseline is one row; else empty.

    Raises
    ------
    ValueError
        If the groups overlap, ``max_background`` is given without
        ``baselines="background"``, or ``background`` is given with a
        baseline that does not use it.
    """
    problem.spec.require_disjoint(method)
    x = problem.x
    interventional = isinstance(baselines, str) and baselines == "background"
    if max_background is not None and not interventional:
        raise ValueError("max_background= applies only to baselines='background'")
    params: dict[str, Any] = {}
    extras: dict[str, np.ndarray] = {}
    if interventional:
        ref = resolve_background_sample(background, x, max_rows=max_background, random_state=random_state)
        params.update(baselines="background", background_rows=int(ref.shape[0]), max_background=max_background)
    else:
        if background is not None and not (isinstance(baselines, str) and baselines in ("mean", "median")):
            raise ValueError(
                f"background= is used only with baselines='mean', 'median' or 'background'; got baselines={baselines!r}"
            )
        ref, desc = resolve_baselines(baselines, x, background=background)
        params["baselines"] = desc
        if ref.dim() <= x.dim() - 1:
            extras["baseline"] = ref.detach().cpu().double().numpy()
    return CoalitionGame(problem, ref, interventional=interventional), params, extras


def _sample_major(t: torch.Tensor) -> np.ndarray:
    """``(g, n[, K])`` -> ``(n, g[, K])`` float64 NumPy."""
    return t.transpose(0, 1).detach().cpu().numpy()


def _seed_of(random_state: Any) -> int | None:
    ok = isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)
    return int(random_state) if ok else None


# -- exact ------------------------------------------------------------------------------------
def coalition_matrix(g: int) -> torch.Tensor:
    """Bool ``(2**g, g)``: row ``s`` is the coalition whose bit ``j`` is set iff player ``j`` is in it."""
    s = torch.arange(2**g).unsqueeze(1)
    return ((s >> torch.arange(g)) & 1).bool()


def shapley_weight_matrix(g: int) -> torch.Tensor:
    """Float64 ``(2**g, g)`` matrix ``W`` with ``phi = V @ W`` for coalition values ``V (n, 2**g)``.

    ``W[S, j] = w(|S| − 1)`` if ``j ∈ S`` and ``−w(|S|)`` otherwise, where
    ``w(k) = k! (g − k − 1)! / g! = 1 / (g · C(g − 1, k))`` is the Shapley
    weight of the marginal contribution ``v(S ∪ {j}) − v(S)`` for ``|S| = k``.
    Every row sums to 0 except the full coalition (+1) and the empty one (−1),
    which is the efficiency property ``Σ_j phi_j = v(N) − v(∅)``.
    """
    z = coalition_matrix(g)
    size = z.sum(dim=1)
    w = torch.tensor([1.0 / (g * math.comb(g - 1, k)) for k in range(g)] + [0.0], dtype=torch.float64)
    return torch.where(z, w[(size - 1).clamp(min=0)].unsqueeze(1), -w[size].unsqueeze(1))


def shapley(
    problem: Problem,
    *,
    baselines: Any = None,
    background: Any = None,
    max_background: int | None = None,
    random_state: Any = 0,
) -> Explanation:
    r"""Exact Shapley values by enumerating all ``2**g`` coalitions of the ``g`` players.

    Definition, for row ``i`` and player ``j`` (``N`` the set of players)::

        phi[i, j] = Σ_{S ⊆ N \ {j}} |S|! (g − |S| − 1)! / g! · (v_i(S ∪ {j}) − v_i(S))

    with ``v_i`` the coalition value of the module docstring. All ``2**g``
    values ``V[i, S]`` are computed once per row and combined as
    ``phi = V @ W`` (:func:`shapley_weight_matrix`), so
    ``Σ_j phi[i, j] = f(x_i) − v_i(∅)`` holds up to float rounding.

    Parameters
    ----------
    problem : Problem
        Built by :func:`featurelens.attribute`; players must be disjoint
        (``g <= 14``; use ``"shapley_sampling"`` for more).
    baselines : None, "zeros", "mean", "median", number, array or "background"
        The reference ``b`` (see ``resolve_baselines``), or ``"background"``
        for the interventional expectation over the rows of ``background``.
    background : array-like, optional
        Training data for ``"mean"``/``"median"``; reference rows
        ``(m, d)`` or ``(m, T, d)`` for ``"background"``.
    max_background : int, optional
        With ``"background"``: use a subsample of this many rows, drawn with
        ``random_state`` (:func:`resolve_background_sample`).
    random_state : int, Generator or None
        Seed of the background subsample (nothing else is random).

    Returns
    -------
    Explanation
        ``values`` ``(n, g)`` (``(n, g, K)`` with ``target="all"``); extras:
        ``output`` ``f(x)`` and ``base_value`` ``v(∅)`` (``(n,)`` or ``(n, K)``),
        ``efficiency_error`` ``Σ_j phi_j − (f(x) − v(∅))`` per sample, and
        ``baseline`` when the baseline is one row.
    """
    g = len(problem.spec.players()[1])
    if g > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"method 'shapley' evaluates 2**g coalitions per row; {g} players would need {2**g} "
            f"(at most {MAX_EXACT_PLAYERS} players); use method='shapley_sampling' or fewer, larger groups"
        )
    game, params, extras = coalition_game(problem, method="shapley", baselines=baselines, background=background,
                                          max_background=max_background, random_state=random_state)
    v = game.values(coalition_matrix(g), desc="shapley coalitions")  # (2**g, n[, K])
    v_empty, v_full = v[0], v[-1]
    w = shapley_weight_matrix(g).to(v.device)
    phi = torch.einsum("cn...,cg->gn...", v - v_empty, w)  # centring: v(∅) -> 0, same phi, less rounding
    params.update(n_players=g, n_coalitions=2**g, random_state=_seed_of(random_state))
    return _finish(problem, "shapley", phi, v_full, v_empty, params, extras)


def _finish(
    problem: Problem,
    method: str,
    phi: torch.Tensor,
    v_full: torch.Tensor,
    v_empty: torch.Tensor,
    params: dict[str, Any],
    extras: dict[str, np.ndarray],
) -> Explanation:
    err = phi.sum(dim=0) - (v_full - v_empty)
    extras.update(
        output=v_full.cpu().numpy(), base_value=v_empty.cpu().numpy(), efficiency_error=err.cpu().numpy()
    )
    return problem.explanation(_sample_major(phi), method=method, params=params, extras=extras)


# -- sampled ----------------------------------------------------------------------------------
def antithetic_permutations(g: int, n_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_permutations, g)`` orders: ``rng.permutation(g)`` followed by its reverse, pair after pair."""
    out = np.empty((n_permutations, g), dtype=np.int64)
    for q in range(n_permutations // 2):
        out[2 * q] = rng.permutation(g)
        out[2 * q + 1] = out[2 * q, ::-1]
    return out


def shapley_sampling(
    problem: Problem,
    *,
    n_permutations: int = 32,
    baselines: Any = None,
    background: Any = None,
    max_background: int | None = None,
    random_state: Any = 0,
) -> Explanation:
    """Shapley values estimated from antithetic pairs of random player orders.

    Draw ``R = n_permutations / 2`` orders ``π_r = rng.permutation(g)`` from
    ``numpy.random.default_rng(random_state)`` and pair each with its
    reverse. One order ``π`` adds the players one at a time and credits each
    with its marginal contribution::

        phi_π[i, π_t] = v_i({π_0..π_t}) − v_i({π_0..π_{t−1}})      t = 0..g−1

    The same orders are used for every row, so a row's values do not depend
    on the other rows. The estimate averages each antithetic pair first,
    ``a_r = (phi_{π_r} + phi_{reverse(π_r)}) / 2``, then ``phi = mean_r a_r``;
    its standard error is ``std_r(a_r, ddof=1) / sqrt(R)`` (NaN for ``R = 1``).
    Each order's contributions telescope to ``f(x) − v(∅)``, so efficiency
    holds for every order, hence for the estimate, up to float rounding.

    The empty and full coalitions are shared by all orders, so the model
    runs on ``(2 + n_permutations · (g − 1))`` coalitions per row (times the
    background rows for ``baselines="background"``).

    Sizes: ``n_permutations`` is at most :data:`MAX_PERMUTATIONS` (100 000).
    Orders are drawn and evaluated in blocks whose coalition values fit in
    ``MAX_OUTPUTS_PER_BLOCK / 8`` floats; the pairs' mean and spread are
    merged across blocks, so memory does not grow with ``n_permutations``.

    Parameters
    ----------
    problem : Problem
        Built by :func:`featurelens.attribute`; players must be disjoint.
    n_permutations : int
        Even, ``>= 2``: the number of orders (``n_permutations / 2`` pairs).
    baselines, background, max_background
        As for :func:`shapley`.
    random_state : int, Generator or None
        Seed of the orders and of the background subsample (drawn first).

    Returns
    -------
    Explanation
        As for :func:`shapley`, plus ``extras["std_error"]`` (shape of ``values``).
    """
    n_permutations = _check_permutations(n_permutations)
    rng = check_random_state(random_state)
    game, params, extras = coalition_game(problem, method="shapley_sampling", baselines=baselines,
                                          background=background, max_background=max_background, random_state=rng)
    g, n_pairs = game.g, n_permutations // 2
    if problem.selector.all_targets and problem.selector.n_outputs is None:
        with torch.no_grad():  # one row tells the number of outputs, which sizes the blocks
            problem.forward(problem.x[:1])
    k = (problem.selector.n_outputs or 1) if problem.selector.all_targets else 1
    per_block = max(1, MAX_OUTPUTS_PER_BLOCK // (8 * g * problem.n * k))
    n_blocks = -(-n_pairs // per_block)
    ends = torch.stack([torch.zeros(g, dtype=torch.bool), torch.ones(g, dtype=torch.bool)])
    v_empty = c_full = v_full = None
    moments = _PairMoments()
    for b, q0 in enumerate(range(0, n_pairs, per_block)):
        r2 = 2 * (min(q0 + per_block, n_pairs) - q0)  # orders in this block
        perms = torch.as_tensor(antithetic_permutations(g, r2, rng))
        rank = torch.argsort(perms, dim=1)  # rank[r, j]: position of player j in order r
        prefix = rank.unsqueeze(1) < torch.arange(1, g).reshape(1, -1, 1)  # (r2, g-1, g): sizes 1..g-1
        z = prefix.reshape(-1, g) if v_empty is not None else torch.cat([ends, prefix.reshape(-1, g)])
        desc = "shapley_sampling coalitions" + ("" if n_blocks == 1 else f" ({b + 1}/{n_blocks})")
        v = game.values(z, desc=desc)  # ([2 +] r2 (g - 1), n[, K])
        if v_empty is None:  # the empty and full coalitions, shared by every order, come first
            v_empty, v_full = v[0], v[1]
            zero, c_full, v = v[:1] - v_empty, v[1:2] - v_empty, v[2:]
        v = v - v_empty
        tail = tuple(v.shape[1:])
        walk = torch.cat(
            [zero.expand(r2, 1, *tail), v.reshape((r2, g - 1, *tail)), c_full.expand(r2, 1, *tail)], dim=1,
        )  # (r2, g + 1, n[, K]): the values along each order
        steps = walk[:, 1:] - walk[:, :-1]  # steps[r, t]: contribution of player perms[r, t]
        idx = rank.to(v.device).reshape((r2, g) + (1,) * len(tail)).expand_as(steps)
        phi_r = torch.gather(steps, 1, idx)  # (r2, g, n[, K]) per order, by player
        moments.add(0.5 * (phi_r[0::2] + phi_r[1::2]))
    phi, se = moments.mean_and_std_error()
    extras["std_error"] = _sample_major(se)
    params.update(n_players=g, n_permutations=n_permutations, random_state=_seed_of(random_state))
    return _finish(problem, "shapley_sampling", phi, v_full, v_empty, params, extras)


def _check_permutations(n_permutations: Any) -> int:
    n_permutations = check_int(n_permutations, name="n_permutations", minimum=2)
    if n_permutations % 2:
        raise ValueError(
            f"n_permutations must be even (each order is paired with its reverse), got {n_permutations}"
        )
    if n_permutations > MAX_PERMUTATIONS:
        raise ValueError(f"n_permutations={n_permutations} exceeds the maximum of {MAX_PERMUTATIONS} orders")
    return n_permutations


def _sampling_sizes(given: dict) -> None:
    """Size checks of shapley_sampling's options alone (no data needed), for early refusal."""
    if given.get("n_permutations") is not None:
        _check_permutations(given["n_permutations"])


shapley_sampling.check_sizes = _sampling_sizes  # type: ignore[attr-defined]


class _PairMoments:
    """Mean and standard error over pairs ``a_r``, fed in blocks ``(Q, g, n[, K])``.

    One block: ``a.mean(0)`` and ``a.std(0, ddof=1) / sqrt(R)``. Several:
    the blocks' means and sums of squared deviations are merged exactly
    (Chan, Golub and LeVeque's pairwise update), never the pairs themselves.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        self.single: torch.Tensor | None = None

    def add(self, pairs: torch.Tensor) -> None:
        if self.count == 0:
            self.single, self.count = pairs, pairs.shape[0]
            return
        if self.single is not None:  # a second block: fold the first into running moments
            first, self.single = self.single, None
            self.mean = first.mean(dim=0)
            self.m2 = ((first - self.mean) ** 2).sum(dim=0)
        nb = pairs.shape[0]
        mean_b = pairs.mean(dim=0)
        total = self.count + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / total)
        self.m2 = self.m2 + ((pairs - mean_b) ** 2).sum(dim=0) + delta**2 * (self.count * nb / total)
        self.count = total

    def mean_and_std_error(self) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.count
        if self.single is not None:  # one block: exactly as without blocks
            phi = self.single.mean(dim=0)
            se = self.single.std(dim=0, correction=1) / math.sqrt(r) if r > 1 else torch.full_like(phi, math.nan)
            return phi, se
        return self.mean, torch.sqrt(self.m2 / (r - 1)) / math.sqrt(r)


#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
METHODS: dict[str, Callable[..., Explanation]] = {"shapley": shapley, "shapley_sampling": shapley_sampling}
