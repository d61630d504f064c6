"""pykan's std-propagation edge scores, generalised exactly to chains of ``nn.Linear`` layers.

An MLP ``z_l = W_l a_{l-1} + b_l``, ``a_l = σ_l(z_l)`` (``a_0 = x``) is a KAN whose nodes
are the pre-activations ``z_l`` and whose edge functions are ``u ↦ W_ji σ(u)``
(see ``docs/edge_scores.md``). The scores are computed from the activations recorded by
forward hooks on the data passed in, never from a cached last batch. The chain itself is
verified by :func:`featurelens.attribution._structural.linear_chain`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._validation import check_float, check_int
from featurelens.data import as_tensor, resolve_names
from featurelens.models import default_batch_size, effective_weight, linear_chain, model_device_dtype, preserve_model


class _Moments:
    """Column means and sums of squared deviations, merged batch by batch (Chan et al.)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, a: torch.Tensor) -> None:
        nb = a.shape[0]
        mb = a.mean(dim=0)
        m2b = ((a - mb) ** 2).sum(dim=0)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        tot = self.n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / tot)
        self.m2 = self.m2 + m2b + delta**2 * (self.n * nb / tot)
        self.n = tot

    def std(self) -> np.ndarray:
        """Unbiased standard deviation per column (``ddof=1``)."""
        assert self.m2 is not None
        return torch.sqrt(self.m2 / (self.n - 1)).cpu().numpy()


