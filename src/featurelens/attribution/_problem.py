"""The shared set-up of every attribution call: model, inputs, players, output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from featurelens._fingerprint import fingerprint_data, fingerprint_model
from featurelens._validation import check_int
from featurelens.attribution._explanation import Explanation
from featurelens.data import FeatureSpec, as_tensor, resolve_names
from featurelens.models import (
    OutputSelector,
    call_model,
    default_batch_size,
    evaluate,
    model_device_dtype,
)


@dataclass
class Problem:
    """Everything a method needs; built once by :func:`featurelens.attribute` (see :func:`build_problem`).

    Attributes
    ----------
    model : nn.Module
        The model, called as found (the caller sets its mode).
    x : Tensor
        The inputs ``(n, d)`` or ``(n, T, d)`` on the model's device and
        floating dtype.
    spec : FeatureSpec
        Feature names and groups over the last axis of ``x``; its players are
        the units attributed (features, or groups when given).
    selector : OutputSelector
        Turns the raw model output into the explained ``(B,)`` or ``(B, K)``.
    batch_size : int
        Rows per forward call.
    progress : bool
        Whether long evaluations show a progress bar.
    model_fingerprint, data_fingerprint : str
        Content hashes of the model and of ``x``.
    checked : bool
        Whether a forward pass already proved that the model accepts ``x``.
    """

    model: nn.Module
    x: torch.Tensor
    spec: FeatureSpec
    selector: OutputSelector
    batch_size: int
    progress: bool
    model_fingerprint: str
    data_fingerprint: str

    @property
    def n(self) -> int:
        """Number of input rows."""
        return self.x.shape[0]

    @property
    def names(self) -> list[str]:
        """Player names: the features, or the groups when groups are given."""
        return self.spec.players()[0]

    @property
    def level(self) -> str:
        """``"group"`` when the players are groups, else ``"feature"``."""
        return "group" if self.spec.has_groups else "feature"

    checked: bool = False

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Return the selected output for a batch: ``(B,)`` or ``(B, K)``.

        The first call turns a model/data mismatch into a ``ValueError``
        naming the input shape (no separate probe forward is spent on it).
        """
        if not self.checked:
            out = self.selector(call_model(self.model, X, shape=tuple(self.x.shape)), X.shape[0])
            self.checked = True
            return out
        return self.selector(self.model(X), X.shape[0])

    def forward_all(self, X: torch.Tensor | None = None, *, desc: str = "model outputs") -> torch.Tensor:
        """Compute the selected outputs for all rows of ``X`` (default: the inputs), in chunks, without grad.

        :func:`featurelens.models.evaluate` with the problem's selector and batch size.
        """
        X = self.x if X is None else X
        out = evaluate(self.model, X, output=self.selector, batch_size=self.batch_size, progress=self.progress,
                       desc=desc)
        self.checked = True
        return out

    def explanation(
        self, values: np.ndarray | None, *, method: str, params: dict, axes: tuple[str, ...] | None = None, **kw: Any
    ) -> Explanation:
        """Wrap method results with the problem's names, target and fingerprints.

        ``axes`` defaults to ``("sample", <level>)`` plus ``"output"`` when
        every output is explained; input-shaped gradient values pass their own.
        """
        if axes is None:
            axes = ("sample", self.level) + (("output",) if self.selector.all_targets else ())
        names = self.names if self.level in axes else list(self.spec.names)
        return Explanation(
            values,
            names=names,
            axes=axes,
            method=method,
            params=params,
            target=self.selector.describe(),
            model_fingerprint=self.model_fingerprint,
            data_fingerprint=self.data_fingerprint,
            **kw,
        )


def build_problem(
    model: nn.Module,
    X: Any,
    *,
    groups: Mapping | FeatureSpec | None,
    feature_names: list[str] | None,
    target: Any,
    output: int | None,
    link: str | None,
    batch_size: int | None,
    progress: bool,
    require_target: bool = True,
) -> Problem:
    """Validate and convert the common arguments of :func:`featurelens.attribute`.

    Parameters
    ----------
    model : nn.Module
        The model to explain.
    X : ndarray, Tensor or DataFrame
        ``(n, d)`` or ``(n, T, d)``; converted to the model's device and
        floating dtype (NaN or inf is an error).
    groups : mapping, FeatureSpec or None
        Named groups of features (``None``: every feature is a player); a
        :class:`FeatureSpec` must describe the ``d`` features of ``X``.
    feature_names : list of str or None
        Names of the ``d`` features (default: the DataFrame's columns, else
        ``x0 .. x{d-1}``).
    target, output, link
        The explained output, as for :class:`featurelens.models.OutputSelector`.
    batch_size : int or None
        Rows per forward call (default: :func:`featurelens.models.default_batch_size`).
    progress : bool
        Show progress bars on long evaluations.
    require_target : bool
        ``False`` for methods that never call :meth:`Problem.forward`: the
        model is then run once on two rows here, so that a model/data mismatch
        fails now.

    Returns
    -------
    Problem
        The validated set-up, with fingerprints of model and inputs.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``, or an argument has the wrong type.
    ValueError
        If ``X`` holds NaN or inf, the names or the FeatureSpec do not fit
        them, or ``batch_size < 1``.
    """
    if not isinstance(model, nn.Module):
        if callable(model):
            raise TypeError("model must be a torch.nn.Module; wrap a plain function in an nn.Module")
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device, dtype = model_device_dtype(model)
    x, data_names = as_tensor(X, name="X", dtype=dtype, device=device)
    d = x.shape[-1]
    if isinstance(groups, FeatureSpec):
        if groups.n_features != d:
            raise ValueError(f"groups (a FeatureSpec) describes {groups.n_features} features but the inputs have {d}")
        known = feature_names if feature_names is not None else data_names
        if known is not None and [str(n) for n in known] != list(groups.names):
            diff = next(i for i, (a, b) in enumerate(zip(known, groups.names, strict=True)) if str(a) != b)
            raise ValueError(
                f"groups (a FeatureSpec) names feature {diff} {groups.names[diff]!r} but the inputs call it "
                f"{str(known[diff])!r}; reorder the columns or build the FeatureSpec from them"
            )
        spec = groups
    else:
        names = resolve_names(d, data_names=data_names, feature_names=feature_names)
        spec = FeatureSpec(names, groups)
    selector = OutputSelector(target=target, output=output, link=link)
    if batch_size is None:
        batch_size = default_batch_size(x)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    problem = Problem(
        model=model,
        x=x,
        spec=spec,
        selector=selector,
        batch_size=batch_size,
        progress=bool(progress),
        model_fingerprint=fingerprint_model(model),
        data_fingerprint=fingerprint_data(x),
    )
    if not require_target:  # methods that never call problem.forward: check the data fits now
        with torch.no_grad():
            call_model(model, x[:2], shape=tuple(x.shape))
    return problem
