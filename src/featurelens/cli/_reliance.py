"""CLI commands: `featurelens reliance` and the finance/healthcare examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from featurelens._io import check_output_dir
from featurelens._metrics import logit_accuracy

_PERTURBATIONS = ("gaussian", "dropout", "fgsm", "pgd")


def register(app: typer.Typer, example_app: typer.Typer) -> None:
    """Add this module's commands to ``app`` and its examples to ``example_app``."""
    app.command("reliance")(reliance_command)
    example_app.command("finance")(finance_example)
    example_app.command("healthcare")(healthcare_example)


def _read_frame(path: Path):
    """The whole table (any dtypes; environment labels may be strings)."""
    from featurelens.data._tables import _read_frame as read
    from featurelens.data._tables import _suffix_kind

    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    frame = read(path, _suffix_kind(path))
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _column(frame: Any, column: str, path: Path) -> np.ndarray:
    if column not in frame.columns:
        raise ValueError(f"column {column!r} not found in {str(path)!r}; available columns: "
                         f"{', '.join(map(repr, frame.columns))}")
    values = frame[column]
    if values.isna().any():
        raise ValueError(f"column {column!r} of {str(path)!r} has missing values")
    return values.to_numpy()


def _sequences(X: Any, y: Any, env: np.ndarray | None, ids: np.ndarray | None,
               lookback: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows -> model inputs: a table, windows of one series, or one sequence per id."""
    from featurelens.data import sliding_windows

    x = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if ids is None:
        if lookback is None:
            return x, y, env
        w = sliding_windows(x, y, lookback=lookback, horizon=0)
        return w.X, np.asarray(w.y), None if env is None else env[w.end_index]
    order: dict[Any, list[int]] = {}
    for i, key in enumerate(ids.tolist()):
        order.setdefault(key, []).append(i)
    lengths = {len(v) for v in order.values()}
    if lookback is None:
        if len(lengths) != 1:
            raise ValueError(f"--sequence-id: sequences have {min(lengths)} to {max(lengths)} rows; pass "
                             "--lookback N to use the last N rows of each")
        lookback = lengths.pop()
    elif min(lengths) < lookback:
        raise ValueError(f"--lookback {lookback}: the shortest sequence has {min(lengths)} rows")
    rows = np.array([v[-lookback:] for v in order.values()])  # (n_seq, lookback), file order
    last = rows[:, -1]
    return x[rows], y[last], None if env is None else env[last]


def _render(report: Any, out: Path, seconds: float, extra: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    from featurelens.reliance import verdict_of

    console = Console()
    table = RichTable(title="reliance per feature group")
    for col in ("group", "reliance (permutation)", "probe alone", "relation spread", "verdict"):
        table.add_column(col, justify="left" if col in ("group", "verdict") else "right")
    for _, row in report.table.iterrows():
        table.add_row(str(row["group"]), f"{row['reliance_permutation']:.4f} ± {row['reliance_permutation_se']:.4f}",
                      f"{row['probe_score']:.3f}", f"{row['relation_spread']:.3f}", verdict_of(row))
    console.print(table)
    for line in extra:
        console.print(line)
    console.print(f"report written to {out / 'index.html'} in {seconds:.1f} s")


def reliance_command(
    model: Path = typer.Option(..., "--model", help="TorchScript, torch.export (.pt2) or state_dict/checkpoint file."),
    data: Path = typer.Option(..., "--data", help="CSV or Parquet table with the features and the label column."),
    groups: Path = typer.Option(..., "--groups", help="YAML/JSON mapping of group name to feature names."),
    out: Path = typer.Option(..., "--out", help="Output directory for the report."),
    label: str = typer.Option("label", "--label", help="Name of the 0/1 label column (not a feature)."),
    environments: str = typer.Option(None, "--environments",
                                     help="Column naming each row's environment (not a feature); default: "
                                          "time windows for sequences, bootstrap resamples for tables."),
    shifted: Path = typer.Option(None, "--shifted",
                                 help="Table where the suspect link is broken: the model's metric there, "
                                      "and the judge of --mitigate."),
    suspect: str = typer.Option(None, "--suspect", help="Group to mitigate (default: the top flagged group)."),
    mitigate: list[str] = typer.Option([], "--mitigate",
                                       help="Mitigation strategy to train and judge on --shifted (randomize, group_dropout, "
                                            "adversarial, group_dro, jtt, dfr, orthogonal, pcgrad); repeatable."),
    perturbation: list[str] = typer.Option(list(_PERTURBATIONS), "--perturbation",
                                           help="Robustness perturbation(s): gaussian, dropout, fgsm, pgd."),
    immutable: list[str] = typer.Option([], "--immutable", help="Feature or group left unchanged by perturbations; repeatable."),
    lookback: int = typer.Option(None, "--lookback", min=1,
                                 help="Cut the time-ordered rows into windows of N rows (label: the last row's)."),
    sequence_id: str = typer.Option(None, "--sequence-id",
                                    help="Column whose equal values form one sequence (label: its last row's)."),
    factory: str = typer.Option(None, "--factory", help="'module:function' building the model for a state_dict."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Allow arbitrary unpickling (trusted files only)."),
    epochs: int = typer.Option(20, "--epochs", min=1, help="Training epochs of each mitigation."),
    init: str = typer.Option("reset", "--init",
                             help="Mitigated models start from fresh weights ('reset') or the loaded ones ('copy'; "
                                  "needed for torch.export/TorchScript files)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Judge a saved model's reliance on feature groups: detection, robustness, interactions, mitigation."""
    import sys
    import time

    import torch

    from featurelens.data import FeatureSpec, load_table, read_groups
    from featurelens.models import load_model
    from featurelens.reliance import RelianceAudit, detect_spurious, interaction_matrix, robustness
    from featurelens.report import save

    start = time.perf_counter()
    check_output_dir(out, force=force)
    bad = [p for p in perturbation if p not in _PERTURBATIONS]
    if bad:
        raise ValueError(f"--perturbation {bad[0]!r} is not available; choose from {', '.join(_PERTURBATIONS)}")
    if mitigate and shifted is None:
        raise ValueError("--mitigate needs --shifted: mitigations are judged where the suspect link is broken")
    if factory is not None:
        sys.path.insert(0, str(Path.cwd()))
    spec_groups = read_groups(groups)
    skip = [c for c in (environments, sequence_id) if c is not None]
    if label in skip:
        raise ValueError(f"--label {label!r} cannot also be the --environments or --sequence-id column")
    frame = _read_frame(data)
    env = None if environments is None else _column(frame, environments, data)
    ids = None if sequence_id is None else _column(frame, sequence_id, data)
    features = [c for c in frame.columns if c not in skip and c != label]
    table = load_table(data, label=label, features=features)
    spec = FeatureSpec(features, spec_groups)
    X, y, env = _sequences(table.X, table.y, env, ids, lookback)
    net = load_model(model, factory=factory, trust=trust_checkpoint)
    try:
        with torch.no_grad():
            net(torch.from_numpy(X[:2]))
    except Exception as exc:  # the model's own error: say what it was given
        raise ValueError(f"the model rejects inputs of shape {list(X[:2].shape)} built from {str(data)!r} "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); sequence "
                         "models need --lookback or --sequence-id") from None

    named = spec.groups_as_names()
    fixed = [f for item in immutable for f in (named.get(item) or [item])]  # group names -> their features
    report = detect_spurious(net, X, y, groups=spec, environments=env, random_state=seed)
    curves = robustness(net, X, y, perturbations=tuple(perturbation), metric="accuracy", groups=spec,
                        feature_names=list(spec.names),
                        immutable=fixed or None, random_state=seed)
    interactions = {"ablation": interaction_matrix(net, X, groups=None, feature_names=list(spec.names),
                                                   baselines="mean", background=X)}
    extra, mitigation, shifted_acc = [], None, None
    if shifted is not None:
        sh_table = load_table(shifted, label=label, features=features)
        sh_ids = None if sequence_id is None else _column(_read_frame(shifted), sequence_id, shifted)
        X_sh, y_sh, _ = _sequences(sh_table.X, sh_table.y, None, sh_ids, lookback)
        if mitigate:
            flagged = report.flagged
            target = suspect or (flagged[0] if flagged else None)
            if target is None:
                raise ValueError("no group was flagged spurious; name the group to mitigate with --suspect")
            if target not in spec.group_names:
                raise ValueError(f"--suspect {target!r} is not a group of {str(groups)!r}")
            from featurelens.reliance import evaluate_mitigations

            n_train = round(0.7 * len(y))
            perm = np.random.default_rng(seed).permutation(len(y)) if lookback is None else np.arange(len(y))
            tr, te = perm[:n_train], perm[n_train:]
            mitigation = evaluate_mitigations(net, list(mitigate), train=(X[tr], y[tr]), test=(X[te], y[te]),
                                              shifted=(X_sh, y_sh), groups=spec, suspect=target,
                                              epochs=epochs, init=init, random_state=seed)
        else:
            shifted_acc = logit_accuracy(net, X_sh, y_sh)
            extra.append(f"accuracy on the shifted data {str(shifted)!r}: {shifted_acc:.3f}")
    summary = {"model file": str(model), "data file": str(data), "inputs": f"{X.shape[0]} x {list(X.shape[1:])}",
               "label column": label, "groups": ", ".join(spec.group_names),
               "environments": environments or "default",
               **({"shifted data": str(shifted), "accuracy on the shifted data": shifted_acc}
                  if shifted_acc is not None else {})}
    save(RelianceAudit(report, robustness=curves, interactions=interactions, mitigation=mitigation,
                       title=f"featurelens: reliance of {model.name}", summary=summary,
                       robustness_metric="accuracy"), out, force=force)
    if not quiet:
        _render(report, out, time.perf_counter() - start, extra)


def finance_example(
    out: Path = typer.Option(Path("featurelens-finance"), "--out", help="Output directory."),
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster run."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Technical vs calendar features of a next-day-up classifier: train, detect, mitigate, report."""
    from featurelens.examples.finance import run_finance_example

    result = run_finance_example(out, quick=quick, random_state=seed, force=force, progress=not quiet)
    if not quiet:
        _render(result.detection, Path(out) / "report", result.seconds, [])


def healthcare_example(
    out: Path = typer.Option(Path("featurelens-healthcare"), "--out", help="Output directory."),
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster run."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Clinical vs administrative features of an outcome model: train, detect, mitigate, report."""
    from featurelens.examples.healthcare import run_healthcare_example

    result = run_healthcare_example(out, quick=quick, random_state=seed, force=force, progress=not quiet)
    if not quiet:
        _render(result.detection, Path(out) / "report", result.seconds, [])
