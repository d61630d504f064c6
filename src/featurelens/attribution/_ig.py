"""The gradient engine: quadrature rules and chunked, weighted path gradients.

Every gradient method is a special case of one computation. A *unit* ``u`` is
an input row ``x_u`` (possibly a noisy copy) with a reference row ``b_u``
(possibly one of several background rows); it belongs to the explained sample
``owner(u)``. For a quadrature rule with nodes ``α_s`` and weights ``w_s``::

    G_u      = Σ_s w_s ∇f(b_u + α_s (x_u − b_u))
    value[i] = Σ_{u : owner(u) = i} scale · m_u ⊙ G_u

with ``m_u = x_u − b_u`` (integrated gradients), ``x_u`` (input × gradient)
or ``1`` (saliency), and ``f`` the selected output. Saliency is the one-node
rule ``α = 1, w = 1`` without a reference (``x_u`` is used as is).

Rows are evaluated in calls of at most ``B`` rows holding ``e`` units ×
``s`` nodes (``e = min(#units, B)``, ``s = B // e``), with ``B =
batch_size`` (``batch_size // K`` for ``target="all"`` with ``K`` outputs,
whose batched backward holds ``K`` copies of the rows), so peak memory
depends on ``batch_size`` and not on the number of nodes or units. Each call
runs one forward and one backward of ``Σ_rows w_row f(row)`` (rows are
independent in eval mode), never one backward per row as Captum does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from featurelens._progress import progress_bar
from featurelens._validation import check_int
from featurelens.attribution._problem import Problem

#: Captum's names for the integral approximations (``IntegratedGradients(method=...)``)
RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
#: most nodes of a Riemann rule (Captum's default is 50; their error falls as 1/n or 1/n², so
#: 100 000 nodes are far past any float32 gain); the nodes are evaluated in chunks of batch_size rows
MAX_N_STEPS = 100_000
#: most Gauss–Legendre nodes: numpy's ``leggauss(n)`` solves an n × n eigenproblem (O(n²) memory,
#: O(n³) time), and 1024 nodes integrate any smooth path to float64 precision
MAX_GAUSS_LEGENDRE_STEPS = 1024


def check_n_steps(n_steps: object, rule: str, *, name: str = "n_steps") -> int:
    """``n_steps`` as int in ``1..cap`` (:data:`MAX_GAUSS_LEGENDRE_STEPS` or :data:`MAX_N_STEPS`)."""
    steps = check_int(n_steps, name=name, minimum=1)
    cap = MAX_GAUSS_LEGENDRE_STEPS if rule == "gausslegendre" else MAX_N_STEPS
    if steps > cap:
        other = "; use a Riemann rule (e.g. rule='riemann_trapezoid') for more" if rule == "gausslegendre" else ""
        raise ValueError(f"{name}={steps} exceeds the maximum of {cap} nodes for rule={rule!r}{other}")
    return steps


def quadrature(rule: str, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α`` in ``[0, 1]`` and weights ``w`` (float64, shape ``(n_steps,)``) of a rule.

    With ``k = 0 .. n − 1``: ``riemann_left`` ``α = k/n``, ``riemann_right``
    ``α = (k+1)/n``, ``riemann_middle`` ``α = (k+½)/n``, all with ``w = 1/n``;
    ``riemann_trapezoid`` ``α = k/(n−1)``, ``w = 1/(n−1)`` halved at both ends
    (``n >= 2``); ``gausslegendre`` the Gauss–Legendre nodes and weights of
    ``numpy.polynomial.legendre.leggauss(n)`` mapped from ``[−1, 1]`` to
    ``[0, 1]`` (``α = (1 + t)/2``, ``w = v/2``). The weights sum to 1.

    The nodes are Captum's (which computes the Riemann nodes with float32
    ``torch.linspace``; here they are exact in float64). The trapezoid
    weights differ: Captum uses ``1/n`` (ends ``1/(2n)``), which sum to
    ``(n−1)/n`` and scale every attribution down by that factor.

    ``n_steps`` is at most :data:`MAX_N_STEPS` (:data:`MAX_GAUSS_LEGENDRE_STEPS`
    for ``gausslegendre``); a larger count raises ``ValueError`` before
    anything is allocated.
    """
    if rule in RULES:
        n_steps = check_n_steps(n_steps, rule)
    k = np.arange(n_steps, dtype=np.float64)
    w = np.full(n_steps, 1.0 / n_steps)
    if rule == "riemann_left":
        a = k / n_steps
    elif rule == "riemann_right":
        a = (k + 1.0) / n_steps
    elif rule == "riemann_middle":
        a = (k + 0.5) / n_steps
    elif rule == "riemann_trapezoid":
        if n_steps < 2:
            raise ValueError(f"rule='riemann_trapezoid' needs n_steps >= 2, got {n_steps}")
        a = k / (n_steps - 1)
        w = np.full(n_steps, 1.0 / (n_steps - 1))
        w[[0, -1]] /= 2.0
    elif rule == "gausslegendre":
        t, v = np.polynomial.legendre.leggauss(n_steps)
        a, w = 0.5 * (1.0 + t), 0.5 * v
    else:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RULES))}; got {rule!r}")
    return a, w


