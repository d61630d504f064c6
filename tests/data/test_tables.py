"""Tests for featurelens.data._tables: load_table and Table."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from featurelens.data import FeatureSpec, Table, load_table, read_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(20, 80, size=8),
            "bp": rng.normal(120, 10, size=8),
            "smoker": rng.random(8) < 0.5,
            "target": rng.integers(0, 2, size=8),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".CSV"])
def test_csv_round_trip(tmp_path, frame, suffix):
    path = tmp_path / f"data{suffix}"
    frame.to_csv(path, index=False)
    table = load_table(path, label="target")
    assert isinstance(table, Table)
    assert table.feature_names == ["age", "bp", "smoker"]
    assert table.label == "target" and table.path == str(path)
    assert len(table) == table.n_samples == 8 and table.n_features == 3
    assert list(table.X.columns) == ["age", "bp", "smoker"]
    assert (table.X.dtypes == np.float64).all()
    np.testing.assert_allclose(table.X["bp"].to_numpy(), frame["bp"].to_numpy(), rtol=1e-15)
    np.testing.assert_array_equal(table.X["age"].to_numpy(), frame["age"].to_numpy())
    np.testing.assert_array_equal(table.X["smoker"].to_numpy(), frame["smoker"].astype(float).to_numpy())
    np.testing.assert_array_equal(table.y.to_numpy(), frame["target"].to_numpy())
    assert table.y.name == "target"
    assert pd.api.types.is_integer_dtype(table.y.dtype)


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_round_trip(tmp_path, frame, suffix):
    pytest.importorskip("pyarrow")
    path = tmp_path / f"data{suffix}"
    frame.to_parquet(path, index=False)
    table = load_table(path, label="target", features=["smoker", "age"])
    assert table.feature_names == ["smoker", "age"]
    np.testing.assert_array_equal(table.X.to_numpy(), frame[["smoker", "age"]].astype(float).to_numpy())
    np.testing.assert_array_equal(table.y.to_numpy(), frame["target"].to_numpy())


def test_parquet_nullable_label_without_missing_values(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"a": [1.0, 2.0], "y": pd.array([0, 1], dtype="Int64")})
    df.to_parquet(tmp_path / "d.parquet")
    table = load_table(tmp_path / "d.parquet", label="y")
    assert table.y.dtype == np.int64 and table.y.tolist() == [0, 1]


def test_features_as_pandas_index(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    table = load_table(tmp_path / "d.csv", label="target", features=frame.columns[1:3])
    assert table.feature_names == ["bp", "smoker"]


def test_no_label_uses_every_column(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    table = load_table(tmp_path / "d.csv")
    assert table.y is None and table.label is None
    assert table.feature_names == ["age", "bp", "smoker", "target"]
    x, y = table.to_tensors()
    assert y is None and x.shape == (8, 4)


def test_bool_label_and_to_tensors(tmp_path):
    pd.DataFrame({"a": [0.5, 1.5, 2.5], "b": [1, 2, 3], "y": [True, False, True]}).to_csv(
        tmp_path / "d.csv", index=False
    )
    table = load_table(tmp_path / "d.csv", label="y")
    assert table.y.dtype == bool
    x, y = table.to_tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert x.tolist() == [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]]
    assert y.tolist() == [1.0, 0.0, 1.0]
    x, y = table.to_tensors(torch.float64, y_dtype=torch.long)
    assert x.dtype == torch.float64 and y.dtype == torch.long and y.tolist() == [1, 0, 1]


def test_spec(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    table = load_table(tmp_path / "d.csv", label="target")
    assert table.spec() == FeatureSpec(["age", "bp", "smoker"])
    assert table.spec({"vitals": ["bp"]}).groups == {"vitals": (1,)}


def _write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_unknown_suffix(tmp_path):
    p = _write(tmp_path, "data.xlsx", "a\n1\n")
    with pytest.raises(ValueError,
                       match=r"cannot tell the format of '.*data\.xlsx'.*\.csv, \.csv\.gz, \.parquet, \.pq"):
        load_table(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ValueError, match=r"data file '.*nope\.csv' does not exist"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match=r"data file '.*dir\.csv' is not a file"):
        load_table(tmp_path / "dir.csv")


def test_empty_file_and_no_rows(tmp_path):
    with pytest.raises(ValueError, match=r"CSV file '.*empty\.csv' is empty"):
        load_table(_write(tmp_path, "empty.csv", ""))
    with pytest.raises(ValueError, match=r"'.*head\.csv' has a header but no rows"):
        load_table(_write(tmp_path, "head.csv", "a,b\n"))


def test_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match=r"cannot read CSV file '.*ragged\.csv': .*Expected 2 fields"):
        load_table(_write(tmp_path, "ragged.csv", "a,b\n1,2\n3,4,5\n"))
    p = tmp_path / "latin.csv"
    p.write_bytes("a,\xe9\n1,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"cannot read CSV file '.*latin\.csv': 'utf-8' codec"):
        load_table(p)
    pytest.importorskip("pyarrow")
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"not a parquet file")
    with pytest.raises(ValueError, match=r"cannot read Parquet file '.*bad\.parquet': .*magic bytes"):
        load_table(p)


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"irrelevant")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` raise ImportError
    with pytest.raises(ValueError,
                       match=r"'.*d\.parquet' needs pyarrow; install it with: pip install 'featurelens\[parquet\]'"):
        load_table(p)


def test_missing_label_lists_columns(tmp_path):
    p = _write(tmp_path, "d.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"label column 'y' not found in '.*d\.csv'; available columns: 'a', 'b'"):
        load_table(p, label="y")


def test_unknown_features_named(tmp_path):
    p = _write(tmp_path, "d.csv", "a,b,y\n1,2,0\n")
    with pytest.raises(ValueError,
                       match=r"feature column\(s\) 'q', 'r' not found .*; available columns: 'a', 'b', 'y'"):
        load_table(p, label="y", features=["a", "q", "r"])
    with pytest.raises(ValueError, match="column 'y' is the label and cannot also be a feature"):
        load_table(p, label="y", features=["a", "y"])


def test_only_label_column(tmp_path):
    p = _write(tmp_path, "d.csv", "y\n1\n0\n")
    with pytest.raises(ValueError, match="has no feature columns besides the label 'y'"):
        load_table(p, label="y")


def test_non_numeric_features_listed_not_coerced(tmp_path):
    p = _write(tmp_path, "d.csv", "a,city,when,b\n1,paris,2020-01-01,x\n2,rome,2020-01-02,3\n")
    with pytest.raises(ValueError,
                       match=r"feature column\(s\) 'city' \(.*\), 'when' \(.*\), 'b' \(.*\) are not numeric") as info:
        load_table(p)
    assert "'a'" not in str(info.value)
    table = load_table(p, features=["a"])  # selecting numeric columns works
    assert table.X["a"].tolist() == [1.0, 2.0]


def test_non_numeric_label(tmp_path):
    p = _write(tmp_path, "d.csv", "a,y\n1,cat\n2,dog\n")
    with pytest.raises(ValueError, match=r"label column 'y' has dtype .*; it must hold numbers or bools"):
        load_table(p, label="y")


def test_nan_and_inf_reported_with_counts(tmp_path):
    p = _write(tmp_path, "d.csv", "a,b,c,y\n1,,1,0\n2,inf,1,1\n,3,1,0\n4,4,1,1\n")
    msg = r"NaN or inf in column\(s\) 'a' \(1 row\), 'b' \(2 rows\); 3 bad row\(s\) in total"
    with pytest.raises(ValueError, match=msg):
        load_table(p, label="y")
    table = load_table(p, label="y", features=["c"])  # the bad columns are not selected
    assert len(table) == 4


def test_nan_in_label(tmp_path):
    p = _write(tmp_path, "d.csv", "a,y\n1,0\n2,\n3,1\n")
    with pytest.raises(ValueError, match=r"NaN or inf in column\(s\) 'y' \(1 row\); 1 bad row\(s\) in total"):
        load_table(p, label="y")


def test_duplicate_columns_in_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    t = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["x", "x"])
    pq.write_table(t, tmp_path / "dup.parquet")
    with pytest.raises(ValueError, match=r"dup\.parquet"):
        load_table(tmp_path / "dup.parquet")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"label": 3}, TypeError, "label must be a column name \\(str\\), got int"),
        ({"features": "a"}, TypeError, "features must be a list of column names, got 'a'"),
        ({"features": 3}, TypeError, "features must be a list of column names, got 3"),
        ({"features": ["a", 1]}, TypeError, "features must hold column names \\(str\\); got 1"),
        ({"features": []}, ValueError, "features is empty; pass None"),
        ({"features": ["a", "b", "a"]}, ValueError, "features lists column\\(s\\) 'a' more than once"),
    ],
)
def test_argument_errors(tmp_path, kwargs, exc, match):
    p = _write(tmp_path, "d.csv", "a,b\n1,2\n")
    with pytest.raises(exc, match=match):
        load_table(p, **kwargs)


def test_duplicate_csv_header_is_refused_not_renamed(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,a,b,label\n1,2,3,0\n4,5,6,1\n")
    with pytest.raises(ValueError, match=r"duplicate column name.*'a'"):
        load_table(path, label="label")


def test_read_frame_keeps_every_column_and_dtype(tmp_path, frame):
    """read_frame: the whole table, strings stay strings (environment labels, sequence ids)."""
    full = frame.assign(site=["a", "b"] * 4)
    full.to_csv(tmp_path / "t.csv", index=False)
    got = read_frame(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(got, pd.read_csv(tmp_path / "t.csv"))
    assert list(got.columns) == ["age", "bp", "smoker", "target", "site"] and got["site"].tolist() == ["a", "b"] * 4
    with pytest.raises(ValueError, match=r"data file .* does not exist"):
        read_frame(tmp_path / "missing.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match="is not a file"):
        read_frame(tmp_path / "dir.csv")
    with pytest.raises(ValueError, match="cannot tell the format"):
        read_frame(tmp_path / "t.txt")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    with pytest.raises(ValueError, match="duplicate column name"):
        read_frame(tmp_path / "dup.csv")
