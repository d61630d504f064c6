"""Small hand-built explanations with a known dominant group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featurelens.attribution import Explanation

GROUPS = ["age", "spurious", "income", "region"]
SCALES = np.array([1.0, 3.0, 0.5, 0.2])  # "spurious" dominates, "age" second


@pytest.fixture
def attribution() -> Explanation:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 4)) * SCALES
    return Explanation(values, names=GROUPS, axes=("sample", "group"), method="shap",
                       params={"n_samples": 32}, target={"target": None, "link": "sigmoid"},
                       model_fingerprint="m123", data_fingerprint="d456")


@pytest.fixture
def permutation() -> Explanation:
    rng = np.random.default_rng(1)
    scores = np.array([0.05, 0.30, 0.02, 0.0]) + rng.normal(scale=0.01, size=(5, 4))
    return Explanation(None, names=GROUPS, axes=("sample", "group"), method="permutation",
                       scores=scores, params={"metric": "auc", "n_repeats": 5})


@pytest.fixture
def history() -> pd.DataFrame:
    epoch = np.arange(1, 9)
    val = np.array([0.9, 0.7, 0.55, 0.5, 0.48, 0.49, 0.52, 0.56])
    return pd.DataFrame({"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": val})
