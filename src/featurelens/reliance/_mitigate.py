"""Mitigation of reliance on a suspect feature group, judged on shifted data.

The superposition and spurious-correlation notebook's mitigators edited the original model's weights in place while a
copy was evaluated, and measured "generalisation" on a permutation of the
training data, where the spurious relation still holds. Here every strategy
trains or refits a **new** model (the original is never modified), and
:func:`evaluate_mitigations` compares it with the original on held-out
in-distribution data, on shifted data where the spurious relation is broken
or reversed, and by the reliance on the suspect group.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._protocol import FrameResult, jsonable, records
from featurelens._validation import RandomState, check_int, check_option, check_random_state
from featurelens.data import FeatureSpec, as_tensor, resolve_names
from featurelens.models import LOSSES, MLP, model_device_dtype, train
from featurelens.reliance._mitigation_strategies import (
    NEEDS_ENV,
    NEEDS_VAL_ENV,
    STRATEGIES,
    Context,
)
from featurelens.reliance._robustness import predict, spec_over

_TRAIN_OPTIONS = ("epochs", "train_batch_size", "lr", "weight_decay", "patience", "validation_fraction", "progress")


@dataclass
class Mitigated(FrameResult):
    """A mitigated model.

    Attributes
    ----------
    model : nn.Module
        The new model, in eval mode; the original is untouched.
    strategy : str
    options : dict
        Strategy options used (defaults filled in).
    history : pandas.DataFrame
        Training record (per epoch; per subset for ``"dfr"``).
    environments : numpy.ndarray or None
        Environment codes of the training rows used (given or inferred).
    """

    model: nn.Module = field(repr=False)
    strategy: str
    options: dict[str, Any]
    history: pd.DataFrame = field(repr=False)
    environments: np.ndarray | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: the training record :attr:`history` (a copy)."""
        return self.history.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: ``strategy``, ``options``, ``history`` records and ``environments``.

        The model is not JSON, so it is left out.
        """
        return jsonable({"strategy": self.strategy, "options": self.options, "history": records(self.history),
                         "environments": self.environments}, where="mitigated")

    def _html_title(self) -> str:
        return f"Mitigated: {self.strategy}"


def _strategy_defaults(name: str) -> dict[str, Any]:
    sig = inspect.signature(STRATEGIES[name])
    return {p.name: p.default for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}


def _env_codes(env: Any, n: int, *, name: str) -> np.ndarray:
    arr = np.asarray(env.to_numpy() if isinstance(env, (pd.Series, pd.DataFrame)) else env)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must hold one environment per row ({n}), got shape {arr.shape}")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64)


def _suspect_columns(names: list[str], groups: Any, suspect: str) -> list[int]:
    spec = spec_over(names, groups)
    if not isinstance(suspect, str) or suspect not in spec.groups:
        raise ValueError(f"suspect must name one of the groups ({', '.join(map(repr, spec.group_names))}); "
                         f"got {suspect!r}")
    return list(spec.groups[suspect])


def _labels(y: Any, n: int, *, name: str) -> np.ndarray:
    t, _ = as_tensor(y, name=name, dtype=torch.float64, ndims=(1, 2))
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} rows but the inputs have {n}")
    return t.numpy()


def infer_environments(
    X: Any,
    y: Any,
    *,
    groups: Mapping[str, Sequence[str | int]] | FeatureSpec,
    suspect: str,
    loss: str = "bce",
    feature_names: Sequence[str] | None = None,
    n_folds: int = 2,
    hidden: Sequence[int] = (32,),
    epochs: int = 30,
    random_state: RandomState = 0,
) -> np.ndarray:
    """Environments from the suspect group alone: (label, out-of-fold probe prediction).

    A small MLP probe (``hidden`` units, :func:`featurelens.models.train`)
    learns ``y`` from the suspect group's columns only; each row gets the
    prediction of the probe trained on the other ``n_folds − 1`` folds. The
    environment code is ``class(y) · K + class(probe)`` (``K`` classes), so
    rows where the suspect group "agrees" with the label (bias-aligned) and
    rows where it does not (bias-conflicting) fall in different
    environments, per class: the groups group DRO, PCGrad and DFR need when
    no environments are given. Classification losses only.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
    """
    loss = check_option(loss, name="loss", options=("bce", "ce"))
    n_folds = check_int(n_folds, name="n_folds", minimum=2)
    Xt, data_names = as_tensor(X, name="X", dtype=torch.float32)
    names = resolve_names(Xt.shape[-1], data_names=data_names, feature_names=feature_names)
    cols = _suspect_columns(names, groups, suspect)
    yv = _labels(y, Xt.shape[0], name="y")
    k = 2 if loss == "bce" else int(yv.max()) + 1
    z = Xt[..., cols].reshape(Xt.shape[0], -1)
    rng = check_random_state(random_state)
    fold = rng.permutation(Xt.shape[0]) % n_folds
    pred = np.zeros(Xt.shape[0], dtype=np.int64)
    for f in range(n_folds):
        fit_rows, out_rows = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        with torch.random.fork_rng():
            torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
            probe = MLP(z.shape[1], hidden=tuple(hidden), out_features=1 if loss == "bce" else k)
        train(probe, z[fit_rows], yv[fit_rows], loss=loss, epochs=epochs, train_batch_size=128, lr=3e-3, patience=5,
              random_state=rng)
        out = predict(probe, z[out_rows], "identity")
        pred[out_rows] = (out > 0).long().numpy() if loss == "bce" else out.argmax(dim=1).numpy()
    return (yv.astype(np.int64) * k + pred).astype(np.int64)


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    new = copy.deepcopy(model)
    covered: set[int] = set()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for m in new.modules():
            reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in m.parameters())
    missing = [n for n, p in new.named_parameters() if id(p) not in covered]
    if missing:
        raise ValueError(
            f"init='reset' cannot re-initialise parameter(s) {', '.join(missing[:3])} (their module has no "
            "reset_parameters); pass init='copy' to start from the model's weights"
        )
    return new


def _check_options(
    strategy: str, options: Mapping[str, Any] | None, train_options: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the strategy's option defaults and the options given, after refusing unknown ones."""
    unknown = sorted(set(train_options) - set(_TRAIN_OPTIONS))
    if unknown:
        raise TypeError(f"mitigate got unexpected option(s) {', '.join(map(repr, unknown))}; "
                        f"training options are {', '.join(_TRAIN_OPTIONS)}")
    defaults = _strategy_defaults(strategy)
    opts = dict(options or {})
    bad = sorted(set(opts) - set(defaults))
    if bad:
        raise TypeError(f"strategy {strategy!r} got unexpected option(s) {', '.join(map(repr, bad))}; "
                        f"it accepts {', '.join(map(repr, defaults)) or 'no options'}")
    return defaults, opts


