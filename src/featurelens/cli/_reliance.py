"""CLI commands: `featurelens reliance` and the finance/healthcare examples.

``reliance`` checks every option and file, reads the table into model inputs,
calls :func:`featurelens.reliance.audit` and renders what it returns.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import typer
from rich.table import Table as RichTable

from featurelens._io import check_output_dir
from featurelens.cli._console import make_console
from featurelens.data import FeatureSpec, as_tensor, load_table, read_frame, read_groups, sequence_windows
from featurelens.examples import run_finance_example, run_healthcare_example
from featurelens.models import load_model
from featurelens.reliance import (
    MITIGATION_STRATEGIES,
    PERTURBATIONS,
    RelianceAudit,
    audit,
    verdict_of,
)
from featurelens.report import save

#: audit()'s argument names -> the options that set them, to say library errors in CLI words
_OPTION_OF = {"strategies": "--mitigate", "suspect": "--suspect", "init": "--init", "perturbations": "--perturbation",
              "immutable": "--immutable", "environments": "--environments", "epochs": "--epochs",
              "shifted": "--shifted", "random_state": "--seed"}
_MITIGATE_HELP = (f"Mitigation strategy to train and judge on --shifted "
                  f"({', '.join(MITIGATION_STRATEGIES)}); repeatable.")
_PERTURBATION_HELP = f"Robustness perturbation(s): {', '.join(PERTURBATIONS)}; repeatable."
_ARGUMENT = re.compile(r"\b(" + "|".join(_OPTION_OF) + r")=(?:'([^']*)'|(\S*))")


def register(app: typer.Typer, example_app: typer.Typer) -> None:
    """Add this module's commands to ``app`` and its examples to ``example_app``."""
    app.command("reliance")(reliance_command)
    example_app.command("finance")(finance_example)
    example_app.command("healthcare")(healthcare_example)


def _cli_words(message: str) -> str:
    """``suspect=`` -> ``--suspect``, ``init='copy'`` -> ``--init copy`` in a library message."""
    def option(m: re.Match) -> str:
        value = m.group(2) if m.group(2) is not None else m.group(3)
        return f"{_OPTION_OF[m.group(1)]} {value}".rstrip()

    return _ARGUMENT.sub(option, message)


def _column(frame: pd.DataFrame, column: str, path: Path, option: str) -> np.ndarray:
    if column not in frame.columns:
        raise ValueError(f"{option} {column!r}: column not found in {str(path)!r}; available columns: "
                         f"{', '.join(map(repr, frame.columns))}")
    values = frame[column]
    if values.isna().any():
        raise ValueError(f"{option} {column!r}: column {column!r} of {str(path)!r} has missing values")
    return values.to_numpy()


def _binary_label(y: np.ndarray, label: str, path: Path, *, both: bool) -> np.ndarray:
    values = np.unique(y)
    shown = ", ".join(f"{v:g}" for v in values[:5]) + (", ..." if values.size > 5 else "")
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"--label {label!r}: column {label!r} of {str(path)!r} must hold binary 0/1 labels "
                         f"(reliance judges a binary classifier); it holds {shown}")
    if both and values.size < 2:
        raise ValueError(f"--label {label!r}: column {label!r} of {str(path)!r} holds only {shown}; the "
                         "detection needs both 0 and 1")
    return y


