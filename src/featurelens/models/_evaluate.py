"""The one evaluation core: a model run on rows in bounded chunks, its output picked.

Every batched forward pass of the library goes through :func:`evaluate`
(attribution's ``Problem``, the reliance metrics, training's validation loss,
:func:`logit_accuracy`), and every loop over row chunks, the attacks' gradient
chunks included, sizes its chunks with :func:`default_batch_size`. The output
link (sigmoid, softmax, logit) is applied in one place,
:class:`~featurelens.models.OutputSelector`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from featurelens._metrics import accuracy
from featurelens._progress import progress_bar
from featurelens._validation import check_int
from featurelens.models._output import OutputSelector, pick_output
from featurelens.models._state import model_device_dtype, preserve_model

#: Rows per model call on the CPU, per torch thread. Measured on the anchor MLP
#: 64-256-256-1 with benchmarks/chunk_size.py (docs/benchmarks.md): with 1 thread
#: 1024-2048-row calls are fastest, with 2 threads 2048-4096; 8192-row calls cost
#: 40-70 % more (activations fall out of the per-core cache).
CPU_ROWS_PER_THREAD = 1024
#: Rows per model call on a CUDA device.
CUDA_ROWS_PER_CALL = 65536


def default_batch_size(X: torch.Tensor) -> int:
    """Rows per model call for the inputs ``X``: the one chunk-size policy of featurelens.

    ``CPU_ROWS_PER_THREAD`` (1024) rows per torch thread on the CPU, or
    ``CUDA_ROWS_PER_CALL`` (65536) rows on a CUDA device, divided by the
    sequence length ``T`` of ``(n, T, d)`` inputs (so a call holds about the
    same number of time steps); at least 1.
    """
    rows = CUDA_ROWS_PER_CALL if X.device.type == "cuda" else CPU_ROWS_PER_THREAD * torch.get_num_threads()
    steps = X.shape[1] if X.dim() == 3 else 1
    return max(1, rows // steps)


def call_model(model: nn.Module, X: torch.Tensor, *, shape: tuple[int, ...] | None = None) -> Any:
    """``model(X)``; a model that fails on ``X`` raises ``ValueError`` naming the input shape.

    ``RuntimeError``, ``IndexError``, ``ValueError`` and ``TypeError`` from the
    model become ``ValueError("the model failed on inputs of shape S (d
    features): <first line of the error>")`` chained to the original, with
    ``S = shape`` (e.g. the shape of all rows when ``X`` is one chunk of them;
    default ``X.shape``). Other exceptions pass through unchanged.
    """
    try:
        return model(X)
    except (RuntimeError, IndexError, ValueError, TypeError, torch.jit.Error) as exc:
        s = tuple(X.shape if shape is None else shape)
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        # TorchScript puts its traceback first and the reason on the last line
        first = (lines[-1] if isinstance(exc, torch.jit.Error) else lines[0]) if lines else type(exc).__name__
        raise ValueError(f"the model failed on inputs of shape {s} ({s[-1]} features): {first}") from exc


def evaluate(
    model: nn.Module,
    X: torch.Tensor,
    *,
    output: OutputSelector | None = None,
    batch_size: int | None = None,
    grad: bool = False,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str = "model outputs",
) -> torch.Tensor:
    """Compute the model's (selected) outputs on every row of ``X``, in chunks of rows.

    For each chunk ``X[i : i + batch_size]`` the model is called once
    (through :func:`call_model`, so a model/data mismatch is a ``ValueError``
    naming ``X``'s shape); the raw output goes through ``output`` and the
    chunks are concatenated along the first axis. The model's mode is not
    changed: callers that want eval mode wrap the call in
    :func:`featurelens.models.preserve_model`.

    Parameters
    ----------
    model : nn.Module
    X : Tensor
        ``(n, ...)`` rows, ``n ≥ 1``, on the model's device and dtype.
    output : OutputSelector, optional
        Picks the quantity returned (tuple element, link, target): ``(n,)``
        for one target, ``(n, K)`` for ``target="all"``. ``None``: the raw
        output itself, which must be a tensor whose first axis is the rows.
    batch_size : int, optional
        Rows per model call; default :func:`default_batch_size` of ``X``.
        The result does not depend on it (up to the floating-point behaviour
        of the model's kernels on different batch sizes).
    grad : bool
        Track gradients (the result keeps its graph); default: no graph.
    dtype : torch.dtype, optional
        Cast each raw output to this dtype before the link is applied (e.g.
        ``torch.float64`` to take probabilities in double precision).
    progress : bool
        Show a progress bar over the rows, labelled ``desc``.

    Returns
    -------
    Tensor
        On the model's device: ``(n,)`` or ``(n, K)`` with ``output``, else
        the raw output's shape with ``n`` rows.
    """
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor on the model's device and dtype, got {type(X).__name__}")
    if X.dim() == 0 or X.shape[0] == 0:
        raise ValueError(f"X must hold at least one row, got shape {tuple(X.shape)}")
    if output is not None and not isinstance(output, OutputSelector):
        raise TypeError(f"output must be an OutputSelector or None, got {type(output).__name__}")
    bs = default_batch_size(X) if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    outs = []
    with torch.set_grad_enabled(bool(grad)), progress_bar(desc, X.shape[0], enabled=progress) as advance:
        for i in range(0, X.shape[0], bs):
            xb = X[i : i + bs]
            raw = call_model(model, xb, shape=tuple(X.shape))
            if output is not None:
                out = output(raw, xb.shape[0], dtype=dtype)
            else:
                out = pick_output(raw, None)
                if out.dim() == 0 or out.shape[0] != xb.shape[0]:
                    raise ValueError(
                        f"the model output has shape {tuple(out.shape)} for a batch of {xb.shape[0]} rows; "
                        "its first axis must be the batch"
                    )
                out = out if dtype is None else out.to(dtype)
            outs.append(out)
            advance(xb.shape[0])
    return torch.cat(outs)


def logit_accuracy(model: nn.Module, X: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Accuracy of a binary classifier that returns logits ``(n,)`` or ``(n, 1)``.

    Equals :func:`featurelens._metrics.accuracy` of ``sigmoid(model(X))``: a
    row is predicted 1 when its logit is ``>= 0``. The model runs in eval mode
    without gradients (:func:`evaluate`), on its own device and dtype; its
    mode is restored.
    """
    device, dtype = model_device_dtype(model)
    xt = torch.as_tensor(X).to(device=device, dtype=dtype)
    with preserve_model(model, eval_mode=True):
        prob = evaluate(model, xt, output=OutputSelector(target="all", link="sigmoid"))
    if prob.shape[1] != 1:
        raise ValueError(f"logit_accuracy needs one logit per row, got model output of shape {tuple(prob.shape)}")
    return accuracy(torch.as_tensor(np.asarray(y)), prob[:, 0].double().cpu())
