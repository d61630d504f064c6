"""Superposition metrics and the ReLU-output toy model of Elhage et al. (2022).

Reference: N. Elhage et al., "Toy Models of Superposition", Transformer
Circuits Thread, 2022. A bottleneck ``W`` of shape ``(m, n)`` maps ``n``
features to ``m < n`` hidden dimensions; column ``W_i`` is the direction of
feature ``i`` and ``Ŵ_i = W_i / ||W_i||``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featurelens._validation import check_float, check_int, check_random_state
from featurelens.representation._spectrum import as_matrix


@dataclass(frozen=True)
class SuperpositionMetrics:
    """Per-feature geometry of a bottleneck (see :func:`superposition_metrics`)."""

    feature_norms: np.ndarray
    interference: np.ndarray
    feature_dimensionality: np.ndarray
    dimensions_per_feature: float
    n_represented: int


def superposition_metrics(weight: Any, *, represented_norm: float = 0.5) -> SuperpositionMetrics:
    """Feature norms, interference and dimensionality of ``W`` (Elhage et al. 2022).

    Parameters
    ----------
    weight : torch.Tensor or numpy.ndarray
        ``W`` of shape ``(m, n)``: ``n`` features, ``m`` hidden dimensions.
    represented_norm : float
        A feature counts as represented when ``||W_i|| > represented_norm``.

    Returns
    -------
    SuperpositionMetrics
        ``feature_norms`` ``(n,)``: ``||W_i||`` (≈1 represented, ≈0 dropped).
        ``interference`` ``(n,)``: ``sum_{j != i} (Ŵ_i · W_j)**2`` (the paper's
        superposition measure; 0 when ``W_i`` is orthogonal to all others).
        ``feature_dimensionality`` ``(n,)``: the paper's
        ``D_i = ||W_i||**2 / sum_j (Ŵ_i · W_j)**2`` with ``j`` running over all
        features including ``i`` (1 = a dedicated dimension, 1/2 = antipodal
        pair, 2/5 = pentagon); 0 for a zero column.
        ``dimensions_per_feature``: ``D* = m / ||W||_F**2``.
        ``n_represented``: number of features with ``||W_i|| > represented_norm``.
    """
    w = as_matrix(weight, name="weight")
    if isinstance(weight, (np.ndarray, torch.Tensor)) and weight.ndim != 2:
        raise ValueError(f"weight must have shape (m, n), got shape {tuple(weight.shape)}")
    thr = check_float(represented_norm, name="represented_norm", low=0.0)
    m = w.shape[0]
    norms = np.linalg.norm(w, axis=0)
    safe = np.where(norms > 0, norms, 1.0)
    proj = (w / safe).T @ w  # proj[i, j] = Ŵ_i · W_j
    proj[norms == 0] = 0.0
    sq = proj**2
    interf = sq.sum(axis=1) - np.diag(sq)
    total = sq.sum(axis=1)
    dim = np.divide(norms**2, total, out=np.zeros_like(norms), where=total > 0)
    fro = float(np.sum(w**2))
    dpf = m / fro if fro > 0 else float("inf")
    return SuperpositionMetrics(norms, interf, dim, dpf, int(np.sum(norms > thr)))


@dataclass(frozen=True)
class ToyModelResult:
    """Trained toy model (see :func:`toy_model_experiment`)."""

    W: np.ndarray
    b: np.ndarray
    metrics: SuperpositionMetrics
    loss: float
    importance: np.ndarray


def toy_model_experiment(
    n_features: int = 20,
    n_hidden: int = 5,
    sparsity: float = 0.9,
    importance_decay: float = 0.9,
    *,
    n_steps: int = 2000,
    train_batch_size: int = 1024,
    lr: float = 1e-2,
    random_state: int | np.random.Generator | None = 0,
) -> ToyModelResult:
    """Train the ReLU-output toy model of superposition (Elhage et al. 2022).

    Data: ``x_i = 0`` with probability ``sparsity`` (``S``), else
    ``x_i ~ U[0, 1]``, independently per feature and sample. Model:
    ``x' = ReLU(W^T W x + b)`` with ``W`` ``(n_hidden, n_features)``
    (Xavier-normal initialisation) and ``b`` zeros. Loss: the batch mean of
    ``sum_i I_i (x_i - x'_i)**2`` with importance ``I_i = importance_decay**i``.
    Trained with Adam (``lr``) for ``n_steps`` steps on fresh batches of
    ``train_batch_size`` rows, all randomness from a ``torch.Generator`` seeded by
    ``random_state`` inside ``torch.random.fork_rng`` (the global RNG is
    untouched). Runs in float32 on the CPU.

    Returns
    -------
    ToyModelResult
        ``W`` ``(n_hidden, n_features)``, ``b`` ``(n_features,)``, their
        :func:`superposition_metrics`, ``loss`` (mean over the last 100 steps)
        and ``importance`` ``(n_features,)``.
    """
    n = check_int(n_features, name="n_features", minimum=1)
    m = check_int(n_hidden, name="n_hidden", minimum=1)
    s = check_float(sparsity, name="sparsity", low=0.0, high=1.0, inclusive=(True, False))
    decay = check_float(importance_decay, name="importance_decay", low=0.0, high=1.0, inclusive=(False, True))
    n_steps = check_int(n_steps, name="n_steps", minimum=1)
    bs = check_int(train_batch_size, name="train_batch_size", minimum=1)
    rate = check_float(lr, name="lr", low=0.0, inclusive=(False, True))
    seed = int(check_random_state(random_state).integers(2**31 - 1))
    importance = torch.tensor([decay**i for i in range(n)], dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator().manual_seed(seed)
        w = (torch.randn(m, n, generator=gen) * np.sqrt(2.0 / (m + n))).requires_grad_(True)
        b = torch.zeros(n, requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=rate)
        losses = []
        for _ in range(n_steps):
            x = torch.rand(bs, n, generator=gen)
            x = x * (torch.rand(bs, n, generator=gen) >= s)
            out = torch.relu(x @ w.T @ w + b)
            loss = ((x - out) ** 2 * importance).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    w_np = w.detach().to(torch.float64).numpy()
    return ToyModelResult(
        W=w_np,
        b=b.detach().to(torch.float64).numpy(),
        metrics=superposition_metrics(w_np),
        loss=float(np.mean(losses[-100:])),
        importance=importance.to(torch.float64).numpy(),
    )
