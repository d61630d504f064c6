"""Shared figure plumbing: colours, fonts, new figures and atomic figure files.

No pyplot and no global backend state: every figure is a
:class:`matplotlib.figure.Figure` printed by :class:`FigureCanvasAgg` and
written atomically next to ``index.html``. The figures themselves are drawn
by the Display objects (``_attribution_displays.py``, ``_reliance_displays.py``,
``_internals_displays.py``), so a figure in a notebook equals the report's.

Fonts: names that DejaVu Sans (matplotlib's default) cannot draw, e.g. CJK
column names, are drawn with the first installed font of
:data:`FONT_FALLBACK` (per glyph, matplotlib's font fallback). When no
installed font has a glyph, :func:`write_figure` silences matplotlib's
one-warning-per-glyph and reports it, and the page says so once.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import textwrap
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text

from featurelens._io import atomic_write_bytes

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
HIGHLIGHT = "#B2182B"
#: line styles and markers cycled with the colours, so overlapping curves stay distinguishable
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
FigureInfo = dict[str, str]
FORMATS = ("png", "svg", "pdf")
#: families tried, in order, for glyphs DejaVu Sans lacks (the first installed ones are used)
FONT_FALLBACK = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans",
    "WenQuanYi Zen Hei", "Droid Sans Fallback", "Noto Sans", "Arial Unicode MS",
)
_BASE_FONT = "DejaVu Sans"
_FALLBACK_FILES = re.compile(r"(NotoSans[^/]*CJK|SourceHanSans|wqy-zenhei|DroidSansFallback)[^/]*\.(ttc|otf|ttf)$",
                             re.IGNORECASE)
_GLYPH_WARNING = r"Glyph \d+ .*missing from font"
MISSING_GLYPHS_NOTE = (
    "Some names contain characters that no installed font can draw (install a font such as Noto Sans CJK); "
    "the figures show them as boxes, the tables on this page show them correctly."
)


@functools.cache
def _base_charmap() -> frozenset[int]:
    return frozenset(FT2Font(font_manager.findfont(_BASE_FONT)).get_charmap())


@functools.cache
def fallback_families() -> tuple[str, ...]:
    """Installed families of :data:`FONT_FALLBACK`, in that order.

    matplotlib's font list is cached when matplotlib is installed, so a font
    installed later (e.g. Noto Sans CJK) is missing from it; such fonts are
    found on the system once and registered with ``fontManager.addfont``.
    """
    known = {f.name for f in font_manager.fontManager.ttflist}
    if not known & set(FONT_FALLBACK):
        for path in font_manager.findSystemFonts():
            if _FALLBACK_FILES.search(path):
                with contextlib.suppress(Exception):  # an unreadable font file is simply not used
                    font_manager.fontManager.addfont(path)
        known = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(f for f in FONT_FALLBACK if f in known)


def needs_fallback(texts: Iterable[str]) -> bool:
    """Whether any character of ``texts`` is missing from DejaVu Sans."""
    chars = _base_charmap()
    return any(ord(c) not in chars for t in texts for c in str(t) if not c.isspace())


def apply_fonts(fig: Figure) -> None:
    """Give every text of ``fig`` the fallback fonts when some text needs a glyph DejaVu Sans lacks.

    Called at the end of each Display's ``plot`` and before a figure is
    written; figures whose texts DejaVu Sans can draw are left as they are.
    """
    texts = fig.findobj(Text)
    if not needs_fallback(t.get_text() for t in texts):
        return
    families = [_BASE_FONT, *fallback_families()]
    for t in texts:
        t.set_fontfamily(families)


def new_figure(width: float, height: float) -> Figure:
    """Return a constrained-layout figure with an Agg canvas (no pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def wrap(text: str, width: int = 42) -> str:
    """``text`` broken into lines of at most ``width`` characters (axis labels of narrow panels)."""
    return "\n".join(textwrap.wrap(text, width)) or text


def write_figure(
    fig: Figure, directory: Path, stem: str, *, formats: Sequence[str], dpi: int
) -> tuple[list[str], bool]:
    """Write ``fig`` as ``<stem>.<format>`` for each format, atomically.

    Returns the file names written and whether a glyph could not be drawn by
    any installed font (the warnings matplotlib gives for it are silenced). The
    constrained layout is solved once, by the first format, and kept for the
    others, so every format shows the same layout.
    """
    files, missing = [], False
    apply_fonts(fig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k, fmt in enumerate(formats):
            if k == 1:
                fig.set_layout_engine("none")
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=_metadata(fmt))
            atomic_write_bytes(directory / f"{stem}.{fmt}", buf.getvalue())
            files.append(f"{stem}.{fmt}")
    for w in caught:
        if re.search(_GLYPH_WARNING, str(w.message)):
            missing = True  # one note on the page instead of one warning per glyph
        else:  # anything else is the user's business: let it through
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return files, missing


def _metadata(fmt: str) -> dict[str, str | None]:
    """No creation dates in the files, so the same figure gives the same bytes."""
    if fmt == "pdf":
        return {"CreationDate": None}
    if fmt == "svg":
        return {"Date": None}
    return {}


def _save(fig: Figure, path: Path, dpi: int) -> None:
    """Write ``fig`` as a PNG at ``path`` (atomically), CJK-capable fonts as needed."""
    write_figure(fig, path.parent, path.stem, formats=("png",), dpi=dpi)


class Display:
    """Base of the report's Display objects (scikit-learn's Display convention).

    ``__init__`` stores computed data; a ``from_<result>`` classmethod
    computes it from a featurelens result and calls :meth:`plot`; ``plot(ax=None)``
    draws into ``ax`` (a new figure when ``None``) and returns ``self`` with
    ``figure_``, ``ax_`` (the first axes) and ``axes_`` (all of them) set.
    Displays with several panels (``n_panels > 1``) take a sequence of that
    many axes.
    """

    figure_: Figure
    ax_: Any
    axes_: np.ndarray

    def _n_panels(self) -> int:
        return 1

    def _size(self) -> tuple[float, float]:
        return 6.5, 4.0

    def _axes(self, ax: Any, *, sharey: bool = False) -> np.ndarray:
        n = self._n_panels()
        if ax is None:
            fig = new_figure(*self._size())
            axes = fig.subplots(1, n, sharey=sharey, squeeze=False)[0]
            self._own_figure = True
        else:
            axes = np.array(ax, dtype=object).ravel() if isinstance(ax, Sequence | np.ndarray) else np.array([ax])
            if len(axes) != n or not all(isinstance(a, Axes) for a in axes):
                raise ValueError(f"ax must be {'one matplotlib Axes' if n == 1 else f'a sequence of {n} Axes'} "
                                 f"for {type(self).__name__}, got {len(axes)} item(s)")
            fig = axes[0].figure
            self._own_figure = False
        self.figure_, self.axes_, self.ax_ = fig, axes, axes[0]
        return axes

    def _legend(self, handles: Any = None, labels: Any = None, *, ncols: int = 1, title: str | None = None) -> None:
        """Return a legend below the figure when the display owns it, else inside the first axes."""
        if handles is None:
            handles, labels = self.ax_.get_legend_handles_labels()
        if not handles:
            return
        if self._own_figure:
            self.figure_.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False, title=title)
        else:
            self.ax_.legend(handles, labels, frameon=False, title=title, fontsize=8)

    def _done(self) -> Display:
        apply_fonts(self.figure_)
        return self


