"""The CLI's commands: parse options, call the library, render the outcome."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import typer
import yaml
from rich.table import Table as RichTable

from featurelens._io import check_output_dir
from featurelens._metrics import METRICS
from featurelens._validation import check_option
from featurelens.attribution import (
    METHODS,
    AttributionReport,
    attribute,
    method_options,
    resolve_baselines,
    route_options,
)
from featurelens.cli._console import make_console
from featurelens.data import FeatureSpec, load_table, read_groups
from featurelens.examples import run_spurious_demo
from featurelens.models import load_model
from featurelens.report import save

_METHODS = ("ablation", "permutation")
#: background rows used by averaging methods (--baselines background) unless --option max_background=N
_MAX_BACKGROUND = 100
#: most rows `featurelens demo --n-samples` generates (default 40 000): the data, its splits and
#: the training run grow with it, and larger requests are refused before anything is allocated
MAX_DEMO_SAMPLES = 1_000_000
#: most rows per model call `--batch-size` accepts (the CUDA default is 65 536)
MAX_BATCH_SIZE = 1 << 20


def _render(explanations: dict, out: Path, *, quiet: bool, seconds: float | None = None) -> None:
    if quiet:
        return
    console = make_console()
    shares = {}
    for m, e in explanations.items():
        share = e.importance(normalize=True)
        shares[m] = share.mean(axis=1) if share.ndim == 2 else share  # several outputs: their mean
    first = next(iter(explanations.values()))
    several = first.has_outputs_axis
    title = "importance (share of total per method" + (", mean over outputs)" if several else ")")
    table = RichTable(title=title)
    order = shares[next(iter(shares))].sort_values(ascending=False).index
    table.add_column(first.level)
    for m in explanations:
        table.add_column(m, justify="right")
    for name in order:
        table.add_row(str(name), *[f"{shares[m][name]:.3f}" for m in explanations])
    console.print(table)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    console.print(f"report written to {out / 'index.html'}{took}")


def _parse_target(target: str | None) -> int | tuple[int, ...] | str | None:
    if target is None or target == "all":
        return target
    try:
        parts = tuple(int(p) for p in target.split(","))
    except ValueError:
        raise ValueError(f"--target must be an int, comma-separated ints or 'all', got {target!r}") from None
    return parts[0] if len(parts) == 1 else parts


def _parse_baselines(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


def _check_batch_size(batch_size: int | None) -> None:
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE:,} rows per model call, got {batch_size}")


def check_baselines(base: str | float, *, n_features: int) -> None:
    """Refuse an unknown ``--baselines`` name before any method runs (every method would, later)."""
    if base != "background":
        zeros = torch.zeros((2, n_features), dtype=torch.float64)
        resolve_baselines(base, zeros, background=zeros if base in ("mean", "median") else None)


def _parse_options(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings to a dict; values are read as YAML scalars (numbers, bools, strings)."""
    parsed: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must look like KEY=VALUE, got {item!r}")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"--option {item!r}: the value is not a number, bool or string") from None
    return parsed


