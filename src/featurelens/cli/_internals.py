"""CLI commands: ``featurelens internals`` and ``featurelens sweep``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from rich.table import Table as RichTable

from featurelens._io import check_output_dir
from featurelens.cli._console import make_console
from featurelens.data import as_tensor, load_table, read_groups
from featurelens.internals import (
    InternalsReport,
    architecture_sweep,
    capacity_sweep,
    scale_sweep,
    summarize_internals,
)
from featurelens.models import load_model, model_device_dtype
from featurelens.report import save

SWEEPS = ("capacity", "scale", "architectures")
#: most rows a sweep generates per model and most epochs it trains (its defaults: 1 200-3 000 rows,
#: 15-30 epochs); larger requests are refused before anything is generated
MAX_SWEEP_SAMPLES = 1_000_000
MAX_SWEEP_EPOCHS = 10_000


def _cell(v: object, digits: int) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    return "nan" if v != v else f"{v:.{digits}f}"


def _frame_table(df: pd.DataFrame, title: str, *, index: bool = True, digits: int = 3) -> RichTable:
    table = RichTable(title=title)
    frame = df.reset_index() if index else df
    for col in frame.columns:
        table.add_column(str(col), justify="left" if frame[col].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[_cell(v, digits) for v in row])
    return table


#: columns printed per sweep (all are in the CSV)
SHOWN = {
    "capacity": ["n_groups", "hidden_dim", "features_per_dim", "overlap_mean", "effective_rank",
                 "rank_per_group", "test_accuracy"],
    "scale": ["width", "depth", "effective_rank", "interference", "attention_entropy", "head_diversity",
              "grad_norm", "test_accuracy"],
    "architectures": ["architecture", "test_accuracy", "shifted_accuracy", "representation_rank",
                      "spurious_share", "noise_sensitivity", "ablation_sensitivity"],
}


def internals_command(
    model: Path = typer.Option(..., "--model", help="TorchScript, torch.export (.pt2) or state_dict/checkpoint file."),
    data: Path = typer.Option(..., "--data", help="CSV or Parquet table with the model's input features."),
    out: Path = typer.Option(..., "--out", help="Output directory for the report."),
    label: str = typer.Option(None, "--label", help="Label column to leave out of the features."),
    groups: Path = typer.Option(None, "--groups",
                                help="YAML/JSON mapping of group name to feature names (for the overlap heatmap)."),
    factory: str = typer.Option(None, "--factory", help="'module:function' building the model for a state_dict."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint",
                                          help="Allow arbitrary unpickling (trusted files only)."),
    layer: list[str] = typer.Option([], "--layer",
                                    help="Layer(s) to summarise: exact path or glob; repeatable "
                                         "(default: all Linear, activation, attention and encoder layers)."),
    jacobian_layer: str = typer.Option(None, "--jacobian-layer",
                                       help="Layer whose average Jacobian gives the second overlap matrix."),
    max_rows: int = typer.Option(2000, "--max-rows", help="Rows of the table used (drawn with --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the row subsample."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary on the terminal."),
) -> None:
    """Per-layer representation metrics, input-group overlap and attention statistics of a saved model."""
    check_output_dir(out, force=force)
    if max_rows < 2:
        raise ValueError(f"--max-rows must be at least 2, got {max_rows}")
    if factory is not None:
        sys.path.insert(0, str(Path.cwd()))
    table = load_table(data, label=label)
    group_map = read_groups(groups) if groups is not None else None
    net = load_model(model, factory=factory, trust=trust_checkpoint)
    as_tensor(table.X, name="inputs", dtype=model_device_dtype(net)[1])  # values the model's dtype cannot hold
    summary = summarize_internals(
        net, table.X, groups=group_map, feature_names=table.feature_names, modules=list(layer) or None,
        jacobian_layer=jacobian_layer, max_rows=max_rows, random_state=seed,
    )
    info = {"model file": str(model), "data file": str(data), "rows in the table": len(table.X),
            "rows used": min(len(table.X), max_rows), "features": len(table.feature_names),
            "groups": ", ".join(group_map) if group_map else "none (no overlap heatmap)"}
    save(InternalsReport(summary, title=f"featurelens: internals of {model.name}", summary=info), out, force=force)
    if quiet:
        return
    console = make_console()
    cols = ["type", "units", "effective_rank", "participation_ratio", "interference", "fraction_inactive"]
    console.print(_frame_table(summary.layers[cols], "representation per layer"))
    for name, m in summary.overlap.items():
        console.print(_frame_table(m, f"group overlap: {name}"))
    if summary.attention is not None:
        console.print(_frame_table(summary.attention, "attention statistics per head"))
    for note in summary.notes:
        console.print(note)
    console.print(f"report written to {out / 'index.html'}")


def sweep_command(
    kind: str = typer.Argument(..., help="capacity, scale or architectures."),
    out: Path = typer.Option(..., "--out", help="Output directory (CSV tables, figure, results.json)."),
    quick: bool = typer.Option(False, "--quick", help="Smaller grid and data (about a quarter of the work)."),
    epochs: int = typer.Option(None, "--epochs",
                               help=f"Maximum training epochs per model, at most {MAX_SWEEP_EPOCHS:,} "
                                    "(default: the sweep's)."),
    n_samples: int = typer.Option(None, "--n-samples",
                                  help=f"Rows generated per model, at most {MAX_SWEEP_SAMPLES:,} "
                                       "(default: the sweep's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Train small models over a grid and tabulate representation metrics (the superposition study's sweeps)."""
    if kind not in SWEEPS:
        raise ValueError(f"KIND must be one of {', '.join(SWEEPS)}; got {kind!r}")
    check_output_dir(out, force=force)
    for opt, value, cap in (("--epochs", epochs, MAX_SWEEP_EPOCHS), ("--n-samples", n_samples, MAX_SWEEP_SAMPLES)):
        if value is not None and value > cap:
            raise ValueError(f"{opt} {value} exceeds the maximum of {cap:,}")
    kwargs: dict[str, object] = {"random_state": seed, "progress": not quiet}
    if quick:
        kwargs.update({
            "capacity": {"n_groups": (2, 6), "hidden_dims": (4, 16), "n_samples": 1500},
            "scale": {"widths": (16, 32), "depths": (1, 2), "n_samples": 1200},
            "architectures": {"architectures": ("small", "gated"), "n_samples": 1500},
        }[kind])
    if epochs is not None:
        kwargs["epochs"] = epochs
    if n_samples is not None:
        kwargs["n_samples"] = n_samples
    run = {"capacity": capacity_sweep, "scale": scale_sweep, "architectures": architecture_sweep}[kind]
    result = run(**kwargs)
    save(result, out, force=force)
    if not quiet:
        console = make_console()
        console.print(_frame_table(result.table[SHOWN[kind]], f"{kind} sweep (all columns in {kind}.csv)",
                                   index=False))
        console.print(f"tables and figure written to {out}")


def register(app: typer.Typer, example_app: typer.Typer) -> None:
    """Add ``internals`` and ``sweep`` to ``app`` (no examples)."""
    app.command("internals")(internals_command)
    app.command("sweep")(sweep_command)
