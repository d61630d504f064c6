"""Batched evaluation of many perturbed copies of the inputs.

A perturbation method defines ``P`` perturbations of every input row. The
engine evaluates the model on all ``P × n`` perturbed rows in calls of at
most ``batch_size`` rows, built by one vectorised ``build`` call each: no
Python work per row. Rows are ordered perturbation-major, so a call holds
either a slice of rows for one perturbation (``n >= batch_size``) or all
rows for several perturbations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from featurelens._progress import progress_bar
from featurelens.attribution._problem import Problem

#: build(p0, p1, i0, i1) -> tensor of shape ((p1 - p0) * (i1 - i0), *x.shape[1:])
Builder = Callable[[int, int, int, int], torch.Tensor]


def evaluate_perturbations(problem: Problem, n_perturbations: int, build: Builder, *, desc: str) -> torch.Tensor:
    """Compute the selected model outputs for every perturbation and row.

    Returns
    -------
    Tensor of shape ``(n_perturbations, n)`` or ``(n_perturbations, n, K)``
    (``target="all"``), on the model's device.
    """
    n, bs = problem.n, problem.batch_size
    if n >= bs:
        rows_per_p, p_per_call = bs, 1
    else:
        rows_per_p, p_per_call = n, max(1, bs // n)
    out: torch.Tensor | None = None
    with torch.no_grad(), progress_bar(desc, n_perturbations * n, enabled=problem.progress) as advance:
        for p0 in range(0, n_perturbations, p_per_call):
            p1 = min(p0 + p_per_call, n_perturbations)
            for i0 in range(0, n, rows_per_p):
                i1 = min(i0 + rows_per_p, n)
                xb = build(p0, p1, i0, i1)
                yb = problem.forward(xb)
                yb = yb.reshape((p1 - p0, i1 - i0, *tuple(yb.shape[1:])))
                if out is None:
                    out = torch.empty((n_perturbations, n, *tuple(yb.shape[2:])), dtype=yb.dtype, device=yb.device)
                out[p0:p1, i0:i1] = yb
                advance((p1 - p0) * (i1 - i0))
    assert out is not None
    return out


def player_masks(problem: Problem) -> torch.Tensor:
    """Boolean ``(n_players, 1, [1,] d)`` masks, broadcastable against ``(P, rows, [T,] d)``."""
    m = problem.spec.masks().to(problem.x.device)
    return m.reshape((m.shape[0], 1) + (1,) * (problem.x.dim() - 2) + (m.shape[1],))
