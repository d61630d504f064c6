"""load_runs: validation, dropping, per-run z-scores, constant columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from featurelens.dynamics._runs import load_runs

METRICS = ["l1", "l2", "flat"]


def _run(rng, n=12, *, offset=0.0, start=0):
    steps = np.arange(start, start + n) * 10
    return pd.DataFrame({
        "step": steps,
        "epoch": steps / 100,
        "l1": offset + np.cumsum(rng.normal(size=n)),
        "l2": rng.normal(size=n) * 3 + 7,
        "flat": np.full(n, 2.5),
        "train_loss": np.exp(-steps / 50),
    })


@pytest.fixture()
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        frame = _run(rng, offset=i)
        frame = frame.sample(frac=1.0, random_state=i)  # unsorted on disk
        frame.to_csv(tmp_path / f"run{i}.csv", index=False)
    return tmp_path


def test_zscores_match_scipy_and_rows_are_sorted(run_dir):
    runs = load_runs(str(run_dir / "*.csv"), metrics=METRICS)
    assert runs.run_ids == ["run0", "run1", "run2"]
    assert runs.metrics == tuple(METRICS)
    for i, (seq, frame) in enumerate(zip(runs.sequences, runs.frames, strict=True)):
        assert frame["step"].is_monotonic_increasing and frame.index.tolist() == list(range(12))
        raw = pd.read_csv(run_dir / f"run{i}.csv").sort_values("step")[METRICS[:2]].to_numpy()
        np.testing.assert_allclose(seq[:, :2], stats.zscore(raw, axis=0, ddof=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(runs.to_raw(i, seq)[:, :2], raw, rtol=1e-12)
        np.testing.assert_allclose(runs.std[i, :2], raw.std(axis=0), rtol=1e-12)
    # the constant column: z = 0 (scipy would give NaN), flagged, its raw-unit factor 0
    assert all((s[:, 2] == 0).all() for s in runs.sequences)
    assert runs.constant[:, 2].all() and not runs.constant[:, :2].any()
    assert runs.raw_scale()[0].tolist() == pytest.approx([1 / runs.std[0, 0], 1 / runs.std[0, 1], 0])
    assert runs.lengths == [12, 12, 12]


def test_first_n_sort_by_epoch_and_list_input(run_dir):
    runs = load_runs([run_dir / "run0.csv", run_dir / "run1.csv"], metrics=["l2"], first_n=5, sort_by="epoch")
    assert runs.lengths == [5, 5]
    raw = pd.read_csv(run_dir / "run1.csv").sort_values("epoch")["l2"].to_numpy()[:5]
    np.testing.assert_allclose(runs.sequences[1][:, 0], stats.zscore(raw), atol=1e-12)
    assert runs.sort_by == "epoch"


def test_directory_and_run_id_column_and_parquet(tmp_path):
    rng = np.random.default_rng(1)
    both = pd.concat([_run(rng).assign(run_id="a"), _run(rng).assign(run_id="b")])
    both.to_parquet(tmp_path / "many.parquet", index=False)
    runs = load_runs(tmp_path, metrics=["l1", "l2"])
    assert runs.run_ids == ["a", "b"]
    np.testing.assert_allclose(runs.frames[1]["l1"].to_numpy(), both[both.run_id == "b"]["l1"].to_numpy())


def test_invalid_runs_dropped_with_reasons_or_raised(run_dir):
    rng = np.random.default_rng(2)
    bad = _run(rng)
    bad.loc[3, "l2"] = np.nan
    bad.loc[4, "l1"] = np.inf
    bad.to_csv(run_dir / "nan.csv", index=False)
    _run(rng, n=1).to_csv(run_dir / "short.csv", index=False)
    dup = _run(rng)
    dup.loc[1, "step"] = 0
    dup.to_csv(run_dir / "dup.csv", index=False)
    runs = load_runs(run_dir, metrics=METRICS)
    assert runs.run_ids == ["run0", "run1", "run2"]
    assert runs.dropped == {
        "dup": "repeated step values (e.g. 0)",
        "nan": "NaN or inf in 'l1' (1 rows), 'l2' (1 rows)",
        "short": "1 row(s); at least 2 are needed",
    }
    # a NaN beyond first_n does not matter
    assert "nan" in load_runs(run_dir / "nan.csv", metrics=METRICS, first_n=3).run_ids
    with pytest.raises(ValueError, match=r"run 'dup' .* is invalid: repeated step values"):
        load_runs(run_dir, metrics=METRICS, on_invalid="raise")
    with pytest.raises(ValueError, match="every run is invalid"):
        load_runs(run_dir / "nan.csv", metrics=METRICS)


def test_errors(run_dir, tmp_path):
    with pytest.raises(ValueError, match=r"is missing column\(s\) 'nope', 'trace'; available"):
        load_runs(run_dir, metrics=["l1", "nope", "trace"])
    with pytest.raises(ValueError, match=r"glob pattern .* matches no file"):
        load_runs(str(run_dir / "*.parquet"), metrics=METRICS)
    with pytest.raises(ValueError, match=r"run file .* does not exist"):
        load_runs(run_dir / "missing.csv", metrics=METRICS)
    with pytest.raises(ValueError, match="metrics is empty"):
        load_runs(run_dir, metrics=[])
    with pytest.raises(TypeError, match="metrics must be a list of column names"):
        load_runs(run_dir, metrics="l1")
    with pytest.raises(ValueError, match="metrics lists 'l1' more than once"):
        load_runs(run_dir, metrics=["l1", "l1"])
    with pytest.raises(ValueError, match="sort_by must be one of"):
        load_runs(run_dir, metrics=METRICS, sort_by="time")
    with pytest.raises(ValueError, match="on_invalid must be one of"):
        load_runs(run_dir, metrics=METRICS, on_invalid="ignore")
    with pytest.raises(ValueError, match="first_n must be >= 2"):
        load_runs(run_dir, metrics=METRICS, first_n=1)
    with pytest.raises(ValueError, match="paths_or_glob is empty"):
        load_runs([], metrics=METRICS)
    frame = pd.read_csv(run_dir / "run0.csv").assign(l1="x")
    frame.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(ValueError, match=r"column\(s\) 'l1' are not numeric"):
        load_runs(tmp_path / "text.csv", metrics=METRICS)
    sub = tmp_path / "sub"
    sub.mkdir()
    pd.read_csv(run_dir / "run0.csv").assign(run_id="run0").to_csv(sub / "other.csv", index=False)
    with pytest.raises(ValueError, match="run id 'run0' occurs in"):
        load_runs([run_dir / "run0.csv", sub / "other.csv"], metrics=METRICS)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"holds no \.csv or \.parquet file"):
        load_runs(empty, metrics=METRICS)


def test_save_and_read_runs_round_trip(run_dir, tmp_path):
    from featurelens.dynamics._runs import read_saved_runs, save_runs

    runs = load_runs(run_dir, metrics=METRICS)
    save_runs(runs, tmp_path / "runs.npz")
    back = read_saved_runs(tmp_path / "runs.npz")
    assert back.run_ids == runs.run_ids and back.metrics == runs.metrics and back.sort_by == "step"
    for a, b in zip(runs.sequences, back.sequences, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.constant, runs.constant)
    np.testing.assert_allclose(back.frames[1]["l1"], runs.frames[1]["l1"], rtol=1e-12)
    np.testing.assert_array_equal(back.frames[2]["step"], runs.frames[2]["step"])
    with pytest.raises(ValueError, match="does not exist"):
        read_saved_runs(tmp_path / "nope.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="is not a saved-runs file"):
        read_saved_runs(tmp_path / "other.npz")


def test_raw_scale_matches_raw_unit_posterior_gradient(run_dir):
    from featurelens.dynamics import GaussianHMM, posterior_gradient

    runs = load_runs(run_dir, metrics=["l1", "l2"])
    model = GaussianHMM(startprob=[0.6, 0.4], transmat=[[0.9, 0.1], [0.2, 0.8]],
                        means=[[-0.5, 0.2], [0.7, -0.3]], covars=[[1.0, 0.5], [0.8, 1.2]], covariance_type="diag")
    z_units = posterior_gradient(model, runs.sequences)
    raw = posterior_gradient(model, runs.sequences, units="raw", scale=runs.std)
    for g, r, factor in zip(z_units, raw, runs.raw_scale(), strict=True):
        np.testing.assert_allclose(g * factor, r, rtol=1e-12, atol=0)


def test_to_frame_and_to_dict(run_dir):
    runs = load_runs(str(run_dir / "*.csv"), metrics=METRICS)
    frame = runs.to_frame()
    assert frame.to_dict(orient="list") == {"run_id": ["run0", "run1", "run2"], "n_checkpoints": [12, 12, 12],
                                            "constant_metrics": ["flat", "flat", "flat"]}
    d = runs.to_dict()
    assert d == {"run_ids": ["run0", "run1", "run2"], "lengths": [12, 12, 12], "dropped": {}, "sort_by": "step",
                 "constant_columns": {r: ["flat"] for r in ("run0", "run1", "run2")}, "metrics": list(METRICS)}
    assert "<table" in runs._repr_html_() and "3 runs" in runs._repr_html_()
