"""Adversarial perturbations (FGSM, PGD) in per-feature ℓ∞ boxes, and adversarial training.

The functional core is :func:`perturb`: projected sign-gradient *ascent* of
any scalar objective of the input inside a box ``|x_adv − x| ≤ ε``
(element-wise, ``ε`` per feature), with optional random start and a mask of
immutable features. :func:`fgsm` and :func:`pgd` apply it to the loss of a
model on the **true** labels (the superposition and spurious-correlation notebook's ``robustness_analysis`` and
``adversarial_training`` stepped along the gradient of the loss of the
*flipped* labels, which pushes predictions toward the correct class and makes
the model look more robust than it is). :func:`adversarial_train` trains a
copy of a model on a mix of clean and adversarial mini-batches.

ε is in units of each feature's standard deviation with ``scale="std"`` (the
default of :func:`fgsm`, :func:`pgd` and :func:`adversarial_train`), so one
``epsilon`` means the same for a price in dollars and a return in percent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.data import as_tensor
from featurelens.models._ascent import _as_box, _as_mask, _masked, ascend, perturb, random_box_point
from featurelens.models._evaluate import default_batch_size
from featurelens.models._losses import LOSSES, row_losses
from featurelens.models._state import model_device_dtype, preserve_model
from featurelens.models._training import TrainResult, train

__all__ = ["adversarial_train", "feature_scale", "fgsm", "perturb", "pgd"]

LossSpec = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def feature_scale(X: torch.Tensor) -> torch.Tensor:
    """Per-feature standard deviation over every row (and time step): shape ``(d,)``.

    Population standard deviation (``correction=0``) of each column of the
    last axis of ``X`` ``(n, d)`` or ``(n, T, d)``; a constant feature gets
    0, so an ε in std units leaves it untouched.
    """
    return X.reshape(-1, X.shape[-1]).std(dim=0, correction=0)


def _resolve_scale(scale: Any, X: torch.Tensor) -> torch.Tensor | None:
    if scale is None:
        return None
    if isinstance(scale, str):
        check_option(scale, name="scale", options=("std",))
        return feature_scale(X)
    t, _ = as_tensor(scale, name="scale", dtype=X.dtype, device=X.device, ndims=(1,))
    if t.shape[0] != X.shape[-1]:
        raise ValueError(f"scale has {t.shape[0]} entries but the inputs have {X.shape[-1]} features")
    if bool((t < 0).any()):
        raise ValueError("scale must be non-negative")
    return t


def _budget(epsilon: Any, step_size: Any, scale: Any, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(ε, α)`` in the units of ``X``: ``epsilon`` and ``step_size`` (or None) times ``scale``."""
    sc = _resolve_scale(scale, X)
    eps = _as_box(epsilon, X)
    alpha = None if step_size is None else _as_box(step_size, X, name="step_size")
    if sc is not None:
        eps = eps * sc
        alpha = None if alpha is None else alpha * sc
    return eps, alpha


def _auto_loss(out: torch.Tensor, y: torch.Tensor) -> str:
    if out.dim() == 2 and out.shape[1] > 1 and y.dim() == 1:
        return "ce"
    if out.dim() <= 2 and out.numel() == y.shape[0] and bool(((y == 0) | (y == 1)).all()):
        return "bce"
    return "mse"


