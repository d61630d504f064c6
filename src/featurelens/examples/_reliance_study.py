"""The reliance study shared by the finance and healthcare examples.

Given train / validation / in-distribution test / shifted test splits of a
sequence data set with two feature groups, :func:`run_reliance_study`

1. trains a window MLP (flatten ``(T, d)`` then :class:`featurelens.models.MLP`)
   with early stopping on the validation loss;
2. audits it with :func:`featurelens.reliance.audit`: accuracy and AUC in
   distribution and on the shifted test set; detection on the newest labelled
   data (the in-distribution test rows and the shifted rows) with
   user-declared environments; robustness curves, the feature interaction
   matrix and importance per time window or metrics per subgroup; mitigation
   of the suspect group with several strategies, judged on the shifted test set;
3. writes the reliance report, the model (``torch.export``, ``model.pt2``), a CSV of the data the
   detector saw and the groups file, so that ``featurelens reliance`` can be
   re-run on them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._io import atomic_output_dir, atomic_write_text, check_output_dir
from featurelens.data import FeatureSpec
from featurelens.models import MLP, train
from featurelens.reliance import (
    MitigationTable,
    RelianceAudit,
    SpuriousReport,
    audit,
)
from featurelens.report import save


@dataclass(frozen=True)
class Split:
    """Inputs ``(n, T, d)`` float32 and 0/1 labels ``(n,)`` float32 of one part of the data."""

    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class StudyResult:
    """What an example computed and where it wrote it.

    ``results`` is the content of ``results.json``; ``model`` the trained
    (unmitigated) model; ``audit`` everything the audit found.
    """

    out: Path
    results: dict[str, Any]
    model: nn.Module
    audit: RelianceAudit
    seconds: float

    @property
    def detection(self) -> SpuriousReport:
        """The audit's detection (``audit.detection``)."""
        return self.audit.detection

    @property
    def mitigation(self) -> MitigationTable | None:
        """The audit's mitigation table (``audit.mitigation``)."""
        return self.audit.mitigation


def window_mlp(lookback: int, n_features: int, hidden: Sequence[int] = (64, 32)) -> nn.Sequential:
    """``(B, lookback, n_features) -> (B,)`` logits: ``Flatten`` then an :class:`MLP`.

    Parameters
    ----------
    lookback : int
        Time steps ``T`` of a window.
    n_features : int
        Features ``d`` per step.
    hidden : sequence of int
        Widths of the MLP's hidden layers.

    Returns
    -------
    nn.Sequential
        ``Flatten(1)`` then ``MLP(T * d, hidden)`` with one logit per window,
        initialised from the global torch RNG.
    """
    return nn.Sequential(nn.Flatten(1), MLP(lookback * n_features, hidden))


def save_exported(model: nn.Module, example: np.ndarray, path: Path) -> None:
    """Save ``model`` with ``torch.export`` (dynamic batch dimension), loadable by :func:`featurelens.load_model`.

    Parameters
    ----------
    model : nn.Module
        The model; put in eval mode before it is traced.
    example : ndarray
        Example inputs ``(B, ...)`` fixing every axis but the batch axis
        (their dtype is the program's input dtype).
    path : Path
        The ``.pt2`` file written.
    """
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model.eval(), (torch.from_numpy(example),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def feature_moments(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and std of each feature of ``train_x`` over rows and steps; a constant feature gets std 1."""
    flat = train_x.reshape(-1, train_x.shape[-1]).astype(np.float64)
    std = flat.std(axis=0)
    return flat.mean(axis=0), np.where(std > 0, std, 1.0)


def standardize(train_x: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Subtract each feature's training mean and divide by its training std (:func:`feature_moments`).

    Returns the standardized ``train_x`` and ``others`` as float32.
    """
    mean, std = feature_moments(train_x)
    return tuple(((a - mean) / std).astype(np.float32) for a in (train_x, *others))


def run_reliance_study(
    out: str | os.PathLike,
    *,
    title: str,
    splits: Mapping[str, Split],
    spec: FeatureSpec,
    suspect: str,
    environments: np.ndarray,
    strategies: Sequence[str],
    immutable: Sequence[str] = (),
    window: int | None = None,
    subgroups: np.ndarray | None = None,
    subgroup_name: str = "subgroup",
    table: pd.DataFrame | None = None,
    epochs: int = 100,
    mitigation_epochs: int = 30,
    hidden: Sequence[int] = (64, 32),
    summary: Mapping[str, Any] | None = None,
    ground_truth: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    random_state: int = 0,
    force: bool = False,
    progress: bool = False,
) -> StudyResult:
    """Train, then audit (:func:`featurelens.reliance.audit`) and report (see the module docstring).

    ``splits`` holds ``train``, ``val``, ``test`` and ``shifted``; ``environments``
    labels the rows of ``test`` followed by ``shifted`` (detection data);
    ``window`` is the number of consecutive ``test`` rows per time window of
    :func:`featurelens.reliance.importance_over_windows`; ``subgroups`` labels the rows of ``test``
    followed by ``shifted`` (metrics per subgroup and environment).
    ``table`` is the detection data as a flat table for ``featurelens reliance``
    (written as ``data.csv`` with ``model.pt2`` and ``groups.json``).
    """
    start = time.perf_counter()
    check_output_dir(out, force=force)
    tr, va, te, sh = (splits[k] for k in ("train", "val", "test", "shifted"))
    lookback, d = tr.X.shape[1], tr.X.shape[2]
    with torch.random.fork_rng():
        torch.manual_seed(random_state)
        model = window_mlp(lookback, d, hidden)
    fit = train(model, tr.X, tr.y, loss="bce", validation_data=(va.X, va.y), epochs=epochs,
                train_batch_size=64, weight_decay=1e-3, patience=10, random_state=random_state, progress=progress)
    model.eval()
    info = {
        **dict(summary or {}),
        "rows (train / validation / test / shifted)": f"{len(tr.y)} / {len(va.y)} / {len(te.y)} / {len(sh.y)}",
        "model": f"Flatten + MLP {tuple(hidden)} on windows of {lookback} steps x {d} features, "
                 f"{sum(p.numel() for p in model.parameters())} parameters",
        "training": (f"Adam (lr 1e-3, weight decay 1e-3, batch 64), BCE with logits, early stopping on "
                     f"validation loss (patience 10); best epoch {fit.best_epoch} of {fit.stopped_epoch}"),
    }
    result = audit(
        model, np.concatenate([te.X, sh.X]), np.concatenate([te.y, sh.y]), groups=spec,
        environments=environments, test=(te.X, te.y), train=(tr.X, tr.y), val=(va.X, va.y),
        shifted=(sh.X, sh.y), strategies=strategies, suspect=suspect, immutable=immutable, window=window,
        subgroups=subgroups, subgroup_name=subgroup_name, epochs=mitigation_epochs, title=title, summary=info,
        ground_truth=ground_truth, notes=notes, random_state=random_state,
    )
    with atomic_output_dir(out, force=force) as tmp:
        results = json.loads((save(result, tmp / "report") / "results.json").read_text(encoding="utf-8"))
        save_exported(model, te.X[:2], tmp / "model.pt2")
        if table is not None:
            table.to_csv(tmp / "data.csv", index=False)
        atomic_write_text(tmp / "groups.json", json.dumps(spec.groups_as_names(), indent=2) + "\n")
    return StudyResult(Path(out), results, model, result, time.perf_counter() - start)
