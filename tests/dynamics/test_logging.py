"""Weight metrics against hand computations; the logger's rows and files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from featurelens.dynamics._logging import (
    METRIC_NAMES,
    MetricsLogger,
    kernel_metrics,
    lower_median,
    matrix_metrics,
    weight_metrics,
)


def _linear(weight, bias=None):
    w = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


def test_matrix_metrics_by_hand_non_square():
    # W (3 x 2) = [[3, 0], [0, 4], [0, 0]]: singular values 4 and 3
    m = matrix_metrics(torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]]))
    assert m["l1"] == 7.0
    assert m["l2"] == pytest.approx(5.0, abs=1e-12)
    assert m["trace"] == 7.0  # min(3, 2) = 2 diagonal entries
    assert m["spectral"] == pytest.approx(4.0, abs=1e-12)
    assert m["code_sparsity"] == pytest.approx(7 / 5, abs=1e-12)
    assert m["computational_sparsity"] == pytest.approx(7 / 4, abs=1e-12)
    assert m["mean_singular_value"] == pytest.approx(3.5, abs=1e-12)
    assert m["var_singular_value"] == pytest.approx(0.5, abs=1e-12)  # Bessel: (0.25 + 0.25) / 1
    m0 = matrix_metrics(torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]]), ddof=0)
    assert m0["var_singular_value"] == pytest.approx(0.25, abs=1e-12)


def test_singular_value_threshold_sets_small_values_to_zero_and_keeps_them_counted():
    w = torch.diag(torch.tensor([2.0, 1e-6, 4e-6], dtype=torch.float64))
    m = matrix_metrics(w)
    assert m["mean_singular_value"] == pytest.approx(2.0 / 3, abs=1e-12)
    assert m["var_singular_value"] == pytest.approx(np.var([2.0, 0.0, 0.0], ddof=1), abs=1e-12)
    loose = matrix_metrics(w, sv_threshold=0.0)
    assert loose["mean_singular_value"] == pytest.approx((2.0 + 1e-6 + 4e-6) / 3, abs=1e-12)


def test_non_finite_matrix_gives_nan():
    m = matrix_metrics(torch.tensor([[1.0, math.nan], [0.0, 1.0]]))
    assert all(math.isnan(v) for v in m.values())


def test_lower_median_even_count():
    assert lower_median(torch.tensor([4.0, 1.0, 3.0, 2.0])) == 2.0
    assert lower_median(torch.tensor([5.0, 1.0, 3.0])) == 3.0


def test_weight_metrics_mlp_by_hand():
    a = _linear([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]], bias=[1.0, 2.0, 3.0])
    b = _linear([[1.0, 1.0, 0.0]], bias=[-2.0])
    model = nn.Sequential(a, nn.ReLU(), b)
    got = weight_metrics(model)
    assert list(got) == list(METRIC_NAMES)
    ma = matrix_metrics(a.weight)
    # second matrix [1, 1, 0]: l1 2, l2 sqrt 2, trace 1, spectral sqrt 2, one singular value
    assert got["l1"] == pytest.approx((7 + 2) / 2)
    assert got["l2"] == pytest.approx((5 + math.sqrt(2)) / 2)
    assert got["trace"] == pytest.approx((7 + 1) / 2)
    assert got["spectral"] == pytest.approx((4 + math.sqrt(2)) / 2)
    assert got["code_sparsity"] == pytest.approx((ma["code_sparsity"] + math.sqrt(2)) / 2)
    assert got["computational_sparsity"] == pytest.approx((7 / 4 + 1 / math.sqrt(2)) / 2)
    assert got["mean_singular_value"] == pytest.approx((3.5 + math.sqrt(2)) / 2)
    # one singular value: variance with Bessel is undefined (NaN); the mean over matrices is NaN too
    assert math.isnan(got["var_singular_value"])
    weights = np.array([3, 0, 0, 4, 0, 0, 1, 1, 0], dtype=np.float64)
    assert got["mean_w"] == pytest.approx(weights.mean())
    assert got["median_w"] == 0.0
    assert got["var_w"] == pytest.approx(weights.var(ddof=1))
    biases = np.array([1, 2, 3, -2], dtype=np.float64)
    assert got["mean_b"] == pytest.approx(biases.mean())
    assert got["median_b"] == 1.0  # lower median of [-2, 1, 2, 3]
    assert got["var_b"] == pytest.approx(biases.var(ddof=1))
    pop = weight_metrics(model, ddof=0)
    assert pop["var_w"] == pytest.approx(weights.var())
    assert pop["var_b"] == pytest.approx(biases.var())
    assert pop["var_singular_value"] == pytest.approx((0.25 + 0.0) / 2)


def test_weight_metrics_skips_norm_layers_and_embeddings_and_reports_no_bias_keys():
    model = nn.Sequential(nn.Embedding(5, 2), nn.LayerNorm(2), _linear([[1.0, 2.0], [3.0, 4.0]]))
    got = weight_metrics(model)
    ref = matrix_metrics(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    for k, v in ref.items():
        assert got[k] == pytest.approx(v)
    assert got["mean_w"] == pytest.approx(2.5)
    assert not any(k.endswith("_b") for k in got)


def test_conv_kernel_per_slice_by_hand():
    conv = nn.Conv2d(1, 2, kernel_size=2, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -1.0], [1.0, 1.0]]], [[[3.0, 0.0], [0.0, 4.0]]]]))
        conv.bias.copy_(torch.tensor([0.5, -0.5]))
    k = kernel_metrics(conv.weight)
    # slice 1: l1 4, l2 2; slice 2: l1 7, l2 5
    assert k["l1"] == pytest.approx(5.5)
    assert k["l2"] == pytest.approx(3.5)
    assert k["code_sparsity"] == pytest.approx((2.0 + 1.4) / 2)
    fc = _linear([[2.0, 0.0], [0.0, 1.0]])
    got = weight_metrics(nn.Sequential(conv, nn.Flatten(), fc))
    # l1/l2/code_sparsity average the conv layer and the matrix; trace etc. come from the matrix alone
    assert got["l1"] == pytest.approx((5.5 + 3.0) / 2)
    assert got["l2"] == pytest.approx((3.5 + math.sqrt(5)) / 2)
    assert got["trace"] == pytest.approx(3.0)
    assert got["spectral"] == pytest.approx(2.0)
    assert got["mean_singular_value"] == pytest.approx(1.5)
    allw = np.array([1, -1, 1, 1, 3, 0, 0, 4, 2, 0, 0, 1], dtype=np.float64)
    assert got["mean_w"] == pytest.approx(allw.mean())
    assert got["var_w"] == pytest.approx(allw.var(ddof=1))
    assert got["mean_b"] == pytest.approx(0.0)
    assert got["median_b"] == -0.5


def test_attention_per_head_split_matches_manual_blocks():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(embed_dim=4, num_heads=2, bias=True)
    w = mha.in_proj_weight.detach().double()
    whole = weight_metrics(mha)
    split = weight_metrics(mha, per_head=True)
    blocks_whole = [w[:4], w[4:8], w[8:], mha.out_proj.weight.detach().double()]
    blocks_head = [w[i:i + 2] for i in range(0, 12, 2)] + [mha.out_proj.weight.detach().double()]
    for got, blocks in ((whole, blocks_whole), (split, blocks_head)):
        ref = [matrix_metrics(b) for b in blocks]
        for key in ("l1", "trace", "spectral", "mean_singular_value"):
            assert got[key] == pytest.approx(np.mean([r[key] for r in ref]), rel=1e-12)
    assert whole["mean_w"] == pytest.approx(split["mean_w"])  # the global stats do not depend on splitting


def test_heads_option_and_include():
    layer = _linear([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 4.0]], bias=[1.0, 1.0, 1.0, 1.0])
    other = _linear([[5.0, 5.0, 5.0, 5.0]])
    model = nn.Sequential(layer, other)
    got = weight_metrics(model, heads={"0.weight": 2}, include=["0.weight"])
    assert got["l1"] == pytest.approx((3 + 7) / 2)
    assert got["trace"] == pytest.approx((3 + 7) / 2)  # [[1,0],[0,2]] and [[3,0],[0,4]]
    assert got["spectral"] == pytest.approx((2 + 4) / 2)
    assert "mean_b" not in got
    with pytest.raises(ValueError, match=r"heads\['0.weight'\] = 3 does not divide"):
        weight_metrics(model, heads={"0.weight": 3})
    with pytest.raises(ValueError, match="include names unknown parameter"):
        weight_metrics(model, include=["nope"])
    with pytest.raises(ValueError, match=r"include names parameter\(s\) \['1.weight'\] that are not weight"):
        weight_metrics(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)), include=["0.weight", "1.weight"])
    with pytest.raises(ValueError, match="heads names unknown parameter 'x'"):
        weight_metrics(model, heads={"x": 2})


def test_weight_metrics_errors_and_model_untouched():
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    weight_metrics(model)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="ddof must be 0 or 1"):
        weight_metrics(model, ddof=2)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        weight_metrics("model")
    with pytest.raises(ValueError, match="no included weight tensor"):
        weight_metrics(nn.ReLU())
    with pytest.raises(ValueError, match="sv_threshold must be in"):
        weight_metrics(model, sv_threshold=-1.0)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_logger_rows_and_file(tmp_path, suffix):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = tmp_path / f"run{suffix}"
    with MetricsLogger(path, run_id="r0", flush_every=2) as log:
        for step in (0, 10, 20):
            with torch.no_grad():
                model[0].weight.mul_(1.5)
            log.log(model, step=step, epoch=step / 10, train_loss=1.0 / (step + 1), acc=torch.tensor(0.5))
    frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    if suffix == ".csv.gz":
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzip-compressed
    assert list(frame.columns) == ["run_id", "step", "epoch", *METRIC_NAMES, "train_loss", "acc"]
    assert frame["step"].tolist() == [0, 10, 20]
    assert frame["run_id"].tolist() == ["r0"] * 3
    assert frame["l1"].is_monotonic_increasing
    assert frame.loc[2, "l2"] == pytest.approx(weight_metrics(model)["l2"], rel=1e-12)
    assert frame["train_loss"].tolist() == pytest.approx([1.0, 1 / 11, 1 / 21])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_logger_errors(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"must end in \.csv"):
        MetricsLogger(tmp_path / "run.txt", run_id="a")
    with pytest.raises(ValueError, match="run_id must be a non-empty string"):
        MetricsLogger(tmp_path / "run.csv", run_id="")
    with pytest.raises(ValueError, match="directory of path"):
        MetricsLogger(tmp_path / "missing" / "run.csv", run_id="a")
    with pytest.raises(TypeError, match="unknown weight_metrics option"):
        MetricsLogger(tmp_path / "run.csv", run_id="a", bogus=1)
    log = MetricsLogger(tmp_path / "run.csv", run_id="a")
    log.log(model, step=5, loss=1.0)
    with pytest.raises(ValueError, match="already exists"):
        MetricsLogger(tmp_path / "run.csv", run_id="a")
    with pytest.raises(ValueError, match="step must increase"):
        log.log(model, step=5, loss=1.0)
    with pytest.raises(ValueError, match="same user scalars"):
        log.log(model, step=6, other=1.0)
    with pytest.raises(ValueError, match="clash with metric or id columns"):
        log.log(model, step=7, l1=1.0)
    with pytest.raises(TypeError, match="user scalar 'loss' must be a number"):
        log.log(model, step=8, loss="x")


def test_custom_parameter_names_follow_the_suffix_rule():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj_weight = nn.Parameter(torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]]))
            self.proj_bias = nn.Parameter(torch.tensor([1.0, 5.0]))
            self.scale = nn.Parameter(torch.tensor([100.0, 100.0]))  # neither weight nor bias: ignored

    got = weight_metrics(Custom())
    assert got["l1"] == 7.0 and got["trace"] == 7.0
    assert got["mean_w"] == pytest.approx(7 / 6) and got["mean_b"] == 3.0 and got["median_b"] == 1.0
