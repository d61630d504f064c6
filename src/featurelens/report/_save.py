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
from featurelens._validation import check_int
from featurelens.attribution import AttributionReport, Explanation
from featurelens.internals import InternalsReport, InternalsSummary
from featurelens.reliance import RelianceAudit, SpuriousReport
from featurelens.report._attribution import write_attribution, write_explanation
from featurelens.report._figures import check_formats
from featurelens.report._internals import write_internals
from featurelens.report._reliance import write_detection, write_reliance

Writer = Callable[..., Mapping[str, Any]]

#: ``(result type, writer)`` pairs, first match wins; each report module adds its own.
WRITERS: tuple[tuple[type, Writer], ...] = (
    (AttributionReport, write_attribution),
    (Explanation, write_explanation),
    (InternalsReport, write_internals),
    (InternalsSummary, write_internals),
    (RelianceAudit, write_reliance),
    (SpuriousReport, write_detection),
)


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
        Any featurelens result with a registered writer (see :data:`WRITERS`):
        an :class:`~featurelens.attribution.AttributionReport` or one
        :class:`~featurelens.attribution.Explanation` (attribution page,
        ``explanations/<method>.npz``), an
        :class:`~featurelens.internals.InternalsReport` or
        :class:`~featurelens.internals.InternalsSummary` (internals page), a
        :class:`~featurelens.reliance.RelianceAudit` or one
        :class:`~featurelens.reliance.SpuriousReport` (reliance page).
    out : str or path-like
        Output directory; must not exist unless ``force`` is true (then it is replaced).
    force : bool, default False
        Replace an existing ``out``.
    formats : sequence of str, default ("png",)
        Figure formats to write, distinct names among ``"png"``, ``"svg"``,
        ``"pdf"``; every figure is written once per format. The page shows
        the PNG (else the SVG; with only PDF it links to the files).
    dpi : int, default 110
        Resolution of raster figures (at least 10).

    Returns
    -------
    pathlib.Path
        ``out``. The directory appears complete or not at all.

    Raises
    ------
    TypeError
        For a result no writer is registered for, or ``formats`` given as one string.
    ValueError
        If ``out`` exists and ``force`` is false, for an unknown format or a
        ``dpi`` below 10, or when the result's content is invalid (named).
    """
    writer = writer_for(result)
    formats = check_formats(formats)
    dpi = check_int(dpi, name="dpi", minimum=10)
    check_output_dir(out, force=force)
    with atomic_output_dir(out, force=force) as tmp:
        writer(result, Path(tmp), formats=formats, dpi=dpi)
    return Path(out)
