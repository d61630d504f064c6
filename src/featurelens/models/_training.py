"""Reproducible mini-batch training with a validation split and early stopping.

Seed 002's ``train_model`` stopped on the *training* loss without any
validation split and fed ``long`` labels to ``BCELoss``. :func:`train`
carves a seeded validation split, stops on the validation loss, restores
the best-validation weights and checks labels against the loss.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._progress import progress_bar
from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.data._inputs import as_tensor
from featurelens.models._state import model_device_dtype

LOSSES = ("bce", "mse", "ce")
_EVAL_CHUNK = 4096
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

#: ``objective(model, xb, yb, rows) -> scalar`` replacing the mean task loss of one mini-batch
BatchObjective = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model : nn.Module
        The model passed in (same object), trained, holding the weights of
        the best validation epoch, in eval mode.
    history : pandas.DataFrame
        One row per epoch run: ``epoch`` (1-based), ``train_loss`` (mean loss
        over the epoch's mini-batches, in training mode) and ``val_loss``
        (mean loss on the validation set after the epoch, in eval mode; NaN
        without validation data). Means are torch's ``reduction="mean"``:
        per row for ``"bce"``/``"ce"``, per element for ``"mse"``.
    best_epoch : int
        Epoch whose weights were kept (the last epoch without validation).
    stopped_epoch : int
        Last epoch run (``< epochs`` when early stopping triggered).
    best_val_loss : float
        Validation loss of the kept weights (NaN without validation data).
    """

    model: nn.Module = field(repr=False)
    history: pd.DataFrame = field(repr=False)
    best_epoch: int
    stopped_epoch: int
    best_val_loss: float


def _labels(y: Any, n: int, loss: str, *, name: str) -> torch.Tensor:
    if isinstance(y, (pd.Series, pd.DataFrame)):
        y = y.to_numpy()
    if not isinstance(y, torch.Tensor):
        arr = np.asarray(y)
        if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.number)):
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        y = torch.from_numpy(np.array(arr, copy=True))
    t = y.detach().cpu()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise TypeError(f"{name} must hold numbers, got dtype {t.dtype}")
    if t.dim() == 2 and t.shape[1] == 1 and loss != "mse":
        t = t[:, 0]
    if t.dim() == 0 or t.shape[0] != n:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but the inputs have {n} rows")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds NaN or inf")
    if loss == "mse":
        return t if t.dim() <= 2 else t.reshape(n, -1)
    if t.dim() != 1:
        raise ValueError(f"loss={loss!r} needs labels of shape (n,), got {name} of shape {tuple(t.shape)}")
    if loss == "bce":
        bad = torch.unique(t[(t != 0) & (t != 1)])
        if bad.numel():
            raise ValueError(
                f"loss='bce' needs 0/1 labels; {name} holds {_values(bad)} "
                "(use loss='ce' for class labels, loss='mse' for regression)"
            )
        return t
    bad = torch.unique(t[t != t.round()]) if t.is_floating_point() else t[:0]
    if bad.numel():
        raise ValueError(f"loss='ce' needs integer class labels; {name} holds {_values(bad)}")
    return t.long()


def _values(t: torch.Tensor) -> str:
    vals = [f"{v:g}" if isinstance(v, float) else str(v) for v in t[:5].tolist()]
    return ", ".join(vals) + (" …" if t.numel() > 5 else "")