def propagate(edge_std: Sequence[np.ndarray], node_std: Sequence[np.ndarray], start: np.ndarray,
              eps: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Propagate scores backwards as pykan does, from the last layer in ``edge_std`` to the inputs.

    ``start`` is the query matrix ``(k, width_L)``. For ``l = L .. 1``:
    ``B_l[k, j, i] = A_l[k, j] · E_l[j, i] / (N_l[j] + eps)`` and
    ``A_{l-1}[k, i] = Σ_j B_l[k, j, i]``. Returns ``(A_0 .. A_L, B_1 .. B_L)`` per query.
    """
    a = np.asarray(start, dtype=np.float64)
    nodes, edges = [a], []
    for e, s in zip(reversed(edge_std), reversed(node_std), strict=True):
        b = a[:, :, None] * e[None] / (s[None, :, None] + eps)
        a = b.sum(axis=1)
        edges.append(b)
        nodes.append(a)
    return nodes[::-1], edges[::-1]


@dataclass(eq=False)
class EdgeScores:
    """Edge, node and feature scores of a Linear chain (or a pykan ``MultKAN``).

    Attributes
    ----------
    feature_scores : ndarray ``(d,)``
        ``A_0``: raw input scores, relative to output score 1 (not normalised; see
        :meth:`normalized`).
    node_scores : list of ndarray
        ``A_0 .. A_L``, shapes ``(d,), (h_1,), …, (K,)``, mean over the output queries.
    edge_scores : list of ndarray
        ``B_1 .. B_L``, shapes ``(h_l, h_{l-1})`` (out, in), mean over the queries.
    edge_std : list of ndarray
        ``E_l[j, i] = std_n(W_l[j, i] · a_{l-1}[n, i])`` (unbiased), ``(out, in)``.
    node_std : list of ndarray
        ``N_l[j] = std_n(Σ_i W_l[j, i] a_{l-1}[n, i])`` (bias-free pre-activation), ``(out,)``.
    feature_names : list of str
    layer_names : list of str
        Module paths of the L Linear layers, input layer first.
    queries : ndarray ``(k, K)``
        Output query matrix (rows of the identity; all rows = pykan's default).
    eps : float
    n_rows : int
        Rows the standard deviations were taken over (samples × time steps).
    """

    feature_scores: np.ndarray
    node_scores: list[np.ndarray]
    edge_scores: list[np.ndarray]
    edge_std: list[np.ndarray]
    node_std: list[np.ndarray]
    feature_names: list[str]
    layer_names: list[str]
    queries: np.ndarray
    eps: float
    n_rows: int

    @property
    def input_layer(self) -> str:
        """Module path of the input layer."""
        return self.layer_names[0]

    def normalized(self) -> np.ndarray:
        """Feature scores divided by their sum (sum 1; all-zero scores stay zero)."""
        total = self.feature_scores.sum()
        return self.feature_scores / total if total > 0 else np.zeros_like(self.feature_scores)

    def to_series(self, *, normalize: bool = False) -> pd.Series:
        """Feature scores (raw or normalised) as a Series indexed by feature name."""
        vals = self.normalized() if normalize else self.feature_scores
        return pd.Series(vals, index=pd.Index(self.feature_names, name="feature"), name="edge_scores")

    def attribute(self, layer: int, neuron: int | None = None) -> np.ndarray:
        """Input scores of one node of layer ``layer``, as pykan's ``attribute(l, i)``.

        Starts from ``diag(node_scores[layer])`` at node layer ``layer`` (0 = inputs,
        L = outputs) and propagates back to the inputs. Returns ``(d,)`` for
        ``neuron`` (row ``neuron`` of the result) or ``(width_layer, d)`` for ``None``.
        """
        depth = len(self.edge_scores)
        layer = check_int(layer, name="layer", minimum=0)
        if layer > depth:
            raise ValueError(f"layer must be in [0, {depth}] (0 = inputs, {depth} = outputs), got {layer}")
        start = np.diag(self.node_scores[layer])
        a0 = propagate(self.edge_std[:layer], self.node_std[:layer], start, self.eps)[0][0]
        if neuron is None:
            return a0
        width = a0.shape[0]
        neuron = check_int(neuron, name="neuron", minimum=0)
        if neuron >= width:
            raise ValueError(f"neuron must be in [0, {width}) for layer {layer}, got {neuron}")
        return a0[neuron]

    def __repr__(self) -> str:
        widths = [len(s) for s in self.node_scores]
        return f"EdgeScores(widths={widths}, layers={self.layer_names}, n_rows={self.n_rows}, eps={self.eps})"


def _queries(target: int | Sequence[int] | None, k_out: int) -> np.ndarray:
    eye = np.eye(k_out)
    if target is None:
        return eye
    idx = [target] if isinstance(target, (int, np.integer)) and not isinstance(target, bool) else list(target)
    if not idx or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) for t in idx):
        raise TypeError(f"target must be None, an int or a sequence of ints, got {target!r}")
    bad = [int(t) for t in idx if not 0 <= t < k_out]
    if bad:
        raise ValueError(f"target {bad[0]} is out of range for a last nn.Linear with {k_out} outputs")
    return eye[[int(t) for t in idx]]


def _kan_scores(model: nn.Module, x: torch.Tensor, eps: float, target: Any, names: list[str]) -> EdgeScores:
    """Compute pykan's own scores for a ``kan.MultKAN`` (activations recorded on ``x``)."""
    if eps != 1e-4:
        raise ValueError(f"pykan fixes eps=1e-4 in MultKAN.attribute; got eps={eps}")
    if target is not None:
        raise ValueError("a MultKAN is scored with pykan's identity query over all outputs; use target=None")
    if any(int(w[1]) if isinstance(w, (list, tuple)) else 0 for w in model.width):
        raise ValueError("MultKAN models with multiplication nodes are not supported; use model.attribute()")
    if x.dim() != 2:
        raise ValueError(f"a MultKAN takes (n, d) inputs, got shape {tuple(x.shape)}")
    with preserve_model(model, eval_mode=False), torch.no_grad():
        model.get_act(x)
        model.attribute(plot=False)

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().double().numpy()

        nodes = [arr(s) for s in model.node_scores]
        edges = [arr(s) for s in model.edge_scores]
        e_std = [arr(s) for s in model.edge_actscale]
        n_std = [arr(s) for s in model.subnode_actscale]
    k_out = len(nodes[-1])
    return EdgeScores(nodes[0], nodes, edges, e_std, n_std, names, [f"act_fun.{i}" for i in range(len(edges))],
                      np.eye(k_out), eps, x.shape[0])


def edge_scores(
    model: nn.Module,
    X: Any,
    *,
    eps: float = 1e-4,
    target: int | Sequence[int] | None = None,
    output: int | None = None,
    feature_names: Sequence[str] | None = None,
    batch_size: int | None = None,
) -> EdgeScores:
    """Compute pykan's std-propagation edge, node and feature scores for a chain of ``nn.Linear`` layers.

    With ``a_0 = x`` and ``a_{l-1}`` the recorded input of Linear ``l`` (``W_l``
    its effective, mask-applied weight), over the ``N`` rows of ``X``
    (samples × time steps for ``(n, T, d)`` inputs) and unbiased standard deviations:

    - ``E_l[j, i] = std_n(W_l[j, i] · a_{l-1}[n, i]) = |W_l[j, i]| · std(a_{l-1}[:, i])``
    - ``N_l[j] = std_n(Σ_i W_l[j, i] a_{l-1}[n, i])`` (the bias-free pre-activation, the
      quantity pykan divides by: ``subnode_actscale``)
    - ``A_L = Q`` (one query row per output: the identity, or rows ``target``)
    - ``B_l[k, j, i] = A_l[k, j] · E_l[j, i] / (N_l[j] + eps)``, ``A_{l-1}[k, i] = Σ_j B_l[k, j, i]``
    - node and edge scores are the means over the queries ``k``; feature scores = ``A_0``.

    Parameters
    ----------
    model : nn.Module
        Linear layers joined by elementwise activations (ReLU, Tanh, GELU, SiLU,
        Sigmoid, LeakyReLU, …), Dropout and BatchNorm1d (evaluated in eval mode),
        masked (pruned) Linear layers, per-time-step Linear layers on ``(n, T, d)``;
        or a ``kan.MultKAN`` when pykan is installed (pykan's own scores).
    X : Tensor, ndarray or DataFrame
        ``(n, d)`` or ``(n, T, d)``; the data the activations are recorded on.
    eps : float
        Added to ``N_l`` (pykan: 1e-4).
    target : int, sequence of int or None
        Output units of the last Linear used as queries; ``None``: all (pykan).
    output : int, optional
        Element of a tuple-returning model's output.
    feature_names : sequence of str, optional
    batch_size : int, optional
        Rows per forward pass (default: 1024 per torch thread on CPU, divided by ``T`` for sequences).

    Returns
    -------
    EdgeScores

    Raises
    ------
    ValueError
        Where the propagation is undefined: attention or transformer layers,
        LayerNorm, residual/skip/concatenation graphs, convolutions, RNNs, softmax
        or other unit-mixing operations, a Linear run twice; fewer than 2 rows.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    eps = check_float(eps, name="eps", low=0.0)
    device, dtype = model_device_dtype(model)
    x, data_names = as_tensor(X, name="X", dtype=dtype, device=device)
    names = resolve_names(x.shape[-1], data_names=data_names,
                          feature_names=None if feature_names is None else list(feature_names))
    n_rows = x.shape[0] * (x.shape[1] if x.dim() == 3 else 1)
    if n_rows < 2:
        raise ValueError(f"edge scores need at least 2 rows to take standard deviations, got {n_rows}")
    kan = sys.modules.get("kan")
    kan_cls = getattr(kan, "MultKAN", None) if kan is not None else None
    if kan_cls is not None and isinstance(model, kan_cls):
        return _kan_scores(model, x, eps, target, names)
    if batch_size is None:
        batch_size = default_batch_size(x)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    with preserve_model(model, eval_mode=True, freeze=True):
        chain = linear_chain(model, x, output=output)
        weights = [effective_weight(m).to(torch.float64) for _, m in chain]
        mom_a = [_Moments() for _ in chain]
        mom_z = [_Moments() for _ in chain]
        seen: dict[int, torch.Tensor] = {}

        def hook_for(i: int) -> Callable:
            def hook(module: nn.Module, args: tuple) -> None:
                seen[i] = args[0].detach().clone()  # a copy: later in-place ops cannot change it

            return hook

        handles = [m.register_forward_pre_hook(hook_for(i)) for i, (_, m) in enumerate(chain)]
        try:
            with torch.no_grad():
                for start in range(0, x.shape[0], batch_size):
                    seen.clear()
                    model(x[start : start + batch_size])
                    for i, w in enumerate(weights):
                        a = seen[i].reshape(-1, w.shape[1]).to(torch.float64)
                        mom_a[i].update(a)
                        mom_z[i].update(a @ w.T)
        finally:
            for h in handles:
                h.remove()
    e_std = [np.abs(w.cpu().numpy()) * m.std()[None, :] for w, m in zip(weights, mom_a, strict=True)]
    n_std = [m.std() for m in mom_z]
    q = _queries(target, weights[-1].shape[0])
    nodes_all, edges_all = propagate(e_std, n_std, q, eps)
    nodes = [a.mean(axis=0) for a in nodes_all]
    edges = [b.mean(axis=0) for b in edges_all]
    return EdgeScores(nodes[0], nodes, edges, e_std, n_std, names, [n for n, _ in chain], q, eps, n_rows)
