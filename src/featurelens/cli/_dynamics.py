"""CLI commands: `featurelens dynamics fit|explain` and `featurelens example dynamics`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table as RichTable

from featurelens._io import check_output_dir
from featurelens._validation import check_option
from featurelens.cli._console import make_console
from featurelens.dynamics import (
    COVARIANCE_TYPES,
    METRIC_NAMES,
    GaussianHMM,
    analyse_runs,
    explain_transition,
    load_runs,
    read_saved_runs,
)
from featurelens.examples.dynamics import run_dynamics_example
from featurelens.report import save

#: most hidden states, seeded EM restarts per K and EM iterations per restart `dynamics fit` tries
#: (Hu et al. select K below 20; the defaults are 8 states, 5 restarts, 32 iterations): the fits
#: grow with each, and larger requests are refused before any run is read
MAX_STATES = 64
MAX_RESTARTS = 1_000
MAX_ITERATIONS = 100_000


def _parse_metrics(text: str) -> list[str]:
    """``a,b,c`` to a list; ``base`` stands for the 14 metrics of Hu et al."""
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"--metrics must be comma-separated column names, got {text!r}")
        names.extend(METRIC_NAMES if part == "base" else [part])
    return names


def fit_command(
    runs: list[str] = typer.Argument(..., help="Run files (CSV/Parquet), directories or glob patterns."),
    metrics: str = typer.Option(..., "--metrics",
                                help="Comma-separated metric columns ('base' = the 14 weight metrics)."),
    out: Path = typer.Option(..., "--out", help="Output directory (models, selection table, figures, report)."),
    max_states: int = typer.Option(8, "--max-states", help=f"Largest number of states K tried (at most {MAX_STATES})."),
    min_states: int = typer.Option(1, "--min-states", help="Smallest number of states K tried."),
    restarts: int = typer.Option(5, "--restarts", help=f"Seeded EM restarts per K (at most {MAX_RESTARTS:,})."),
    iterations: int = typer.Option(32, "--iterations", help=f"EM iterations per restart (at most {MAX_ITERATIONS:,})."),
    covariance: str = typer.Option("full", "--covariance", help="full or diag."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of runs held out for scoring."),
    states: int = typer.Option(None, "--states", help="Report this K instead of the recommended one."),
    first_n: int = typer.Option(None, "--first-n", help="Keep the first N rows of each run."),
    sort_by: str = typer.Option("step", "--sort-by", help="step or epoch."),
    converge_column: str = typer.Option(None, "--converge-column",
                                        help="Column defining convergence (e.g. val_accuracy)."),
    converge_threshold: float = typer.Option(None, "--converge-threshold", help="Convergence threshold."),
    converge_direction: str = typer.Option("above", "--converge-direction", help="above or below the threshold."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of every restart."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Fit Gaussian HMMs over K = min..max states to logged runs and write models, table, figures and report."""
    check_output_dir(out, force=force)
    names = _parse_metrics(metrics)
    check_option(covariance, name="--covariance", options=COVARIANCE_TYPES)
    if min_states < 1 or max_states < min_states:
        raise ValueError(f"--min-states/--max-states must satisfy 1 <= min <= max, got {min_states}, {max_states}")
    for opt, value, cap in (("--max-states", max_states, MAX_STATES), ("--restarts", restarts, MAX_RESTARTS),
                            ("--iterations", iterations, MAX_ITERATIONS)):
        if value > cap:
            raise ValueError(f"{opt} {value} exceeds the maximum of {cap:,}")
    if states is not None and not min_states <= states <= max_states:
        raise ValueError(f"--states {states} is outside --min-states..--max-states ({min_states}..{max_states})")
    if (converge_column is None) != (converge_threshold is None):
        raise ValueError("--converge-column and --converge-threshold go together")
    check_option(converge_direction, name="--converge-direction", options=("above", "below"))
    loaded = load_runs(runs, metrics=names, first_n=first_n, sort_by=sort_by)
    convergence = None if converge_column is None else {
        "column": converge_column, "threshold": converge_threshold, "direction": converge_direction}
    analysis = analyse_runs(loaded, states=range(min_states, max_states + 1), n_restarts=restarts, n_iter=iterations,
                            covariance_type=covariance, test_fraction=test_fraction, n_states=states,
                            convergence=convergence, random_state=seed, progress=not quiet)
    summary = {"run files": ", ".join(runs), "metrics": ", ".join(names),
               "HMM": f"K = {min_states}..{max_states}, {restarts} restarts, {iterations} EM iterations, "
                      f"{covariance} covariance, test fraction {test_fraction}, seed {seed}"}
    save(analysis, out, force=force, title="featurelens: training dynamics", summary=summary)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    if not quiet:
        console = make_console()
        console.print(f"{len(loaded)} runs ({len(loaded.dropped)} dropped), {len(names)} metrics; "
                      f"recommended K = {results['selection']['recommended']}, reported K = {analysis.n_states}")
        console.print(results["selection"]["rule"])
        console.print(f"report written to {out / 'index.html'}; model {out / results['model']['file']}")


