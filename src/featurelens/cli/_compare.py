"""CLI commands: `featurelens compare` and the tickets example."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from featurelens._io import check_output_dir
from featurelens.attribution import METHODS, method_options, route_options
from featurelens.cli._commands import _parse_baselines, check_baselines
from featurelens.compare import DEFAULT_METHODS, compare
from featurelens.data import load_table
from featurelens.examples.tickets import run_tickets_study
from featurelens.models import load_model
from featurelens.report import check_formats, comparison_text, save


def register(app: typer.Typer, example_app: typer.Typer) -> None:
    """Add this module's commands to ``app`` and its examples to ``example_app``."""
    app.command("compare")(compare_command)
    example_app.command("tickets")(tickets_example)


def _parse_models(items: list[str]) -> dict[str, Path]:
    models: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise ValueError(f"--model must look like NAME=PATH (e.g. dense=dense.pt), got {item!r}")
        if name in models:
            raise ValueError(f"--model: the name {name!r} is given twice")
        models[name] = Path(path)
    if len(models) < 2:
        raise ValueError(f"--model must be given at least twice (NAME=PATH per model), got {len(models)}")
    return models


def _split_commas(items: list[str]) -> list[str]:
    return [p.strip() for item in items for p in item.split(",") if p.strip()]


def compare_command(
    model: list[str] = typer.Option(..., "--model", help="NAME=PATH of a checkpoint; repeat for each model (>= 2)."),
    data: Path = typer.Option(..., "--data", help="CSV or Parquet table with the feature columns."),
    out: Path = typer.Option(..., "--out", help="Output directory (figures, results.json, tables, index.html)."),
    label: str = typer.Option(None, "--label", help="Label column (not a feature); permutation then scores a metric."),
    factory: str = typer.Option(None, "--factory", help="'module:function' building the model for state dicts."),
    method: list[str] = typer.Option(list(DEFAULT_METHODS), "--method",
                                     help="Attribution method(s); repeat or comma-separate."),
    reference: str = typer.Option(None, "--reference",
                                  help="Model the differences are taken against (default: first)."),
    fmt: list[str] = typer.Option(["png"], "--format",
                                  help="Figure formats: png, pdf, svg (comma-separated or repeated)."),
    baselines: str = typer.Option("mean", "--baselines",
                                  help="Baseline of methods that take one: zeros, mean, median or a number."),
    metric: str = typer.Option(None, "--metric",
                               help="Permutation metric with --label: mse, mae, log_loss, accuracy, auc."),
    n_repeats: int = typer.Option(5, "--n-repeats", help="Permutation repeats (1 to 10 000)."),
    target: int = typer.Option(None, "--target", help="Output unit to explain for multi-output models."),
    output: int = typer.Option(None, "--output", help="Element of a tuple-returning model's output."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow arbitrary unpickling (trusted files only)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (the same for every model)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Compare checkpoints (dense, lottery ticket, robust ticket, ...): importance, shifts, sparsity, weights."""
    check_output_dir(out, force=force)
    paths = _parse_models(model)
    methods = list(dict.fromkeys(_split_commas(method)))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"--method {bad[0]!r} is not available; choose from {', '.join(METHODS)}")
    formats = check_formats(_split_commas(fmt))
    if reference is not None and reference not in paths:
        raise ValueError(f"--reference {reference!r} is not one of the --model names ({', '.join(paths)})")
    if metric is not None and (label is None or "permutation" not in methods):
        raise ValueError("--metric needs --label and --method permutation")
    if factory is not None:
        sys.path.insert(0, str(Path.cwd()))
    base = _parse_baselines(baselines)
    for m in methods:
        method_options(m, given={"n_repeats": n_repeats})  # refuses an absurd --n-repeats before any loading
    table = load_table(data, label=label)
    if any("baselines" in method_options(m) for m in methods):
        check_baselines(base, n_features=table.n_features)
    # compare() passes the labels itself; mean/median baselines are the table's own statistics
    options = route_options(methods, baselines=base, background=table.X, metric=metric, n_repeats=n_repeats)
    nets = {name: load_model(path, factory=factory, trust=trust_checkpoint) for name, path in paths.items()}
    result = compare(nets, table.X, methods=methods, reference=reference, feature_names=table.feature_names,
                     y=table.y, target=target, output=output, method_options=options, random_state=seed,
                     progress=not quiet)
    summary = {"models": {n: str(p) for n, p in paths.items()}, "data file": str(data), "rows": len(table.X),
               "features": len(table.feature_names), "label column": label or "none (permutation: output change)",
               "baselines": baselines, "seed": seed}
    save(result, out, formats=formats, force=force, summary=summary)
    if not quiet:
        typer.echo(comparison_text(result))
        typer.echo(f"report written to {out / 'index.html'}")


def tickets_example(
    out: Path = typer.Option(Path("featurelens-tickets"), "--out", help="Output directory for the report."),
    quick: bool = typer.Option(False, "--quick",
                               help="Small sizes: about 45 s of CPU time (docs/hedging.md has measured timings)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    fmt: str = typer.Option("png", "--format", help="Figure formats, comma-separated: png, pdf, svg (PNG always)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Run the deep-hedging lottery-ticket study: dense hedger vs 80 %-sparse ticket vs robust ticket.

    Train, attack and compare the three hedgers; write the study's report.
    """
    result = run_tickets_study(out, quick=quick, random_state=seed, formats=_split_commas([fmt]), force=force,
                               progress=not quiet)
    if quiet:
        return
    echo = typer.echo
    echo("hedging risk on fresh paths (ES_0.1 and entropic risk of -P&L; P&L mean and std)")
    echo(result.risk.to_string(float_format=lambda v: f"{v:.5f}"))
    echo("expected shortfall under attack (epsilon in feature-std units)")
    echo(result.attacked.to_string(float_format=lambda v: f"{v:.5f}"))
    echo(result.sparsity.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    echo(comparison_text(result.comparison))
    same = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result.reload.items())
    echo(f"checkpoints reloaded bit-identically: {same}")
    echo(f"report written to {Path(out) / 'index.html'} in {result.seconds:.1f} s")