def _validation_rows(X_val: Any, y_val: Any, Xt: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``X_val, y_val`` as tensors like the training rows ``Xt`` (both or neither)."""
    if (X_val is None) != (y_val is None):
        raise ValueError("give both X_val and y_val, or neither")
    if X_val is None:
        return None, None
    Xv, _ = as_tensor(X_val, name="X_val", dtype=Xt.dtype, device=Xt.device)
    if Xv.shape[1:] != Xt.shape[1:]:
        raise ValueError(f"X_val has shape {tuple(Xv.shape)} but X_train has {tuple(Xt.shape)}")
    return Xv, _labels(y_val, Xv.shape[0], name="y_val")


def mitigate(
    model: nn.Module,
    X_train: Any,
    y_train: Any,
    *,
    strategy: str,
    groups: Mapping[str, Sequence[str | int]] | FeatureSpec,
    suspect: str,
    environments: Any = None,
    X_val: Any = None,
    y_val: Any = None,
    environments_val: Any = None,
    loss: str = "bce",
    init: str = "reset",
    feature_names: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
    random_state: RandomState = 0,
    **train_options: Any,
) -> Mitigated:
    """Train a new model with ``strategy`` against reliance on the ``suspect`` group.

    Parameters
    ----------
    model : nn.Module
        The unmitigated model; never modified. It is copied and, with
        ``init="reset"`` (default), re-initialised (seeded) so the strategy
        trains from scratch with the same architecture; ``init="copy"``
        fine-tunes its weights instead. JTT uses its predictions to find the
        error set; DFR always starts from its weights and refits the last layer.
    X_train, y_train
        Training data (``(n, d)`` or ``(n, T, d)``; labels as in
        :func:`featurelens.models.train` for ``loss``).
    strategy : str
        ``"adversarial"`` (options ``epsilon=1.0`` in feature stds, ``mix=1.0``,
        ``n_steps=5``), ``"randomize"`` (``p=1.0``), ``"group_dropout"``
        (``p=0.5``), ``"group_dro"`` (``eta=0.01``), ``"reweight"``, ``"jtt"``
        (``upweight=5.0``), ``"dfr"`` (``C=1.0``, ``n_subsets=10``),
        ``"orthogonal"`` (``penalty=0.1``), ``"pcgrad"``. Definitions:
        :mod:`featurelens.reliance._mitigation_strategies` and
        docs/reliance_robustness.md.
    groups : mapping or FeatureSpec
        Feature groups (names or indices over the last axis).
    suspect : str
        The group whose reliance is to be removed.
    environments : array-like of shape (n,), optional
        Group/environment label of each training row (any hashable values),
        used by ``group_dro``, ``reweight`` and ``pcgrad``. Default: inferred with
        :func:`infer_environments` (label × suspect-group probe prediction).
    X_val, y_val : optional
        Held-out data: early stopping for the training strategies (else 20 %
        of the training rows are split off), and DFR's refitting set (needed).
    environments_val : array-like, optional
        Environments of the held-out rows (DFR balances them); default inferred.
    loss : {"bce", "ce", "mse"}
    options : mapping, optional
        Strategy options; unknown names raise ``TypeError``.
    random_state : int, numpy Generator or None
        Seeds re-initialisation, training and every random choice.
    **train_options
        ``epochs``, ``train_batch_size``, ``lr``, ``weight_decay``, ``patience``,
        ``validation_fraction``, ``progress`` of :func:`featurelens.models.train`.

    Returns
    -------
    Mitigated
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    strategy = check_option(strategy, name="strategy", options=sorted(STRATEGIES))
    loss = check_option(loss, name="loss", options=LOSSES)
    init = check_option(init, name="init", options=("reset", "copy"))
    defaults, opts = _check_options(strategy, options, train_options)
    rng = check_random_state(random_state)
    device, dtype = model_device_dtype(model)
    Xt, data_names = as_tensor(X_train, name="X_train", dtype=dtype, device=device)
    names = resolve_names(Xt.shape[-1], data_names=data_names, feature_names=feature_names)
    cols = _suspect_columns(names, groups, suspect)
    yt = _labels(y_train, Xt.shape[0], name="y_train")
    Xv, yv = _validation_rows(X_val, y_val, Xt)
    env = env_val = None
    classification = loss in ("bce", "ce")
    if environments is not None:
        env = _env_codes(environments, Xt.shape[0], name="environments")
    if strategy in NEEDS_ENV and env is None:
        if classification:
            env = infer_environments(Xt.cpu(), yt, groups={suspect: cols}, suspect=suspect, loss=loss, random_state=rng)
        else:
            raise ValueError(f"strategy {strategy!r} with loss='mse' needs environments=")
    if environments_val is not None:
        if Xv is None:
            raise ValueError("environments_val= needs X_val, y_val")
        env_val = _env_codes(environments_val, Xv.shape[0], name="environments_val")
    if strategy in NEEDS_VAL_ENV:
        if Xv is None:
            raise ValueError("strategy 'dfr' needs held-out data X_val, y_val to refit the last layer on")
        if env_val is None and classification:
            env_val = infer_environments(Xv.cpu(), yv, groups={suspect: cols}, suspect=suspect, loss=loss,
                                         random_state=rng)
    seed = int(rng.integers(0, 2**63 - 1))
    copy_ = copy.deepcopy(model) if init == "copy" or strategy == "dfr" else _reinitialised(model, seed)
    ctx = Context(
        model=copy_, original=model, X=Xt, y=yt, suspect_cols=cols, environments=env, X_val=Xv, y_val=yv,
        env_val=env_val, loss=loss, train_options=dict(train_options), rng=rng,
    )
    new, history = STRATEGIES[strategy](ctx, **opts)
    new.eval()
    return Mitigated(model=new, strategy=strategy, options={**defaults, **opts}, history=history, environments=env)
