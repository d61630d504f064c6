"""Input pruning to a smaller model (pykan's ``prune_input``) and the rank plot of scores."""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._io import atomic_write_bytes
from featurelens._validation import check_float
from featurelens.attribution._edge_scores import EdgeScores
from featurelens.attribution._explanation import Explanation
from featurelens.data import default_feature_names
from featurelens.models import Factory, find_input_layer, load_state, resolve_factory, set_eval

FORMAT_NAME = "featurelens.pruned_inputs"
FORMAT_VERSION = 1


def score_vector(scores: Any) -> tuple[np.ndarray, list[str] | None, str | None]:
    """One score per input feature from any score container.

    Parameters
    ----------
    scores : EdgeScores, Explanation, pandas Series or 1-D array
        An :class:`Explanation` must be per feature and for one target
        (its :meth:`~Explanation.importance`).

    Returns
    -------
    tuple
        ``(values, names, layer)``: float64 scores ``(n_features,)``, their
        names (``None`` for a bare array) and the input layer's path when the
        scores know it (else ``None``).

    Raises
    ------
    TypeError, ValueError
        For another type, non-numbers, a shape other than 1-D, NaN or inf.
    """
    layer = None
    if isinstance(scores, EdgeScores):
        vals, names, layer = scores.feature_scores, list(scores.feature_names), scores.input_layer
    elif isinstance(scores, Explanation):
        if scores.level != "feature":
            raise ValueError(
                f"input pruning needs one score per feature, but this {scores.method!r} explanation "
                "scores groups; explain without groups"
            )
        imp = scores.importance()
        if isinstance(imp, pd.DataFrame):
            raise ValueError("input pruning needs one score per feature; explain a single target, not target='all'")
        vals, names = imp.to_numpy(), list(scores.names)
        layer = scores.params.get("input_layer")
    elif isinstance(scores, pd.Series):
        vals, names = scores.to_numpy(), [str(i) for i in scores.index]
    elif isinstance(scores, (np.ndarray, torch.Tensor, list, tuple)):
        vals, names = (scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)), None
    else:
        raise TypeError(
            "scores must be EdgeScores, an Explanation, a pandas Series or a 1-D array, "
            f"got {type(scores).__name__}"
        )
    try:
        vals = np.asarray(vals, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("scores must hold numbers") from None
    if vals.ndim != 1 or vals.size == 0:
        raise ValueError(f"scores must be 1-D with one score per feature, got shape {vals.shape}")
    if not np.isfinite(vals).all():
        raise ValueError("scores hold NaN or inf")
    return vals, names, layer


def _slice_input_layer(model: nn.Module, path: str, keep: torch.Tensor) -> None:
    """Keep only the columns ``keep`` of the Linear at ``path`` (in place; masks kept)."""
    try:
        layer = model.get_submodule(path)
    except AttributeError:
        raise ValueError(f"the model has no module at path {path!r} (the input layer)") from None
    if not isinstance(layer, nn.Linear):
        raise ValueError(f"module {path!r} is a {type(layer).__name__}, not the nn.Linear input layer")
    if hasattr(layer, "parametrizations"):
        raise ValueError(f"module {path!r} has torch.nn.utils.parametrize parametrizations; they are not supported")
    d = keep.numel()
    if layer.in_features != d:
        raise ValueError(f"the input layer {path!r} reads {layer.in_features} features but the scores cover {d}")
    pruned = hasattr(layer, "weight_orig") and hasattr(layer, "weight_mask")
    name = "weight_orig" if pruned else "weight"
    w = getattr(layer, name)
    idx = torch.nonzero(keep.to(w.device)).flatten()
    with torch.no_grad():
        setattr(layer, name, nn.Parameter(w[:, idx].clone(), requires_grad=w.requires_grad))
        if pruned:
            layer.weight_mask = layer.weight_mask[:, idx].clone()
            layer.weight = layer.weight_orig * layer.weight_mask
    layer.in_features = int(idx.numel())


def _narrow(model: nn.Module, path: str, keep: torch.Tensor) -> None:
    d = keep.numel()
    _slice_input_layer(model, path, keep)
    if getattr(model, "in_features", None) == d:  # e.g. featurelens MLP checks its input width
        model.in_features = int(keep.sum())


@dataclass(eq=False)
class PrunedInputs:
    """A model narrowed to the kept input columns, with the keep mask and names.

    Attributes
    ----------
    model : nn.Module
        A new model (deep copy of the original) whose input layer has only the
        kept columns. It takes ``(n, k)`` / ``(n, T, k)`` inputs: the kept
        columns in their original order (see :meth:`select`).
    keep : ndarray of bool ``(d,)``
        ``scores > threshold``.
    feature_names : list of str
        All ``d`` original feature names.
    scores : ndarray ``(d,)``
        The scores the decision was made on.
    threshold : float
    input_layer : str
        Module path of the (narrowed) input layer.
    """

    model: nn.Module
    keep: np.ndarray
    feature_names: list[str]
    scores: np.ndarray
    threshold: float
    input_layer: str

    @property
    def kept_names(self) -> list[str]:
        return [n for n, k in zip(self.feature_names, self.keep, strict=True) if k]

    @property
    def dropped_names(self) -> list[str]:
        return [n for n, k in zip(self.feature_names, self.keep, strict=True) if not k]

    def select(self, X: Any) -> Any:
        """Return the kept columns of full-width ``X`` (tensor/ndarray ``[..., keep]``, DataFrame by name)."""
        if isinstance(X, pd.DataFrame):
            return X[self.kept_names]
        if isinstance(X, torch.Tensor):
            return X[..., torch.as_tensor(self.keep, device=X.device)]
        return np.asarray(X)[..., self.keep]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the narrowed model's state dict with ``keep`` and the names (atomically).

        The file is a ``torch.save`` dict readable with ``torch.load(path,
        weights_only=True)``: ``format``, ``version``, ``model_state_dict``,
        ``keep`` (bool tensor ``(d,)``), ``feature_names``, ``kept_names``,
        ``scores`` (float64 ``(d,)``), ``threshold`` and ``input_layer``.
        Reload it with :meth:`load` (factory of the original architecture), or
        with ``featurelens.models.load_model(path, factory=...)`` and a factory
        of the narrowed architecture (e.g. ``MLP(k, ...)``).
        """
        payload = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "model_state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "keep": torch.as_tensor(self.keep, dtype=torch.bool),
            "feature_names": list(self.feature_names),
            "kept_names": self.kept_names,
            "scores": torch.as_tensor(self.scores, dtype=torch.float64),
            "threshold": float(self.threshold),
            "input_layer": self.input_layer,
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        return atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike, *, factory: Factory | str,
             map_location: str | torch.device | None = "cpu") -> PrunedInputs:
        """Read a file written by :meth:`save` (``weights_only=True``, never unpickles code).

        ``factory`` builds the ORIGINAL full-width architecture (the one that
        was pruned; its input layer is narrowed here) or already the narrowed
        one; see :func:`featurelens.models.resolve_factory`. Pruning masks in the
        state dict are re-created. The model is returned in eval mode.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"pruned-inputs file {str(path)!r} does not exist")
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            raise ValueError(f"{str(path)!r} could not be read as a featurelens pruned-inputs file: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise ValueError(f"{str(path)!r} is not a featurelens pruned-inputs file")
        if obj.get("version", 0) > FORMAT_VERSION:
            raise ValueError(f"{str(path)!r} has format version {obj['version']}; "
                             f"this featurelens reads up to {FORMAT_VERSION}")
        keep = obj["keep"].to(torch.bool).cpu()
        model = resolve_factory(factory)()
        layer = obj["input_layer"]
        try:
            width = model.get_submodule(layer).in_features
        except AttributeError:
            raise ValueError(f"the model built by the factory has no Linear input layer {layer!r}") from None
        if width != int(keep.sum()):
            _narrow(model, layer, keep)
        name = factory if isinstance(factory, str) else getattr(factory, "__qualname__", "factory")
        load_state(model, dict(obj["model_state_dict"]), path=path, factory_name=name)
        if map_location is not None:
            model.to(map_location)
        return cls(set_eval(model), keep.numpy(), list(obj["feature_names"]), obj["scores"].cpu().numpy(),
                   float(obj["threshold"]), layer)


def _resolve_layer(model: nn.Module, layer: str | None, hint: str | None, inputs: Any) -> str:
    if layer is not None:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be the module path of the input layer (str), got {type(layer).__name__}")
        return layer
    if hint is not None:
        return hint
    if inputs is not None:
        return find_input_layer(model, inputs)[0]
    declared = getattr(model, "input_layer", None)
    if isinstance(declared, nn.Linear):
        for name, m in model.named_modules():
            if m is declared:
                return name
    raise ValueError(
        "cannot tell which layer reads the inputs: pass X= (a batch the model accepts, to find it "
        "by data flow), layer=<module path>, or scores from edge_scores / attribute(method='weights')"
    )


def prune_inputs(
    model: nn.Module,
    scores: Any,
    *,
    threshold: float = 1e-2,
    feature_names: Sequence[str] | None = None,
    X: Any = None,
    layer: str | None = None,
) -> PrunedInputs:
    """Build a new, narrower model that reads only the inputs whose score exceeds ``threshold``.

    ``keep = scores > threshold`` (pykan's ``prune_input`` rule and default
    threshold, meant for raw edge scores relative to output score 1). The
    original model is untouched; the returned model is a deep copy whose input
    layer keeps only the kept weight columns (and their pruning-mask columns),
    so ``pruned.model(x[..., keep])`` equals the original model evaluated with
    the dropped columns' weights deleted, i.e. ``model(x)`` with the dropped
    columns set to 0 (up to floating-point summation order). If the top-level
    model has an ``in_features`` attribute equal to ``d`` it is set to ``k``.

    Unlike pykan, whose pruned model still takes all ``d`` columns and selects
    the kept ones with a hidden ``input_id`` tensor (lost when a checkpoint is
    reloaded), the new model takes only the kept columns: the keep mask is
    explicit, saved with the model (:meth:`PrunedInputs.save`), and a model of
    the wrong width fails loudly.

    Parameters
    ----------
    model : nn.Module
    scores : EdgeScores, Explanation, pandas Series or 1-D array
        One score per input feature (an Explanation at feature level; its
        :meth:`~Explanation.importance` is used).
    threshold : float
    feature_names : sequence of str, optional
        Names of the ``d`` features; scores carrying names are reordered to them.
    X : Tensor, ndarray or DataFrame, optional
        A batch to find the input layer by data flow (:func:`find_input_layer`),
        needed unless ``layer`` is given, the scores name it (EdgeScores,
        ``weights`` explanations) or the model declares ``input_layer``.
    layer : str, optional
        Module path of the input layer.

    Returns
    -------
    PrunedInputs
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    threshold = check_float(threshold, name="threshold")
    vals, names, hint = score_vector(scores)
    d = vals.size
    if feature_names is not None:
        if isinstance(feature_names, str):
            raise TypeError("feature_names must be a list of names, not a single str")
        wanted = [str(f) for f in feature_names]
        if len(wanted) != d:
            raise ValueError(f"feature_names has {len(wanted)} names but there are {d} scores")
        if names is not None and names != wanted:
            if sorted(names) != sorted(wanted):
                raise ValueError("feature_names and the names carried by the scores differ")
            vals = vals[[names.index(n) for n in wanted]]
        names = wanted
    names = names if names is not None else default_feature_names(d)
    keep = vals > threshold
    if not keep.any():
        raise ValueError(f"no score exceeds threshold={threshold} (the largest is {vals.max():.3g}); "
                         "nothing would be kept")
    path = _resolve_layer(model, layer, hint, X)
    new = copy.deepcopy(model)
    _narrow(new, path, torch.as_tensor(keep))
    return PrunedInputs(new, keep, names, vals, threshold, path)
