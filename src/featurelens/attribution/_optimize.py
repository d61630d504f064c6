"""Input optimisation: find inputs near a start that a model maps to a target output.

The principled version of deepdow's ``explain.gradient_wrt_input``: any model
and target, several starting points at once, masked entries held exactly, bounds, the
model's mode and flags restored, and the final loss measured on the returned input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._validation import check_float, check_int, check_random_state
from featurelens.models import call_model
from featurelens.models._output import pick_output
from featurelens.models._state import model_device_dtype, preserve_model

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = ("mse", "mae")


def _init_tensor(init: Any) -> torch.Tensor:
    if isinstance(init, np.ndarray):
        init = torch.from_numpy(np.ascontiguousarray(init))
    if not isinstance(init, torch.Tensor):
        raise TypeError(f"init must be a torch.Tensor or numpy array, got {type(init).__name__}")
    if init.dim() == 0:
        raise ValueError("init must have a leading axis of starting points, shape (k, ...); got a scalar")
    if init.shape[0] == 0:
        raise ValueError("init holds no starting point (its first axis is empty)")
    if not init.is_floating_point():
        if init.is_complex():
            raise TypeError(f"init must be real-valued, got dtype {init.dtype}")
        init = init.to(torch.float32)
    if not bool(torch.isfinite(init).all()):
        raise ValueError("init holds NaN or inf")
    return init.detach().clone()


def _check_mask(mask: Any, x0: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be None or a boolean torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = editable), got dtype {mask.dtype}")
    try:
        shape = torch.broadcast_shapes(mask.shape, x0.shape)
    except RuntimeError:
        shape = None
    if shape != x0.shape:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to init's shape {tuple(x0.shape)}"
        )
    return mask.to(x0.device).expand(x0.shape)


def _check_bounds(bounds: Any, x0: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if bounds is None:
        return None, None
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError("bounds must be a pair (low, high); use None for an open side")
    out = []
    for side, b in zip(("low", "high"), bounds, strict=True):
        if b is None:
            out.append(None)
            continue
        t = torch.as_tensor(b, dtype=x0.dtype, device=x0.device)
        try:
            torch.broadcast_shapes(t.shape, x0.shape)
        except RuntimeError:
            raise ValueError(f"bounds {side} of shape {tuple(t.shape)} does not broadcast to init's shape") from None
        if bool(torch.isnan(t).any()):
            raise ValueError(f"bounds {side} holds NaN")
        out.append(t)
    low, high = out
    if low is not None and high is not None and bool((low > high).any()):
        raise ValueError("bounds: low exceeds high somewhere")
    return low, high


def _loss_fn(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))} or a callable; got {loss!r}")
    if loss == "mse":
        return lambda out, target: ((out - target) ** 2).reshape(out.shape[0], -1).mean(dim=1)
    return lambda out, target: (out - target).abs().reshape(out.shape[0], -1).mean(dim=1)


def _target_tensor(target: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    try:
        tgt = torch.as_tensor(target, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"target must be a tensor, array or number: {exc}") from None
    if not bool(torch.isfinite(tgt).all()):
        raise ValueError("target holds NaN or inf")
    return tgt


def _objective(
    model: nn.Module, output: int | None, fn: LossFn, tgt: torch.Tensor, x0: torch.Tensor, distance_weight: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> loss(f(x), target) + distance_weight · ||x − x0||²``, one value per starting point."""
    device, dtype = model_device_dtype(model)
    k = x0.shape[0]

    def objective(x: torch.Tensor) -> torch.Tensor:
        out = pick_output(call_model(model, x.to(device=device, dtype=dtype)), output)
        if out.dim() == 0 or out.shape[0] != k:
            raise ValueError(f"the model output has shape {tuple(out.shape)} for {k} starting points")
        try:
            ok = torch.broadcast_shapes(out.shape, tgt.shape) == out.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"target of shape {tuple(tgt.shape)} does not broadcast to the model output {tuple(out.shape)}")
        per = fn(out, tgt)
        if not isinstance(per, torch.Tensor) or per.shape != (k,):
            raise ValueError(f"loss must return one value per starting point, shape ({k},)")
        if distance_weight:
            dist = ((x - x0) ** 2).reshape(k, -1).sum(dim=1)
            per = per + distance_weight * dist.to(device=per.device, dtype=per.dtype)
        return per

    return objective


