"""Reproducible mini-batch training with a validation split and early stopping.

The superposition and spurious-correlation notebook's ``train_model`` stopped on the *training* loss without any
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
from featurelens.data import as_tensor
from featurelens.models._evaluate import evaluate
from featurelens.models._losses import LOSSES, _batch_loss, _labels, _task_loss, _values, row_losses
from featurelens.models._orthogonal import _orthogonal_weights, orthogonality_penalty
from featurelens.models._state import model_device_dtype

__all__ = ["LOSSES", "BatchObjective", "TrainResult", "orthogonality_penalty", "row_losses", "train"]

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


def _eval_loss(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss: str, w: torch.Tensor | None = None
) -> float:
    """Mean loss over the rows of ``X`` (weighted mean with ``w``), in eval mode.

    The outputs come from :func:`featurelens.models.evaluate` (chunks of
    :func:`~featurelens.models.default_batch_size` rows, no graph); the loss is
    summed over all rows at once.
    """
    model.eval()
    total = float(_batch_loss(loss, evaluate(model, X), y, w))
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
        Weight ``λ ≥ 0`` of the "disentangled" training of the superposition and spurious-correlation
        notebook: the training objective becomes ``task loss + λ Σ_l ‖G_l − I‖_F²`` with ``G_l = W Wᵀ``
        for a layer weight ``W`` of shape ``(out, in)`` with ``out ≤ in``
        (orthonormal rows) and ``G_l = Wᵀ W`` otherwise (orthonormal columns;
        ``W Wᵀ = I`` is unreachable when ``out > in``). The notebook used the mean
        of the squared entries; featurelens uses the squared Frobenius
        norm. Recorded losses and early stopping use the task loss only.
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

    data = _split(X, y, loss, device, dtype, sample_weight=sample_weight, validation_data=validation_data,
                  validation_fraction=validation_fraction, rng=rng)
    _probe(model, loss, data)
    step = _Step(model=model, loss=loss, optimizer=torch.optim.Adam(params, lr=lr, weight_decay=weight_decay),
                 ortho=ortho, orthogonal_penalty=orthogonal_penalty, batch_objective=batch_objective)
    fit = _fit(step, data, epochs=epochs, batch_size=batch_size, patience=patience,
               seed=int(rng.integers(0, 2**63 - 1)), device=device, progress=progress)
    model.eval()
    if data.Xv is not None:
        if fit.best_state is None:
            raise ValueError(
                "the validation loss was never finite: training diverged; lower lr or rescale X/y"
            )
        model.load_state_dict(fit.best_state)
    return TrainResult(
        model=model,
        history=pd.DataFrame(fit.rows, columns=["epoch", "train_loss", "val_loss"]),
        best_epoch=fit.best_epoch,
        stopped_epoch=len(fit.rows),
        best_val_loss=fit.best_val if data.Xv is not None else math.nan,
    )


@dataclass
class _Data:
    """Training rows, their weights and the validation set.

    ``rows``: the training rows' indices into the ``X`` given to :func:`train`; weights rescaled
    to mean 1; the validation set is ``None`` without one.
    """

    X: torch.Tensor
    y: torch.Tensor
    rows: torch.Tensor
    w: torch.Tensor | None
    Xv: torch.Tensor | None
    yv: torch.Tensor | None
    wv: torch.Tensor | None


def _split(
    X: Any, y: Any, loss: str, device: torch.device, dtype: torch.dtype, *, sample_weight: Any,
    validation_data: tuple[Any, Any] | None, validation_fraction: float, rng: np.random.Generator,
) -> _Data:
    """Convert the data and carve the validation set (explicit, a seeded split, or none)."""
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
    return _Data(Xt, yt, rows_t, wt, Xv, yv, wv)


def _probe(model: nn.Module, loss: str, data: _Data) -> None:
    """Check the model output against the loss and the labels on one row, before any update."""
    with torch.no_grad():
        probe = model.eval()(data.X[:1])
        if loss == "ce" and isinstance(probe, torch.Tensor) and probe.dim() == 2:
            k = probe.shape[1]
            labels = torch.cat([data.y, data.yv]) if data.yv is not None else data.y
            bad = torch.unique(labels[(labels < 0) | (labels >= k)])
            if bad.numel():
                raise ValueError(
                    f"loss='ce': the model has K={k} outputs, so labels must be in [0, {k}); "
                    f"found {_values(bad.cpu())}"
                )
        _task_loss(loss, probe, data.y[:1], "sum")


@dataclass
class _Step:
    """One optimiser step on a mini-batch.

    The objective (task loss or ``batch_objective``) plus the orthogonality penalty.
    """

    model: nn.Module
    loss: str
    optimizer: torch.optim.Optimizer
    ortho: list[torch.Tensor]
    orthogonal_penalty: float
    batch_objective: BatchObjective | None

    def __call__(self, data: _Data, idx: torch.Tensor) -> float:
        """Take the step on rows ``idx`` of ``data``; return the batch's summed task loss.

        With ``batch_objective``, the objective times the batch size is returned instead.
        """
        self.optimizer.zero_grad()
        if self.batch_objective is not None:
            objective = _objective(self.batch_objective, self.model, data.X[idx], data.y[idx], data.rows[idx])
            batch_loss = objective.detach() * idx.numel()
        else:
            out = self.model(data.X[idx])
            batch_loss = _batch_loss(self.loss, out, data.y[idx], None if data.w is None else data.w[idx])
            objective = batch_loss / idx.numel()
        if self.ortho:
            objective = objective + self.orthogonal_penalty * orthogonality_penalty(self.ortho)
        objective.backward()
        self.optimizer.step()
        return float(batch_loss.detach())


@dataclass
class _Fit:
    rows: list[dict[str, float]]
    best_state: dict[str, Any] | None
    best_epoch: int
    best_val: float


def _fit(
    step: _Step, data: _Data, *, epochs: int, batch_size: int, patience: int | None, seed: int,
    device: torch.device, progress: bool,
) -> _Fit:
    """Run the epochs, inside a forked torch RNG seeded with ``seed``.

    Shuffled mini-batches, the validation loss after each epoch, the best-validation weights kept,
    early stopping.
    """
    model = step.model
    gen = torch.Generator().manual_seed(seed)
    fit = _Fit(rows=[], best_state=None, best_epoch=0, best_val=math.inf)
    waited = 0
    fork = [] if device.type == "cpu" else [device.index if device.index is not None else 0]
    bar = progress_bar("training", epochs, enabled=progress)
    with bar as advance, torch.random.fork_rng(devices=fork, device_type=device.type):
        torch.manual_seed(seed)
        for epoch in range(1, epochs + 1):
            model.train()
            total = 0.0
            for idx in torch.randperm(data.X.shape[0], generator=gen).to(device).split(batch_size):
                total += step(data, idx)
            train_loss = total / data.X.shape[0]
            val_loss = _eval_loss(model, data.Xv, data.yv, step.loss, data.wv) if data.Xv is not None else math.nan
            fit.rows.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            advance(1, info=f"train {train_loss:.4g}  val {val_loss:.4g}")
            if data.Xv is None:
                fit.best_epoch = epoch
            elif val_loss < fit.best_val:
                fit.best_epoch, fit.best_val, waited = epoch, val_loss, 0
                fit.best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    break
    return fit


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
