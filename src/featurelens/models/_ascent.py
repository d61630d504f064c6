"""Projected sign-gradient ascent in per-feature ℓ∞ boxes: the functional core of the attacks.

Private implementation of :func:`featurelens.models.adversarial.perturb`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from featurelens._validation import RandomState, check_float, check_int, check_random_state

Objective = Callable[[torch.Tensor], torch.Tensor]


def _as_box(epsilon: Any, x: torch.Tensor, *, name: str = "epsilon") -> torch.Tensor:
    """``epsilon`` as a non-negative finite tensor broadcastable to ``x``."""
    if isinstance(epsilon, bool):
        raise TypeError(f"{name} must be a number or a tensor, got bool")
    if isinstance(epsilon, (int, float)):
        eps = torch.tensor(check_float(epsilon, name=name, low=0.0), dtype=x.dtype, device=x.device)
    elif isinstance(epsilon, torch.Tensor):
        if epsilon.is_complex() or not (epsilon.is_floating_point() or epsilon.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name} must be a real tensor, got dtype {epsilon.dtype}")
        eps = epsilon.detach().to(dtype=x.dtype, device=x.device)
        try:
            torch.broadcast_shapes(eps.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(eps.shape)} does not broadcast to the inputs {tuple(x.shape)}"
            ) from None
        if not bool(torch.isfinite(eps).all()) or bool((eps < 0).any()):
            raise ValueError(f"{name} must be finite and non-negative")
    else:
        raise TypeError(f"{name} must be a number or a tensor, got {type(epsilon).__name__}")
    return eps


def _as_mask(mask: Any, x: torch.Tensor) -> torch.Tensor | None:
    """``mask`` (True = may change) as a bool tensor broadcastable to ``x``."""
    if mask is None:
        return None
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(mask)
    if m.dtype != torch.bool:
        raise TypeError(f"mask must be boolean (True = may be perturbed), got dtype {m.dtype}")
    if m.dim() == 1 and m.shape[0] != x.shape[-1]:
        raise ValueError(f"mask has {m.shape[0]} entries but the inputs have {x.shape[-1]} features")
    try:
        torch.broadcast_shapes(m.shape, x.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to the inputs {tuple(x.shape)}") from None
    return m.to(x.device)


def perturb(
    objective: Objective,
    X: torch.Tensor,
    *,
    epsilon: float | torch.Tensor,
    n_steps: int = 1,
    step_size: float | torch.Tensor | None = None,
    random_start: bool = False,
    mask: Any = None,
    random_state: RandomState = 0,
) -> torch.Tensor:
    """Maximise ``objective`` over an ℓ∞ box around ``X`` by projected sign-gradient ascent.

    Iterates ``x_{t+1} = Π(x_t + α · sign(∇ objective(x_t)))`` for ``n_steps``
    steps from ``x_0 = x`` (or ``x + U(−ε, ε)`` with ``random_start``), where
    ``Π`` clips every entry back into ``[x − ε, x + ε]`` and then restores
    the immutable entries. ``n_steps=1, random_start=False`` with the default
    step size is FGSM (Goodfellow et al. 2015); more steps with a random
    start is PGD (Madry et al. 2018).

    Parameters
    ----------
    objective : callable
        ``objective(x_adv) -> scalar tensor`` to be **increased** (e.g. the
        summed loss of a model on the true labels, or a hedging risk
        measure). It is differentiated with respect to ``x_adv`` only
        (``torch.autograd.grad``), so no parameter ``.grad`` is touched;
        callers that do not want parameter gradients tracked at all should
        freeze the parameters (:func:`featurelens.models.preserve_model`
        with ``freeze=True``). Rows interact only through ``objective``: use
        a sum over rows, not a mean, if steps should not depend on the batch.
    x : Tensor
        Any shape, floating dtype; not modified.
    epsilon : float or Tensor
        Half-widths of the box, ``≥ 0``, in the units of ``x``: a number, or
        a tensor broadcastable to ``x`` (e.g. ``(d,)`` per feature). Entries
        with ``ε = 0`` never move.
    n_steps : int
        Number of ascent steps ``≥ 1``.
    step_size : float or Tensor, optional
        ``α``, in the units of ``x``; default ``ε`` for one step (FGSM) and
        ``2.5 ε / n_steps`` otherwise (Madry et al.'s choice).
    random_start : bool
        Start from a uniform draw in the box.
    mask : bool array or Tensor, optional
        True where ``x`` may change; ``(d,)`` over the last axis or any shape
        broadcastable to ``x``. Entries where it is False are returned
        bit-identical to ``x``.
    random_state : int, numpy Generator or None
        Seeds the random start (drawn on the CPU, so results do not depend
        on the device's RNG; the global torch RNG is not touched).

    Returns
    -------
    Tensor
        ``x_adv``, same shape, dtype and device as ``x``, detached, with
        ``|x_adv − x| ≤ ε`` element-wise.

    Raises
    ------
    ValueError
        If ``objective`` returns a non-scalar or a non-finite value, or its
        gradient with respect to ``x`` is not finite; or for bad arguments.
    """
    if not callable(objective):
        raise TypeError(f"objective must be callable, got {type(objective).__name__}")
    if not isinstance(X, torch.Tensor) or not X.is_floating_point():
        raise TypeError("X must be a floating-point torch.Tensor")
    x = X
    steps = check_int(n_steps, name="n_steps", minimum=1)
    if not isinstance(random_start, bool):
        raise TypeError(f"random_start must be a bool, got {type(random_start).__name__}")
    x0 = x.detach()
    eps = _as_box(epsilon, x0)
    alpha = ((eps if steps == 1 else 2.5 * eps / steps) if step_size is None
             else _as_box(step_size, x0, name="step_size"))
    m = _as_mask(mask, x0)
    eps = _masked(eps, m, x0)
    start = random_box_point(x0, eps, random_state) if random_start else x0.clone()
    return ascend(objective, x0, start, epsilon=eps, step_size=alpha, steps=steps, mask=m)


def _masked(eps: torch.Tensor, mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """``eps`` with 0 where ``mask`` is False (immutable entries never move)."""
    return eps if mask is None else torch.where(mask, eps, torch.zeros((), dtype=x.dtype, device=x.device))


def random_box_point(x0: torch.Tensor, eps: torch.Tensor, random_state: RandomState) -> torch.Tensor:
    """Draw a uniform point ``x0 + (2u − 1) ε`` of the box, with ``u ~ U[0, 1)`` of ``x0``'s shape.

    ``u`` is drawn on the CPU from a torch generator seeded by one draw of ``random_state`` (the
    global torch RNG is untouched).
    """
    rng = check_random_state(random_state)
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
    u = torch.rand(x0.shape, generator=gen, dtype=x0.dtype).to(x0.device)
    return x0 + (2 * u - 1) * eps


def ascend(
    objective: Objective,
    x0: torch.Tensor,
    start: torch.Tensor,
    *,
    epsilon: torch.Tensor,
    step_size: torch.Tensor,
    steps: int,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """Run the ascent loop of :func:`perturb` from ``start``.

    Arguments are checked, ``epsilon`` is already 0 on immutable entries: ``steps`` sign-gradient
    steps, each projected onto the box.
    """
    lo, hi = x0 - epsilon, x0 + epsilon
    alpha, m = step_size, mask
    x_adv = start
    for _ in range(steps):
        x_req = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            value = objective(x_req)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise ValueError("objective must return a scalar tensor")
            if not bool(torch.isfinite(value.detach()).all()):
                raise ValueError(f"objective returned a non-finite value {float(value.detach())}")
            (grad,) = torch.autograd.grad(value.reshape(()), x_req, allow_unused=True)
        if grad is None:
            raise ValueError("objective does not depend on its input: no gradient to ascend")
        if not bool(torch.isfinite(grad).all()):
            raise ValueError("the gradient of objective with respect to x holds NaN or inf")
        x_adv = torch.minimum(torch.maximum(x_adv.detach() + alpha * grad.sign(), lo), hi)
    if m is not None:
        x_adv = torch.where(m, x_adv, x0)
    return x_adv.detach()
