"""Per-checkpoint weight metrics (Hu et al. 2023) and a logger writing one row per checkpoint.

The metric definitions follow the authors' ``src/metrics.py`` with every
convention made explicit; where their code and their paper disagree, the
choice is an option. See ``docs/dynamics.md`` for the table of conventions.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._io import atomic_write_bytes
from featurelens._validation import check_float, check_int
from featurelens.data import CSV_SUFFIXES, PARQUET_SUFFIXES

#: the 14 "base" columns, in the authors' CSV order
METRIC_NAMES = (
    "l1",
    "l2",
    "trace",
    "spectral",
    "code_sparsity",
    "computational_sparsity",
    "mean_singular_value",
    "var_singular_value",
    "mean_w",
    "median_w",
    "var_w",
    "mean_b",
    "median_b",
    "var_b",
)
#: columns written by :class:`MetricsLogger` before the metrics
ID_COLUMNS = ("run_id", "step", "epoch")
_MATRIX_KEYS = METRIC_NAMES[:8]
_CONV_KEYS = ("l1", "l2", "code_sparsity")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.EmbeddingBag)


@dataclass(frozen=True)
class _Tensors:
    """The tensors one checkpoint's metrics are computed from (float64, CPU)."""

    matrices: list[torch.Tensor]  # 2-D, possibly per-head blocks
    kernels: list[torch.Tensor]  # conv weights, (out, in, *kernel)
    weights: list[torch.Tensor]  # every included weight, flattened
    biases: list[torch.Tensor]


def lower_median(x: torch.Tensor) -> float:
    """Lower median of all entries: the ``(n - 1) // 2``-th smallest (``torch.median``'s rule)."""
    flat = x.reshape(-1)
    return float(torch.sort(flat).values[(flat.numel() - 1) // 2])


def _variance(x: torch.Tensor, ddof: int) -> float:
    n = x.numel()
    if n - ddof <= 0:
        return math.nan
    return float(((x - x.mean()) ** 2).sum() / (n - ddof))


def matrix_metrics(w: torch.Tensor, *, ddof: int = 1, sv_threshold: float = 1e-5) -> dict[str, float]:
    """Compute the eight matrix metrics of one 2-D matrix ``W`` of shape ``(m, n)``.

    ``l1 = Σ|W_ij|``, ``l2 = ‖W‖_F``, ``trace = Σ_{i < min(m, n)} W_ii`` (main
    diagonal of a non-square matrix), ``spectral = σ_max``,
    ``code_sparsity = l1 / l2``, ``computational_sparsity = trace / spectral``,
    and the mean and variance (``ddof``) of the ``min(m, n)`` singular values
    after setting those ``< sv_threshold`` to 0. Ratios with a zero
    denominator are NaN. A matrix with a NaN or inf entry gives NaN for every
    metric (the authors skip such matrices, which hides a diverged run).
    """
    w = w.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(w).all()):
        return dict.fromkeys(_MATRIX_KEYS, math.nan)
    s = torch.linalg.svdvals(w)
    s = torch.where(s < sv_threshold, torch.zeros_like(s), s)
    l1 = float(w.abs().sum())
    l2 = float(torch.linalg.vector_norm(w))
    trace = float(torch.diagonal(w).sum())
    spectral = float(s.max()) if s.numel() else 0.0
    return {
        "l1": l1,
        "l2": l2,
        "trace": trace,
        "spectral": spectral,
        "code_sparsity": l1 / l2 if l2 > 0 else math.nan,
        "computational_sparsity": trace / spectral if spectral > 0 else math.nan,
        "mean_singular_value": float(s.mean()),
        "var_singular_value": _variance(s, ddof),
    }


def kernel_metrics(k: torch.Tensor) -> dict[str, float]:
    """``l1``, ``l2`` and ``code_sparsity`` of a convolution kernel ``(out, in, *kernel)``.

    As in the authors' code: per ``(out, in)`` slice the L1 and L2 norms over
    the kernel entries; the layer's values are the means over slices of L1,
    of L2 and of the per-slice ratio L1 / L2 (slices with L2 = 0 are left out
    of the ratio's mean). No trace, spectral or singular-value statistics.
    """
    k = k.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(k).all()):
        return dict.fromkeys(_CONV_KEYS, math.nan)
    flat = k.reshape(k.shape[0] * k.shape[1], -1)
    l1 = flat.abs().sum(dim=1)
    l2 = torch.linalg.vector_norm(flat, dim=1)
    ok = l2 > 0
    ratio = float((l1[ok] / l2[ok]).mean()) if bool(ok.any()) else math.nan
    return {"l1": float(l1.mean()), "l2": float(l2.mean()), "code_sparsity": ratio}


