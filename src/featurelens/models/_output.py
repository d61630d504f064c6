"""Selecting the output to explain: tuple element, link, target index."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

LINKS = ("identity", "sigmoid", "softmax", "logit")


def _is_int(value: Any) -> bool:
    """Tell whether ``value`` is a Python or NumPy integer (e.g. ``np.argmax`` results); False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def pick_output(raw: Any, output: int | None) -> torch.Tensor:
    """Pick the model output to use: ``raw``, or ``raw[output]`` for a model returning a tuple or list."""
    if isinstance(raw, (tuple, list)):
        if output is None:
            raise TypeError(
                f"the model returned a {type(raw).__name__} of {len(raw)} outputs; "
                "pass output=<index> (CLI: --output) to choose one"
            )
        if not -len(raw) <= output < len(raw):
            raise ValueError(f"output={output} is out of range for a model returning {len(raw)} outputs")
        raw = raw[output]
    elif output not in (None, 0):
        raise ValueError(f"output={output} was given but the model returns a single tensor")
    if not isinstance(raw, torch.Tensor):
        raise TypeError(f"the model output must be a tensor, got {type(raw).__name__}")
    return raw


class OutputSelector:
    """Turn a model's raw output into the quantity that is explained.

    The raw output goes through three steps, in this order:

    1. ``output``: for models returning a tuple or list (e.g. ``(logits,
       aux_loss)``), the element to use. Required for such models.
    2. ``link``: ``"identity"`` (default), ``"sigmoid"`` (logits to
       probabilities), ``"softmax"`` (over the output axis), or ``"logit"``
       (probabilities to log-odds, ``log p − log(1 − p)``).
    3. ``target``: outputs of shape ``(B,)`` or ``(B, 1)`` are scalar per row
       and need no target (``None`` or ``0``). Wider outputs ``(B, K)`` need
       ``target=k`` (an int, or a tuple indexing the trailing output dims),
       or ``"all"`` to keep every output (result ``(B, K)``).

    Calling the selector on a raw output returns ``(B,)`` for a single target
    or ``(B, K)`` for ``target="all"`` (``K = 1`` for scalar models).
    """

    def __init__(self, *, target: int | Sequence[int] | str | None = None, output: int | None = None,
                 link: str | None = None):
        if _is_int(target):
            target = int(target)
        elif isinstance(target, tuple) and all(_is_int(t) for t in target):
            target = tuple(int(t) for t in target)
        elif target is not None and not (isinstance(target, str) and target == "all"):
            raise TypeError(f"target must be None, an int, a tuple of ints or 'all', got {target!r}")
        if isinstance(target, int) and target < 0:
            raise ValueError(f"target must be >= 0, got {target}")
        if output is not None and not _is_int(output):
            raise TypeError(f"output must be None or an int index into the model's tuple output, got {output!r}")
        output = None if output is None else int(output)
        link = "identity" if link is None else link
        if link not in LINKS:
            raise ValueError(f"link must be one of {', '.join(map(repr, LINKS))}; got {link!r}")
        self.target = target
        self.output = output
        self.link = link
        self.n_outputs: int | None = None

    @property
    def all_targets(self) -> bool:
        return self.target == "all"

    def _pick(self, raw: Any) -> torch.Tensor:
        return pick_output(raw, self.output)

    def __call__(self, raw: Any, batch_size: int, *, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Select the output of one batch of ``batch_size`` rows; ``dtype`` casts before the link."""
        out = self._pick(raw)
        if out.dim() == 0 or out.shape[0] != batch_size:
            raise ValueError(
                f"the model output has shape {tuple(out.shape)} for a batch of {batch_size} rows; "
                "its first axis must be the batch"
            )
        trailing = tuple(out.shape[1:])
        out = out.reshape(batch_size, -1)
        if dtype is not None:
            out = out.to(dtype)
        k = out.shape[1]
        self.n_outputs = k
        if self.link == "sigmoid":
            out = torch.sigmoid(out)
        elif self.link == "softmax":
            if k < 2:
                raise ValueError("link='softmax' needs a model with 2 or more outputs; use link='sigmoid'")
            out = torch.softmax(out, dim=1)
        elif self.link == "logit":
            if bool(((out <= 0) | (out >= 1)).any()):
                raise ValueError(
                    "link='logit' needs probabilities strictly inside (0, 1); the model output reaches 0, 1 "
                    "or beyond, where the log-odds are infinite or undefined"
                )
            out = torch.log(out) - torch.log1p(-out)
        if self.target == "all":
            return out
        if k == 1:
            if self.target not in (None, 0, (0,)):
                raise ValueError(f"target={self.target!r} is out of range: the model has a single output")
            return out[:, 0]
        if self.target is None:
            raise ValueError(
                f"the model has {k} outputs (shape {trailing}); pass target=<int in [0, {k})> or target='all'"
            )
        if isinstance(self.target, tuple):
            if len(self.target) != len(trailing) or any(
                not 0 <= t < s for t, s in zip(self.target, trailing, strict=False)
            ):
                raise ValueError(f"target={self.target!r} does not index the model's output dims {trailing}")
            idx = 0
            for t, s in zip(self.target, trailing, strict=True):
                idx = idx * s + t
        else:
            idx = self.target
            if idx >= k:
                raise ValueError(f"target={idx} is out of range for a model with {k} outputs")
        return out[:, idx]

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (stored in results)."""
        t = list(self.target) if isinstance(self.target, tuple) else self.target
        return {"target": t, "output": self.output, "link": self.link}