def _loss_callable(
    loss: LossSpec, out: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``fn(output, y) -> scalar`` summed over rows for a loss name or a user callable."""
    if callable(loss):
        return loss
    name = _auto_loss(out, y) if loss == "auto" else check_option(loss, name="loss", options=("auto", *LOSSES))
    return lambda o, t: row_losses(name, o, t.long() if name == "ce" else t).sum()


def _labels_tensor(y: Any, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t, _ = as_tensor(y, name="y", dtype=torch.float64, ndims=(1, 2))
    if t.shape[0] != n:
        raise ValueError(f"y has {t.shape[0]} rows but X has {n}")
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    return t.to(device=device, dtype=dtype)


def _chunk_rows(t: torch.Tensor | None, rows: slice, ndim: int) -> torch.Tensor | None:
    """``t[rows]`` for one chunk of the inputs; ``t`` itself when it broadcasts over rows (fewer dims, or leading 1)."""
    return t if t is None or t.dim() < ndim or t.shape[0] == 1 else t[rows]


def _attack(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    epsilon: float | torch.Tensor,
    steps: int,
    step_size: float | torch.Tensor | None,
    random_start: bool,
    loss: LossSpec,
    scale: Any,
    mask: Any,
    random_state: RandomState,
    batch_size: int | None,
) -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device, dtype = model_device_dtype(model)
    Xt, _ = as_tensor(X, name="X", dtype=dtype, device=device)
    yt = _labels_tensor(y, Xt.shape[0], device, dtype)
    bs = default_batch_size(Xt) if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    steps = check_int(steps, name="n_steps", minimum=1)
    if not isinstance(random_start, bool):
        raise TypeError(f"random_start must be a bool, got {type(random_start).__name__}")
    eps, alpha = _budget(epsilon, step_size, scale, Xt)
    alpha = (eps if steps == 1 else 2.5 * eps / steps) if alpha is None else alpha
    m = _as_mask(mask, Xt)
    eps = _masked(eps, m, Xt)
    # the random start is drawn once for all rows, so the result does not depend on batch_size
    start = random_box_point(Xt, eps, check_random_state(random_state)) if random_start else Xt.clone()
    out_chunks = []
    with preserve_model(model, eval_mode=True, freeze=True):
        with torch.no_grad():
            fn = _loss_callable(loss, model(Xt[:1]), yt[:1])
        for i in range(0, Xt.shape[0], bs):
            rows = slice(i, i + bs)
            yb = yt[rows]
            out_chunks.append(
                ascend(
                    lambda xa, yb=yb: fn(model(xa), yb),
                    Xt[rows],
                    start[rows],
                    epsilon=_chunk_rows(eps, rows, Xt.dim()),
                    step_size=_chunk_rows(alpha, rows, Xt.dim()),
                    steps=steps,
                    mask=_chunk_rows(m, rows, Xt.dim()),
                )
            )
    return torch.cat(out_chunks)


def fgsm(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    epsilon: float | torch.Tensor,
    loss: LossSpec = "auto",
    scale: Any = "std",
    mask: Any = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Fast gradient sign attack: ``x + ε · sign(∇ₓ L(f(x), y))`` on the **true** labels ``y``.

    Parameters
    ----------
    model : nn.Module
        Returns raw scores (logits for classification). Evaluated in eval
        mode with frozen parameters; mode, flags and weights are restored.
    X : Tensor, ndarray or DataFrame
        ``(n, d)`` or ``(n, T, d)``; cast to the model's device and dtype.
    y : array-like of shape (n,)
        True labels (0/1 for ``"bce"``, class indices for ``"ce"``) or targets.
    epsilon : float or Tensor
        Box half-width; in units of each feature's standard deviation with
        ``scale="std"``, else multiplied by ``scale`` (or used as is with
        ``scale=None``). A tensor broadcastable to ``X`` gives per-feature
        (or per-entry) budgets.
    loss : {"auto", "bce", "ce", "mse"} or callable
        Loss ascended, summed over rows (definitions of
        :func:`featurelens.models.train`). ``"auto"``: ``"ce"`` for ``(n, K)``
        logits, ``"bce"`` for one output with 0/1 labels, else ``"mse"``.
        A callable ``loss(output, y) -> scalar`` is used as is.
    scale : "std", None or array of shape (d,)
        Unit of ``epsilon`` per feature; ``"std"`` is the population standard
        deviation of each feature over the rows of ``X`` (:func:`feature_scale`).
    mask : bool array of shape (d,) or broadcastable to X, optional
        False marks immutable features: returned bit-identical.
    batch_size : int, optional
        Rows per gradient computation (default
        :func:`featurelens.models.default_batch_size`); the result does not
        depend on it.

    Returns
    -------
    Tensor
        Adversarial inputs, shape of ``X``, on the model's device and dtype.
    """
    return _attack(
        model, X, y, epsilon=epsilon, steps=1, step_size=None, random_start=False, loss=loss,
        scale=scale, mask=mask, random_state=None, batch_size=batch_size,
    )


def pgd(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    epsilon: float | torch.Tensor,
    n_steps: int = 10,
    step_size: float | torch.Tensor | None = None,
    random_start: bool = True,
    loss: LossSpec = "auto",
    scale: Any = "std",
    mask: Any = None,
    random_state: RandomState = 0,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Projected gradient descent attack (ℓ∞) on the loss of the **true** labels.

    ``n_steps`` sign-gradient ascent steps of size ``step_size`` (default
    ``2.5 ε / n_steps``), each followed by projection onto the box
    ``|x_adv − x| ≤ ε``, from a uniform random start in the box when
    ``random_start``. ``epsilon`` and ``step_size`` are in the units set by
    ``scale`` (default: each feature's standard deviation). Other arguments
    as in :func:`fgsm`; ``random_state`` seeds the random start.

    Returns
    -------
    Tensor
        Adversarial inputs, shape of ``X``, on the model's device and dtype.
    """
    return _attack(
        model, X, y, epsilon=epsilon, steps=n_steps, step_size=step_size, random_start=random_start,
        loss=loss, scale=scale, mask=mask, random_state=random_state, batch_size=batch_size,
    )


def adversarial_train(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    attack: str = "pgd",
    epsilon: float | torch.Tensor,
    mix: float = 0.5,
    mask: Any = None,
    scale: Any = "std",
    n_steps: int = 5,
    step_size: float | None = None,
    loss: str = "bce",
    random_state: RandomState = 0,
    **train_options: Any,
) -> tuple[nn.Module, TrainResult]:
    """Train a copy of ``model`` on clean and adversarial mini-batches.

    For every mini-batch ``(x, y)`` the attack is run on the current copy
    (eval mode, frozen parameters: dropout off during the attack, the
    parameters receive no gradient from it) to get ``x_adv``, and the copy
    takes an Adam step on ``(1 − mix) · L(x, y) + mix · L(x_adv, y)``
    (mean losses over the batch). ``mix=1`` is Madry et al.'s pure
    adversarial training; the superposition and spurious-correlation notebook used 0.3 with the flipped-label attack.

    Parameters
    ----------
    model : nn.Module
        Left untouched; a deep copy is trained.
    X, y
        Training data as for :func:`featurelens.models.train`.
    attack : {"pgd", "fgsm"}
    epsilon : float or Tensor
        Budget in ``scale`` units (default: standard deviations of the
        features over the training rows ``X``, computed once).
    mix : float in [0, 1]
        Weight of the adversarial loss.
    mask : bool array of shape (d,), optional
        True on the features the attack may change (e.g. one suspect group);
        False = immutable.
    scale : "std", None or array of shape (d,)
    n_steps, step_size
        PGD steps (ignored by ``"fgsm"``) and step size in ``scale`` units
        (default ``2.5 ε / n_steps``).
    loss : {"bce", "ce", "mse"}
        Training loss, also the loss the attack ascends.
    random_state : int, numpy Generator or None
        Seeds the split, batch order, initial state of dropout and the PGD
        random starts.
    **train_options
        ``epochs``, ``train_batch_size``, ``lr``, ``weight_decay``,
        ``validation_fraction``, ``validation_data``, ``patience``,
        ``progress``, ``orthogonal_penalty``, ``orthogonal_layers`` of
        :func:`featurelens.models.train` (early stopping uses the clean
        validation loss).

    Returns
    -------
    (nn.Module, TrainResult)
        The trained copy and its training record.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    attack = check_option(attack, name="attack", options=("pgd", "fgsm"))
    mix = check_float(mix, name="mix", low=0.0, high=1.0)
    n_steps = 1 if attack == "fgsm" else check_int(n_steps, name="n_steps", minimum=1)
    loss = check_option(loss, name="loss", options=LOSSES)
    for bad in ("sample_weight", "batch_objective", "loss", "random_state"):
        if bad in train_options:
            raise TypeError(f"adversarial_train does not take {bad}=")
    rng = check_random_state(random_state)
    new = copy.deepcopy(model)
    device, dtype = model_device_dtype(new)
    Xt, _ = as_tensor(X, name="X", dtype=dtype, device=device)
    eps, alpha = _budget(epsilon, step_size, scale, Xt)
    if eps.dim() == Xt.dim() and eps.shape[0] != 1:
        raise ValueError("epsilon must not vary per row in adversarial_train (give a number or a (d,) tensor)")
    m = _as_mask(mask, Xt)
    attack_rng = check_random_state(int(rng.integers(0, 2**63 - 1)))

    def objective(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        with preserve_model(net, eval_mode=True, freeze=True):
            x_adv = perturb(
                lambda xa: row_losses(loss, net(xa), yb).sum(),
                xb,
                epsilon=eps,
                n_steps=n_steps,
                step_size=alpha,
                random_start=attack == "pgd",
                mask=m,
                random_state=attack_rng,
            )
        clean = row_losses(loss, net(xb), yb).mean() if mix < 1 else 0.0
        adv = row_losses(loss, net(x_adv), yb).mean() if mix > 0 else 0.0
        return (1 - mix) * clean + mix * adv

    result = train(new, Xt, y, loss=loss, random_state=rng, batch_objective=objective, **train_options)
    return new, result
