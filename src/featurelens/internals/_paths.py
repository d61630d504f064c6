"""Total, natural direct and natural indirect effects of a feature group through a mediator."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from featurelens._validation import check_int
from featurelens.internals._capture import capture
from featurelens.internals._modules import as_input_tensor, resolve_single
from featurelens.internals._patch import patch
from featurelens.models import OutputSelector, preserve_model


def path_effects(
    model: nn.Module,
    X: Any,
    *,
    mediator: Any,
    columns: Sequence[int],
    baselines: float | torch.Tensor = 0.0,
    output: OutputSelector | None = None,
    target: int | None = None,
) -> dict[str, Any]:
    """Decompose the effect of setting a feature group to a baseline.

    Definitions, per sample, with ``f`` the selected scalar output, ``M`` the
    mediator module's output, ``x`` the input and ``x*`` the input with
    ``x[:, columns]`` set to ``baselines``:

    * total effect ``TE = f(x*) − f(x)``;
    * natural direct effect ``NDE = f(x* | M := M(x)) − f(x)``: the group
      changes, the mediator is held at its clean value;
    * natural indirect effect ``NIE = f(x | M := M(x*)) − f(x)``: the input is
      clean, the mediator takes the value it has under ``x*``;
    * ``residual = TE − NDE − NIE``.

    Signs: every effect is "intervened minus clean", so a positive value
    means the intervention raises the output. ``TE = NDE + NIE`` holds
    exactly only when the output is additive in the direct and mediated
    pathways (e.g. linear in the mediator and the direct inputs); for
    nonlinear models the residual measures the interaction.

    Parameters
    ----------
    model : nn.Module
    X : tensor or array-like of shape ``(N, d, ...)``
        Columns index dim 1.
    mediator : module spec
        Must resolve to exactly one module, run once per forward.
    columns : sequence of int
        The feature group.
    baselines : float or tensor of shape ``(len(columns),)``
        Value given to the group's columns.
    output : OutputSelector, optional
        Default ``OutputSelector(target=target)``; must give one value per row.
    target : int, optional
        Output index for multi-output models (ignored when ``output`` is given).

    Returns
    -------
    dict
        ``"per_sample"``: DataFrame ``(N, 4)`` with columns ``te, nde, nie,
        residual``; ``"mean"``: Series of their means over samples.
    """
    name, mod = resolve_single(model, mediator, name="mediator")
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence) or not columns:
        raise ValueError("columns must be a non-empty sequence of column indices")
    cols = [check_int(c, name="columns[i]", minimum=0) for c in columns]
    selector = output if output is not None else OutputSelector(target=target)
    if not isinstance(selector, OutputSelector):
        raise TypeError(f"output must be an OutputSelector or None, got {type(selector).__name__}")
    x = as_input_tensor(model, X)
    if x.dim() < 2 or max(cols) >= x.shape[1]:
        raise ValueError(f"columns index {max(cols)} is out of range for inputs of shape {tuple(x.shape)}")
    if isinstance(baselines, numbers.Real) and not isinstance(baselines, bool):
        base = torch.full((len(cols),), float(baselines), dtype=x.dtype, device=x.device)
    elif isinstance(baselines, torch.Tensor) and tuple(baselines.shape) == (len(cols),):
        base = baselines.detach().to(device=x.device, dtype=x.dtype)
    else:
        raise ValueError(f"baselines must be a number or a tensor of shape ({len(cols)},), got {baselines!r}")
    x_star = x.clone()
    x_star[:, cols] = base.reshape(len(cols), *([1] * (x.dim() - 2)))
    n = x.shape[0]

    def f(raw: Any) -> torch.Tensor:
        out = selector(raw, n)
        if out.dim() != 1:
            raise ValueError(f"the selected output has shape {tuple(out.shape)}; choose one output with target=")
        return out

    with preserve_model(model), torch.no_grad():
        with capture(model, mod) as acts:
            f_x = f(model(x))
        with capture(model, mod) as acts_star:
            f_star = f(model(x_star))
        if acts.calls.get(name) != 1:
            raise ValueError(f"mediator {name!r} must run exactly once per forward, "
                             f"ran {acts.calls.get(name, 0)} times")
        m_x, m_star = acts[name], acts_star[name]
        with patch(model, {mod: m_x}):
            f_nde = f(model(x_star))
        with patch(model, {mod: m_star}):
            f_nie = f(model(x))
    te, nde, nie = f_star - f_x, f_nde - f_x, f_nie - f_x
    per = pd.DataFrame({
        "te": te.cpu().numpy(),
        "nde": nde.cpu().numpy(),
        "nie": nie.cpu().numpy(),
        "residual": (te - nde - nie).cpu().numpy(),
    })
    return {"per_sample": per, "mean": per.mean()}
