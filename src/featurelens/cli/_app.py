"""Typer application and the error policy of the command line.

Exit codes: 0 success; 2 bad input (one line on stderr naming what is wrong,
no traceback, nothing written); 1 internal error (one line; set
``FEATURELENS_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import os
import sys
import traceback

import torch
import typer

from featurelens.cli import _compare, _dynamics, _internals, _reliance
from featurelens.cli._commands import attribute_command, demo_command

app = typer.Typer(
    name="featurelens",
    help="Which input features does a PyTorch model rely on, is that reliance sound, and how does it change.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("demo")(demo_command)
app.command("attribute")(attribute_command)
#: ``featurelens example NAME``: end-to-end studies; each command module adds its own
example_app = typer.Typer(help="End-to-end example studies.", no_args_is_help=True)
app.add_typer(example_app, name="example")
for _module in (_internals, _reliance, _compare, _dynamics):
    _module.register(app, example_app)


@app.callback()
def _root(
    threads: int = typer.Option(None, "--threads", min=1, help="Torch CPU threads (default: torch's own choice)."),
) -> None:
    """featurelens command line."""
    if threads is not None:
        torch.set_num_threads(threads)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (bundled in typer >= 0.29, from click before) carry these two attributes."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    command = typer.main.get_command(app)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        argv = ["--help"]
    try:
        command.main(args=argv, prog_name="featurelens", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("featurelens: aborted", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as exc:
        print(f"featurelens: error: {_one_line(str(exc))}", file=sys.stderr)
        if os.environ.get("FEATURELENS_DEBUG"):
            traceback.print_exc()
        return 2
    except Exception as exc:
        if _is_usage_error(exc):
            print(f"featurelens: error: {_one_line(exc.format_message())}", file=sys.stderr)
            return 2
        print(f"featurelens: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
              "(set FEATURELENS_DEBUG=1 for the traceback)", file=sys.stderr)
        if os.environ.get("FEATURELENS_DEBUG"):
            traceback.print_exc()
        return 1
    return 0