def _split_rows(name: str, w: torch.Tensor, n_heads: int) -> list[torch.Tensor]:
    if w.shape[0] % n_heads:
        raise ValueError(f"heads[{name!r}] = {n_heads} does not divide the {w.shape[0]} rows of {name!r}")
    size = w.shape[0] // n_heads
    return [w[h * size:(h + 1) * size] for h in range(n_heads)]


def _collect(model: nn.Module, *, per_head: bool, heads: Mapping[str, int],
             include: Iterable[str] | None) -> _Tensors:
    params = dict(model.named_parameters())
    wanted = None if include is None else list(include)
    if wanted is not None:
        unknown = [n for n in wanted if n not in params]
        if unknown:
            raise ValueError(f"include names unknown parameter(s) {unknown}; "
                             f"the model's parameters are {list(params)}")
    for name in heads:
        if name not in params:
            raise ValueError(f"heads names unknown parameter {name!r}; the model's parameters are {list(params)}")
    matrices, kernels, weights, biases = [], [], [], []
    used: set[str] = set()

    def add_weight(name: str, w: torch.Tensor) -> None:
        w = w.detach().to(device="cpu", dtype=torch.float64)
        weights.append(w.reshape(-1))
        if w.dim() == 2:
            matrices.extend(_split_rows(name, w, heads[name]) if name in heads else [w])
        elif w.dim() >= 3:
            kernels.append(w)

    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(mod, _NORM_TYPES):
            continue
        if isinstance(mod, nn.MultiheadAttention) and mod.in_proj_weight is not None:
            name = f"{prefix}in_proj_weight"
            if wanted is None or name in wanted:
                used.add(name)
                w = mod.in_proj_weight.detach().to(device="cpu", dtype=torch.float64)
                weights.append(w.reshape(-1))
                e = mod.embed_dim
                for part, block in zip("QKV", (w[:e], w[e:2 * e], w[2 * e:]), strict=True):
                    if per_head:
                        matrices.extend(_split_rows(f"{name}[{part}]", block, mod.num_heads))
                    else:
                        matrices.append(block)
            bname = f"{prefix}in_proj_bias"
            if mod.in_proj_bias is not None and (wanted is None or bname in wanted):
                used.add(bname)
                biases.append(mod.in_proj_bias.detach().to(device="cpu", dtype=torch.float64).reshape(-1))
            continue
        for pname, p in mod.named_parameters(recurse=False):
            full = prefix + pname
            if wanted is not None and full not in wanted:
                continue
            if wanted is None and pname not in ("weight", "bias") and not pname.endswith(("_weight", "_bias")):
                continue
            if pname == "bias" or pname.endswith("_bias"):
                biases.append(p.detach().to(device="cpu", dtype=torch.float64).reshape(-1))
                used.add(full)
            elif p.dim() >= 2:
                add_weight(full, p)
                used.add(full)
    if wanted is not None:
        ignored = [n for n in wanted if n not in used]
        if ignored:
            raise ValueError(f"include names parameter(s) {ignored} that are not weight matrices, convolution "
                             "kernels or biases of a non-normalisation, non-embedding module")
    return _Tensors(matrices, kernels, weights, biases)


