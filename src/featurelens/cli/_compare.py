"""CLI commands: `featurelens compare` and the tickets example."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, example_app: typer.Typer) -> None:
    """Add this module's commands to ``app`` and its examples to ``example_app``."""
    example_app.command("tickets")(tickets_example)


def tickets_example(
    out: Path = typer.Option(Path("featurelens-tickets"), "--out", help="Output directory for the report."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes (about a minute on one CPU thread)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary."),
) -> None:
    """Seed 000: dense deep hedger vs 80 %-sparse lottery ticket vs robust ticket (train, attack, compare)."""
    from featurelens.examples.tickets import run_tickets_study

    result = run_tickets_study(out, quick=quick, random_state=seed, force=force, progress=not quiet)
    if quiet:
        return
    echo = typer.echo
    echo("hedging risk on fresh paths (ES_0.1 and entropic risk of -P&L; P&L mean and std)")
    echo(result.risk.to_string(float_format=lambda v: f"{v:.5f}"))
    echo("expected shortfall under attack (epsilon in feature-std units)")
    echo(result.attacked.to_string(float_format=lambda v: f"{v:.5f}"))
    echo(result.sparsity.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    echo(str(result.comparison))
    same = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result.reload.items())
    echo(f"checkpoints reloaded bit-identically: {same}")
    echo(f"report written to {Path(out) / 'index.html'} in {result.seconds:.1f} s")