def optimize_input(
    model: nn.Module,
    target: Any,
    init: Any,
    *,
    mask: torch.Tensor | None = None,
    n_iter: int = 100,
    lr: float = 0.1,
    distance_weight: float = 0.0,
    bounds: tuple[Any, Any] | None = None,
    random_state: Any = 0,
    output: int | None = None,
    loss: str | LossFn = "mse",
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Find inputs near ``init`` that the model maps close to ``target``.

    For each starting point ``s`` (row of ``init``) the objective is::

        L_s(x) = loss(f(x)_s, target) + distance_weight · Σ (x_s − init_s)²

    with ``f(x)`` the model output (element ``output`` of a tuple output) and
    ``loss="mse"`` the mean of ``(f(x)_s − target)²`` over the output's
    non-batch elements (``"mae"``: mean absolute error; a callable
    ``loss(out, target)`` must return one loss per start, shape ``(k,)``). The
    sum ``Σ_s L_s`` is minimised with Adam, so every start follows its own
    loss. The optimised tensor is ``x = where(mask, free, init)``: entries
    outside ``mask`` are taken from ``init`` at every step and are returned
    bit-identical to it (they never receive a gradient step).

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode. Its mode, ``requires_grad`` flags, device,
        dtype and weights are left as they were, also on an error, and no
        ``.grad`` is accumulated on its parameters.
    target : tensor, array or number
        Broadcastable to the model output ``(k, ...)``, e.g. an allocation
        vector ``(n_assets,)`` for a softmax portfolio network.
    init : Tensor or ndarray ``(k, ...)``
        ``k`` starting points in the model's input layout (a single point needs
        a leading axis: ``x0[None]``). The returned ``x`` has its dtype and
        device; the model sees ``x`` cast to the model's dtype and device.
    mask : bool Tensor, optional
        Broadcastable to ``init``'s shape (e.g. the shape of one point);
        ``True`` marks editable entries. Default: everything editable.
    n_iter : int
        Adam steps (``>= 0``).
    lr : float
        Adam learning rate.
    distance_weight : float
        Weight ``>= 0`` of the squared distance to ``init``.
    bounds : (low, high), optional
        Numbers or tensors broadcastable to ``init``; ``None`` for an open side.
        The editable entries are clamped into them before the first step and
        after every step (fixed entries stay at ``init``).
    random_state : int, numpy Generator or None
        The procedure itself draws no random numbers (Adam from ``init`` is
        deterministic). With a seed, the optimisation runs inside
        ``torch.random.fork_rng`` seeded from it, so a model with stochastic
        layers is reproducible and the global torch RNG is left untouched.
    output : int, optional
        Element of a tuple-returning model's output.
    loss : {"mse", "mae"} or callable

    Returns
    -------
    x : Tensor
        Same shape, dtype and device as ``init``, detached.
    history : pandas.DataFrame
        ``n_iter + 1`` rows indexed by ``iteration``, one column ``start_<s>``
        per starting point: row ``t < n_iter`` is the objective before step
        ``t + 1``; the last row is the objective of the returned ``x`` (the
        model evaluated on exactly that input).

    Raises
    ------
    TypeError
        A mask that is not a boolean tensor; bad argument types.
    ValueError
        A mask (or bounds, target) that does not broadcast; NaN/inf in ``init``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n_iter = check_int(n_iter, name="n_iter", minimum=0)
    lr = check_float(lr, name="lr", low=0.0, inclusive=(False, True))
    distance_weight = check_float(distance_weight, name="distance_weight", low=0.0)
    rng = check_random_state(random_state)
    fn = _loss_fn(loss)
    x0 = _init_tensor(init)
    m = _check_mask(mask, x0)
    low, high = _check_bounds(bounds, x0)
    device, dtype = model_device_dtype(model)
    tgt = _target_tensor(target, dtype, device)
    k = x0.shape[0]
    objective = _objective(model, output, fn, tgt, x0, distance_weight)

    def compose(free: torch.Tensor) -> torch.Tensor:
        return free if m is None else torch.where(m, free, x0)

    def clamp_(free: torch.Tensor) -> None:
        if low is not None or high is not None:
            with torch.no_grad():
                free.copy_(torch.clamp(free, min=low, max=high))

    fork = [] if device.type != "cuda" else [device.index if device.index is not None else 0]
    rows: list[np.ndarray] = []
    with preserve_model(model, eval_mode=True, freeze=True), \
            torch.random.fork_rng(devices=fork, device_type=device.type, enabled=random_state is not None):
        if random_state is not None:
            torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
        free = x0.clone()
        clamp_(free)
        free.requires_grad_(True)
        opt = torch.optim.Adam([free], lr=lr)
        for _ in range(n_iter):
            per = objective(compose(free))
            rows.append(per.detach().cpu().double().numpy())
            opt.zero_grad(set_to_none=True)
            per.sum().backward()
            opt.step()
            clamp_(free)
        x = compose(free.detach()).clone()
        with torch.no_grad():
            rows.append(objective(x).cpu().double().numpy())
    history = pd.DataFrame(
        np.stack(rows), columns=[f"start_{s}" for s in range(k)], index=pd.RangeIndex(len(rows), name="iteration")
    )
    return x, history
