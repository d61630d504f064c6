"""Conversion of user inputs (tensor, ndarray, DataFrame) to checked tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from featurelens.data._spec import default_feature_names


def _column_label(names: list[str] | None, j: int) -> str:
    return repr(names[j]) if names is not None else f"index {j}"


def _is_real_dtype(dt: Any) -> bool:
    """Return True for real numeric or bool column dtypes (complex is not accepted)."""
    if pd.api.types.is_bool_dtype(dt):
        return True
    return pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_complex_dtype(dt)


def _writable(arr: np.ndarray) -> np.ndarray:
    """C-contiguous, writable array (copy only if needed) for ``torch.from_numpy``."""
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.writeable else arr.copy()


def check_finite(x: torch.Tensor, *, name: str, names: list[str] | None = None) -> None:
    """Raise ``ValueError`` naming the first columns (last axis) holding NaN or inf.

    A 1-D ``x`` holds one value per row, so its message names rows instead.
    """
    # fast path: a finite sum proves every entry finite (NaN and inf propagate); a sum that
    # overflows falls through to the exact elementwise check below
    if not x.is_floating_point() or bool(torch.isfinite(x.sum())):
        return
    bad = ~torch.isfinite(x)
    if x.dim() == 1 and bool(bad.any()):  # one value per row: report rows, not columns
        rows = torch.nonzero(bad).flatten()
        more = "" if rows.numel() <= 5 else f" (and {rows.numel() - 5} more)"
        raise ValueError(f"{name} holds NaN or inf at row(s) {', '.join(str(int(r)) for r in rows[:5])}{more}")
    if bool(bad.any()):
        per_col = bad.reshape(-1, x.shape[-1]).any(dim=0)
        cols = [_column_label(names, int(j)) for j in torch.nonzero(per_col).flatten()[:5]]
        more = "" if int(per_col.sum()) <= 5 else f" (and {int(per_col.sum()) - 5} more)"
        raise ValueError(f"{name} holds NaN or inf in column(s) {', '.join(cols)}{more}")


def as_tensor(
    data: Any,
    *,
    name: str = "inputs",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    ndims: tuple[int, ...] = (2, 3),
) -> tuple[torch.Tensor, list[str] | None]:
    """Convert ``data`` to a floating tensor and return it with its column names.

    Parameters
    ----------
    data : torch.Tensor, numpy.ndarray, pandas.DataFrame or pandas.Series
        Tabular ``(n, d)`` or sequence ``(n, T, d)`` data. DataFrame columns
        become feature names; every column must be numeric (bool counts as
        numeric and becomes 0/1). A Series is 1-D (e.g. labels, accepted
        where ``ndims`` contains 1) and carries no names.
    name : str
        Argument name used in error messages.
    dtype : torch.dtype, optional
        Floating dtype of the result. Default: ``float64`` inputs stay
        ``float64``, everything else becomes ``float32``.
    device : optional
        Device of the result.
    ndims : tuple of int
        Accepted numbers of dimensions.

    Returns
    -------
    tensor : torch.Tensor
    names : list of str or None
        Column names when ``data`` is a DataFrame, else ``None``.

    Raises
    ------
    TypeError
        For an unsupported type, a non-numeric (or complex) column or array,
        or a ``dtype`` that is not a floating torch dtype.
    ValueError
        For a wrong number of dimensions, no rows, NaN/inf, or finite values
        too large for ``dtype`` (e.g. 1e300 as float32); the offending
        columns are named.
    """
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}")
    names: list[str] | None = None
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        bad = [str(c) for c, dt in zip(data.columns, data.dtypes, strict=True) if not _is_real_dtype(dt)]
        if bad:
            raise TypeError(f"{name} has non-numeric column(s) {', '.join(map(repr, bad))}; encode or drop them")
        arr = data.to_numpy(dtype=np.float64 if any(data.dtypes == np.float64) else np.float32)
        t = torch.from_numpy(_writable(arr))
    elif isinstance(data, pd.Series):
        if not _is_real_dtype(data.dtype):
            raise TypeError(f"{name} must hold numbers or bools, got a Series of dtype {data.dtype}")
        arr = data.to_numpy(dtype=np.float64 if data.dtype == np.float64 else np.float32)
        t = torch.from_numpy(_writable(arr))
    elif isinstance(data, np.ndarray):
        if data.dtype == np.bool_:
            data = data.astype(np.float32)
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise TypeError(f"{name} must hold numbers, got an array of dtype {data.dtype}")
        t = torch.from_numpy(_writable(data))
    elif isinstance(data, torch.Tensor):
        if data.is_complex():
            raise TypeError(f"{name} must be real-valued, got dtype {data.dtype}")
        t = data.detach()
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor, numpy.ndarray or pandas.DataFrame/Series, "
            f"got {type(data).__name__}"
        )
    if t.dim() not in ndims:
        shapes = " or ".join({2: "(n, d)", 3: "(n, T, d)", 1: "(n,)"}.get(k, f"{k}-D") for k in ndims)
        raise ValueError(f"{name} must have shape {shapes}, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if t.dim() > 1 and t.shape[-1] == 0:
        raise ValueError(f"{name} has no feature columns")
    if t.dtype == torch.bool:
        t = t.float()
    if dtype is None:
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    check_finite(t, name=name, names=names)
    t = t.to(dtype=dtype, device=device)
    if t.is_floating_point() and not bool(torch.isfinite(t.sum())):  # finite before, not after: overflow
        _check_fits(t, dtype, name=name, names=names)
    return t, names


def _check_fits(t: torch.Tensor, dtype: torch.dtype, *, name: str, names: list[str] | None) -> None:
    """Raise ``ValueError`` naming the columns whose finite values became ±inf when cast to ``dtype``."""
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return
    big = torch.finfo(dtype).max
    where = "at row(s)" if t.dim() == 1 else "in column(s)"
    if t.dim() == 1:
        hits = [str(int(r)) for r in torch.nonzero(bad).flatten()[:5]]
    else:
        per_col = bad.reshape(-1, t.shape[-1]).any(dim=0)
        hits = [_column_label(names, int(j)) for j in torch.nonzero(per_col).flatten()[:5]]
    raise ValueError(
        f"{name} holds values beyond ±{big:.3g}, which overflow {str(dtype).replace('torch.', '')} {where} "
        f"{', '.join(hits)}; rescale them (e.g. standardise or take logs) before use"
    )


def resolve_names(
    n_features: int, *, data_names: list[str] | None, feature_names: list[str] | None, name: str = "feature_names"
) -> list[str]:
    """Pick feature names: explicit ``feature_names``, else the data's, else ``x0..``.

    Parameters
    ----------
    n_features : int
        Number of features ``d`` of the inputs (their last axis).
    data_names : list of str or None
        Column names the inputs carried (a DataFrame's columns, as returned by
        :func:`as_tensor`), or ``None``.
    feature_names : sequence of str or None
        Names given by the caller; they win over ``data_names``.
    name : str
        Argument name used in error messages.

    Returns
    -------
    list of str
        ``d`` names: ``feature_names`` as str, else ``data_names``, else
        ``x0 .. x{d-1}``.

    Raises
    ------
    TypeError
        If ``feature_names`` is a single str.
    ValueError
        If ``feature_names`` does not hold exactly ``d`` names.
    """
    if feature_names is not None:
        if isinstance(feature_names, str):
            raise TypeError(f"{name} must be a list of names, not the single str {feature_names!r}")
        feature_names = [str(f) for f in feature_names]
        if len(feature_names) != n_features:
            raise ValueError(f"{name} has {len(feature_names)} names but the inputs have {n_features} features")
        return feature_names
    if data_names is not None:
        return data_names
    return default_feature_names(n_features)
