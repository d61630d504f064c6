"""Loading logged training runs into z-scored sequences for the HMM."""

from __future__ import annotations

import glob as _glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurelens._io import atomic_write_npz, read_npz
from featurelens._protocol import html_table, jsonable
from featurelens._validation import check_int, check_option
from featurelens.data import CSV_SUFFIXES, PARQUET_SUFFIXES, read_frame, zscore_columns


@dataclass(frozen=True)
class RunSet:
    """Runs ready for :func:`featurelens.dynamics.select_model`.

    Attributes
    ----------
    sequences : list of ndarray, each ``(T_i, D)`` float64
        Per-run z-scores of the ``metrics`` columns (see :func:`load_runs`).
    run_ids : list of str
        One id per kept run, in the order of ``sequences``.
    metrics : tuple of str
        The ``D`` feature names, in column order.
    frames : list of DataFrame
        The raw rows of each kept run (sorted, cut to ``first_n``, index
        0..T_i-1), every column of the file kept (losses for timelines and
        convergence times).
    mean, std : ndarray ``(n_runs, D)``
        Per-run raw mean and population standard deviation (``ddof=0``) used
        for the z-scores: ``z = (x - mean) / std``. For raw-unit gradients use
        ``∂/∂x = (∂/∂z) / std``.
    constant : ndarray of bool ``(n_runs, D)``
        Columns constant within a run; their z-scores are 0 at every step.
    dropped : dict of str to str
        Runs left out and why (only with ``on_invalid="drop"``).
    sort_by : str
        The column the rows were sorted by.
    """

    sequences: list[np.ndarray]
    run_ids: list[str]
    metrics: tuple[str, ...]
    frames: list[pd.DataFrame]
    mean: np.ndarray
    std: np.ndarray
    constant: np.ndarray
    dropped: dict[str, str] = field(default_factory=dict)
    sort_by: str = "step"

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> list[int]:
        """``T_i`` of every run."""
        return [len(s) for s in self.sequences]

    def raw_scale(self) -> list[np.ndarray]:
        """Per run, ``(D,)`` factors ``1 / std`` turning z-unit gradients into raw units.

        ``∂f/∂x = (∂f/∂z) · (1 / std)``; for a constant column the z-score
        does not depend on ``x`` (it is 0), so the factor is 0. Multiplying
        ``posterior_gradient(model, runs.sequences)[i]`` by ``raw_scale()[i]``
        equals ``posterior_gradient(..., units="raw", scale=runs.std)`` when no
        column is constant (that function refuses a zero std).
        """
        with np.errstate(divide="ignore"):
            inv = np.where(self.constant, 0.0, 1.0 / np.where(self.constant, 1.0, self.std))
        return [inv[i] for i in range(len(self))]

    def constant_columns(self) -> dict[str, list[str]]:
        """Per run with any, the metrics constant within it (z-score 0 at every step)."""
        return {rid: [m for m, c in zip(self.metrics, row, strict=True) if c]
                for rid, row in zip(self.run_ids, self.constant, strict=True) if row.any()}

    def to_frame(self) -> pd.DataFrame:
        """One row per kept run: ``run_id, n_checkpoints, constant_metrics`` (comma-separated, "" if none)."""
        constant = self.constant_columns()
        return pd.DataFrame({"run_id": self.run_ids, "n_checkpoints": self.lengths,
                             "constant_metrics": [", ".join(constant.get(r, [])) for r in self.run_ids]})

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict: ``run_ids, lengths, dropped, sort_by, constant_columns, metrics``."""
        return jsonable({"run_ids": self.run_ids, "lengths": self.lengths, "dropped": self.dropped,
                         "sort_by": self.sort_by, "constant_columns": self.constant_columns(),
                         "metrics": list(self.metrics)}, where="runs")

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), title=f"{len(self)} runs, {len(self.metrics)} metrics "
                          f"(sorted by {self.sort_by}; {len(self.dropped)} dropped)")

    def to_raw(self, run: int, z: np.ndarray) -> np.ndarray:
        """Map z-scores of run ``run`` back to raw units: ``mean + z · std``."""
        return self.mean[run] + np.asarray(z, dtype=np.float64) * self.std[run]


def _expand(paths_or_glob: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    items = [paths_or_glob] if isinstance(paths_or_glob, (str, os.PathLike)) else list(paths_or_glob)
    if not items:
        raise ValueError("paths_or_glob is empty; pass files, directories or a glob pattern")
    files: list[Path] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"paths_or_glob must hold paths or glob strings, got {type(item).__name__}")
        text = os.fspath(item)
        if any(ch in text for ch in "*?["):
            matched = sorted(_glob.glob(text))
            if not matched:
                raise ValueError(f"glob pattern {text!r} matches no file")
            files.extend(Path(m) for m in matched if Path(m).is_file())
        elif Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir() if p.is_file() and not p.name.startswith("."))
            found = [p for p in found if p.name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)]
            if not found:
                raise ValueError(f"directory {text!r} holds no .csv or .parquet file")
            files.extend(found)
        elif Path(text).is_file():
            files.append(Path(text))
        else:
            raise ValueError(f"run file {text!r} does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique


def _split_runs(path: Path, frame: pd.DataFrame, run_column: str) -> list[tuple[str, pd.DataFrame]]:
    if run_column in frame.columns:
        return [(str(rid), part) for rid, part in frame.groupby(run_column, sort=False)]
    return [(path.name.split(".")[0], frame)]


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(f"metrics must be a list of column names, got {metrics!r}")
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("metrics is empty; name the columns to model")
    if not all(isinstance(m, str) for m in metrics):
        raise TypeError(f"metrics must hold column names (str), got {metrics!r}")
    dup = sorted({m for m in metrics if metrics.count(m) > 1})
    if dup:
        raise ValueError(f"metrics lists {', '.join(map(repr, dup))} more than once")
    return metrics


def _read_runs(
    files: list[Path], metrics: tuple[str, ...], sort_by: str, run_column: str
) -> tuple[list[tuple[str, pd.DataFrame]], dict[str, str]]:
    """Every run of every file as ``(run id, rows)``, and the file each run id came from."""
    runs: list[tuple[str, pd.DataFrame]] = []
    origin: dict[str, str] = {}
    for path in files:
        frame = read_frame(path)  # column names as str
        missing = [c for c in (sort_by, *metrics) if c not in frame.columns]
        if missing:
            raise ValueError(f"{str(path)!r} is missing column(s) {', '.join(map(repr, missing))}; "
                             f"available: {', '.join(map(repr, frame.columns))}")
        bad = [c for c in (sort_by, *metrics) if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise ValueError(f"{str(path)!r}: column(s) {', '.join(map(repr, bad))} are not numeric")
        for rid, part in _split_runs(path, frame, run_column):
            if rid in origin:
                raise ValueError(f"run id {rid!r} occurs in {origin[rid]!r} and {str(path)!r}")
            origin[rid] = str(path)
            runs.append((rid, part))
    return runs, origin


def _invalid_reason(part: pd.DataFrame, values: np.ndarray, metrics: tuple[str, ...], sort_by: str) -> str | None:
    """Why a sorted run cannot be modelled (too short, repeated ``sort_by``, NaN/inf), or ``None``."""
    if len(part) < 2:
        return f"{len(part)} row(s); at least 2 are needed"
    if part[sort_by].duplicated().any():
        return f"repeated {sort_by} values (e.g. {part[sort_by][part[sort_by].duplicated()].iloc[0]})"
    if not np.isfinite(values).all():
        counts = (~np.isfinite(values)).sum(axis=0)
        cols = ", ".join(f"{m!r} ({int(c)} rows)" for m, c in zip(metrics, counts, strict=True) if c)
        return f"NaN or inf in {cols}"
    return None


def load_runs(
    paths_or_glob: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    metrics: Sequence[str],
    first_n: int | None = None,
    sort_by: str = "step",
    on_invalid: str = "drop",
    run_column: str = "run_id",
) -> RunSet:
    """Read logged runs, validate them and z-score each run per metric.

    Parameters
    ----------
    paths_or_glob : path, glob pattern, directory, or a list of these
        CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``) files.
        A file with a ``run_column`` column may hold several runs (one per
        value); otherwise the file is one run named after its file name
        (without suffixes). A directory stands for its run files.
    metrics : sequence of str
        The columns to model, in this order.
    first_n : int, optional
        Keep the first ``first_n`` rows of each run after sorting (the
        authors' ``head(first_n)``).
    sort_by : {"step", "epoch"}
        Column the rows are sorted by (stable) before cutting.
    on_invalid : {"drop", "raise"}
        What to do with a run that has NaN or inf in a metric, fewer than 2
        rows, or repeated ``sort_by`` values: leave it out and record why in
        :attr:`RunSet.dropped`, or raise ``ValueError``.
    run_column : str
        Name of the run-id column.

    Returns
    -------
    RunSet
        Z-scores ``z = (x - mean_run) / std_run`` per run and column with the
        population std (``ddof=0``, the authors' ``scipy.stats.zscore``). A
        column constant within a run (std ≤ 1e-12·max(1, |mean|)) gets z = 0 at
        every step, never NaN, and is flagged in :attr:`RunSet.constant`.

    Raises
    ------
    ValueError
        If no file matches, a file cannot be read, a file lacks ``sort_by`` or
        a metric column (the missing ones are named), a metric column is not
        numeric, run ids repeat across files, every run is invalid, or an
        argument is out of range.
    """
    metrics = _check_metrics(metrics)
    if first_n is not None:
        first_n = check_int(first_n, name="first_n", minimum=2)
    check_option(sort_by, name="sort_by", options=("step", "epoch"))
    check_option(on_invalid, name="on_invalid", options=("drop", "raise"))
    if sort_by in metrics:
        raise ValueError(f"sort_by column {sort_by!r} cannot also be a metric")

    runs, origin = _read_runs(_expand(paths_or_glob), metrics, sort_by, run_column)
    kept: list[tuple[str, pd.DataFrame, tuple]] = []
    dropped: dict[str, str] = {}
    for rid, part in runs:
        part = part.sort_values(sort_by, kind="stable").reset_index(drop=True)
        if first_n is not None:
            part = part.head(first_n)
        values = part.loc[:, list(metrics)].to_numpy(dtype=np.float64)
        reason = _invalid_reason(part, values, metrics, sort_by)
        if reason is not None:
            if on_invalid == "raise":
                raise ValueError(f"run {rid!r} ({origin[rid]}) is invalid: {reason}")
            dropped[rid] = reason
            continue
        kept.append((rid, part, zscore_columns(values)))
    if not kept:
        raise ValueError(f"every run is invalid: {dropped}")
    return RunSet(
        sequences=[z for _, _, (z, _, _, _) in kept],
        run_ids=[rid for rid, _, _ in kept],
        metrics=metrics,
        frames=[part for _, part, _ in kept],
        mean=np.stack([m for _, _, (_, m, _, _) in kept]),
        std=np.stack([s for _, _, (_, _, s, _) in kept]),
        constant=np.stack([c for _, _, (_, _, _, c) in kept]),
        dropped=dropped,
        sort_by=sort_by,
    )


def save_runs(runs: RunSet, path: str | os.PathLike) -> Path:
    """Write the z-scored sequences of ``runs`` to an ``.npz`` file (no pickle), atomically.

    Arrays: ``z`` (ΣT_i, D) concatenated z-scores, ``lengths`` (n_runs,),
    ``order`` (ΣT_i,) the ``sort_by`` values, ``mean``, ``std`` (n_runs, D),
    ``constant`` (n_runs, D) bool, and unicode arrays ``run_ids``,
    ``metrics`` and ``sort_by`` (one element). Read back with
    :func:`read_saved_runs`.
    """
    arrays = dict(z=np.concatenate(runs.sequences), lengths=np.asarray(runs.lengths, dtype=np.int64),
             order=np.concatenate([f[runs.sort_by].to_numpy(dtype=np.float64) for f in runs.frames]),
             mean=runs.mean, std=runs.std, constant=runs.constant, run_ids=np.asarray(runs.run_ids, dtype=str),
             metrics=np.asarray(runs.metrics, dtype=str), sort_by=np.asarray([runs.sort_by], dtype=str))
    return atomic_write_npz(path, arrays)


def read_saved_runs(path: str | os.PathLike) -> RunSet:
    """Read a file written by :func:`save_runs` (``allow_pickle=False``).

    ``frames`` hold the ``sort_by`` column and the metrics in raw units
    (``mean + z · std``); other logged columns are not stored.
    """
    p = Path(path)
    arrays = read_npz(p, what="saved runs file")
    need = {"z", "lengths", "order", "mean", "std", "constant", "run_ids", "metrics", "sort_by"}
    if need - set(arrays):
        raise ValueError(f"{str(p)!r} is not a saved-runs file; missing arrays {sorted(need - set(arrays))}")
    bounds = np.cumsum(arrays["lengths"])[:-1]
    seqs = np.split(arrays["z"], bounds)
    orders = np.split(arrays["order"], bounds)
    metrics = tuple(str(m) for m in arrays["metrics"])
    sort_by = str(arrays["sort_by"][0])
    frames = []
    for i, (z, o) in enumerate(zip(seqs, orders, strict=True)):
        frame = pd.DataFrame(arrays["mean"][i] + z * arrays["std"][i], columns=list(metrics))
        frame.insert(0, sort_by, o)
        frames.append(frame)
    return RunSet(sequences=seqs, run_ids=[str(r) for r in arrays["run_ids"]], metrics=metrics, frames=frames,
                  mean=arrays["mean"], std=arrays["std"], constant=arrays["constant"].astype(bool), sort_by=sort_by)
