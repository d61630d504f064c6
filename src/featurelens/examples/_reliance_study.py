"""The reliance study shared by the finance and healthcare examples.

Given train / validation / in-distribution test / shifted test splits of a
sequence data set with two feature groups, :func:`run_reliance_study`

1. trains a window MLP (flatten ``(T, d)`` then :class:`featurelens.models.MLP`)
   with early stopping on the validation loss;
2. measures accuracy and AUC in distribution and on the shifted test set;
3. runs :func:`featurelens.reliance.detect_spurious` on the newest labelled
   data (the in-distribution test rows and the shifted rows) with
   user-declared environments;
4. draws robustness curves, the group interaction matrix and importance per
   time window or metrics per subgroup;
5. mitigates reliance on the suspect group with several strategies and judges
   them on the shifted test set;
6. writes the reliance report, the model (``torch.export``, ``model.pt2``), a CSV of the data the
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

from featurelens import _metrics
from featurelens._io import atomic_output_dir, atomic_write_text, check_output_dir
from featurelens.data import FeatureSpec
from featurelens.models import MLP, train


@dataclass(frozen=True)
class Split:
    """Inputs ``(n, T, d)`` float32 and 0/1 labels ``(n,)`` float32 of one part of the data."""

    X: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class StudyResult:
    """What an example computed and where it wrote it.

    ``results`` is the content of ``results.json``; ``model`` the trained
    (unmitigated) model; ``mitigated`` the mitigation result object.
    """

    out: Path
    results: dict[str, Any]
    model: nn.Module
    detection: Any
    mitigation: Any
    seconds: float


def window_mlp(lookback: int, n_features: int, hidden: Sequence[int] = (64, 32)) -> nn.Sequential:
    """``(B, lookback, n_features) -> (B,)`` logits: ``Flatten`` then an :class:`MLP`."""
    return nn.Sequential(nn.Flatten(1), MLP(lookback * n_features, hidden))


def save_exported(model: nn.Module, example: np.ndarray, path: Path) -> None:
    """Save ``model`` with ``torch.export`` (dynamic batch dimension), loadable by :func:`featurelens.load_model`."""
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


def _scores(model: nn.Module, split: Split) -> dict[str, float]:
    with torch.no_grad():
        logits = model(torch.from_numpy(split.X)).reshape(-1)
    y = torch.from_numpy(split.y)
    prob = torch.sigmoid(logits)
    return {"accuracy": _metrics.accuracy(y, prob), "auc": _metrics.auc(y, prob)}


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
    """Train, detect, probe robustness and interactions, mitigate, report (see the module docstring).

    ``splits`` holds ``train``, ``val``, ``test`` and ``shifted``; ``environments``
    labels the rows of ``test`` followed by ``shifted`` (detection data);
    ``window`` is the number of consecutive ``test`` rows per time window of
    :func:`featurelens.reliance.importance_over_windows`; ``subgroups`` labels the rows of ``test``
    followed by ``shifted`` (metrics per subgroup and environment).
    ``table`` is the detection data as a flat table for ``featurelens reliance``
    (written as ``data.csv`` with ``model.pt2`` and ``groups.json``).
    """
    from featurelens.reliance import (
        RelianceAudit,
        detect_spurious,
        evaluate_mitigations,
        importance_over_windows,
        interaction_matrix,
        metrics_by_subgroup,
        robustness,
    )
    from featurelens.report import save

    start = time.perf_counter()
    check_output_dir(out, force=force)
    tr, va, te, sh = (splits[k] for k in ("train", "val", "test", "shifted"))
    lookback, d = tr.X.shape[1], tr.X.shape[2]
    with torch.random.fork_rng():
        torch.manual_seed(random_state)
        model = window_mlp(lookback, d, hidden)
    fit = train(model, tr.X, tr.y, loss="bce", validation_data=(va.X, va.y), epochs=epochs,
                batch_size=64, weight_decay=1e-3, patience=10, random_state=random_state, progress=progress)
    model.eval()
    scores = {"in-distribution test": _scores(model, te), "shifted test": _scores(model, sh)}

    det = Split(np.concatenate([te.X, sh.X]), np.concatenate([te.y, sh.y]))
    detection = detect_spurious(model, det.X, det.y, groups=spec, environments=environments,
                                random_state=random_state)
    curves = robustness(model, te.X, te.y, metric="accuracy", groups=spec, feature_names=list(spec.names),
                        immutable=list(immutable) or None, random_state=random_state)
    interactions = {"features": interaction_matrix(model, te.X, groups=None, feature_names=list(spec.names),
                                                   baselines="mean", background=tr.X)}
    over_time = by_group = None
    if window is not None:
        over_time = importance_over_windows(model, te.X, te.y, groups=spec, window=window,
                                            random_state=random_state).table
    if subgroups is not None:
        labels = [f"{s} ({e})" for s, e in zip(subgroups, environments, strict=True)]
        by_group = metrics_by_subgroup(model, det.X, det.y, subgroups=labels, metrics=("auc", "accuracy"),
                                       link="sigmoid").rename(columns={"subgroup": subgroup_name})
    mitigation = evaluate_mitigations(
        model, strategies, train=(tr.X, tr.y), val=(va.X, va.y), test=(te.X, te.y), shifted=(sh.X, sh.y),
        groups=spec, suspect=suspect, epochs=mitigation_epochs, random_state=random_state,
    )
    info = {
        **dict(summary or {}),
        "rows (train / validation / test / shifted)": f"{len(tr.y)} / {len(va.y)} / {len(te.y)} / {len(sh.y)}",
        "model": f"Flatten + MLP {tuple(hidden)} on windows of {lookback} steps x {d} features, "
                 f"{sum(p.numel() for p in model.parameters())} parameters",
        "training": (f"Adam (lr 1e-3, weight decay 1e-3, batch 64), BCE with logits, early stopping on "
                     f"validation loss (patience 10); best epoch {fit.best_epoch} of {fit.stopped_epoch}"),
        **{f"{part} {m}": v for part, s in scores.items() for m, v in s.items()},
    }
    with atomic_output_dir(out, force=force) as tmp:
        audit = RelianceAudit(detection, robustness=curves, interactions=interactions, mitigation=mitigation,
                              mitigated_group=suspect, windows=over_time, subgroups=by_group, title=title,
                              summary=info, ground_truth=ground_truth, notes=tuple(notes), robustness_metric="accuracy")
        results = json.loads((save(audit, tmp / "report") / "results.json").read_text(encoding="utf-8"))
        save_exported(model, det.X[:2], tmp / "model.pt2")
        if table is not None:
            table.to_csv(tmp / "data.csv", index=False)
        atomic_write_text(tmp / "groups.json", json.dumps(spec.groups_as_names(), indent=2) + "\n")
    return StudyResult(Path(out), results, model, detection, mitigation, time.perf_counter() - start)