def demo_command(
    out: Path = typer.Option(Path("featurelens-report"), "--out", help="Output directory for the report."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    n_samples: int = typer.Option(40000, "--n-samples",
                                  help=f"Rows of the generated data set (100 to {MAX_DEMO_SAMPLES:,})."),
    bias_strength: float = typer.Option(0.8, "--bias-strength", help="Strength of the planted spurious link (0..1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Train a small transformer on data with a planted spurious group, attribute it, write a report."""
    check_output_dir(out, force=force)
    if n_samples > MAX_DEMO_SAMPLES:
        raise ValueError(f"--n-samples {n_samples} exceeds the maximum of {MAX_DEMO_SAMPLES:,} rows")
    result = run_spurious_demo(out, n_samples=n_samples, bias_strength=bias_strength, random_state=seed,
                               force=force, progress=not quiet)
    _render(result.explanations, Path(out), quiet=quiet, seconds=result.seconds)
    if not quiet:
        summary = result.results["summary"]
        acc, shifted = summary["test accuracy"], summary["shifted test accuracy (spurious link broken)"]
        truth = result.results["ground_truth"]["spurious_group"]
        top = result.explanations["ablation"].importance().idxmax()
        typer.echo(f"test accuracy {acc:.3f}; on the shifted test set (spurious link broken) {shifted:.3f}")
        if acc < 0.6:
            typer.echo("verdict: the model barely learned (test accuracy near chance); its attributions say little")
        else:
            verdict = "relies most on" if top == truth else "does not rely most on"
            typer.echo(f"verdict: the model {verdict} the planted spurious group {truth!r} (ablation)")


def attribute_command(
    model: Path = typer.Option(..., "--model", help="TorchScript, torch.export (.pt2) or state_dict/checkpoint file."),
    data: Path = typer.Option(..., "--data", help="CSV or Parquet table with the features and the label column."),
    label: str = typer.Option(..., "--label", help="Name of the label column (not a feature)."),
    out: Path = typer.Option(..., "--out", help="Output directory for the report."),
    method: list[str] = typer.Option(list(_METHODS), "--method",
                                     help="Method(s) to run, repeat the option; "
                                          "any name of featurelens.attribution.METHODS."),
    target: str = typer.Option(None, "--target", help="Model output to explain: int, 'i,j' or 'all'."),
    groups: Path = typer.Option(None, "--groups", help="YAML/JSON mapping of group name to feature names."),
    factory: str = typer.Option(None, "--factory", help="'module:function' building the model for a state_dict."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow arbitrary unpickling (trusted files only)."),
    output: int = typer.Option(None, "--output", help="Element of a tuple-returning model's output."),
    link: str = typer.Option("identity", "--link", help="identity, sigmoid, softmax or logit."),
    baselines: str = typer.Option("mean", "--baselines",
                                  help="Baseline of methods that take one: "
                                       "zeros, mean, median, background or a number."),
    background: Path = typer.Option(None, "--background",
                                    help="Table for mean/median/background baselines (default: --data)."),
    metric: str = typer.Option(None, "--metric", help="Permutation metric: log_loss, accuracy, auc, mse, mae."),
    n_repeats: int = typer.Option(5, "--n-repeats", help="Permutation repeats (1 to 10 000)."),
    option: list[str] = typer.Option([], "--option",
                                     help="Method option KEY=VALUE "
                                          "(e.g. n_steps=100, rule=riemann_trapezoid); repeatable."),
    batch_size: int = typer.Option(None, "--batch-size", help=f"Rows per model call (1 to {MAX_BATCH_SIZE:,})."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Attribute a saved model's output on a table to its features or feature groups."""
    check_output_dir(out, force=force)
    methods = list(dict.fromkeys(method))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"--method {bad[0]!r} is not available; choose from {', '.join(METHODS)}")
    extra = _parse_options(option)
    # method_options checks the sizes given (n_repeats, n_steps, ...) against the methods' caps
    accepts = {m: set(method_options(m, given={"n_repeats": n_repeats, **extra})) for m in methods}
    for key in extra:
        if not any(key in a for a in accepts.values()):
            raise ValueError(f"--option {key}=... is not an option of {', '.join(methods)}")
    if metric is not None and not any("metric" in a for a in accepts.values()):
        raise ValueError("--metric applies to --method permutation, which is not selected")
    if metric is not None:
        check_option(metric, name="--metric", options=METRICS)
    _check_batch_size(batch_size)
    if background is not None and not any("background" in a for a in accepts.values()):
        raise ValueError("--background applies to methods with baselines (e.g. ablation), none is selected")
    base = _parse_baselines(baselines)
    if background is not None and base not in ("mean", "median", "background"):
        raise ValueError("--background is used only with --baselines mean, median or background")
    if factory is not None:
        sys.path.insert(0, str(Path.cwd()))
    table = load_table(data, label=label)
    spec = FeatureSpec(table.feature_names, read_groups(groups) if groups is not None else None)
    bg = table.X if background is None else load_table(background, features=table.feature_names).X
    if any("baselines" in a for a in accepts.values()):
        check_baselines(base, n_features=table.n_features)
    net = load_model(model, factory=factory, trust=trust_checkpoint)
    common = dict(groups=spec, target=_parse_target(target), output=output, link=link,
                  batch_size=batch_size, random_state=seed, progress=not quiet)
    routed = route_options(methods, options=extra, baselines=base, background=bg, max_background=_MAX_BACKGROUND,
                           y=table.y, metric=metric, n_repeats=n_repeats)
    explanations = {m: attribute(net, table.X, method=m, **routed[m], **common) for m in methods}
    one_vs_rest = {e.params.get("one_vs_rest_class") for e in explanations.values()} - {None}
    summary = {
        "model file": str(model),
        "data file": str(data),
        "rows": len(table.X),
        "features": len(table.feature_names),
        "label column": label,
        "groups": ", ".join(spec.group_names) if spec.has_groups else "none (one player per feature)",
        "output": f"target={target or 'default'}, link={link}",
        **({"permutation labels": f"one-vs-rest: {label} == {one_vs_rest.pop()}"} if one_vs_rest else {}),
    }
    save(AttributionReport(explanations, title=f"featurelens: attributions of {model.name}", summary=summary),
         out, force=force)
    _render(explanations, out, quiet=quiet)
