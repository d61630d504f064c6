"""``InternalsReport``: an internals summary with the context a stand-alone report shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from featurelens._protocol import FrameResult, jsonable
from featurelens.internals._summary import InternalsSummary


@dataclass(frozen=True, eq=False)
class InternalsReport(FrameResult):
    """What ``featurelens internals`` writes: :func:`summarize_internals`'s result, a title and context rows.

    Attributes
    ----------
    internals : InternalsSummary
    title : str
        Page title.
    summary : mapping
        Data and model summary, label → value (JSON-serialisable values).

    Raises
    ------
    TypeError, ValueError
        On construction: ``internals`` of another type, an empty title, a
        summary that is not a mapping of JSON-serialisable values.
    """

    internals: InternalsSummary
    title: str = "featurelens internals report"
    summary: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.internals, InternalsSummary):
            raise TypeError(f"internals must be an InternalsSummary, got {type(self.internals).__name__}")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError(f"title must be a non-empty string, got {self.title!r}")
        if self.summary is None:
            object.__setattr__(self, "summary", {})
        if not isinstance(self.summary, Mapping):
            raise TypeError(f"summary must be a mapping of label to value, got {type(self.summary).__name__}")
        jsonable(dict(self.summary), where="summary")

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: the per-layer metrics (:meth:`InternalsSummary.to_frame`)."""
        return self.internals.to_frame()

    def to_dict(self) -> dict[str, Any]:
        """``{"title", "summary", "internals"}`` as plain JSON types."""
        return {"title": self.title, "summary": jsonable(dict(self.summary), where="summary"),
                "internals": self.internals.to_dict()}

    def _html_title(self) -> str:
        return f"InternalsReport: {self.title}"
