"""Train / validation / test splits that keep the container type."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from featurelens._validation import RandomState, check_float, check_int, check_random_state

_SPLITS = ("train", "val", "test")


class Splits(NamedTuple):
    """``(train, val, test)``; each is a tuple with one entry per input array."""

    train: tuple[Any, ...]
    val: tuple[Any, ...]
    test: tuple[Any, ...]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if isinstance(fractions, str) or not isinstance(fractions, Sequence) or len(fractions) != 3:
        raise ValueError(f"fractions must be three numbers (train, val, test), got {fractions!r}")
    fr = tuple(
        check_float(f, name=f"fractions[{i}] ({_SPLITS[i]})", low=0.0, high=1.0)
        for i, f in enumerate(fractions)
    )
    if fr[0] == 0.0:
        raise ValueError("fractions[0] (train) must be > 0; only val and test may be 0")
    if abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fr)!r})")
    return fr  # type: ignore[return-value]


def split_indices(
    n_samples: int,
    *,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    shuffle: bool = True,
    random_state: RandomState = 0,
    gap: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of a train / validation / test split of ``n_samples`` rows.

    The boundaries are ``b1 = floor(n * f_train + 1/2)`` and
    ``b2 = floor(n * (f_train + f_val) + 1/2)``, so the three sizes always
    sum to ``n`` (before ``gap``) and each is within one row of ``n * f``.
    Positions ``[0, b1)`` go to train, ``[b1, b2)`` to val and ``[b2, n)`` to
    test, in time order when ``shuffle=False`` and after a random permutation
    (drawn from ``random_state``) when ``shuffle=True``.

    Parameters
    ----------
    n_samples : int
        Number of rows ``n >= 1``.
    fractions : sequence of three floats
        ``(f_train, f_val, f_test)``, each in ``[0, 1]``, summing to 1 within
        ``1e-9``. ``f_train`` must be positive; ``f_val = 0`` or ``f_test = 0``
        means that split is empty by design.
    shuffle : bool
        Permute the rows before splitting. ``False`` gives a chronological
        split: the first rows train, then val, then test.
    random_state : int, numpy.random.Generator or None
        Seed of the permutation; the same int gives the same split.
    gap : int
        Only with ``shuffle=False``: drop the first ``gap`` positions of val
        and of test, so that windowed samples sharing rows across a boundary
        (with :func:`sliding_windows`, ``gap = lookback - 1 + horizon``) do
        not leak from one split into the next.

    Returns
    -------
    train, val, test : numpy.ndarray
        int64 positions; disjoint, and together all of ``range(n)`` when
        ``gap=0``.

    Raises
    ------
    ValueError
        For bad fractions (the offending entry is named), ``n_samples < 1``,
        ``gap > 0`` with ``shuffle=True``, or a split with a positive fraction
        that ends up empty (too few rows, or eaten by ``gap``).
    """
    n = check_int(n_samples, name="n_samples", minimum=1)
    fr = _check_fractions(fractions)
    if not isinstance(shuffle, bool | np.bool_):
        raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
    gap = check_int(gap, name="gap", minimum=0)
    if gap and shuffle:
        raise ValueError("gap only makes sense for a chronological split; pass shuffle=False")
    b1 = math.floor(n * fr[0] + 0.5)
    b2 = math.floor(n * (fr[0] + fr[1]) + 0.5)
    b2 = max(b1, min(b2, n))
    bounds = ((0, b1), (b1 + gap, b2), (b2 + gap, n))
    order = check_random_state(random_state).permutation(n) if shuffle else np.arange(n)
    out = []
    for name, f, (lo, hi) in zip(_SPLITS, fr, bounds, strict=True):
        if f > 0 and hi <= lo:
            why = f" after dropping gap={gap} rows" if gap and name != "train" else ""
            raise ValueError(
                f"the {name} split of {n} rows with fraction {f} is empty{why}; "
                "use more rows or a larger fraction"
            )
        out.append(order[lo : max(lo, hi)].astype(np.int64))
    return out[0], out[1], out[2]


def _take(a: Any, idx: np.ndarray) -> Any:
    if isinstance(a, pd.DataFrame | pd.Series):
        return a.iloc[idx]
    if isinstance(a, np.ndarray):
        return a[idx]
    if isinstance(a, torch.Tensor):
        return a[torch.as_tensor(idx, device=a.device)]
    if isinstance(a, list):
        return [a[i] for i in idx]
    raise TypeError  # unreachable: types checked in train_val_test_split


def train_val_test_split(
    *arrays: Any,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    shuffle: bool = True,
    random_state: RandomState = 0,
    gap: int = 0,
) -> Splits:
    """Split arrays into train, validation and test parts by row position.

    Every array is cut with the same positions from :func:`split_indices`
    (see there for the exact sizes, ``shuffle`` and ``gap``). Types are kept:
    ``numpy.ndarray`` -> ndarray, ``torch.Tensor`` -> tensor on the same
    device, ``pandas.DataFrame``/``Series`` -> the same type cut with
    ``.iloc`` (the original index labels are kept), ``list`` -> list. The
    parts are copies, not views.

    Parameters
    ----------
    *arrays : numpy.ndarray, torch.Tensor, pandas.DataFrame, pandas.Series or list
        One or more arrays with the same length ``n`` along the first axis.
    fractions, shuffle, random_state, gap
        As in :func:`split_indices`.

    Returns
    -------
    Splits
        Named tuple ``(train, val, test)``; each is a tuple with one part per
        input array, e.g.
        ``(X_tr, y_tr), (X_va, y_va), (X_te, y_te) = train_val_test_split(X, y)``.

    Raises
    ------
    TypeError
        If no array is given or an argument has an unsupported type (its
        position is named).
    ValueError
        If the arrays differ in length (the first mismatching argument is
        named) or are empty, or for the reasons of :func:`split_indices`.
    """
    if not arrays:
        raise TypeError("train_val_test_split needs at least one array")
    lengths = []
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray | torch.Tensor | pd.DataFrame | pd.Series | list):
            raise TypeError(
                f"arrays[{i}] must be a numpy.ndarray, torch.Tensor, pandas DataFrame/Series or "
                f"list, got {type(a).__name__}"
            )
        if isinstance(a, np.ndarray | torch.Tensor) and a.ndim == 0:
            raise ValueError(f"arrays[{i}] is a 0-d scalar; it needs a first axis to split")
        lengths.append(len(a))
    for i, k in enumerate(lengths[1:], start=1):
        if k != lengths[0]:
            raise ValueError(
                f"arrays[{i}] has {k} rows but arrays[0] has {lengths[0]}; all arrays must have "
                "the same length"
            )
    if lengths[0] == 0:
        raise ValueError("arrays have no rows to split")
    idx = split_indices(
        lengths[0], fractions=fractions, shuffle=shuffle, random_state=random_state, gap=gap
    )
    parts = [tuple(_take(a, ix) for a in arrays) for ix in idx]
    return Splits(*parts)
