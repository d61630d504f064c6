"""featurelens._protocol: the number format, JSON conversion and notebook tables every result shares."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from featurelens._protocol import MAX_HTML_ROWS, format_number, html_table, jsonable, records


@pytest.mark.parametrize(("value", "text"), [
    (0.123456, "0.1235"), (4000, "4000"), (np.int64(7), "7"), (np.float32(0.5), "0.5"),
    (1.5e-7, "1.5e-07"), (None, "—"), (float("nan"), "—"), (math.inf, "—"), (True, "True"), ("x", "x"),
    (np.bool_(False), "False"),
])
def test_format_number(value, text):
    assert format_number(value) == text


def test_jsonable_converts_numpy_and_nan():
    got = jsonable({"a": np.float64(0.5), "b": np.arange(3), "c": (np.nan, 1), 3: np.bool_(True)})
    assert got == {"a": 0.5, "b": [0, 1, 2], "c": [None, 1], "3": True}
    assert type(got["a"]) is float and type(got["b"][0]) is int
    with pytest.raises(TypeError, match=r"params\['f'\] must be JSON-serialisable, got set"):
        jsonable({"f": {1}}, where="params")


def test_records_drop_the_index_and_nan():
    frame = pd.DataFrame({"g": ["a", "b"], "v": [0.5, np.nan]}, index=[7, 8])
    assert records(frame) == [{"g": "a", "v": 0.5}, {"g": "b", "v": None}]
    assert records(None) is None


def test_html_table_escapes_formats_and_cuts_long_tables():
    frame = pd.DataFrame({"<b>": ["<i>x</i>"] * 30, "v": np.arange(30) / 3}, index=pd.Index(range(30), name="row"))
    html = html_table(frame, title="T & t")
    assert "<caption>T &amp; t</caption>" in html and "&lt;b&gt;" in html and "<i>x</i>" not in html
    assert html.count("<tr>") == MAX_HTML_ROWS + 1  # header + shown rows
    assert "0.3333" in html and "10 more rows" in html
    plain = html_table(pd.DataFrame({"a": [1]}))
    assert "<th></th>" not in plain and "<th>a</th>" in plain  # a RangeIndex is not shown