def _model_inputs(x: np.ndarray, y: np.ndarray, env: np.ndarray | None, ids: np.ndarray | None,
                  lookback: int | None, option: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows -> model inputs: the table itself, windows of one series, or one sequence per id."""
    if ids is None and lookback is None:
        return x, y, env
    try:
        w = sequence_windows(x, y, lookback=lookback, ids=ids)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None
    return w.X, np.asarray(w.y), None if env is None else env[w.end_index]


def _check_options(out: Path, *, force: bool, perturbation: list[str], mitigate: list[str], shifted: Path | None,
                   init: str, label: str, skip: list[str]) -> None:
    """Return the checks that need no file besides ``--out``."""
    check_output_dir(out, force=force)
    for p in perturbation:
        if p not in PERTURBATIONS:
            raise ValueError(f"--perturbation {p!r} is not available; choose from {', '.join(PERTURBATIONS)}")
    for m in mitigate:
        if m not in MITIGATION_STRATEGIES:
            raise ValueError(f"--mitigate {m!r} is not a mitigation strategy; choose from "
                             f"{', '.join(MITIGATION_STRATEGIES)}")
    twice = sorted({m for m in mitigate if mitigate.count(m) > 1})
    if twice:
        raise ValueError(f"--mitigate {twice[0]!r} is given more than once")
    if mitigate and shifted is None:
        raise ValueError("--mitigate needs --shifted: mitigations are judged where the suspect link is broken")
    if init not in ("reset", "copy"):
        raise ValueError(f"--init {init!r}: choose reset or copy")
    if label in skip:
        raise ValueError(f"--label {label!r} cannot also be the --environments or --sequence-id column")


def _read_inputs(data: Path, *, label: str, environments: str | None, sequence_id: str | None,
                 lookback: int | None, features: list[str] | None = None, both: bool = True) -> dict[str, Any]:
    """Model inputs, labels, environments and feature names of one table (``both``: both classes needed)."""
    frame = read_frame(data)
    env = None if environments is None else _column(frame, environments, data, "--environments")
    ids = None if sequence_id is None else _column(frame, sequence_id, data, "--sequence-id")
    skip = [c for c in (environments, sequence_id) if c is not None]
    if features is None:
        features = [c for c in frame.columns if c not in skip and c != label]
    table = load_table(data, label=label, features=features)
    y = _binary_label(np.asarray(table.y, dtype=np.float32), label, data, both=both)
    option = "--sequence-id" if sequence_id is not None else f"--lookback {lookback}"
    # float32 as the models take it; a value that overflows float32 is named by its column
    x32 = as_tensor(pd.DataFrame(table.X, columns=table.feature_names), name="the --data table",
                    dtype=torch.float32, ndims=(2,))[0].numpy()
    X, y, env = _model_inputs(x32, y, env, ids, lookback, option)
    return {"X": X, "y": y, "environments": env, "features": features}


def _check_model(net: torch.nn.Module, X: np.ndarray, data: Path) -> None:
    try:
        with torch.no_grad():
            net(torch.from_numpy(X[:2]))
    except Exception as exc:  # the model's own error: say what it was given
        raise ValueError(f"the model rejects inputs of shape {list(X[:2].shape)} built from {str(data)!r} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); sequence "
                         "models need --lookback or --sequence-id") from None


def _number(v: Any, digits: int = 3) -> str:
    v = float(v)
    return "—" if not math.isfinite(v) else f"{v:.{digits}f}"


def _detection_table(result: RelianceAudit) -> RichTable:
    table = RichTable(title="reliance per feature group")
    for col in ("group", "reliance (permutation)", "probe alone", "relation spread", "verdict"):
        table.add_column(col, justify="left" if col in ("group", "verdict") else "right")
    for _, row in result.detection.table.iterrows():
        table.add_row(str(row["group"]), f"{row['reliance_permutation']:.4f} ± {row['reliance_permutation_se']:.4f}",
                      f"{row['probe_score']:.3f}", f"{row['relation_spread']:.3f}", verdict_of(row))
    return table


def _mitigation_table(result: RelianceAudit) -> RichTable:
    mit = result.mitigation
    table = RichTable(title=f"mitigation of group {result.mitigated_group!r} ({mit.metric}; reliance: permutation "
                            "importance of the group on the held-out rows)")
    columns = ("strategy", "in-distribution", "shifted", "reliance", "shifted change", "reliance cut")
    for col in columns:
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for _, row in mit.table.iterrows():
        table.add_row(str(row["strategy"]), _number(row["in_distribution"]), _number(row["shifted"]),
                      f"{_number(row['reliance'], 4)} ± {_number(row['reliance_se'], 4)}",
                      _number(row["shifted_change"]), _number(row["reliance_reduction"]))
    return table


def _render(result: RelianceAudit, out: Path, seconds: float) -> None:
    console = make_console()
    console.print(_detection_table(result))
    for name, value in result.scores.items():
        console.print(f"{name}: {value:.3f}")
    if result.mitigation is not None:
        console.print(_mitigation_table(result))
    console.print(f"report written to {out / 'index.html'} in {seconds:.1f} s")


def reliance_command(
    model: Path = typer.Option(..., "--model", help="TorchScript, torch.export (.pt2) or state_dict/checkpoint file."),
    data: Path = typer.Option(..., "--data", help="CSV or Parquet table with the features and the label column."),
    groups: Path = typer.Option(..., "--groups", help="YAML/JSON mapping of group name to feature names."),
    out: Path = typer.Option(..., "--out", help="Output directory for the report."),
    label: str = typer.Option("label", "--label", help="Name of the binary 0/1 label column (not a feature)."),
    environments: str = typer.Option(None, "--environments",
                                     help="Column naming each row's environment (not a feature); default: "
                                          "time windows for sequences, bootstrap resamples for tables."),
    shifted: Path = typer.Option(None, "--shifted",
                                 help="Table where the suspect link is broken: the model's accuracy there, "
                                      "and the judge of --mitigate."),
    suspect: str = typer.Option(None, "--suspect", help="Group to mitigate (default: the top flagged group)."),
    mitigate: list[str] = typer.Option([], "--mitigate",
                                       help=_MITIGATE_HELP),
    perturbation: list[str] = typer.Option(list(PERTURBATIONS), "--perturbation",
                                           help=_PERTURBATION_HELP),
    immutable: list[str] = typer.Option([], "--immutable",
                                        help="Feature or group left unchanged by perturbations; repeatable."),
    lookback: int = typer.Option(None, "--lookback", min=1,
                                 help="Cut the time-ordered rows into windows of N rows (label: the last row's)."),
    sequence_id: str = typer.Option(None, "--sequence-id",
                                    help="Column whose equal values form one sequence (label: its last row's)."),
    factory: str = typer.Option(None, "--factory", help="'module:function' building the model for a state_dict."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow arbitrary unpickling (trusted files only)."),
    epochs: int = typer.Option(20, "--epochs", min=1, help="Training epochs of each mitigation."),
    init: str = typer.Option("reset", "--init",
                             help="Mitigated models start from fresh weights ('reset') or the loaded ones ('copy'; "
                                  "needed for torch.export/TorchScript files)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Judge a saved model's reliance on feature groups: detection, robustness, interactions, mitigation."""
    start = time.perf_counter()
    skip = [c for c in (environments, sequence_id) if c is not None]
    _check_options(out, force=force, perturbation=perturbation, mitigate=mitigate, shifted=shifted, init=init,
                   label=label, skip=skip)
    spec_groups = read_groups(groups)
    if suspect is not None and suspect not in spec_groups:
        raise ValueError(f"--suspect {suspect!r} is not a group of {str(groups)!r}; groups are "
                         f"{', '.join(map(repr, spec_groups))}")
    columns = {"label": label, "sequence_id": sequence_id, "lookback": lookback}
    inputs = _read_inputs(data, environments=environments, **columns)
    spec = FeatureSpec(inputs["features"], spec_groups)
    unknown = [i for i in immutable if i not in spec.names and i not in spec.group_names]
    if unknown:
        raise ValueError(f"--immutable {unknown[0]!r} is neither a feature nor a group of {str(groups)!r}")
    sh = None if shifted is None else _read_inputs(shifted, environments=None, features=inputs["features"], both=False,
                                                   **columns)
    if factory is not None:
        sys.path.insert(0, str(Path.cwd()))
    net = load_model(model, factory=factory, trust=trust_checkpoint)
    _check_model(net, inputs["X"], data)
    X = inputs["X"]
    summary = {"model file": str(model), "data file": str(data), "inputs": f"{X.shape[0]} x {list(X.shape[1:])}",
               "label column": label, "groups": ", ".join(spec.group_names),
               "environments": environments or "default", **({"shifted data": str(shifted)} if sh else {})}
    try:
        result = audit(net, X, inputs["y"], groups=spec, environments=inputs["environments"],
                       shifted=None if sh is None else (sh["X"], sh["y"]), strategies=mitigate, suspect=suspect,
                       perturbations=perturbation, immutable=immutable, shuffle=lookback is None, epochs=epochs,
                       init=init, title=f"featurelens: reliance of {model.name}", summary=summary,
                       random_state=seed)
    except (ValueError, TypeError) as exc:
        raise type(exc)(_cli_words(str(exc))) from None
    save(result, out, force=force)
    if not quiet:
        _render(result, out, time.perf_counter() - start)


def finance_example(
    out: Path = typer.Option(Path("featurelens-finance"), "--out", help="Output directory."),
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster run."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Technical vs calendar features of a next-day-up classifier: train, detect, mitigate, report."""
    result = run_finance_example(out, quick=quick, random_state=seed, force=force, progress=not quiet)
    if not quiet:
        _render(result.audit, Path(out) / "report", result.seconds)


def healthcare_example(
    out: Path = typer.Option(Path("featurelens-healthcare"), "--out", help="Output directory."),
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster run."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Clinical vs administrative features of an outcome model: train, detect, mitigate, report."""
    result = run_healthcare_example(out, quick=quick, random_state=seed, force=force, progress=not quiet)
    if not quiet:
        _render(result.audit, Path(out) / "report", result.seconds)
