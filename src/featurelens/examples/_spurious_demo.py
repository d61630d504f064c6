"""The default demo: whether a small transformer relies on a planted spurious group.

The biased data set of the superposition and spurious-correlation study (five
genuine 10-dimensional groups and one spurious group whose link to the label
has ``bias_strength``), that study's small transformer trained with a
validation split and early stopping on validation loss, group attributions by
ablation and permutation importance, and an HTML report. The planted truth is
stored with the numbers so anyone can check the verdict.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from featurelens._io import check_output_dir
from featurelens._validation import check_float, check_int
from featurelens.attribution import AttributionReport, Explanation, attribute
from featurelens.data import train_val_test_split
from featurelens.datasets import make_biased, make_shifted
from featurelens.internals import summarize_internals
from featurelens.models import SmallTransformer, logit_accuracy, train
from featurelens.report import save


@dataclass(frozen=True)
class DemoResult:
    """What the demo computed and where it wrote it."""

    out: Path
    explanations: dict[str, Explanation]
    results: dict[str, Any]
    seconds: float


def run_spurious_demo(
    out: str | os.PathLike,
    *,
    n_samples: int = 40000,
    bias_strength: float = 0.8,
    epochs: int = 60,
    n_repeats: int = 5,
    random_state: int = 0,
    force: bool = False,
    progress: bool = False,
) -> DemoResult:
    """Train the spurious-correlation study's transformer on biased data, attribute it, write a report.

    Parameters
    ----------
    out : path
        Output directory (written atomically; an existing one only with ``force``).
    n_samples : int
        Rows generated; split 60/20/20 into train, validation and test.
    bias_strength : float in [0, 1]
        Probability that a label is the spurious group's label.
    epochs : int
        Maximum training epochs (early stopping on validation loss, patience 5).
    n_repeats : int
        Permutation repeats.
    random_state : int
        Seeds data, initialisation, training and permutations.

    Returns
    -------
    DemoResult
        ``results`` is the content of ``results.json``: ``importance``
        (``{method: {group: value}}``) and ``ground_truth``
        (``{"spurious_group", "bias_strength"}``) among others.
    """
    start = time.perf_counter()
    check_output_dir(out, force=force)
    n_samples = check_int(n_samples, name="n_samples", minimum=100)
    bias_strength = check_float(bias_strength, name="bias_strength", low=0.0, high=1.0)
    epochs = check_int(epochs, name="epochs", minimum=1)
    data = make_biased(n_samples, bias_strength=bias_strength, random_state=random_state)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = train_val_test_split(
        data.X, data.y, fractions=(0.6, 0.2, 0.2), random_state=random_state
    )
    shifted = make_shifted(len(x_te), bias_strength=bias_strength, mode="independent", random_state=random_state + 1)

    with torch.random.fork_rng():
        torch.manual_seed(random_state)
        model = SmallTransformer(data.X.shape[1])
    fit = train(model, x_tr, y_tr, loss="bce", validation_data=(x_va, y_va), epochs=epochs, train_batch_size=128,
                patience=5, random_state=random_state, progress=progress)

    spec = data.spec()
    common = {"groups": spec, "link": "sigmoid", "progress": progress}
    explanations = {
        "ablation": attribute(model, x_te, method="ablation", baselines="mean", background=x_tr, **common),
        "permutation": attribute(model, x_te, method="permutation", y=y_te, metric="accuracy",
                                 n_repeats=n_repeats, random_state=random_state, **common),
    }
    internals = summarize_internals(model, x_te, groups=spec.groups, feature_names=list(spec.names),
                                    random_state=random_state)
    n_params = sum(p.numel() for p in model.parameters())
    summary = {
        "data": ("biased set of the superposition and spurious-correlation study: 5 genuine groups of "
                 "10 standard-normal features + 1 spurious group"),
        "rows (train / validation / test)": f"{len(x_tr)} / {len(x_va)} / {len(x_te)}",
        "features": data.X.shape[1],
        "groups": len(spec.group_names),
        "bias strength": bias_strength,
        "model": f"SmallTransformer (2 encoder layers, d_model 64, 4 heads), {n_params} parameters",
        "training": (f"Adam (lr 1e-3, batch 128), BCE with logits, early stopping on validation loss "
                     f"(patience 5); best epoch {fit.best_epoch} of {fit.stopped_epoch}"),
        "test accuracy": logit_accuracy(model, x_te, y_te),
        "shifted test accuracy (spurious link broken)": logit_accuracy(model, shifted.X, shifted.y),
        "attributed output": "predicted probability (sigmoid of the logit)",
        "ablation baseline": "training mean of each feature",
    }
    truth = data.ground_truth
    notes = [
        "Ablation: value = f(x) − f(x with the group's columns set to the training mean), f the predicted probability.",
        "Permutation: drop in test accuracy when the group's columns are shuffled across rows "
        f"({n_repeats} repeats, mean ± standard error).",
        f"Ground truth: group {truth.spurious_group!r} was planted with bias strength {truth.bias_strength}; "
        "on the shifted test set its link to the label is broken, so a model relying on it loses accuracy there.",
    ]
    report = AttributionReport(
        explanations,
        title="featurelens demo: reliance on a planted spurious feature group",
        summary=summary,
        ground_truth={"spurious_group": truth.spurious_group, "bias_strength": truth.bias_strength},
        history=fit.history,
        notes=notes,
        internals=internals,
    )
    path = save(report, out, force=force)
    results = json.loads((path / "results.json").read_text(encoding="utf-8"))
    return DemoResult(path, explanations, results, time.perf_counter() - start)
