"""train(): accuracy, early stopping on validation loss, restoring, reproducibility, checks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from featurelens.models import MLP, SmallTransformer, TrainResult, train


class _TupleModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(x), x


def _separable(n: int = 300, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    # long labels: the superposition and spurious-correlation notebook failed on these
    y = (X @ rng.normal(size=d) > 0).astype(np.int64)
    return X.astype(np.float32), y


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _bce(model: nn.Module, X, y) -> float:
    with torch.no_grad():
        logits = model(torch.as_tensor(X, dtype=torch.float32))
        return float(nn.functional.binary_cross_entropy_with_logits(logits, torch.as_tensor(y).float()))


def test_linearly_separable_reaches_high_validation_accuracy():
    X, y = _separable(400)
    torch.manual_seed(0)
    model = MLP(4, (16,))
    result = train(
        model, X[:300], y[:300], validation_data=(X[300:], y[300:]), epochs=25, lr=2e-2, train_batch_size=64
    )
    assert isinstance(result, TrainResult) and result.model is model
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        pred = model(torch.from_numpy(X[300:])) > 0
    assert (pred.numpy() == y[300:]).mean() > 0.95
    assert list(result.history.columns) == ["epoch", "train_loss", "val_loss"]
    assert result.history["epoch"].tolist() == list(range(1, result.stopped_epoch + 1))


def test_early_stopping_on_noise_labels_and_best_weights_restored():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(160, 10)).astype(np.float32)
    y = rng.integers(0, 2, 160)
    Xv = rng.normal(size=(80, 10)).astype(np.float32)
    yv = rng.integers(0, 2, 80)
    torch.manual_seed(0)
    model = MLP(10, (128, 128))
    result = train(model, X, y, validation_data=(Xv, yv), epochs=200, lr=1e-2, patience=3)
    hist = result.history
    assert result.stopped_epoch < 200 and len(hist) == result.stopped_epoch
    assert result.best_epoch == result.stopped_epoch - 3
    assert result.best_val_loss == hist["val_loss"].min()
    assert hist["val_loss"].idxmin() == result.best_epoch - 1
    assert hist["val_loss"].iloc[-1] > result.best_val_loss  # stopped on a rising validation loss
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[result.best_epoch - 1]
    # the kept weights are the best epoch's: recompute their validation loss
    assert _bce(model, Xv, yv) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_validation_split_is_carved_from_data():
    X, y = _separable(100)
    result = train(MLP(4, (4,)), X, y, epochs=3, validation_fraction=0.25)
    assert result.history["val_loss"].notna().all() and result.best_val_loss > 0


def test_same_seed_bit_identical_other_seed_differs():
    X, y = _separable(120)

    def fit(seed: int, global_seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(3)
        model = MLP(4, (16,), dropout=0.3)  # dropout: training draws random masks
        torch.manual_seed(global_seed)  # the global RNG state must not matter
        train(model, X, y, epochs=4, random_state=seed)
        return _weights(model)

    a, b, c = fit(0, 100), fit(0, 200), fit(1, 100)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_does_not_touch_global_rng():
    X, y = _separable(60)
    model = MLP(4, (4,), dropout=0.5)
    before = torch.get_rng_state()
    train(model, X, y, epochs=2)
    assert torch.equal(before, torch.get_rng_state())


def test_dataframe_series_and_tensor_inputs_match_ndarray():
    X, y = _separable(80)

    def fit(Xin, yin):
        torch.manual_seed(0)
        model = MLP(4, (8,))
        train(model, Xin, yin, epochs=3)
        return _weights(model)

    ref = fit(X, y)
    for Xin, yin in [
        (pd.DataFrame(X, columns=list("abcd")), pd.Series(y)),
        (torch.from_numpy(X), torch.from_numpy(y)),
        (X, y.astype(bool)),
        (X, y.astype(np.float64).reshape(-1, 1)),
    ]:
        other = fit(Xin, yin)
        assert all(torch.equal(ref[k], other[k]) for k in ref)


def test_float64_model_keeps_dtype():
    X, y = _separable(60)
    model = MLP(4, (8,)).double()
    train(model, X, y, epochs=2)
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_cross_entropy_multiclass():
    rng = np.random.default_rng(2)
    centers = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    y = rng.integers(0, 3, 300)
    X = centers[y] + rng.normal(size=(300, 2))
    torch.manual_seed(0)
    model = MLP(2, (16,), 3)
    result = train(model, X, y.astype(np.float32), loss="ce", epochs=20, lr=2e-2, train_batch_size=64)
    with torch.no_grad():
        acc = (model(torch.tensor(X, dtype=torch.float32)).argmax(1).numpy() == y).mean()
    assert acc > 0.95 and result.best_val_loss < 0.3


def test_mse_regression_and_sequence_transformer():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    torch.manual_seed(0)
    result = train(MLP(3, ()), X, y, loss="mse", epochs=80, lr=5e-2)
    assert result.best_val_loss < 1e-3
    seq = rng.normal(size=(40, 5, 3)).astype(np.float32)
    out = train(SmallTransformer(3, hidden_dim=8, n_heads=2), seq, seq.sum(axis=(1, 2)) > 0, epochs=2)
    assert out.stopped_epoch == 2


def test_multi_output_mse_is_mean_over_elements():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(60, 3)), rng.normal(size=(60, 2))
    Xv, Yv = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    model = MLP(3, (4,), 2)
    result = train(model, X, Y, loss="mse", epochs=2, validation_data=(Xv, Yv), patience=None)
    with torch.no_grad():
        pred = model(torch.tensor(Xv, dtype=torch.float32))
    expected = float(nn.functional.mse_loss(pred, torch.tensor(Yv, dtype=torch.float32)))
    assert result.best_val_loss == pytest.approx(expected, rel=1e-5)


def test_no_validation_runs_all_epochs():
    X, y = _separable(50)
    result = train(MLP(4, (4,)), X, y, epochs=4, validation_fraction=0.0)
    assert (result.best_epoch, result.stopped_epoch) == (4, 4)
    assert math.isnan(result.best_val_loss) and result.history["val_loss"].isna().all()


def test_patience_none_runs_all_epochs():
    X, y = _separable(50)
    result = train(MLP(4, (4,)), X, y, epochs=5, patience=None)
    assert result.stopped_epoch == 5
    assert result.best_val_loss == result.history["val_loss"].min()


def test_progress_bar(capsys):
    X, y = _separable(40)
    result = train(MLP(4, (4,)), X, y, epochs=2, progress=True)
    assert result.stopped_epoch == 2


def test_divergence_is_reported():
    X = np.ones((20, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="validation loss was never finite"):
        train(MLP(2, ()), X, np.full(20, 1e30), loss="mse", epochs=2)


@pytest.mark.parametrize(
    ("loss", "y", "error", "match"),
    [
        ("bce", np.array([0, 1, 2, 3] * 5), ValueError, "loss='bce' needs 0/1 labels; y holds 2, 3"),
        ("ce", np.array([0, 1, 2, 3] * 5), ValueError, r"labels must be in \[0, 3\); found 3"),
        ("ce", np.array([0, 1, -1, 2] * 5), ValueError, r"labels must be in \[0, 3\); found -1"),
        ("ce", np.array([0.5, 1, 0, 2] * 5), ValueError, "integer class labels; y holds 0.5"),
        ("bce", np.array(["a", "b"] * 10, dtype=object), TypeError, "y must hold numbers"),
        ("bce", np.array([0, 1, np.nan, 1] * 5), ValueError, "y holds NaN or inf"),
        ("bce", np.array([0, 1]), ValueError, r"y has shape \(2,\) but the inputs have 20 rows"),
        ("ce", np.zeros((20, 2)), ValueError, r"loss='ce' needs labels of shape \(n,\)"),
    ],
)
def test_label_errors(loss, y, error, match):
    X = np.random.default_rng(0).normal(size=(20, 3))
    out = 3 if loss == "ce" else 1
    with pytest.raises(error, match=match):
        train(MLP(3, (4,), out), X, y, loss=loss, epochs=1)


@pytest.mark.parametrize(
    ("loss", "out", "y", "match"),
    [
        ("bce", 3, np.zeros(20), r"loss='bce' needs a model output of shape \(B,\) or \(B, 1\), got \(1, 3\)"),
        ("ce", 1, np.zeros(20), r"loss='ce' needs logits of shape \(B, K\), got \(1,\)"),
        ("mse", 2, np.zeros(20), r"loss='mse': the model output \(1, 2\) does not match targets \(1,\)"),
    ],
)
def test_output_shape_errors(loss, out, y, match):
    X = np.zeros((20, 3))
    with pytest.raises(ValueError, match=match):
        train(MLP(3, (4,), out), X, y, loss=loss, epochs=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"loss": "hinge"}, ValueError, "loss must be one of 'bce', 'mse', 'ce'"),
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"train_batch_size": 2.5}, TypeError, "train_batch_size must be an int"),
        ({"lr": 0.0}, ValueError, r"lr must be in \(0.0, None\]"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay must be in"),
        ({"validation_fraction": 1.0}, ValueError, r"validation_fraction must be in \[0.0, 1.0\)"),
        ({"validation_fraction": 0.99}, ValueError, "leaves no training rows out of 20"),
        ({"patience": 0}, ValueError, "patience must be >= 1"),
        ({"random_state": "seed"}, TypeError, "random_state must be None"),
        ({"validation_data": np.zeros((5, 3))}, TypeError, r"validation_data must be a tuple \(X_val, y_val\)"),
        ({"validation_data": (np.zeros((5, 4)), np.zeros(5))}, ValueError, r"validation X has shape \(5, 4\)"),
        ({"validation_data": (np.zeros((5, 3)), np.full(5, 2))}, ValueError, "validation_data y holds 2"),
    ],
)
def test_argument_errors(kwargs, error, match):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(error, match=match):
        train(MLP(3, (4,)), X, np.zeros(20), **{"epochs": 1, **kwargs})


def test_input_errors():
    X = np.random.default_rng(0).normal(size=(20, 3))
    X[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"X holds NaN or inf in column\(s\) index 1"):
        train(MLP(3, (4,)), X, np.zeros(20))
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got str"):
        train("model", X, np.zeros(20))
    with pytest.raises(TypeError, match="needs a model that returns a tensor, got tuple"):
        train(_TupleModel(), X[:4] * 0, np.zeros(4))
    frozen = MLP(3, (4,)).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameters that require gradients"):
        train(frozen, np.zeros((20, 3)), np.zeros(20))
