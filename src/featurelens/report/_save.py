"""``featurelens.report.save``: the one way to write any result to disk.

Every result kind has one writer in its own ``report`` module, with the
signature ``writer(result, directory, *, formats, dpi, **options) -> dict`` (the
``results.json`` content it wrote); ``options`` are the keyword-only parameters the
writer declares (e.g. ``title``, ``summary``). ``save`` validates first, then builds
the output directory under a temporary name and renames it into place, so a failed
save leaves nothing behind.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from featurelens._io import atomic_output_dir, atomic_write_bytes, check_output_dir
from featurelens._validation import check_int
from featurelens.attribution import AttributionReport, Explanation
from featurelens.compare import Comparison
from featurelens.dynamics import DynamicsAnalysis
from featurelens.internals import InternalsReport, InternalsSummary, SweepResult
from featurelens.reliance import RelianceAudit, SpuriousReport
from featurelens.report._attribution import write_attribution, write_explanation
from featurelens.report._compare import write_comparison
from featurelens.report._dynamics import write_dynamics
from featurelens.report._figures import check_formats
from featurelens.report._internals import write_internals
from featurelens.report._reliance import write_detection, write_reliance
from featurelens.report._sweeps import write_sweep
from featurelens.report._tickets import TicketsStudy, write_tickets

Writer = Callable[..., Mapping[str, Any]]

#: ``(result type, writer)`` pairs, first match wins; each report module adds its own.
#: :class:`TicketsStudy` is a structural type (checked by attributes), so it comes last.
WRITERS: tuple[tuple[type, Writer], ...] = (
    (AttributionReport, write_attribution),
    (Explanation, write_explanation),
    (InternalsReport, write_internals),
    (InternalsSummary, write_internals),
    (RelianceAudit, write_reliance),
    (SpuriousReport, write_detection),
    (Comparison, write_comparison),
    (DynamicsAnalysis, write_dynamics),
    (SweepResult, write_sweep),
    (TicketsStudy, write_tickets),
)


def writer_for(result: Any) -> Writer:
    """Return the writer registered for ``type(result)``; ``TypeError`` naming the supported kinds otherwise."""
    for kind, writer in WRITERS:
        if isinstance(result, kind):
            return writer
    kinds = ", ".join(kind.__name__ for kind, _ in WRITERS) or "none"
    raise TypeError(f"result: cannot save a {type(result).__name__}; featurelens.report.save writes {kinds}")


def _check_options(result: Any, writer: Writer, options: Mapping[str, Any]) -> None:
    accepted = [name for name, p in inspect.signature(writer).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("formats", "dpi")]
    for name in options:
        if name not in accepted:
            takes = ", ".join(accepted) or "no options"
            raise TypeError(f"save: {name!r} is not an option for a {type(result).__name__} report; it takes {takes}")


def _check_files(files: Mapping[str, Any] | None) -> dict[PurePosixPath, bytes | Path]:
    if files is None:
        return {}
    if not isinstance(files, Mapping):
        raise TypeError(f"files must be a mapping of relative path to bytes or a file, got {type(files).__name__}")
    out: dict[PurePosixPath, bytes | Path] = {}
    for name, content in files.items():
        rel = PurePosixPath(str(name))
        if rel.is_absolute() or not rel.parts or ".." in rel.parts:
            raise ValueError(f"files: {str(name)!r} must be a relative path inside the output directory")
        if isinstance(content, bytes):
            out[rel] = content
        elif isinstance(content, str | os.PathLike) and Path(content).is_file():
            out[rel] = Path(content)
        else:
            raise ValueError(f"files[{str(name)!r}] must be bytes or an existing file, got {content!r}")
    return out


def _add_files(directory: Path, files: Mapping[PurePosixPath, bytes | Path]) -> None:
    for rel, content in files.items():
        target = directory.joinpath(*rel.parts)
        if target.exists():
            raise ValueError(f"files: {str(rel)!r} would replace a file of the report; choose another name")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, content if isinstance(content, bytes) else content.read_bytes())


def save(result: Any, out: str | os.PathLike, *, force: bool = False, formats: Sequence[str] = ("png",),
         dpi: int = 110, files: Mapping[str, bytes | str | os.PathLike] | None = None, **options: Any) -> Path:
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
        Figure formats to write, among ``"png"``, ``"svg"``, ``"pdf"`` (case and a
        leading dot ignored, duplicates dropped); every figure is written once per
        format. The page shows the PNG (else the SVG; with only PDF it links to the files).
    dpi : int, default 110
        Resolution of raster figures (at least 10).
    files : mapping of str to bytes or path, optional
        Extra files to put into ``out`` (relative path → content or a file to copy), e.g. the
        logged runs a report was computed from; they may not replace a file of the report.
    **options
        Options of the result kind's writer, e.g. ``title=`` and ``summary=`` (a mapping of
        label to value listed on the page) for comparisons and training dynamics.

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
    _check_options(result, writer, options)
    fmts = check_formats(formats)
    dpi = check_int(dpi, name="dpi", minimum=10)
    extra = _check_files(files)
    check_output_dir(out, force=force)
    with atomic_output_dir(out, force=force) as tmp:
        writer(result, Path(tmp), formats=tuple(fmts), dpi=dpi, **options)
        _add_files(Path(tmp), extra)
    return Path(out)
