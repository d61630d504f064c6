"""``featurelens.report.save``: the one way to write any result to disk.

Every result kind has one writer in its own ``report`` module, with the
signature ``writer(result, directory, *, formats, dpi) -> dict`` (the
``results.json`` content it wrote). ``save`` validates first, then builds the
output directory under a temporary name and renames it into place, so a failed
save leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from featurelens._io import atomic_output_dir, check_output_dir

Writer = Callable[..., Mapping[str, Any]]

#: ``(result type, writer)`` pairs, first match wins; each report module adds its own.
WRITERS: tuple[tuple[type, Writer], ...] = ()


def writer_for(result: Any) -> Writer:
    """The writer registered for ``type(result)``; ``TypeError`` naming the supported kinds otherwise."""
    for kind, writer in WRITERS:
        if isinstance(result, kind):
            return writer
    kinds = ", ".join(kind.__name__ for kind, _ in WRITERS) or "none"
    raise TypeError(f"result: cannot save a {type(result).__name__}; featurelens.report.save writes {kinds}")


def save(result: Any, out: str | os.PathLike, *, force: bool = False,
         formats: Sequence[str] = ("png",), dpi: int = 110) -> Path:
    """Write ``result``'s report (HTML page, figures, ``results.json``) to the new directory ``out``.

    Parameters
    ----------
    result : object
        Any featurelens result with a registered writer (see :data:`WRITERS`).
    out : str or path-like
        Output directory; must not exist unless ``force`` is true (then it is replaced).
    force : bool, default False
        Replace an existing ``out``.
    formats : sequence of str, default ("png",)
        Figure formats to write (``"png"``, ``"pdf"``, ``"svg"``).
    dpi : int, default 110
        Resolution of raster figures.

    Returns
    -------
    pathlib.Path
        ``out``. The directory appears complete or not at all.
    """
    writer = writer_for(result)
    check_output_dir(out, force=force)
    with atomic_output_dir(out, force=force) as tmp:
        writer(result, Path(tmp), formats=tuple(formats), dpi=dpi)
    return Path(out)
