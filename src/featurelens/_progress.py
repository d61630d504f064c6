"""Optional rich progress bars on stderr; a no-op when disabled or not on a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Advance = Callable[..., None]


def _noop(n: int = 1, *, info: str = "") -> None:
    return None


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, enabled: bool) -> Iterator[Advance]:
    """Yield ``advance(n=1, *, info="")``.

    A transient rich bar on stderr is shown only when ``enabled`` and stderr
    is a terminal, so logs and pipes never receive progress output. ``info``
    is shown after the bar (e.g. the latest losses).
    """
    if not enabled:
        yield _noop
        return
    console = Console(stderr=True)
    if not console.is_terminal:
        yield _noop
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(n: int = 1, *, info: str = "") -> None:
            bar.update(task, advance=n, info=info)

        yield advance