def write_display(display: Display, directory: Path, stem: str, *, formats: Sequence[str], dpi: int,
                  title: str, caption: str, alt: str) -> dict[str, Any]:
    """Write a display's figure in every format and describe it for the page.

    Returns ``{"stem", "file", "files", "title", "caption", "alt",
    "missing_glyphs"}``; ``file`` is the one the page shows (the PNG, else
    the SVG, else the first format, which the page links to).
    """
    files, missing = write_figure(display.figure_, directory, stem, formats=formats, dpi=dpi)
    shown = next((f for f in files if f.endswith((".png", ".svg"))), files[0])
    return {"stem": stem, "file": shown, "files": files, "title": title, "caption": caption, "alt": alt,
            "missing_glyphs": missing}


def check_formats(formats: Any) -> tuple[str, ...]:
    """Return validated, de-duplicated, lower-case figure formats; ``ValueError`` naming a bad one.

    ``formats`` is a non-empty sequence of :data:`FORMATS` entries (a single
    string counts as one format; a leading dot is ignored).
    """
    if isinstance(formats, str):
        formats = (formats,)
    if not isinstance(formats, Sequence) or not formats:
        raise ValueError(f"formats must be a non-empty sequence of {', '.join(FORMATS)}, got {formats!r}")
    out = tuple(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise ValueError(f"formats: {bad[0]!r} is not a figure format; choose from {', '.join(FORMATS)}")
    return out


def font_note(figures: Sequence[Mapping[str, Any]]) -> str | None:
    """Return the page's one note when some figure has glyphs no installed font can draw (else ``None``)."""
    return MISSING_GLYPHS_NOTE if any(f.get("missing_glyphs") for f in figures) else None
