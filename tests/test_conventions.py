"""One vocabulary: every public argument name is in docs/conventions.md, with one default.

The table in ``docs/conventions.md`` (``| name | meaning | type | default |``)
lists every argument name of the public API. This test walks every public
callable (the facade, each subpackage's ``__all__`` and the public modules)
and fails on a name outside the table, on a default that differs from the
table's, and on a name the table lists as a synonym to avoid.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "conventions.md"
PUBLIC_MODULES = (
    "featurelens", "featurelens.data", "featurelens.datasets", "featurelens.models",
    "featurelens.models.pruning", "featurelens.models.adversarial", "featurelens.attribution",
    "featurelens.internals", "featurelens.internals.attention", "featurelens.representation",
    "featurelens.reliance", "featurelens.compare", "featurelens.dynamics", "featurelens.report",
    "featurelens.examples", "featurelens.examples.hedging", "featurelens.examples.tickets",
)
#: a default cell that fixes no single value
FREE = {"", "—", "-", "required", "varies"}


def _table() -> tuple[dict[str, str], dict[str, str]]:
    """``{name: default cell}`` of the vocabulary table and ``{synonym: name}`` of the synonyms table."""
    names: dict[str, str] = {}
    synonyms: dict[str, str] = {}
    section = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) < 2 or set(cells[0]) <= {"-", ":", " "} or cells[0] in ("name", "instead of"):
            continue
        name = cells[0].strip("`")
        if section and section.startswith("synonyms"):
            for alias in re.findall(r"`([^`]+)`", cells[0]):
                synonyms[alias] = cells[1].strip("`")
        elif len(cells) >= 4:
            names[name] = cells[3].strip("`")
    return names, synonyms


def _callables():
    """``(qualified name, callable)`` for every public function, method and non-dataclass constructor."""
    seen = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if inspect.isclass(obj):
                members = [(n, v) for n, v in vars(obj).items()
                           if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, classmethod | staticmethod))]
                if not dataclasses.is_dataclass(obj) and "__init__" in vars(obj):
                    members.append(("__init__", vars(obj)["__init__"]))
                if issubclass(obj, __import__("torch").nn.Module):
                    members = [(n, v) for n, v in members if n not in ("forward", "extra_repr")]
                for name, member in members:
                    function = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                    key = (obj.__module__, obj.__qualname__, name)
                    if key not in seen:
                        seen.add(key)
                        yield f"{obj.__module__}.{obj.__qualname__}.{name}", function
            elif inspect.isfunction(obj):
                key = (obj.__module__, obj.__qualname__, "")
                if key not in seen:
                    seen.add(key)
                    yield f"{obj.__module__}.{obj.__qualname__}", obj


def _parameters():
    for qualname, function in _callables():
        for p in inspect.signature(function).parameters.values():
            if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            yield qualname, p


def test_every_public_argument_name_is_in_the_vocabulary():
    names, _ = _table()
    missing = sorted({f"{p.name} ({q})" for q, p in _parameters() if p.name not in names})
    assert missing == [], "add to docs/conventions.md or rename:\n" + "\n".join(missing)


def test_one_default_per_name():
    names, _ = _table()
    wrong = []
    for qualname, p in _parameters():
        cell = names.get(p.name, "")
        if cell in FREE or p.default is p.empty:
            continue
        if repr(p.default) != cell:
            wrong.append(f"{qualname}: {p.name}={p.default!r}, the vocabulary says {cell}")
    assert wrong == [], "\n".join(wrong)


def test_no_synonym_is_used():
    names, synonyms = _table()
    assert synonyms, "docs/conventions.md has no synonyms table"
    assert not set(synonyms) & set(names), "a name is both in the vocabulary and a synonym"
    used = sorted({f"{p.name} ({q}); use {synonyms[p.name]}" for q, p in _parameters() if p.name in synonyms})
    assert used == [], "\n".join(used)


def test_the_vocabulary_lists_no_unused_name():
    names, _ = _table()
    used = {p.name for _, p in _parameters()}
    assert sorted(set(names) - used) == []


@pytest.mark.parametrize("name", ["random_state", "batch_size", "X", "y", "out"])
def test_core_names_are_in_the_vocabulary(name):
    names, _ = _table()
    assert name in names
