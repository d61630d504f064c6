"""Sweeps: tidy tables whose numbers can be recomputed from the returned models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurelens.data import train_val_test_split
from featurelens.internals import (
    architecture_sweep,
    capacity_sweep,
    layer_summary,
    scale_sweep,
    token_data,
)
from featurelens.representation import group_overlap


@pytest.fixture(scope="module")
def capacity():
    return capacity_sweep(n_groups=(3,), hidden_dims=(4, 16), group_dim=4, n_samples=400, epochs=3,
                          random_state=0, keep_models=True)


def test_capacity_table_recomputes(capacity):
    t = capacity.table
    assert list(t["hidden_dim"]) == [4, 16] and (t["n_features"] == 12).all()
    np.testing.assert_allclose(t["features_per_dim"], [3.0, 0.75])
    model = capacity.models[(3, 16)]
    names = [f"x{i}" for i in range(12)]
    groups = {f"genuine_{g}": names[4 * g:4 * g + 4] for g in range(3)}
    ov = group_overlap(model.input_proj.weight, groups, feature_names=names).to_numpy()
    off = ov[~np.eye(3, dtype=bool)]
    assert t.loc[1, "overlap_mean"] == pytest.approx(off.mean(), rel=1e-9)
    assert t.loc[1, "overlap_max"] == pytest.approx(off.max(), rel=1e-9)


def test_capacity_overlap_is_forced_when_features_exceed_dimensions(capacity):
    # 12 features written into 4 dimensions: each 4-column group spans (almost) the whole space
    t = capacity.table
    assert t.loc[0, "overlap_mean"] > 0.95
    assert t.loc[1, "overlap_mean"] < 0.6


def test_capacity_is_reproducible(capacity):
    again = capacity_sweep(n_groups=(3,), hidden_dims=(4, 16), group_dim=4, n_samples=400, epochs=3, random_state=0)
    assert again.table.equals(capacity.table)


def test_token_data_layout():
    x, y, names = token_data(50, n_groups=2, group_dim=3, bias_strength=0.8, random_state=1)
    assert x.shape == (50, 3, 6) and names == ["genuine_0", "genuine_1", "spurious"]
    np.testing.assert_array_equal(x[:, :, 3:], np.broadcast_to(np.eye(3), (50, 3, 3)))
    from featurelens.datasets import make_biased

    d = make_biased(50, n_groups=2, group_dim=3, bias_strength=0.8, random_state=1)
    np.testing.assert_allclose(x[:, 2, :3], np.asarray(d.X)[:, 6:9])
    np.testing.assert_array_equal(y, np.asarray(d.y))


def test_scale_sweep_layers_and_means():
    r = scale_sweep(widths=(8,), depths=(1, 2), n_groups=2, group_dim=2, n_samples=300, epochs=2,
                    n_heads=2, random_state=0, keep_models=True)
    assert len(r.layers) == 3 and list(r.table["depth"]) == [1, 2]
    deep = r.layers[r.layers["depth"] == 2]
    assert r.table.loc[1, "effective_rank"] == pytest.approx(deep["effective_rank"].mean())
    assert ((r.layers["attention_entropy"] >= 0) & (r.layers["attention_entropy"] <= np.log(3) + 1e-9)).all()
    # recompute one layer's effective rank from the kept model and the same test split
    x, y, _ = token_data(300, n_groups=2, group_dim=2, bias_strength=0.8, random_state=_seed_of(r, 1))
    x_te = torch.as_tensor(train_val_test_split(x, y, random_state=_seed_of(r, 1)).test[0])
    want = layer_summary(r.models[(8, 2)], x_te, modules=["transformer_layers.1"], random_state=_seed_of(r, 1))
    assert deep.iloc[1]["effective_rank"] == pytest.approx(want.iloc[0]["effective_rank"], rel=1e-9)
    d = r.to_dict()
    assert d["sweep"] == "scale" and d["params"]["widths"] == [8]
    assert [row["effective_rank"] for row in d["layers"]] == r.layers["effective_rank"].tolist()
    assert r.to_frame().equals(r.table) and "<table" in r._repr_html_()


def _seed_of(result, i):
    from featurelens._validation import check_random_state
    from featurelens.internals._sweeps import _seeds

    return _seeds(check_random_state(0), len(result.table))[i]


def test_architecture_sweep_small():
    r = architecture_sweep(architectures=("small", "hierarchical"), hidden_dim=8, n_groups=2, group_dim=2,
                           n_samples=300, epochs=2, noise_levels=(0.0,), random_state=0)
    t = r.table
    assert list(t["architecture"]) == ["small", "hierarchical"]
    assert (t["noise_sensitivity"] == 0).all()  # zero noise changes nothing
    assert ((t["spurious_share"] >= 0) & (t["spurious_share"] <= 1)).all()
    assert ((t["test_accuracy"] >= 0) & (t["shifted_accuracy"] <= 1)).all()


def test_sweep_errors():
    with pytest.raises(ValueError, match="n_groups must be a non-empty sequence"):
        capacity_sweep(n_groups=())
    with pytest.raises(ValueError, match="not divisible by n_heads"):
        capacity_sweep(hidden_dims=(3,), n_heads=2)
    with pytest.raises(ValueError, match="widths"):
        scale_sweep(widths=(0,))
    with pytest.raises(ValueError, match="architectures must be among"):
        architecture_sweep(architectures=("mamba",))
    with pytest.raises(ValueError, match="noise_levels"):
        architecture_sweep(noise_levels=(-1.0,))
