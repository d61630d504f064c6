"""The command line's one rich console: full width when stdout is not a terminal."""

from __future__ import annotations

import sys

from rich.console import Console

#: Width used when the stream is not a terminal (logs, CI, pipes): wide enough that
#: tables are never cut ("integ…") and method names survive in captured output.
PIPE_WIDTH = 10_000


def make_console(*, stderr: bool = False) -> Console:
    """Return a rich ``Console`` on stdout (or stderr); on a terminal its own width, else :data:`PIPE_WIDTH`."""
    stream = sys.stderr if stderr else sys.stdout
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    return Console(file=stream, width=None if is_tty else PIPE_WIDTH, soft_wrap=not is_tty)
