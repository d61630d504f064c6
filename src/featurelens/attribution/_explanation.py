"""The result object of every attribution method, and its file format."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurelens._io import atomic_write_npz, read_npz
from featurelens._protocol import FrameResult, jsonable
from featurelens._version import __version__

FORMAT_NAME = "featurelens.explanation"
FORMAT_VERSION = 1
_PLAYER_AXES = ("feature", "group")
_META_KEYS = ("method", "params", "target", "names", "axes", "output_names", "model_fingerprint", "data_fingerprint")


class Explanation(FrameResult):
    """Attributions of one method for one model on one data set.

    Parameters
    ----------
    values : ndarray or None
        Per-sample attributions. Axes are named by ``axes``: ``("sample",
        "feature")`` or ``("sample", "group")`` for per-player values,
        ``("sample", "time", "feature")`` for input-shaped values of sequence
        inputs, with a trailing ``"output"`` axis when every model output was
        explained (``target="all"``).
    names : sequence of str
        Names along the player axis (``"feature"`` or ``"group"``).
    axes : sequence of str
        Axis names of ``values`` (see above).
    method : str
        Method name as passed to :func:`featurelens.attribute`.
    params : mapping
        JSON-serialisable method parameters (``n_repeats``, ``baselines``...).
    target : mapping
        The output selection: ``{"target", "output", "link"}``.
    scores : ndarray, optional
        ``(n_repeats, n_players)``: a global, repeat-level importance such as
        permutation importance measured on a metric (the metric's
        degradation, positive = the player matters).
    extras : mapping of str to ndarray, optional
        Further arrays: ``"output"`` (the selected output on the unperturbed
        inputs), ``"baseline"`` (the ablation baseline when it is one row) and
        ``"metric_baseline"`` (the metric on the unperturbed inputs).
    model_fingerprint, data_fingerprint : str, optional
        Content hashes of the model's state dict and of the inputs.
    output_names : sequence of str, optional
        Names along the ``"output"`` axis.
    """

    def __init__(
        self,
        values: np.ndarray | None,
        *,
        names: Sequence[str],
        axes: Sequence[str],
        method: str,
        params: Mapping[str, Any] | None = None,
        target: Mapping[str, Any] | None = None,
        scores: np.ndarray | None = None,
        extras: Mapping[str, np.ndarray] | None = None,
        model_fingerprint: str | None = None,
        data_fingerprint: str | None = None,
        output_names: Sequence[str] | None = None,
    ):
        self.names = [str(n) for n in names]
        self.axes = tuple(axes)
        player_axes = [a for a in self.axes if a in _PLAYER_AXES]
        if len(player_axes) != 1:
            raise ValueError(f"axes must contain exactly one of {_PLAYER_AXES}, got {self.axes}")
        self.level = player_axes[0]
        if values is not None:
            values = np.asarray(values)
            if values.ndim != len(self.axes):
                raise ValueError(f"values has {values.ndim} dims but axes names {len(self.axes)}: {self.axes}")
            if values.shape[self.axes.index(self.level)] != len(self.names):
                raise ValueError(f"values has {values.shape[self.axes.index(self.level)]} {self.level}s but "
                                 f"{len(self.names)} names were given")
        if scores is not None:
            scores = np.asarray(scores)
            if scores.ndim != 2 or scores.shape[1] != len(self.names):
                raise ValueError(f"scores must have shape (n_repeats, {len(self.names)}), got {scores.shape}")
        if values is None and scores is None:
            raise ValueError("an Explanation needs values, scores or both")
        self.values = values
        self.scores = scores
        self.method = str(method)
        self.params = dict(params or {})
        self.target = dict(target or {})
        self.extras = {str(k): np.asarray(v) for k, v in (extras or {}).items()}
        self.model_fingerprint = model_fingerprint
        self.data_fingerprint = data_fingerprint
        self.output_names = None if output_names is None else [str(o) for o in output_names]

    # -- summaries -------------------------------------------------------------
    @property
    def has_outputs_axis(self) -> bool:
        return "output" in self.axes

    def _abs_mean_and_se(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean |value| per player (and output) and its standard error over samples."""
        v = np.abs(self.values.astype(np.float64))
        keep = [self.axes.index(self.level)] + ([self.axes.index("output")] if self.has_outputs_axis else [])
        keep.append(self.axes.index("sample"))
        v = np.transpose(v, keep + [i for i in range(v.ndim) if i not in keep])
        # per_sample: (players[, outputs], n_samples), averaged over any other axis (time)
        per_sample = v.reshape((*v.shape[:len(keep)], -1)).mean(axis=-1)
        n = per_sample.shape[-1]
        mean = per_sample.mean(axis=-1)
        se = per_sample.std(axis=-1, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
        return mean, se

    def importance(self, *, normalize: bool = False) -> pd.Series | pd.DataFrame:
        """Global importance per feature or group.

        Definition: with repeat-level ``scores`` (permutation importance on a
        metric), the mean score over repeats; otherwise the mean absolute
        per-sample value, averaged over samples (and time steps for
        input-shaped sequence values). With ``normalize=True`` the result is
        divided by the sum of its absolute values (so the absolute values
        sum to 1; an all-zero result stays zero).

        Returns
        -------
        pandas.Series indexed by name (named after the method), or a
        DataFrame with one column per output when every output was explained.
        """
        if self.scores is not None:
            imp: np.ndarray = self.scores.mean(axis=0)
        else:
            imp = self._abs_mean_and_se()[0]
        if normalize:
            total = np.abs(imp).sum(axis=0, keepdims=True)
            imp = np.divide(imp, total, out=np.zeros_like(imp, dtype=np.float64), where=total > 0)
        if imp.ndim == 2:
            cols = self.output_names or [str(k) for k in range(imp.shape[1])]
            return pd.DataFrame(imp, index=pd.Index(self.names, name=self.level), columns=cols)
        return pd.Series(imp, index=pd.Index(self.names, name=self.level), name=self.method)

    def importance_std_error(self) -> pd.Series | pd.DataFrame:
        """Return the standard error of :meth:`importance` (over repeats, else over samples)."""
        if self.scores is not None:
            r = self.scores.shape[0]
            se = self.scores.std(axis=0, ddof=1) / np.sqrt(r) if r > 1 else np.full(self.scores.shape[1], np.nan)
        else:
            se = self._abs_mean_and_se()[1]
        if se.ndim == 2:
            cols = self.output_names or [str(k) for k in range(se.shape[1])]
            return pd.DataFrame(se, index=pd.Index(self.names, name=self.level), columns=cols)
        return pd.Series(se, index=pd.Index(self.names, name=self.level), name=f"{self.method}_std_error")

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: importance, its standard error and the normalised importance per player.

        Columns ``importance`` (:meth:`importance`), ``std_error``
        (:meth:`importance_std_error`) and ``normalized`` (``importance /
        sum(|importance|)``), indexed by name, most important first. When
        every output was explained (an ``"output"`` axis) the index is
        ``(name, output)`` and rows are sorted by importance within each
        output, outputs in their order. The per-sample values are
        :meth:`values_frame`.
        """
        imp, se, norm = self.importance(), self.importance_std_error(), self.importance(normalize=True)
        if isinstance(imp, pd.Series):
            return pd.DataFrame(
                {"importance": imp, "std_error": se, "normalized": norm}
            ).sort_values("importance", ascending=False)
        parts = []
        for out in imp.columns:
            part = pd.DataFrame({"importance": imp[out], "std_error": se[out], "normalized": norm[out]})
            part = part.sort_values("importance", ascending=False)
            part.index = pd.MultiIndex.from_arrays([part.index, [out] * len(part)], names=[self.level, "output"])
            parts.append(part)
        return pd.concat(parts)

    def values_frame(self) -> pd.DataFrame:
        """Per-sample values as a DataFrame.

        ``(sample, player)`` values give a wide frame (one column per name);
        any other layout gives a long frame with one column per axis
        (integer positions, names on the player axis) and a ``value`` column.
        """
        if self.values is None:
            raise ValueError(f"this {self.method!r} explanation holds only repeat-level scores; use to_frame()")
        if self.axes == ("sample", self.level):
            return pd.DataFrame(self.values, columns=pd.Index(self.names, name=self.level))
        grids = np.meshgrid(*[np.arange(s) for s in self.values.shape], indexing="ij")
        data: dict[str, Any] = {}
        for ax, g in zip(self.axes, grids, strict=True):
            flat = g.ravel()
            if ax == self.level:
                data[ax] = np.asarray(self.names, dtype=object)[flat]
            elif ax == "output" and self.output_names:
                data[ax] = np.asarray(self.output_names, dtype=object)[flat]
            else:
                data[ax] = flat
        data["value"] = self.values.ravel()
        return pd.DataFrame(data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description and importance (the per-sample arrays stay in :meth:`save`'s file).

        Keys: the file metadata (``method``, ``params``, ``target``,
        ``names``, ``axes``, ``output_names``, fingerprints), ``level``,
        ``values_shape`` (``None`` without values), ``n_repeats`` (rows of
        ``scores``, ``None`` without), and ``importance``, ``std_error``:
        ``{name: float}``, or ``{output: {name: float}}`` with an ``"output"``
        axis. NaN becomes ``None``.
        """
        def table(frame: pd.Series | pd.DataFrame) -> dict[str, Any]:
            return jsonable(frame.to_dict(), where=f"{self.method} importance")

        meta = {k: v for k, v in self._meta().items() if k not in ("format", "version", "featurelens_version",
                                                                    "extras")}
        return {
            **jsonable(meta, where=f"{self.method} explanation"),
            "level": self.level,
            "values_shape": None if self.values is None else list(self.values.shape),
            "n_repeats": None if self.scores is None else int(self.scores.shape[0]),
            "importance": table(self.importance()),
            "std_error": table(self.importance_std_error()),
        }

    def _html_title(self) -> str:
        return f"Explanation: {self.method}, importance per {self.level}"

    def __repr__(self) -> str:
        shape = None if self.values is None else self.values.shape
        return (f"Explanation(method={self.method!r}, {self.level}s={len(self.names)}, values_shape={shape}, "
                f"axes={self.axes})")

    # -- persistence -------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "featurelens_version": __version__,
            "method": self.method,
            "params": self.params,
            "target": self.target,
            "names": self.names,
            "axes": list(self.axes),
            "output_names": self.output_names,
            "model_fingerprint": self.model_fingerprint,
            "data_fingerprint": self.data_fingerprint,
            "extras": sorted(self.extras),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the explanation to ``path`` (an ``.npz`` file, written atomically).

        The file is a NumPy ``.npz`` archive readable with
        ``numpy.load(path, allow_pickle=False)``: ``meta`` holds a JSON string
        (format name, version, method, params, target, names, axes,
        fingerprints), ``values`` and ``scores`` the arrays when present, and
        ``extra.<name>`` each extra array. See ``docs/formats.md``.
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(self._meta(), sort_keys=True))}
        if self.values is not None:
            arrays["values"] = self.values
        if self.scores is not None:
            arrays["scores"] = self.scores
        for k, v in self.extras.items():
            arrays[f"extra.{k}"] = v
        return atomic_write_npz(path, arrays, compressed=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Explanation:
        """Read an explanation written by :meth:`save` (never unpickles)."""
        path = Path(path)
        arrays = read_npz(path, what="featurelens explanation file")
        if "meta" not in arrays:
            raise ValueError(f"{str(path)!r} is not a featurelens explanation file (no 'meta' entry)")
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError:
            raise ValueError(f"{str(path)!r}: its 'meta' entry is not JSON") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{str(path)!r}: its 'meta' entry is not a JSON object")
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"{str(path)!r} has format {meta.get('format')!r}, expected {FORMAT_NAME!r}")
        if meta.get("version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{str(path)!r} has format version {meta['version']}; this featurelens reads up to {FORMAT_VERSION}"
            )
        missing = [k for k in _META_KEYS if k not in meta]
        if missing:
            raise ValueError(f"{str(path)!r}: its 'meta' entry lacks {', '.join(map(repr, missing))}")
        extras = {k.removeprefix("extra."): v for k, v in arrays.items() if k.startswith("extra.")}
        return cls(
            arrays.get("values"),
            names=meta["names"],
            axes=meta["axes"],
            method=meta["method"],
            params=meta["params"],
            target=meta["target"],
            scores=arrays.get("scores"),
            extras=extras,
            model_fingerprint=meta["model_fingerprint"],
            data_fingerprint=meta["data_fingerprint"],
            output_names=meta["output_names"],
        )