def _grad(out: torch.Tensor, xs: torch.Tensor, go: torch.Tensor | None = None, **kw: bool) -> torch.Tensor:
    (g,) = torch.autograd.grad(out, xs, grad_outputs=go, allow_unused=True, **kw)
    if g is None:  # the output does not depend on the inputs at all
        lead = () if go is None else go.shape[: go.dim() - out.dim()]
        return torch.zeros(lead + tuple(xs.shape), dtype=xs.dtype, device=xs.device)
    return g


class GradientFn:
    """Weighted input gradients of the selected output for one chunk of rows.

    ``fn(xs, w)`` returns ``(out, g)``: the detached output ``(B,)`` or
    ``(B, K)`` and ``g = ∇_xs Σ_b w_b f(xs_b)``, shaped like ``xs``, with a
    trailing ``K`` axis for ``target="all"``. Every output of a multi-output
    model is differentiated in one batched vector-Jacobian product
    (``is_grads_batched=True``, i.e. ``vmap`` over the backward). If that
    fails for the model (an op without a batching rule, ``.item()`` in a
    hook, ...), the call switches, once and for good, to a loop of ``K``
    backward passes over the same forward.
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        self.batched: bool | None = None  # None: not tried yet

    def _forward(self, xs: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            out = self.problem.forward(xs)
        if not out.requires_grad:
            raise ValueError(
                "the selected model output does not depend differentiably on the inputs (it does not "
                "require grad); gradient methods need a differentiable model: use method='ablation'"
            )
        return out

    def __call__(self, xs: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs = xs.detach().requires_grad_(True)
        out = self._forward(xs)
        # the weights enter the graph (then a sum or one-hot rows are differentiated): the same
        # numbers as grad_outputs=w, with a measured 30-40 MB lower peak RSS per 2048-row call
        ow = out * w.to(out.dtype).reshape((-1,) + (1,) * (out.dim() - 1))
        if out.dim() == 1:
            return out.detach(), _grad(ow.sum(), xs)
        k = out.shape[1]
        if self.batched is not False:
            eye = torch.eye(k, dtype=out.dtype, device=out.device)
            try:
                g = _grad(ow, xs, eye[:, None, :].expand(k, out.shape[0], k), is_grads_batched=True)
                self.batched = True
                return out.detach(), g.movedim(0, -1)
            except (RuntimeError, NotImplementedError):
                if self.batched:  # it worked on an earlier chunk: a genuine error
                    raise
                self.batched = False
                out = self._forward(xs)  # the failed attempt may have freed the graph
                ow = out * w.to(out.dtype).unsqueeze(1)
        g = torch.stack([_grad(ow[:, j].sum(), xs, retain_graph=j < k - 1) for j in range(k)], dim=-1)
        return out.detach(), g


@dataclass
class Units:
    """A chunk of units: inputs ``x`` ``(e, *row)``, references ``b`` and owners.

    ``b``: ``None`` (no path: gradients at ``x``), one row ``row`` or ``(e, *row)``.
    ``owner``: ``None`` when unit ``u0 + j`` belongs to sample ``u0 + j``,
    else the sample index of each unit, ``(e,)``.
    """

    x: torch.Tensor
    b: torch.Tensor | None = None
    owner: torch.Tensor | None = None


#: build(u0, u1) -> Units for units u0 .. u1 - 1
UnitBuilder = Callable[[int, int], Units]


def path_gradients(
    problem: Problem,
    grad_fn: GradientFn,
    *,
    n_units: int,
    build: UnitBuilder,
    alphas: np.ndarray,
    weights: np.ndarray,
    multiply: str,
    scale: float = 1.0,
    keep_outputs: bool = False,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Accumulate ``scale · m_u ⊙ G_u`` into the samples (see the module docstring).

    Parameters
    ----------
    multiply : {"none", "input", "difference"}
        ``m_u``: 1, ``x_u`` or ``x_u − b_u``.

    Returns
    -------
    values : Tensor ``(n, *row)`` or ``(n, *row, K)``, in the inputs' dtype.
    outputs : Tensor ``(n_units,)``/``(n_units, K)`` of ``f(x_u)`` with
        ``keep_outputs`` (one-node rules without reference only); else ``None``.
    """
    x = problem.x
    row = tuple(x.shape[1:])
    # target="all": the batched backward holds K copies of a call's rows, so calls take
    # batch_size // K rows (also the fastest batched setting measured on the CPU)
    k = (problem.selector.n_outputs or 1) if problem.selector.all_targets else 1
    bs = max(1, problem.batch_size // k)
    n_nodes = len(alphas)
    e_max = min(n_units, bs)
    s_max = max(1, min(n_nodes, bs // e_max))
    a_all = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    w_all = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    acc: torch.Tensor | None = None
    parts: list[torch.Tensor] = []
    outs: list[torch.Tensor] = []
    keep_out = keep_outputs and n_nodes == 1 and multiply != "difference"
    with progress_bar(desc, n_units * n_nodes, enabled=problem.progress) as advance:
        for u0 in range(0, n_units, e_max):
            u1 = min(u0 + e_max, n_units)
            e = u1 - u0
            units = build(u0, u1)
            xu, bu = units.x, units.b
            diff = None if bu is None else xu - bu
            total: torch.Tensor | None = None
            for s0 in range(0, n_nodes, s_max):
                s1 = min(s0 + s_max, n_nodes)
                s = s1 - s0
                if diff is None:
                    xs = xu
                else:
                    a = a_all[s0:s1].reshape((s,) + (1,) * xu.dim())
                    xs = (bu + a * diff).reshape((s * e, *row))
                out, g = grad_fn(xs, w_all[s0:s1].repeat_interleave(e))
                g = g.reshape((s, e, *tuple(g.shape[1:]))).sum(dim=0) if s > 1 else g
                total = g if total is None else total + g
                if keep_out:
                    outs.append(out)
                advance(s * e)
            assert total is not None
            k_axis = total.dim() > xu.dim()
            m = {"none": None, "input": xu, "difference": diff}[multiply]
            if m is not None:
                total = total * (m.unsqueeze(-1) if k_axis else m)
            if scale != 1.0:
                total = total * scale
            if units.owner is None:  # units are the samples, in order
                parts.append(total)
                continue
            if acc is None:
                acc = torch.zeros((problem.n, *tuple(total.shape[1:])), dtype=total.dtype, device=total.device)
            acc.index_add_(0, units.owner, total)
    if acc is None:
        acc = parts[0] if len(parts) == 1 else torch.cat(parts)
    return acc, (None if not outs else outs[0] if len(outs) == 1 else torch.cat(outs))


class NoiseStream:
    """Seeded Gaussian noise, one copy of the inputs' shape per noisy sample ``r``.

    Copy ``r`` is the ``r``-th ``torch.randn(x.shape, dtype=float64)`` draw
    of a CPU ``torch.Generator`` seeded with ``seed``, times ``std`` (one
    value per feature); it does not depend on ``batch_size`` or the device.
    Copies are generated in order and only those a chunk needs are kept.
    """

    def __init__(self, x: torch.Tensor, std: torch.Tensor, seed: int):
        self.x = x
        self.std = std.to(torch.float64).cpu()
        self.gen = torch.Generator().manual_seed(seed)
        self.copies: dict[int, torch.Tensor] = {}
        self.next = 0

    def _copy(self, r: int) -> torch.Tensor:
        while self.next <= r:
            eps = torch.randn(tuple(self.x.shape), generator=self.gen, dtype=torch.float64)
            self.copies[self.next] = eps * self.std
            self.next += 1
        return self.copies[r]

    def noisy(self, r: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """``x[i] + ε_r[i]`` for unit indices ``r`` (non-decreasing) and ``i``, in ``x``'s dtype."""
        r0, r1 = int(r[0]), int(r[-1])
        for old in [c for c in self.copies if c < r0]:
            del self.copies[old]
        block = torch.stack([self._copy(c) for c in range(r0, r1 + 1)])
        eps = block[(r - r0).cpu(), i.cpu()].to(dtype=self.x.dtype, device=self.x.device)
        return self.x[i] + eps
