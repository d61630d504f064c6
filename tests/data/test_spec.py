"""Tests for featurelens.data._spec: FeatureSpec and read_groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from featurelens.data import FeatureSpec, read_groups
from featurelens.data._spec import default_feature_names

NAMES = ["a", "b", "c", "d"]


def test_default_feature_names():
    assert default_feature_names(3) == ["x0", "x1", "x2"]


def test_names_and_groups_by_name_and_index():
    spec = FeatureSpec(NAMES, {"g1": ["a", "c"], "g2": [1, -1]})
    assert spec.names == ("a", "b", "c", "d")
    assert spec.n_features == 4
    assert spec.groups == {"g1": (0, 2), "g2": (1, 3)}
    assert spec.group_names == ("g1", "g2")
    assert spec.has_groups
    assert spec.groups_as_names() == {"g1": ["a", "c"], "g2": ["b", "d"]}
    assert spec.is_disjoint and spec.is_partition


def test_numpy_and_tensor_members():
    spec = FeatureSpec(NAMES, {"g": np.array([0, 3]), "h": torch.tensor([1, 2]), "s": np.array(["a"])})
    assert spec.groups == {"g": (0, 3), "h": (1, 2), "s": (0,)}


def test_names_are_converted_to_str():
    assert FeatureSpec([1, 2]).names == ("1", "2")


def test_groups_property_is_a_copy():
    spec = FeatureSpec(NAMES, {"g": ["a"]})
    spec.groups["new"] = (1,)
    assert spec.group_names == ("g",)


def test_overlaps_partition_and_require_disjoint():
    spec = FeatureSpec(NAMES, {"g1": ["a", "b"], "g2": ["b", "c"]})
    assert spec.overlaps() == [("g1", "g2", "b")]
    assert not spec.is_disjoint and not spec.is_partition
    with pytest.raises(ValueError, match=r"method 'shapley' needs disjoint .* 'g1' and 'g2' both contain feature 'b'"):
        spec.require_disjoint("shapley")
    FeatureSpec(NAMES, {"g1": ["a"]}).require_disjoint("shapley")  # no error
    assert not FeatureSpec(NAMES, {"g1": ["a"]}).is_partition  # does not cover
    assert not FeatureSpec(NAMES).is_partition  # no groups


def test_players_and_masks():
    spec = FeatureSpec(NAMES)
    names, members = spec.players()
    assert names == NAMES and members == [(0,), (1,), (2,), (3,)]
    assert torch.equal(spec.masks(), torch.eye(4, dtype=torch.bool))
    grouped = FeatureSpec(NAMES, {"g1": ["a", "d"], "g2": ["b"]})
    assert grouped.players() == (["g1", "g2"], [(0, 3), (1,)])
    expected = torch.tensor([[True, False, False, True], [False, True, False, False]])
    assert torch.equal(grouped.masks(), expected)


def test_with_groups_eq_hash_repr():
    spec = FeatureSpec(NAMES)
    g = spec.with_groups({"g": ["a"]})
    assert g == FeatureSpec(NAMES, {"g": [0]})
    assert g != spec and spec != "not a spec"
    assert repr(g) == "FeatureSpec(names=['a', 'b', 'c', 'd'], groups={'g': ['a']})"
    assert repr(spec) == "FeatureSpec(names=['a', 'b', 'c', 'd'])"


def test_hash_consistent_with_eq_when_group_order_differs():
    s1 = FeatureSpec(NAMES, {"g1": ["a"], "g2": ["b"]})
    s2 = FeatureSpec(NAMES, {"g2": ["b"], "g1": ["a"]})
    assert s1 == s2
    assert hash(s1) == hash(s2)
    assert len({s1, s2}) == 1


@pytest.mark.parametrize(
    ("names", "groups", "exc", "match"),
    [
        ("abc", None, TypeError, "names must be a sequence of feature names, got str"),
        (5, None, TypeError, "names must be a sequence of feature names, got int"),
        ([], None, ValueError, "at least one feature name"),
        (["a", ""], None, ValueError, "feature name at index 1 is empty"),
        (["a", "b", "a"], None, ValueError, "duplicate feature name 'a' at indices 0 and 2"),
        (NAMES, [("g", ["a"])], TypeError, "groups must be a mapping .* got list"),
        (NAMES, {"": ["a"]}, ValueError, "group names must be non-empty"),
        (NAMES, {1: ["a"], "1": ["b"]}, ValueError, "duplicate group name '1'"),
        (NAMES, {"g": "a"}, TypeError, "group 'g' must be a list .* got str"),
        (NAMES, {"g": 0}, TypeError, "group 'g' must be a list .* got int"),
        (NAMES, {"g": {"a"}}, TypeError, "group 'g' must be a list .* got set"),
        (NAMES, {"g": []}, ValueError, "group 'g' is empty"),
        (NAMES, {"g": [torch.tensor([0, 1])]}, TypeError, r"group 'g': member is a tensor of shape \(2,\)"),
        (NAMES, {"g": [True]}, TypeError, "group 'g': member True is a bool"),
        (NAMES, {"g": [np.bool_(False)]}, TypeError, "group 'g': member False is a bool"),
        (NAMES, {"g": ["zz"]}, ValueError, "group 'g': unknown feature name 'zz'"),
        (NAMES, {"g": [4]}, ValueError, "group 'g': feature index 4 out of range for 4 features"),
        (NAMES, {"g": [-5]}, ValueError, "group 'g': feature index -5 out of range"),
        (NAMES, {"g": [1.0]}, TypeError, "group 'g': member 1.0 is neither a feature name nor an int"),
        (NAMES, {"g": [torch.tensor(0.7)]}, TypeError, "group 'g': member 0.69999.* is neither"),
        (NAMES, {"g": [np.float64(2.0)]}, TypeError, "group 'g': member 2.0 is neither"),
        (NAMES, {"g": ["a", 0]}, ValueError, "group 'g': feature 'a' listed twice"),
        (NAMES, {"g": [3, -1]}, ValueError, "group 'g': feature 'd' listed twice"),
    ],
)
def test_spec_errors(names, groups, exc, match):
    with pytest.raises(exc, match=match):
        FeatureSpec(names, groups)


# -- read_groups ---------------------------------------------------------------


def test_read_groups_yaml_and_json(tmp_path):
    y = tmp_path / "groups.yaml"
    y.write_text("clinical: [heart_rate, bp]\nadministrative: [insurance, 3]\n", encoding="utf-8")
    assert read_groups(y) == {"clinical": ["heart_rate", "bp"], "administrative": ["insurance", 3]}
    j = tmp_path / "groups.json"
    j.write_text(json.dumps({"g": ["a", "b"], "7": [0]}), encoding="utf-8")
    assert read_groups(str(j)) == {"g": ["a", "b"], "7": [0]}
    spec = FeatureSpec(["heart_rate", "bp", "insurance", "day"], read_groups(y))
    assert spec.groups == {"clinical": (0, 1), "administrative": (2, 3)}


@pytest.mark.parametrize(
    ("filename", "content", "match"),
    [
        ("bad.yaml", b"g: [a, b\n", "is not valid YAML/JSON"),
        ("bad.json", b"{'g': [1]}", "is not valid YAML/JSON"),
        ("latin.yaml", "g: [é]\n".encode("latin-1"), "is not valid YAML/JSON"),
        ("empty.yaml", b"", "must hold a non-empty mapping"),
        ("list.yaml", b"- a\n- b\n", "must hold a non-empty mapping"),
        ("scalar.json", b"[]", "must hold a non-empty mapping"),
        ("member.yaml", b"g: a\n", "group 'g' must be a list"),
    ],
)
def test_read_groups_errors(tmp_path, filename, content, match):
    p = tmp_path / filename
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_groups(p)
    assert filename in str(info.value)


def test_read_groups_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"groups file '.*nope\.yaml' does not exist"):
        read_groups(tmp_path / "nope.yaml")