def weight_metrics(
    model: nn.Module,
    *,
    ddof: int = 1,
    sv_threshold: float = 1e-5,
    per_head: bool = False,
    heads: Mapping[str, int] | None = None,
    include: Iterable[str] | None = None,
) -> dict[str, float]:
    """Compute the per-checkpoint weight metrics of Hu et al. (2023) for ``model``.

    Parameters
    ----------
    model : nn.Module
        Read only (no mode, flag, hook or weight is changed).
    ddof : {1, 0}
        Delta degrees of freedom of every variance (``var_singular_value``,
        ``var_w``, ``var_b``). 1 (Bessel's correction) is what the authors'
        code computes; their paper's table says "without Bessel", i.e. 0.
    sv_threshold : float
        Singular values below it are set to 0 before their mean and variance
        (the authors' 1e-5); they stay counted.
    per_head : bool
        Split the Q, K and V blocks of every ``nn.MultiheadAttention``
        ``in_proj_weight`` into ``num_heads`` row blocks, one matrix each (the
        authors' transformer convention); otherwise Q, K and V are one matrix
        each. The output projection is always one matrix.
    heads : mapping of str to int, optional
        Further 2-D parameters (by ``named_parameters`` name) to split into
        that many equal row blocks, one matrix per head.
    include : iterable of str, optional
        Only these parameters (by ``named_parameters`` name; for attention use
        ``"<module>.in_proj_weight"``). Default: every weight and bias of every
        module except normalisation layers and embeddings (the authors exclude
        both), i.e. ``weight``, ``*_weight``, ``bias`` and ``*_bias``.

    Returns
    -------
    dict of str to float
        Keys in :data:`METRIC_NAMES` order. The eight matrix metrics are the
        plain means over all included matrices (and heads) of
        :func:`matrix_metrics`; ``l1``, ``l2`` and ``code_sparsity`` also
        average in each convolution kernel's :func:`kernel_metrics` (one value
        per layer), and the other five come from 2-D matrices only. ``mean_w``,
        ``median_w`` (lower median) and ``var_w`` are over all included weight
        entries concatenated (kernels too), ``*_b`` over all bias entries.
        A key is absent when no tensor provides it (no biases: no ``*_b``).

    Raises
    ------
    ValueError
        If ``ddof`` is not 0 or 1, ``include``/``heads`` name unknown
        parameters, a head count does not divide the rows, or no weight
        tensor is included.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
    sv_threshold = check_float(sv_threshold, name="sv_threshold", low=0.0)
    heads = dict(heads or {})
    for name, n in heads.items():
        check_int(n, name=f"heads[{name!r}]", minimum=1)
    with torch.no_grad():
        t = _collect(model, per_head=per_head, heads=heads, include=include)
    if not t.weights:
        raise ValueError("model has no included weight tensor (2-D matrix or convolution kernel)")
    per_key: dict[str, list[float]] = {k: [] for k in _MATRIX_KEYS}
    for w in t.matrices:
        for k, v in matrix_metrics(w, ddof=ddof, sv_threshold=sv_threshold).items():
            per_key[k].append(v)
    for k in t.kernels:
        for key, v in kernel_metrics(k).items():
            per_key[key].append(v)
    out: dict[str, float] = {}
    for key in _MATRIX_KEYS:
        if per_key[key]:
            out[key] = float(np.mean(per_key[key]))
    for suffix, tensors in (("w", t.weights), ("b", t.biases)):
        if not tensors:
            continue
        flat = torch.cat(tensors)
        if not bool(torch.isfinite(flat).all()):
            out.update({f"mean_{suffix}": math.nan, f"median_{suffix}": math.nan, f"var_{suffix}": math.nan})
            continue
        out[f"mean_{suffix}"] = float(flat.mean())
        out[f"median_{suffix}"] = lower_median(flat)
        out[f"var_{suffix}"] = _variance(flat, ddof)
    return {k: out[k] for k in METRIC_NAMES if k in out}


class MetricsLogger:
    """Append one row per checkpoint of one run to a CSV or Parquet file.

    Each :meth:`log` computes :func:`weight_metrics` of the model and adds a
    row ``run_id, step, epoch, <metrics>, <user scalars>``. The whole file is
    rewritten atomically (temporary file + rename) every ``flush_every`` rows
    and on :meth:`close`, so a reader never sees a half-written file. Rows
    must all carry the same user scalars.

    Parameters
    ----------
    path : path
        ``.csv``/``.csv.gz`` or ``.parquet``/``.pq`` (needs pyarrow). Its
        directory must exist.
    run_id : str
        Identifier written in the ``run_id`` column.
    force : bool
        Replace an existing file; otherwise an existing file is an error.
    flush_every : int
        Rows between rewrites of the file.
    **metric_options
        Passed to :func:`weight_metrics` (``ddof``, ``sv_threshold``,
        ``per_head``, ``heads``, ``include``).
    """

    def __init__(self, path: str | os.PathLike, *, run_id: str, force: bool = False,
                 flush_every: int = 1, **metric_options: Any) -> None:
        self.path = Path(path)
        name = self.path.name.lower()
        if name.endswith(CSV_SUFFIXES):
            self.format = "csv"
        elif name.endswith(PARQUET_SUFFIXES):
            self.format = "parquet"
        else:
            raise ValueError(f"path {str(path)!r} must end in .csv, .csv.gz, .parquet or .pq")
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
        if not self.path.parent.is_dir():
            raise ValueError(f"directory of path {str(path)!r} does not exist")
        if self.path.exists() and not force:
            raise ValueError(f"path {str(path)!r} already exists; pass force=True to replace it")
        bad = set(metric_options) - {"ddof", "sv_threshold", "per_head", "heads", "include"}
        if bad:
            raise TypeError(f"unknown weight_metrics option(s) {sorted(bad)}")
        self.run_id = run_id
        self.flush_every = check_int(flush_every, name="flush_every", minimum=1)
        self.metric_options = metric_options
        self.rows: list[dict[str, Any]] = []
        self._pending = 0

    def log(self, model: nn.Module, *, step: int, epoch: float | None = None,
            **scalars: float) -> dict[str, Any]:
        """Compute the metrics of ``model`` and append a row; returns the row.

        ``step`` must increase from row to row; ``scalars`` are user values
        (losses, accuracies) whose names may not clash with the metric or id
        columns.
        """
        step = check_int(step, name="step", minimum=0)
        if self.rows and step <= self.rows[-1]["step"]:
            raise ValueError(f"step must increase from row to row; got {step} after {self.rows[-1]['step']}")
        clash = sorted(set(scalars) & (set(METRIC_NAMES) | set(ID_COLUMNS)))
        if clash:
            raise ValueError(f"user scalar name(s) {clash} clash with metric or id columns")
        if self.rows:
            expected = [k for k in self.rows[0] if k not in ID_COLUMNS and k not in METRIC_NAMES]
            if sorted(scalars) != sorted(expected):
                raise ValueError(f"every row must carry the same user scalars {expected}; got {sorted(scalars)}")
        values = {}
        for k, v in scalars.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                raise TypeError(f"user scalar {k!r} must be a number, got {type(v).__name__}")
            values[k] = float(v)  # NaN/inf are kept: load_runs reports such runs
        row = {"run_id": self.run_id, "step": step, "epoch": math.nan if epoch is None else float(epoch)}
        row.update(weight_metrics(model, **self.metric_options))
        row.update(values)
        self.rows.append(row)
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()
        return row

    def frame(self) -> pd.DataFrame:
        """Return the rows logged so far as a DataFrame."""
        return pd.DataFrame(self.rows)

    def flush(self) -> None:
        """Rewrite the file atomically with every row logged so far."""
        if not self.rows:
            return
        frame = self.frame()
        buf = io.BytesIO()
        if self.format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ValueError("writing Parquet needs pyarrow: pip install 'featurelens[parquet]'") from None
            frame.to_parquet(buf, index=False, engine="pyarrow")
        else:
            compression = "gzip" if self.path.name.lower().endswith(".gz") else None
            frame.to_csv(buf, index=False, compression=compression)
        atomic_write_bytes(self.path, buf.getvalue())
        self._pending = 0

    def close(self) -> None:
        """Write any rows not yet written."""
        if self._pending:
            self.flush()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

