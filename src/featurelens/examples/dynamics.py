"""Training dynamics of small MLPs on scikit-learn's digits: logging, HMM, training map, report.

``featurelens example dynamics``: trains ``n_runs`` MLPs (64 → 32 → 32 → 10)
on ``sklearn.datasets.load_digits`` with different seeds and SGD learning
rates, logs the 14 weight metrics of Hu et al. (2023) plus losses and the
validation accuracy every ``log_every`` optimizer steps (one CSV per run),
then runs :func:`featurelens.dynamics.analyse_runs` (HMM model selection,
Viterbi states, transition drivers, detours) and writes the report.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from featurelens._io import check_output_dir
from featurelens._progress import progress_bar
from featurelens._validation import check_int
from featurelens.dynamics import METRIC_NAMES, MetricsLogger, analyse_runs, load_runs
from featurelens.models import MLP
from featurelens.report import save

#: SGD learning rates cycled over the runs (run r uses LEARNING_RATES[r % 4])
LEARNING_RATES = (0.05, 0.1, 0.2, 0.4)
HIDDEN = (32, 32)
BATCH_SIZE = 64
#: convergence: first checkpoint with validation accuracy above this
THRESHOLD = 0.9
QUICK = {"n_runs": 24, "epochs": 10, "log_every": 2, "states": range(1, 7), "n_restarts": 3}
FULL = {"n_runs": 32, "epochs": 20, "log_every": 2, "states": range(1, 9), "n_restarts": 5}
#: share of runs held out to score the HMMs
TEST_FRACTION = 0.25


@dataclass(frozen=True)
class DynamicsExampleResult:
    """Where the example wrote its report, the numbers shown and the time taken per phase."""

    out: Path
    results: dict[str, Any]
    seconds: dict[str, float]


def _digits(random_state: int) -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(x))
    n_val = len(x) * 3 // 10
    val, tr = order[:n_val], order[n_val:]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant (always blank) pixels stay 0 after centring
    x = (x - mean) / std
    as_x = lambda idx: torch.as_tensor(x[idx], dtype=torch.float32)  # noqa: E731
    as_y = lambda idx: torch.as_tensor(y[idx], dtype=torch.long)  # noqa: E731
    return as_x(tr), as_y(tr), as_x(val), as_y(val)


def train_digits_runs(
    out: str | os.PathLike,
    *,
    n_runs: int = 16,
    epochs: int = 10,
    log_every: int = 4,
    learning_rates: Sequence[float] = LEARNING_RATES,
    random_state: int = 0,
    threads: int | None = 1,
    progress: bool = False,
) -> list[Path]:
    """Train ``n_runs`` MLPs on digits and log one CSV per run into ``out``.

    Run ``r`` is seeded with ``random_state + r`` (initialisation and batch
    order) and uses SGD without momentum at ``learning_rates[r % len]``, batch
    64, cross-entropy. Every ``log_every`` steps (and at step 0) a row holds
    the weight metrics, ``train_loss`` (mean batch loss since the previous
    row; at step 0 the loss of the initial model on the training set),
    ``val_loss`` and ``val_accuracy`` (on a fixed 30 % validation split).
    The global torch RNG is left untouched. ``threads``: torch CPU threads
    while training (restored afterwards; ``None`` keeps the current
    setting). One thread is fastest for these tiny matrices: on a loaded
    2-core machine, torch's default of 2 threads made every step many
    times slower.
    """
    directory = Path(out)
    n_runs = check_int(n_runs, name="n_runs", minimum=1)
    epochs = check_int(epochs, name="epochs", minimum=1)
    log_every = check_int(log_every, name="log_every", minimum=1)
    x_tr, y_tr, x_va, y_va = _digits(random_state)
    paths = []
    steps_per_epoch = -(-len(x_tr) // BATCH_SIZE)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int(threads, name="threads", minimum=1))
    try:
        with progress_bar("training runs", n_runs, enabled=progress) as advance, torch.random.fork_rng():
            for r in range(n_runs):
                lr = float(learning_rates[r % len(learning_rates)])
                paths.append(_train_one(directory, r, lr, random_state + r, epochs, log_every, steps_per_epoch,
                                        (x_tr, y_tr, x_va, y_va)))
                advance(info=f"lr {lr:g}")
    finally:
        torch.set_num_threads(previous_threads)
    return paths


def _train_one(directory: Path, r: int, lr: float, seed: int, epochs: int, log_every: int, steps_per_epoch: int,
               data: tuple[torch.Tensor, ...]) -> Path:
    """One run: plain SGD (``p -= lr * grad``), a row every ``log_every`` steps (inside fork_rng)."""
    x_tr, y_tr, x_va, y_va = data
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(seed)
    model = MLP(64, HIDDEN, 10)
    gen = torch.Generator().manual_seed(seed)
    path = directory / f"run_{r:02d}.csv"
    logger = MetricsLogger(path, run_id=f"run_{r:02d}_lr{lr:g}", flush_every=10**9)

    def log(step: int, train_loss: float) -> None:
        with torch.no_grad():
            out = model(x_va)
            val_loss = float(loss_fn(out, y_va))
            acc = float((out.argmax(dim=1) == y_va).float().mean())
        logger.log(model, step=step, epoch=step / steps_per_epoch, train_loss=train_loss,
                   val_loss=val_loss, val_accuracy=acc)

    with torch.no_grad():
        log(0, float(loss_fn(model(x_tr), y_tr)))
    step, running = 0, []
    params = list(model.parameters())
    for _ in range(epochs):
        for batch in torch.randperm(len(x_tr), generator=gen).split(BATCH_SIZE):
            loss = loss_fn(model(x_tr[batch]), y_tr[batch])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.add_(g, alpha=-lr)
            running.append(loss.item())
            step += 1
            if step % log_every == 0:
                log(step, float(np.mean(running)))
                running = []
    logger.close()
    return path


def run_dynamics_example(
    out: str | os.PathLike,
    *,
    quick: bool = False,
    n_runs: int | None = None,
    epochs: int | None = None,
    log_every: int | None = None,
    states: Sequence[int] | None = None,
    n_restarts: int | None = None,
    n_iter: int = 32,
    random_state: int = 0,
    force: bool = False,
    progress: bool = False,
) -> DynamicsExampleResult:
    """Train the digits runs, fit the HMMs, write the dynamics report to ``out``.

    ``quick`` picks the :data:`QUICK` configuration (24 runs, 10 epochs,
    a row every 2 steps, K = 1..6, 3 restarts) instead of :data:`FULL`
    (32 runs, 20 epochs, K = 1..8, 5 restarts); the other arguments
    override single entries. A quarter of the runs is held out to score the
    HMMs; the full covariance over the 14 metrics needs that many runs (with
    16 runs of 41 rows the held-out likelihood already falls after K = 1).
    The output directory holds the report (``featurelens.report.save``:
    ``index.html``, figures, ``results.json``, ``models/`` (the best model per
    K), ``states.csv``) and ``runs/`` (the logged CSVs, trained in a temporary
    directory first); it is written all or nothing.
    """
    check_output_dir(out, force=force)
    config = dict(QUICK if quick else FULL)
    for key, value in (("n_runs", n_runs), ("epochs", epochs), ("log_every", log_every),
                       ("states", states), ("n_restarts", n_restarts)):
        if value is not None:
            config[key] = value
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="featurelens-dynamics-") as logs:
        start = time.perf_counter()
        paths = train_digits_runs(logs, n_runs=config["n_runs"], epochs=config["epochs"],
                                  log_every=config["log_every"], random_state=random_state, progress=progress)
        seconds["training and logging"] = time.perf_counter() - start
        runs = load_runs(logs, metrics=list(METRIC_NAMES), sort_by="step")
        analysis = analyse_runs(
            runs, states=config["states"], n_restarts=config["n_restarts"], n_iter=n_iter,
            covariance_type="full", test_fraction=TEST_FRACTION, random_state=random_state, progress=progress,
            convergence={"column": "val_accuracy", "threshold": THRESHOLD, "direction": "above"},
        )
        seconds["HMM selection and analysis"] = time.perf_counter() - start - seconds["training and logging"]
        summary = {
            "data": "sklearn.datasets.load_digits: 1797 images of 8x8 pixels, 10 classes; 70/30 train/validation",
            "runs": f"{len(runs)} MLPs 64 → {' → '.join(map(str, HIDDEN))} → 10 (ReLU), seeds {random_state}.."
                    f"{random_state + config['n_runs'] - 1}",
            "training": (f"SGD without momentum, learning rates {', '.join(map(str, LEARNING_RATES))} cycled over "
                         f"runs, batch {BATCH_SIZE}, {config['epochs']} epochs, cross-entropy"),
            "logging": f"every {config['log_every']} optimizer steps and at step 0",
            "HMM": (f"K = {min(config['states'])}..{max(config['states'])}, {config['n_restarts']} restarts, "
                    f"{n_iter} EM iterations, full covariance, 14 metrics, {TEST_FRACTION:.0%} of runs held out"),
            "convergence": f"first checkpoint with validation accuracy > {THRESHOLD}",
        }
        summary.update({f"time: {k} (s)": round(v, 2) for k, v in seconds.items()})
        save(analysis, out, force=force, title="featurelens example: training dynamics of MLPs on digits",
             summary=summary, files={f"runs/{p.name}": p for p in paths})
        seconds["report"] = time.perf_counter() - start - sum(seconds.values())
    results = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
    return DynamicsExampleResult(Path(out), results, seconds)
