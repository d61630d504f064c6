"""Loading tabular data (CSV, Parquet) into a checked feature table."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from featurelens.data._inputs import _is_real_dtype
from featurelens.data._spec import FeatureSpec, GroupMembers

#: file suffixes read as CSV (with a header row) and as Parquet, matched case-insensitively
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True, eq=False)
class Table:
    """Feature columns and an optional label column read from a file.

    Attributes
    ----------
    X : pandas.DataFrame
        Shape ``(n, d)``; the feature columns only, as ``float64`` (bool
        columns become 0/1), in the order of :attr:`feature_names`, with a
        fresh ``RangeIndex``.
    y : pandas.Series or None
        Shape ``(n,)``; the label column with its numeric dtype (bool stays
        bool), or ``None`` when no label was requested.
    feature_names : list of str
        Column names of :attr:`X`.
    label : str or None
        Name of the label column.
    path : str or None
        The file the table was read from.
    """

    X: pd.DataFrame
    y: pd.Series | None
    feature_names: list[str]
    label: str | None = None
    path: str | None = None

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_samples(self) -> int:
        """Number of rows ``n``."""
        return len(self.X)

    @property
    def n_features(self) -> int:
        """Number of feature columns ``d``."""
        return len(self.feature_names)

    def to_tensors(
        self, dtype: torch.dtype = torch.float32, *, y_dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(X, y)`` as tensors of shapes ``(n, d)`` and ``(n,)``.

        ``X`` has ``dtype``; ``y`` has ``y_dtype`` (default: ``dtype``, so a
        0/1 label is ready for ``BCEWithLogitsLoss``; pass ``torch.long`` for
        class indices). ``y`` is ``None`` when the table has no label.
        """
        x = torch.from_numpy(self.X.to_numpy(dtype=np.float64, copy=True)).to(dtype)
        if self.y is None:
            return x, None
        y = torch.from_numpy(self.y.to_numpy(dtype=np.float64, copy=True)).to(y_dtype or dtype)
        return x, y

    def spec(self, groups: Mapping[str, GroupMembers] | None = None) -> FeatureSpec:
        """Return a :class:`FeatureSpec` over :attr:`feature_names` with optional ``groups``."""
        return FeatureSpec(self.feature_names, groups)


def _suffix_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its suffix; expected one of "
        f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
    )


