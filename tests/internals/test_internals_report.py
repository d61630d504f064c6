"""InternalsReport and the protocol of InternalsSummary: to_frame, to_dict (JSON), _repr_html_."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from featurelens.internals import InternalsReport, InternalsSummary


@pytest.fixture
def summary() -> InternalsSummary:
    layers = pd.DataFrame({"type": ["Linear", "ReLU"], "units": [4, 4], "effective_rank": [2.5, np.nan]},
                          index=pd.Index(["0", "1"], name="layer"))
    overlap = {"input": pd.DataFrame([[1.0, np.nan], [np.nan, 1.0]], index=["g", "h"], columns=["g", "h"])}
    return InternalsSummary(layers=layers, overlap=overlap, notes=("n",))


def test_summary_protocol(summary):
    frame = summary.to_frame()
    pd.testing.assert_frame_equal(frame, summary.layers)
    frame["x"] = 1
    assert "x" not in summary.layers.columns
    d = summary.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["layers"][1] == {"layer": "1", "type": "ReLU", "units": 4, "effective_rank": None}
    assert d["overlap"]["input"] == {"groups": ["g", "h"], "matrix": [[1.0, None], [None, 1.0]]}
    assert "<caption>InternalsSummary: 2 layers</caption>" in summary._repr_html_()


def test_report_protocol_and_errors(summary):
    report = InternalsReport(summary, title="t", summary={"rows": 3})
    assert report.to_dict() == {"title": "t", "summary": {"rows": 3}, "internals": summary.to_dict()}
    pd.testing.assert_frame_equal(report.to_frame(), summary.layers)
    assert InternalsReport(summary, summary=None).summary == {}
    with pytest.raises(TypeError, match="summary must be a mapping"):
        InternalsReport(summary, summary=[1])