def _task_loss(loss: str, out: torch.Tensor, yb: torch.Tensor, reduction: str) -> torch.Tensor:
    """Loss of one batch per row (``reduction="none"``) or summed over rows (``"sum"``).

    Checks the output against the loss first.
    """
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"train needs a model that returns a tensor, got {type(out).__name__}")
    b = yb.shape[0]
    if loss == "bce":
        if tuple(out.shape) not in ((b,), (b, 1)):
            raise ValueError(f"loss='bce' needs a model output of shape (B,) or (B, 1), got {tuple(out.shape)}")
        return nn.functional.binary_cross_entropy_with_logits(out.reshape(b), yb, reduction=reduction)
    if loss == "ce":
        if out.dim() != 2:
            raise ValueError(f"loss='ce' needs logits of shape (B, K), got {tuple(out.shape)}")
        return nn.functional.cross_entropy(out, yb, reduction=reduction)
    if out.numel() != yb.numel():
        raise ValueError(
            f"loss='mse': the model output {tuple(out.shape)} does not match targets {tuple(yb.shape)}"
        )
    if reduction == "none":
        return ((out.reshape(yb.shape) - yb) ** 2).reshape(b, -1).mean(dim=1)
    per_row = max(1, yb.numel() // max(b, 1))  # mean over the k outputs of a row
    return nn.functional.mse_loss(out.reshape(yb.shape), yb, reduction="sum") / per_row


def row_losses(loss: str, out: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Per-row loss ``(B,)`` of one batch; its sum is the batch loss :func:`train` records.

    Same definitions and shape checks as :func:`train`'s ``loss``: ``"bce"``
    on logits, ``"ce"`` on logits ``(B, K)``, ``"mse"`` averaged over the
    ``k`` outputs of a row.
    """
    return _task_loss(loss, out, yb, "none")


def _batch_loss(loss: str, out: torch.Tensor, yb: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of one batch summed over rows, weighted by ``w`` when given."""
    return _task_loss(loss, out, yb, "sum") if w is None else _task_loss(loss, out, yb, "none") @ w


def _eval_loss(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str, w: torch.Tensor | None = None
) -> float:
    """Mean loss over the rows of ``X`` (weighted mean with ``w``), in eval mode."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, X.shape[0], _EVAL_CHUNK):
            rows = slice(i, i + _EVAL_CHUNK)
            total += float(_batch_loss(loss, model(X[rows]), y[rows], None if w is None else w[rows]))
    return total / (X.shape[0] if w is None else float(w.sum()))


def _prepare(
    X: Any, y: Any, loss: str, device: torch.device, dtype: torch.dtype, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    Xt, _ = as_tensor(X, name=f"{name}X", dtype=dtype, device=device)
    yt = _labels(y, Xt.shape[0], loss, name=f"{name}y")
    yt = yt.to(device=device, dtype=torch.long if loss == "ce" else dtype)
    return Xt, yt


def train(
    model: nn.Module,
    X: Any,
    y: Any,
    *,
    loss: str = "bce",
    epochs: int = 100,
    train_batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    validation_fraction: float = 0.2,
    validation_data: tuple[Any, Any] | None = None,
    patience: int | None = 5,
    random_state: RandomState = 0,
    progress: bool = False,
    orthogonal_penalty: float = 0.0,
    orthogonal_layers: Sequence[str] | None = None,
    sample_weight: Any = None,
    batch_objective: BatchObjective | None = None,
) -> TrainResult:
    """Train ``model`` with Adam, early stopping on a validation loss.

    Parameters
    ----------
    model : nn.Module
        Trained in place; keeps its device and dtype (the data are moved to
        them).
    X : ndarray, tensor or DataFrame
        Inputs ``(n, d)`` or ``(n, T, d)``; NaN/inf are rejected.
    y : ndarray, tensor, Series or DataFrame
        ``loss="bce"``: 0/1 labels ``(n,)`` (any numeric or bool dtype).
        ``loss="ce"``: integer class labels ``(n,)`` in ``[0, K)``.
        ``loss="mse"``: float targets ``(n,)`` or ``(n, k)``.
    loss : {"bce", "mse", "ce"}
        ``"bce"``: ``BCEWithLogitsLoss`` on a logit output ``(B,)`` or
        ``(B, 1)``. ``"ce"``: ``CrossEntropyLoss`` on logits ``(B, K)``.
        ``"mse"``: mean squared error.
    epochs, train_batch_size : int
        Maximum number of passes and mini-batch size.
    lr, weight_decay : float
        Adam learning rate and (L2) weight decay.
    validation_fraction : float
        Share of ``(X, y)`` held out (seeded random split) when
        ``validation_data`` is not given, in ``[0, 1)``; ``0`` trains on
        everything for ``epochs`` epochs without early stopping.
    validation_data : tuple (X_val, y_val), optional
        Explicit validation set; then all of ``(X, y)`` is used for training.
    patience : int or None
        Stop after this many epochs without a strictly lower validation loss;
        ``None`` runs all epochs (the best weights are still restored).
    random_state : int, numpy Generator or None
        Seeds the split, the mini-batch order and dropout. Training runs
        inside ``torch.random.fork_rng``, so the global torch RNG is left
        untouched; the same seed gives bit-identical weights on one machine.
    progress : bool
        Show a rich progress bar updated once per epoch.
    orthogonal_penalty : float
        Weight ``λ ≥ 0`` of seed 002's "disentangled" training: the training
        objective becomes ``task loss + λ Σ_l ‖G_l − I‖_F²`` with ``G_l = W Wᵀ``
        for a layer weight ``W`` of shape ``(out, in)`` with ``out ≤ in``
        (orthonormal rows) and ``G_l = Wᵀ W`` otherwise (orthonormal columns;
        ``W Wᵀ = I`` is unreachable when ``out > in``). The seed used the mean
        of the squared entries; the squared Frobenius norm is the issue's
        definition. Recorded losses and early stopping use the task loss only.
    orthogonal_layers : sequence of str, optional
        Exact module paths of the penalised layers (each must own a 2-D
        ``weight``). Default with a positive penalty: every ``nn.Linear``.
    sample_weight : array-like of shape (n,), optional
        Non-negative per-row weights of ``(X, y)`` (not all zero), e.g. JTT's
        up-weighted error set. They are rescaled to mean 1 over the training
        rows; a mini-batch's objective is then ``mean_i w_i l_i`` and the
        recorded ``train_loss`` the weighted mean ``Σ w_i l_i / Σ w_i`` over
        the epoch. A validation split carved from ``(X, y)`` keeps its rows'
        weights and ``val_loss`` is their weighted mean; explicit
        ``validation_data`` is unweighted.
    batch_objective : callable, optional
        ``batch_objective(model, xb, yb, rows) -> scalar tensor``: the
        quantity minimised for one mini-batch instead of its mean task loss
        (the orthogonality penalty is still added). ``model`` is in training
        mode, ``xb``/``yb`` are the batch on the model's device and dtype,
        ``rows`` (int64, on the same device) the batch's row indices into the
        ``X`` passed to :func:`train` (so per-row side information such as
        environments can be looked up). It runs inside the same forked,
        seeded torch RNG as the rest of training. ``train_loss`` then records
        the batch-size-weighted mean of the objective; ``val_loss`` and early
        stopping keep using the plain task loss. Used by adversarial training
        and the mitigation strategies of ``featurelens.reliance``. Not
        combinable with ``sample_weight`` (weight inside the objective).

    Returns
    -------
    TrainResult
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    loss = check_option(loss, name="loss", options=LOSSES)
    epochs = check_int(epochs, name="epochs", minimum=1)
    batch_size = check_int(train_batch_size, name="train_batch_size", minimum=1)
    lr = check_float(lr, name="lr", low=0.0, inclusive=(False, True))
    weight_decay = check_float(weight_decay, name="weight_decay", low=0.0)
    validation_fraction = check_float(
        validation_fraction, name="validation_fraction", low=0.0, high=1.0, inclusive=(True, False)
    )
    if patience is not None:
        patience = check_int(patience, name="patience", minimum=1)
    rng = check_random_state(random_state)
    orthogonal_penalty = check_float(orthogonal_penalty, name="orthogonal_penalty", low=0.0)
    ortho = _orthogonal_weights(model, orthogonal_layers) if orthogonal_penalty > 0 else []
    if orthogonal_layers is not None and orthogonal_penalty == 0:
        raise ValueError("orthogonal_layers= needs orthogonal_penalty > 0")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require gradients; nothing to train")
    device, dtype = model_device_dtype(model)
    if batch_objective is not None and not callable(batch_objective):
        raise TypeError(f"batch_objective must be callable, got {type(batch_objective).__name__}")
    if batch_objective is not None and sample_weight is not None:
        raise ValueError("sample_weight= and batch_objective= cannot be combined; weight rows inside the objective")

    Xt, yt = _prepare(X, y, loss, device, dtype, name="")
    rows_t = torch.arange(Xt.shape[0], device=device)
    wt = _sample_weight(sample_weight, Xt.shape[0], device, dtype) if sample_weight is not None else None
    wv = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise TypeError("validation_data must be a tuple (X_val, y_val)")
        Xv, yv = _prepare(*validation_data, loss, device, dtype, name="validation_data ")
        if Xv.shape[1:] != Xt.shape[1:]:
            raise ValueError(
                f"validation X has shape {tuple(Xv.shape)} but X has {tuple(Xt.shape)} "
                "(they must agree except in the number of rows)"
            )
    elif validation_fraction > 0:
        n = Xt.shape[0]
        n_val = max(1, round(validation_fraction * n))
        if n - n_val < 1:
            raise ValueError(
                f"validation_fraction={validation_fraction} leaves no training rows out of {n}"
            )
        perm = torch.from_numpy(rng.permutation(n)).to(device)
        val_rows, rows_t = perm[:n_val], perm[n_val:]
        Xv, yv = Xt[val_rows], yt[val_rows]
        Xt, yt = Xt[rows_t], yt[rows_t]
        if wt is not None:
            wv, wt = wt[val_rows], wt[rows_t]
            if float(wv.sum()) <= 0:
                raise ValueError("sample_weight: every row of the validation split has weight 0")
    else:
        Xv = yv = None
    if wt is not None:
        if float(wt.sum()) <= 0:
            raise ValueError("sample_weight: every training row has weight 0")
        wt = wt * (wt.numel() / wt.sum())
    with torch.no_grad():  # check output shape and labels before any update
        probe = model.eval()(Xt[:1])
        if loss == "ce" and isinstance(probe, torch.Tensor) and probe.dim() == 2:
            k = probe.shape[1]
            labels = torch.cat([yt, yv]) if yv is not None else yt
            bad = torch.unique(labels[(labels < 0) | (labels >= k)])
            if bad.numel():
                raise ValueError(
                    f"loss='ce': the model has K={k} outputs, so labels must be in [0, {k}); "
                    f"found {_values(bad.cpu())}"
                )
        _task_loss(loss, probe, yt[:1], "sum")

    seed = int(rng.integers(0, 2**63 - 1))
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    rows: list[dict[str, float]] = []
    best_state: dict[str, Any] | None = None
    best_epoch, best_val, waited = 0, math.inf, 0
    fork = [] if device.type == "cpu" else [device.index if device.index is not None else 0]
    bar = progress_bar("training", epochs, enabled=progress)
    with bar as advance, torch.random.fork_rng(devices=fork, device_type=device.type):
        torch.manual_seed(seed)
        for epoch in range(1, epochs + 1):
            model.train()
            total = 0.0
            for idx in torch.randperm(Xt.shape[0], generator=gen).to(device).split(batch_size):
                optimizer.zero_grad()
                if batch_objective is not None:
                    objective = _objective(batch_objective, model, Xt[idx], yt[idx], rows_t[idx])
                    batch_loss = objective.detach() * idx.numel()
                else:
                    batch_loss = _batch_loss(loss, model(Xt[idx]), yt[idx], None if wt is None else wt[idx])
                    objective = batch_loss / idx.numel()
                if ortho:
                    objective = objective + orthogonal_penalty * orthogonality_penalty(ortho)
                objective.backward()
                optimizer.step()
                total += float(batch_loss.detach())
            train_loss = total / Xt.shape[0]
            val_loss = _eval_loss(model, Xv, yv, loss, wv) if Xv is not None else math.nan
            rows.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            advance(1, info=f"train {train_loss:.4g}  val {val_loss:.4g}")
            if Xv is None:
                best_epoch = epoch
            elif val_loss < best_val:
                best_epoch, best_val, waited = epoch, val_loss, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    break
    model.eval()
    if Xv is not None:
        if best_state is None:
            raise ValueError(
                "the validation loss was never finite: training diverged; lower lr or rescale X/y"
            )
        model.load_state_dict(best_state)
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss"])
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        stopped_epoch=len(rows),
        best_val_loss=best_val if Xv is not None else math.nan,
    )



def _objective(
    fn: BatchObjective, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    out = fn(model, xb, yb, rows)
    if not isinstance(out, torch.Tensor) or out.numel() != 1 or not out.requires_grad:
        raise ValueError(
            "batch_objective must return a scalar tensor that depends on the model's parameters"
        )
    if not bool(torch.isfinite(out.detach()).all()):
        raise ValueError("batch_objective returned NaN or inf; lower lr or check the objective")
    return out.reshape(())


def _sample_weight(w: Any, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t, _ = as_tensor(w, name="sample_weight", dtype=torch.float64, ndims=(1,))
    if t.shape[0] != n:
        raise ValueError(f"sample_weight has {t.shape[0]} entries but the inputs have {n} rows")
    if bool((t < 0).any()):
        raise ValueError("sample_weight must be non-negative")
    return t.to(device=device, dtype=dtype)


def orthogonality_penalty(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ ‖G − I‖_F²`` over 2-D weights, ``G = W Wᵀ`` if ``out ≤ in`` else ``Wᵀ W`` (see :func:`train`)."""
    total = weights[0].new_zeros(())
    for w in weights:
        g = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        total = total + ((g - torch.eye(g.shape[0], dtype=g.dtype, device=g.device)) ** 2).sum()
    return total


def _orthogonal_weights(model: nn.Module, layers: Sequence[str] | None) -> list[torch.Tensor]:
    modules = dict(model.named_modules())
    if layers is None:
        found = [m.weight for m in modules.values() if isinstance(m, nn.Linear)]
        if not found:
            raise ValueError("orthogonal_penalty > 0 but the model has no nn.Linear; name layers in orthogonal_layers=")
        return found
    if isinstance(layers, str):
        raise TypeError("orthogonal_layers must be a list of module paths, not a single str")
    out = []
    for name in layers:
        if name not in modules:
            raise ValueError(f"orthogonal_layers: no module {name!r} in the model")
        w = getattr(modules[name], "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() != 2:
            raise ValueError(f"orthogonal_layers: module {name!r} has no 2-D weight")
        out.append(w)
    return out
