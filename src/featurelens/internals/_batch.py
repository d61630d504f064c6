"""Where the batch is in a module's output: locating, checking and comparing along the batch axis.

Nothing in :mod:`featurelens.internals` assumes that a module's output has
the batch on axis 0: a sequence-first ``nn.TransformerEncoderLayer``
(``batch_first=False``, PyTorch's default) or ``nn.LSTM`` returns
``(T, B, U)``. The batch axis is located from the number of input rows of
each model call (:func:`locate_batch_axis`) or by running the rows stacked
twice (:func:`featurelens.internals._capture.probe_batch_axis`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Union

import torch

from featurelens._validation import check_int

BatchAxis = Union[int, Mapping[str, int], None]  # noqa: UP007


def axis_for(batch_axis: BatchAxis, name: str) -> int | None:
    """Return the ``batch_axis`` given for module ``name``: an int for every module, or a per-name mapping."""
    if isinstance(batch_axis, Mapping):
        value = batch_axis.get(name)
        return None if value is None else check_int(value, name=f"batch_axis[{name!r}]")
    return None if batch_axis is None else check_int(batch_axis, name="batch_axis")


def check_batch_axis(batch_axis: BatchAxis, names: Iterable[str]) -> None:
    """``TypeError``/``ValueError`` unless ``batch_axis`` is None, an int, or a mapping of ``names`` to ints."""
    if batch_axis is None:
        return
    if isinstance(batch_axis, Mapping):
        known = list(names)
        for key in batch_axis:
            if key not in known:
                raise ValueError(f"batch_axis names {key!r}, which is not among the modules: {', '.join(known)}")
            axis_for(batch_axis, key)
    else:
        check_int(batch_axis, name="batch_axis")


def locate_batch_axis(
    name: str,
    shapes: Sequence[tuple[int, ...]],
    rows: Sequence[int | None],
    *,
    batch_axis: int | None = None,
    what: str = "outputs",
) -> int:
    """Locate the axis of ``name``'s tensors that holds the batch.

    ``shapes[i]`` is the shape of call (or tensor) ``i`` and ``rows[i]`` the
    number of input rows of the model call that produced it (``None``:
    unknown). Without ``batch_axis``, the batch axis is the unique axis ``k``
    (not the last one, which holds the units, unless the tensors are 1-D)
    with ``shapes[i][k] == rows[i]`` for every known ``rows[i]`` and on which
    the shapes are the only place they may differ. ``batch_axis`` (negative
    counts from the end) is used instead, checked only for range and for
    the shapes agreeing elsewhere.

    Raises
    ------
    ValueError
        Naming ``name``, the shapes and the row counts, when no axis or
        several axes qualify (e.g. ``(B, T, U)`` with ``T == B`` in every
        call): pass ``batch_axis=`` then.
    """
    dims = {len(s) for s in shapes}
    if len(dims) != 1 or 0 in dims:
        raise ValueError(f"the {what} of {name!r} have shapes {[tuple(s) for s in shapes]}: "
                         "they share no batch axis (different or zero dimensions)")
    nd = dims.pop()

    def agree(k: int) -> bool:
        return len({tuple(s[:k]) + tuple(s[k + 1:]) for s in shapes}) == 1

    if batch_axis is not None:
        if not -nd <= batch_axis < nd:
            raise ValueError(f"batch_axis={batch_axis} is out of range for the {nd}-D {what} of {name!r}")
        k = batch_axis % nd
        if not agree(k):
            raise ValueError(f"batch_axis={batch_axis} does not fit the {what} of {name!r}: shapes "
                             f"{[tuple(s) for s in shapes]} differ outside axis {k}")
        return k
    axes = range(nd if nd == 1 else nd - 1)
    found = [k for k in axes if agree(k) and all(r is None or s[k] == r for s, r in zip(shapes, rows, strict=True))]
    if len(found) == 1:
        return found[0]
    why = f"axes {found} all fit" if found else "no axis holds the batch"
    raise ValueError(
        f"cannot tell the batch axis of {name!r}: its {what} have shapes {[tuple(s) for s in shapes]} "
        f"for model calls of {list(rows)} input rows ({why}); pass batch_axis=<axis> "
        "(an int, or a mapping {module name: axis})"
    )


def repeat_rows(x: torch.Tensor, copies: int) -> torch.Tensor:
    """Stack ``copies`` copies of ``x`` along axis 0: block ``c`` is rows ``c*n .. (c+1)*n - 1``."""
    return x.repeat(copies, *([1] * (x.dim() - 1)))


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes and values within ``sqrt(eps)`` of the dtype, relative to the largest ``|a|``."""
    if a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return bool(torch.equal(a, b))
    tol = float(torch.finfo(a.dtype).eps) ** 0.5
    scale = max(float(a.abs().max()) if a.numel() else 0.0, 1e-30)
    return bool((a - b).abs().max() <= tol * scale) if a.numel() else True