def _resolve_model(model: Path) -> tuple[Path, Path | None]:
    """Return the model file, and the fit directory it belongs to (for runs.npz), if any."""
    if model.is_dir():
        results = model / "results.json"
        if not results.is_file():
            raise ValueError(f"MODEL directory {str(model)!r} has no results.json; pass a model file or a "
                             "directory written by 'featurelens dynamics fit'")
        return model / json.loads(results.read_text())["model"]["file"], model
    if not model.is_file():
        raise ValueError(f"MODEL {str(model)!r} does not exist")
    for parent in (model.parent, model.parent.parent):
        if (parent / "runs.npz").is_file():
            return model, parent
    return model, None


def explain_command(
    model: Path = typer.Argument(..., help="A saved model file or a 'dynamics fit' output directory."),
    transition: tuple[int, int] = typer.Option(..., "--transition", help="Source and destination states, e.g. 4 1."),
    runs: list[str] = typer.Option(None, "--runs",
                                   help="Run files to use instead of the fit directory's runs.npz; repeatable."),
    first_n: int = typer.Option(None, "--first-n", help="With --runs: keep the first N rows of each run."),
    sort_by: str = typer.Option("step", "--sort-by", help="With --runs: step or epoch."),
    step: str = typer.Option("last", "--step",
                             help="Where to take the gradient: last (step of state i) or first (of j)."),
    units: str = typer.Option("z", "--units", help="Gradient per z-score unit (z) or per raw metric unit (raw)."),
) -> None:
    """Print the drivers of transition i → j: features ranked by |mean gradient of the filtered posterior|."""
    check_option(step, name="--step", options=("last", "first"))
    check_option(units, name="--units", options=("z", "raw"))
    path, fit_dir = _resolve_model(model)
    hmm = GaussianHMM.load(path)
    i, j = transition
    for name, s in (("source", i), ("destination", j)):
        if not 0 <= s < hmm.n_states:
            raise ValueError(f"--transition {name} state {s} is not in 0..{hmm.n_states - 1}")
    if i == j:
        raise ValueError(f"--transition needs two different states, got {i} {j}")
    if runs:
        if hmm.feature_names is None:
            raise ValueError("the model stores no feature names, so --runs cannot be matched to its metrics")
        data = load_runs(runs, metrics=list(hmm.feature_names), first_n=first_n, sort_by=sort_by)
    elif fit_dir is not None:
        data = read_saved_runs(fit_dir / "runs.npz")
    else:
        raise ValueError(f"no runs.npz next to {str(path)!r}; pass the runs with --runs")
    if data.sequences[0].shape[1] != hmm.n_features:
        raise ValueError(f"the runs have {data.sequences[0].shape[1]} metrics but the model {hmm.n_features}")
    scale = None
    if units == "raw":
        bad = sorted({m for row in data.constant for m, c in zip(data.metrics, row, strict=True) if c})
        if bad:
            raise ValueError(f"--units raw: column(s) {bad} are constant within a run, so their z-score does not "
                             "depend on the raw value; use --units z")
        scale = list(data.std)
    expl = explain_transition(hmm, data.sequences, i, j, step=step, feature_names=list(data.metrics),
                              units=units, scale=scale)
    rows = expl.to_frame().to_dict(orient="records")
    table = RichTable(title=f"transition {i} → {j}: {expl.n_occurrences} occurrences in {len(data)} runs "
                            f"(gradient of p(s_t = {j} | z_1:t) at the {step} step, per {units} unit)")
    per = "∂p/∂z" if units == "z" else "∂p/∂x (raw units)"
    for col in ("feature", f"mean {per}", "μ_j − μ_i (z units)"):
        table.add_column(col, justify="left" if col == "feature" else "right")
    for r in rows:
        table.add_row(r["feature"], f"{r['mean_gradient']:.4g}", f"{r['mean_change']:.4g}")
    make_console().print(table)


def example_command(
    out: Path = typer.Option(Path("featurelens-dynamics"), "--out", help="Output directory for the report."),
    quick: bool = typer.Option(False, "--quick",
                               help="24 runs, 10 epochs, K = 1..6, 3 restarts (well under a minute)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Train MLPs on scikit-learn's digits, log weight metrics, fit HMMs, write the training-map report."""
    result = run_dynamics_example(out, quick=quick, random_state=seed, force=force, progress=not quiet)
    if not quiet:
        r = result.results
        typer.echo(f"{len(r['runs']['run_ids'])} runs; recommended K = {r['selection']['recommended']}")
        for d in r["drivers"][:3]:
            top = ", ".join(f["feature"] for f in d["features"][:3])
            typer.echo(f"transition {d['from']} -> {d['to']} ({d['n_occurrences']}x): top drivers {top}")
        detours = [s["state"] for s in (r["detours"] or {}).get("states", []) if s["kind"] == "detour"]
        typer.echo(f"detour states (r > 0, p < 0.05): {detours or 'none'}")
        times = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
        typer.echo(f"report written to {result.out / 'index.html'} ({times})")


def register(app: typer.Typer, example_app: typer.Typer) -> None:
    """Add this module's commands to ``app`` and its examples to ``example_app``."""
    dynamics = typer.Typer(help="Training dynamics: HMMs over per-checkpoint weight metrics.", no_args_is_help=True)
    dynamics.command("fit")(fit_command)
    dynamics.command("explain")(explain_command)
    app.add_typer(dynamics, name="dynamics")
    example_app.command("dynamics")(example_command)
