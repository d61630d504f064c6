"""Typer application and the error policy of the command line.

Exit codes: 0 success; 2 bad input (one line on stderr naming what is wrong,
no traceback, nothing written); 1 internal error (one line; set
``FEATURELENS_DEBUG=1`` for the traceback). Library messages name library
arguments (``target=``, ``n_repeats must be ...``); :func:`cli_words` turns
them into the invoked command's options (``--target``, ``--n-repeats``) in
this one place.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Any

import torch
import typer

from featurelens.attribution import METHODS, method_options
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


#: torch CPU threads of every command unless ``--threads`` says otherwise: featurelens' models are
#: small, and one thread is fastest for them (``featurelens demo`` on a loaded 2-core machine:
#: docs/cli.md gives the measured CPU and wall times)
DEFAULT_THREADS = 1


def max_threads() -> int:
    """Most ``--threads`` accepted: the CPUs this process may run on (more never helps)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@app.callback()
def _root(
    threads: int = typer.Option(None, "--threads",
                                help=f"Torch CPU threads, 1 to the number of CPUs (default: {DEFAULT_THREADS})."),
) -> None:
    """featurelens command line."""
    if threads is None:
        threads = DEFAULT_THREADS
    elif not 1 <= threads <= max_threads():
        raise ValueError(f"--threads must be between 1 and {max_threads()} (the CPUs of this machine), got {threads}")
    torch.set_num_threads(threads)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _reason(exc: BaseException) -> str:
    """``exc``'s message on one line; never empty (the type names it, plus its cause's type after a bare ':')."""
    text = _one_line(str(exc))
    if not text:
        return type(exc).__name__
    if text.endswith(":"):
        cause = exc.__cause__ or exc.__context__
        text += f" {type(cause).__name__}" if cause is not None else f" {type(exc).__name__}"
    return text


#: library argument -> command-line option, where the option is not simply the argument's name
ALIASES = {"random_state": "--seed", "labels": "--label", "y": "--label", "trust": "--trust-checkpoint",
           "force": "--force",
           "modules": "--layer", "n_restarts": "--restarts", "n_iter": "--iterations",
           "covariance_type": "--covariance", "formats": "--format", "strategy": "--mitigate"}
_FLAG_VALUES = ("True", "true")
#: a message starting with an argument name followed by one of these is about that argument
_VERBS = "must|has|have|is|needs|exceeds|cannot|applies"
_CLI_ASIDE = re.compile(r"(--[\w-]+(?: [^\s(]+)?) \(CLI: ([^)]*)\)")


def _invoked(command: Any, argv: list[str]) -> Any:
    """The (sub)command ``argv`` runs: follow command names down the groups."""
    for token in argv:
        sub = getattr(command, "commands", {}).get(token)
        if sub is not None:
            command = sub
            if not hasattr(command, "commands"):
                break
    return command


def _option_names(command: Any) -> dict[str, str]:
    """Python parameter name -> its long option (``n_repeats`` -> ``--n-repeats``) for one command."""
    names: dict[str, str] = {}
    for param in getattr(command, "params", []):
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if getattr(param, "param_type_name", "") == "option" and opts and param.name:
            names[param.name] = opts[0]
    if "option" in names:  # `attribute`: method options are given as --option KEY=VALUE
        for method in METHODS:
            for key in method_options(method):
                names.setdefault(key, f"--option {key}=")
    return {**names, **{k: v for k, v in ALIASES.items() if v.split()[0] in names.values()}}


def cli_words(message: str, options: dict[str, str]) -> str:
    """Rewrite library argument names in ``message`` as command-line options.

    ``name=value`` anywhere becomes ``--option value`` (``target=3`` ->
    ``--target 3``, ``link='sigmoid'`` -> ``--link sigmoid``, ``trust=True``
    -> ``--trust-checkpoint``), and a message that starts with an argument
    name (``n_repeats must be >= 1``) starts with its option instead. Names in
    quotes (column names, values) are left alone.
    """
    if not options:
        return message
    alt = "|".join(sorted(map(re.escape, options), key=len, reverse=True))
    assign = re.compile(rf"(?<![\w'\"./-])({alt})=('[^']*'|\"[^\"]*\"|<[^>]*>|[\w.+-]+)?")

    def replace(m: re.Match) -> str:
        opt, value = options[m.group(1)], m.group(2)
        if opt.endswith("="):  # --option KEY=: keep KEY=VALUE
            return opt + (value or "...")
        if value is None or value in _FLAG_VALUES:
            return opt
        return f"{opt} {value.strip(chr(39) + chr(34))}"

    message = assign.sub(replace, message)
    lead = re.match(rf"({alt})(?=:| (?:{_VERBS})\b)", message)
    if lead:
        opt = options[lead.group(1)]
        message = (opt[:-1] if opt.endswith("=") else opt) + message[lead.end():]
    # "trust=True (CLI: --trust-checkpoint)" is now "--trust-checkpoint (CLI: --trust-checkpoint)": say it once
    return _CLI_ASIDE.sub(lambda m: m.group(2) if m.group(2).split()[0] == m.group(1).split()[0] else m.group(0),
                          message)


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (bundled in typer >= 0.29, from click before) carry these two attributes."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    command = typer.main.get_command(app)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        argv = ["--help"]
    threads = torch.get_num_threads()
    try:
        command.main(args=argv, prog_name="featurelens", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("featurelens: aborted", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as exc:
        text = cli_words(_reason(exc), _option_names(_invoked(command, argv)))
        print(f"featurelens: error: {text}", file=sys.stderr)
        if os.environ.get("FEATURELENS_DEBUG"):
            traceback.print_exc()
        return 2
    except Exception as exc:
        if _is_usage_error(exc):
            print(f"featurelens: error: {_one_line(exc.format_message())}", file=sys.stderr)
            return 2
        text = _one_line(str(exc))
        print(f"featurelens: internal error: {type(exc).__name__}{': ' + text if text else ''} "
              "(set FEATURELENS_DEBUG=1 for the traceback)", file=sys.stderr)
        if os.environ.get("FEATURELENS_DEBUG"):
            traceback.print_exc()
        return 1
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests, notebooks) keep their setting
    return 0