def _read_frame(path: Path, kind: str) -> pd.DataFrame:
    if kind == "parquet":
        try:
            import pyarrow as pa
        except ImportError:
            raise ValueError(
                f"reading Parquet file {str(path)!r} needs pyarrow; "
                "install it with: pip install 'featurelens[parquet]'"
            ) from None
        try:
            return pd.read_parquet(path, engine="pyarrow")
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise ValueError(
                f"cannot read Parquet file {str(path)!r}: {_first_line(exc)}"
            ) from None
    try:
        # pandas renames duplicate headers ('a', 'a.1'); read the raw header to refuse them
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise ValueError(f"{str(path)!r} has duplicate column name(s) {', '.join(map(repr, dup))}")
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"CSV file {str(path)!r} is empty (no header and no rows)") from None
    except (OSError, ValueError) as exc:  # ParserError and UnicodeDecodeError are ValueErrors
        if "duplicate column name" in str(exc):
            raise
        raise ValueError(f"cannot read CSV file {str(path)!r}: {_first_line(exc)}") from None


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Read a whole CSV or Parquet file, every column with its own dtype (strings stay strings).

    The format is chosen by suffix as in :func:`load_table`; column names
    become ``str``. Unlike :func:`load_table` nothing is checked beyond the
    file itself: use it for columns that are not features (environment
    labels, sequence ids).

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    pandas.DataFrame
        All ``n`` rows and columns of the file, in file order.

    Raises
    ------
    ValueError
        If the suffix is unknown, the file is missing, not a file, empty or
        unreadable, pyarrow is missing for Parquet, or two columns share a name.
    """
    p = Path(path)
    kind = _suffix_kind(p)
    if not p.exists():
        raise ValueError(f"data file {str(p)!r} does not exist")
    if not p.is_file():
        raise ValueError(f"data file {str(p)!r} is not a file")
    frame = _read_frame(p, kind)
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.has_duplicates:
        dup = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise ValueError(f"{str(p)!r} has duplicate column name(s) {', '.join(map(repr, dup))}")
    return frame


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _describe_nonfinite(frame: pd.DataFrame, path: Path) -> None:
    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    per_col = bad.sum(axis=0)
    parts = [
        f"{c!r} ({int(k)} row{'s' if k != 1 else ''})"
        for c, k in zip(frame.columns, per_col, strict=True)
        if k
    ]
    n_rows = int(bad.any(axis=1).sum())
    raise ValueError(
        f"{str(path)!r}: NaN or inf in column(s) {', '.join(parts)}; {n_rows} bad row(s) in total. "
        "Impute or drop them before loading."
    )


def _check_column_names(label: str | None, features: Iterable[str] | None) -> list[str] | None:
    """``features`` as a list after checking the types of ``label`` and ``features``."""
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a column name (str), got {type(label).__name__}")
    if features is not None:
        if isinstance(features, str) or not isinstance(features, Iterable):
            raise TypeError(f"features must be a list of column names, got {features!r}")
        features = list(features)
        non_str = [f for f in features if not isinstance(f, str)]
        if non_str:
            raise TypeError(f"features must hold column names (str); got {non_str[0]!r}")
        if not features:
            raise ValueError("features is empty; pass None to use every non-label column")
        dup = sorted({f for f in features if features.count(f) > 1})
        if dup:
            raise ValueError(f"features lists column(s) {', '.join(map(repr, dup))} more than once")
    return features


def _feature_columns(frame: pd.DataFrame, p: Path, label: str | None, features: list[str] | None) -> list[str]:
    """Return the feature columns (default every column but ``label``), checked to exist, and the frame to have rows."""
    available = ", ".join(map(repr, frame.columns))
    if label is not None and label not in frame.columns:
        raise ValueError(
            f"label column {label!r} not found in {str(p)!r}; available columns: {available}"
        )
    if features is None:
        features = [c for c in frame.columns if c != label]
    else:
        unknown = [f for f in features if f not in frame.columns]
        if unknown:
            raise ValueError(
                f"feature column(s) {', '.join(map(repr, unknown))} not found in {str(p)!r}; "
                f"available columns: {available}"
            )
        if label is not None and label in features:
            raise ValueError(f"column {label!r} is the label and cannot also be a feature")
    if not features:
        raise ValueError(f"{str(p)!r} has no feature columns besides the label {label!r}")
    if len(frame) == 0:
        raise ValueError(f"{str(p)!r} has a header but no rows")
    return features


def load_table(
    path: str | os.PathLike,
    *,
    label: str | None = None,
    features: Iterable[str] | None = None,
) -> Table:
    """Read a CSV or Parquet file into a :class:`Table`.

    The format is chosen by suffix: ``.csv`` and ``.csv.gz`` are read as CSV
    with a header row, ``.parquet`` and ``.pq`` as Parquet (needs pyarrow:
    ``pip install 'featurelens[parquet]'``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    label : str, optional
        Name of the label column. It must hold numbers or bools and is never
        a feature.
    features : iterable of str, optional
        Feature columns to keep, in this order (a list, tuple or
        ``pandas.Index``). Default: every column except
        ``label``, in file order.

    Returns
    -------
    Table
        ``X`` of shape ``(n, d)`` (float64), ``y`` of shape ``(n,)`` or
        ``None``, the feature names and the label name.

    Raises
    ------
    ValueError
        If the file is missing, unreadable, empty or has no rows; the suffix
        is unknown; pyarrow is missing for Parquet; ``label`` or a name in
        ``features`` is not a column (the available columns are listed);
        ``label`` is also listed in ``features``; feature or label columns are
        not numeric/bool (named, with their dtypes); or the selected columns
        hold NaN or inf (each column is named with its count of bad rows, and
        the total number of bad rows is given). Nothing is coerced silently.
    TypeError
        If ``label`` is not a str or ``features`` is not an iterable of str.
    """
    p = Path(path)
    features = _check_column_names(label, features)
    frame = read_frame(p)
    features = _feature_columns(frame, p, label, features)

    bad = [f"{c!r} ({frame[c].dtype})" for c in features if not _is_real_dtype(frame[c].dtype)]
    if bad:
        raise ValueError(
            f"{str(p)!r}: feature column(s) {', '.join(bad)} are not numeric; encode them "
            "or leave them out with features=[...]"
        )
    if label is not None and not _is_real_dtype(frame[label].dtype):
        raise ValueError(
            f"{str(p)!r}: label column {label!r} has dtype {frame[label].dtype}; it must hold "
            "numbers or bools (encode class names as integers first)"
        )
    checked = features + ([label] if label is not None else [])
    _describe_nonfinite(frame[checked], p)

    X = frame[features].astype(np.float64).reset_index(drop=True)
    y = None
    if label is not None:
        y = frame[label].reset_index(drop=True)
        if isinstance(y.dtype, pd.api.extensions.ExtensionDtype):
            # nullable Int64/Float64/boolean without missing values -> plain NumPy dtype
            y = pd.Series(y.to_numpy(dtype=y.dtype.numpy_dtype), name=label)
    return Table(X=X, y=y, feature_names=list(features), label=label, path=str(p))
