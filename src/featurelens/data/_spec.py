"""Feature names and named feature groups over the last input axis."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

#: the members of one feature group: feature names or integer indices over the last input axis
GroupMembers = Sequence[str | int]


def default_feature_names(n_features: int) -> list[str]:
    """Names ``x0 .. x{n-1}`` used when the data carries none.

    Parameters
    ----------
    n_features : int
        Number of features ``d`` (the size of the last input axis).

    Returns
    -------
    list of str
        ``["x0", "x1", ..., f"x{d - 1}"]``.
    """
    return [f"x{i}" for i in range(n_features)]


class FeatureSpec:
    """Feature names and optional named groups of features.

    A group is a list of feature names or integer indices over the last axis
    of the inputs; for sequence inputs ``(n, T, d)`` a group covers its
    columns at every time step.

    Parameters
    ----------
    names : sequence of str
        One unique, non-empty name per feature (last input axis).
    groups : mapping of str to sequence of (str or int), optional
        Named groups. Groups may overlap and need not cover every feature;
        methods that need a partition of the features (exact and sampled
        Shapley values, whose players must be disjoint) reject overlapping
        groups through :meth:`require_disjoint`.

    Raises
    ------
    ValueError
        On duplicate or empty feature names, an empty group, an unknown
        feature name, an index out of range or a repeated member in a group.
    TypeError
        If a group member is neither str nor int.
    """

    def __init__(self, names: Sequence[str], groups: Mapping[str, GroupMembers] | None = None):
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise TypeError(f"names must be a sequence of feature names, got {type(names).__name__}")
        names = [str(n) for n in names]
        if len(names) == 0:
            raise ValueError("names must hold at least one feature name")
        seen: dict[str, int] = {}
        for i, n in enumerate(names):
            if n == "":
                raise ValueError(f"feature name at index {i} is empty")
            if n in seen:
                raise ValueError(f"duplicate feature name {n!r} at indices {seen[n]} and {i}")
            seen[n] = i
        self._names = tuple(names)
        self._index = seen
        self._groups: dict[str, tuple[int, ...]] = {}
        if groups is not None:
            if not isinstance(groups, Mapping):
                raise TypeError(f"groups must be a mapping of group name to members, got {type(groups).__name__}")
            for gname, members in groups.items():
                key = str(gname)
                if key == "":
                    raise ValueError("group names must be non-empty strings, got ''")
                if key in self._groups:
                    raise ValueError(f"duplicate group name {key!r} (group names are compared as str)")
                self._groups[key] = self._resolve(key, members)

    def _resolve(self, gname: str, members: GroupMembers) -> tuple[int, ...]:
        if isinstance(members, (str, int)) or not isinstance(members, Sequence | np.ndarray | torch.Tensor):
            raise TypeError(f"group {gname!r} must be a list of feature names or indices, got {type(members).__name__}")
        if len(members) == 0:
            raise ValueError(f"group {gname!r} is empty")
        out: list[int] = []
        d = len(self._names)
        for m in list(members):
            if isinstance(m, (np.generic, torch.Tensor)):
                if isinstance(m, torch.Tensor) and m.numel() != 1:
                    raise TypeError(f"group {gname!r}: member is a tensor of shape {tuple(m.shape)}, not a scalar")
                m = m.item()  # a float stays a float (rejected below), never truncated to int
            if isinstance(m, bool):
                raise TypeError(f"group {gname!r}: member {m!r} is a bool, not a feature name or index")
            if isinstance(m, str):
                if m not in self._index:
                    raise ValueError(f"group {gname!r}: unknown feature name {m!r}")
                idx = self._index[m]
            elif isinstance(m, int):
                if not -d <= m < d:
                    raise ValueError(f"group {gname!r}: feature index {m} out of range for {d} features")
                idx = m % d
            else:
                raise TypeError(f"group {gname!r}: member {m!r} is neither a feature name nor an int index")
            if idx in out:
                raise ValueError(f"group {gname!r}: feature {self._names[idx]!r} listed twice")
            out.append(idx)
        return tuple(out)

    # -- accessors -------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Feature names, one per column of the last axis."""
        return self._names

    @property
    def n_features(self) -> int:
        return len(self._names)

    @property
    def groups(self) -> dict[str, tuple[int, ...]]:
        """Group name -> tuple of feature indices (a copy)."""
        return dict(self._groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self._groups)

    @property
    def has_groups(self) -> bool:
        return bool(self._groups)

    def overlaps(self) -> list[tuple[str, str, str]]:
        """Pairs of groups that share a feature, as ``(group_a, group_b, feature)``."""
        owner: dict[int, str] = {}
        clashes = []
        for g, idx in self._groups.items():
            for i in idx:
                if i in owner:
                    clashes.append((owner[i], g, self._names[i]))
                else:
                    owner[i] = g
        return clashes

    @property
    def is_disjoint(self) -> bool:
        return not self.overlaps()

    @property
    def is_partition(self) -> bool:
        """True if groups are disjoint and cover every feature."""
        covered = sum(len(v) for v in self._groups.values())
        return self.has_groups and self.is_disjoint and covered == self.n_features

    def require_disjoint(self, method: str) -> None:
        """Raise ``ValueError`` if groups overlap; ``method`` names the caller."""
        clashes = self.overlaps()
        if clashes:
            a, b, f = clashes[0]
            raise ValueError(
                f"method {method!r} needs disjoint feature groups, but groups {a!r} and {b!r} "
                f"both contain feature {f!r}"
            )

    def players(self) -> tuple[list[str], list[tuple[int, ...]]]:
        """Return the units attributions are computed for: groups if any, else single features."""
        if self._groups:
            return list(self._groups), list(self._groups.values())
        return list(self._names), [(i,) for i in range(self.n_features)]

    def masks(self) -> torch.Tensor:
        """Boolean tensor ``(n_players, n_features)``: row ``j`` marks the columns of player ``j``."""
        _, members = self.players()
        m = torch.zeros(len(members), self.n_features, dtype=torch.bool)
        for j, idx in enumerate(members):
            m[j, list(idx)] = True
        return m

    # -- (de)serialisation -----------------------------------------------------
    def groups_as_names(self) -> dict[str, list[str]]:
        """Return the groups with members as feature names (JSON/YAML friendly)."""
        return {g: [self._names[i] for i in idx] for g, idx in self._groups.items()}

    def with_groups(self, groups: Mapping[str, GroupMembers] | None) -> FeatureSpec:
        return FeatureSpec(self._names, groups)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSpec) and self._names == other._names and self._groups == other._groups

    def __hash__(self) -> int:
        # ``__eq__`` compares groups as a dict (insertion order ignored), so the
        # hash must not depend on the order either.
        return hash((self._names, frozenset(self._groups.items())))

    def __repr__(self) -> str:
        g = f", groups={self.groups_as_names()!r}" if self._groups else ""
        return f"FeatureSpec(names={list(self._names)!r}{g})"


def read_groups(path: str | os.PathLike) -> dict[str, list[str | int]]:
    """Read a groups file: a YAML or JSON mapping of group name to member list.

    Example ``groups.yaml``::

        clinical: [heart_rate, blood_pressure]
        administrative: [insurance_type, admission_day]

    Raises ``ValueError`` naming the file if it is missing, unparsable or not
    a mapping of names to lists.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"groups file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"groups file {str(p)!r} is not valid YAML/JSON: {first}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"groups file {str(p)!r} must hold a non-empty mapping of group name to list of features")
    for g, members in data.items():
        if not isinstance(members, list):
            raise ValueError(f"groups file {str(p)!r}: group {g!r} must be a list of feature names or indices")
    return {str(g): list(m) for g, m in data.items()}
