"""One vocabulary: every public argument name is in docs/conventions.md, with one default.

The tables in ``docs/conventions.md`` (``| name | meaning | type | default |``)
list every argument name of the public API. This test walks every public
callable (the facade, each public module's ``__all__`` and the options of the
attribution methods, which ``attribute`` takes as keywords) and fails on a
name outside the tables, on a default that differs from the table's, on a
name the ``## Synonyms`` table says to avoid, and on a table row that no
signature uses.

Public modules are found, not listed: every subpackage and module of
``featurelens`` whose name does not start with ``_`` (so a new subpackage such
as ``featurelens.datasets`` is walked as soon as it exists), and every module
the facade's docstring names must import.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

import featurelens
from featurelens.attribution import METHODS

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "conventions.md"
#: default cells that fix no single value: ``required`` (no default anywhere) and
#: ``varies`` (the meaning says why and names the defaults)
REQUIRED, VARIES = "required", "varies"


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    meaning: str
    type: str
    default: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _page() -> tuple[list[Row], dict[str, str]]:
    """Rows of the vocabulary tables and ``{synonym: name}`` of the synonyms table."""
    rows: list[Row] = []
    synonyms: dict[str, str] = {}
    section = ""
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if set(cells[0]) <= {"-", ":", " "} or cells[0] in ("name", "instead of"):
            continue
        if section.startswith("synonyms"):
            assert len(cells) == 2, f"a synonyms row has two cells (instead of | use): {line}"
            for alias in re.findall(r"`([^`]+)`", cells[0]):
                synonyms[alias] = cells[1].strip("`")
        elif len(cells) == 4:
            rows.append(Row(cells[0].strip("`"), cells[1], cells[2], cells[3].strip("`")))
    return rows, synonyms


def _table() -> dict[str, Row]:
    rows, _ = _page()
    return {r.name: r for r in rows}


def _public_modules() -> list[str]:
    """``featurelens`` and every module below it whose dotted name has no part starting with ``_``."""
    names = ["featurelens"]
    for info in pkgutil.walk_packages(featurelens.__path__, prefix="featurelens."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _members(cls: type):
    """Public methods (and the constructor of a non-dataclass) of ``cls``; PyTorch's ``forward`` is exempt."""
    members = [(n, v) for n, v in vars(cls).items()
               if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, classmethod | staticmethod))]
    if not dataclasses.is_dataclass(cls) and "__init__" in vars(cls):
        members.append(("__init__", vars(cls)["__init__"]))
    if issubclass(cls, torch.nn.Module):
        members = [(n, v) for n, v in members if n not in ("forward", "extra_repr")]
    for name, member in members:
        yield name, member.__func__ if isinstance(member, classmethod | staticmethod) else member


def _callables():
    """``(qualified name, callable)`` for every public function, method and non-dataclass constructor."""
    seen = set()
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None)
        if exported is None:  # a public module without __all__: what it defines itself
            exported = [n for n, v in vars(module).items()
                        if not n.startswith("_") and getattr(v, "__module__", None) == module_name]
        for attr in exported:
            obj = getattr(module, attr)
            if inspect.isclass(obj):
                for name, function in _members(obj):
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
    """``(where, parameter)`` for every named parameter of the public API, method options included."""
    for qualname, function in _callables():
        for p in inspect.signature(function).parameters.values():
            if p.name in ("self", "cls") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            yield qualname, p
    for method, function in METHODS.items():  # options of attribute(..., method=method, **options)
        for p in inspect.signature(function).parameters.values():
            if p.kind is p.KEYWORD_ONLY:
                yield f"attribute(method={method!r}) option", p


PARAMETERS = list(_parameters())


def test_the_public_modules_the_facade_names_exist():
    named = set(re.findall(r"``(featurelens(?:\.\w+)+)``", featurelens.__doc__ or ""))
    assert named, "the facade's docstring names no subpackage"
    assert sorted(named - set(_public_modules())) == []


def test_the_page_parses():
    rows, synonyms = _page()
    assert len(rows) > 100 and synonyms
    twice = sorted(n for n, c in Counter(r.name for r in rows).items() if c > 1)
    assert twice == [], "listed more than once"
    empty = sorted(r.name for r in rows if not (r.meaning and r.type and r.default))
    assert empty == [], "every row needs a meaning, a type and a default cell"
    unexplained = sorted(r.name for r in rows if r.default == VARIES and "default" not in r.meaning.lower())
    assert unexplained == [], "a `varies` default must say in its meaning which defaults and why"


def test_every_public_argument_name_is_in_the_vocabulary():
    names = _table()
    missing = sorted({f"{p.name} ({q})" for q, p in PARAMETERS if p.name not in names})
    assert missing == [], "add to docs/conventions.md or rename:\n" + "\n".join(missing)


def test_one_default_per_name():
    names = _table()
    wrong = []
    for qualname, p in PARAMETERS:
        row = names.get(p.name)
        if row is None or row.default == VARIES:
            continue
        if row.default == REQUIRED:
            if p.default is not p.empty:
                wrong.append(f"{qualname}: {p.name}={p.default!r}, the vocabulary says it is required")
        elif p.default is not p.empty and repr(p.default) != row.default:
            wrong.append(f"{qualname}: {p.name}={p.default!r}, the vocabulary says {row.default}")
    assert wrong == [], "\n".join(wrong)


def test_no_synonym_is_used():
    names = _table()
    _, synonyms = _page()
    assert not set(synonyms) & set(names), "a name is both in the vocabulary and a synonym"
    unknown = sorted({v for v in synonyms.values() if v not in names})
    assert unknown == [], "a synonym must point to a name of the vocabulary"
    used = sorted({f"{p.name} ({q}); use {synonyms[p.name]}" for q, p in PARAMETERS if p.name in synonyms})
    assert used == [], "\n".join(used)


def test_the_vocabulary_lists_no_unused_name():
    used = {p.name for _, p in PARAMETERS}
    assert sorted(set(_table()) - used) == []


@pytest.mark.parametrize(
    ("name", "default"),
    [("random_state", "0"), ("batch_size", "None"), ("train_batch_size", VARIES), ("X", "None"), ("y", "None"),
     ("out", REQUIRED), ("path", "None"), ("n_steps", VARIES), ("baselines", VARIES),
     # the output tail: one default each
     ("target", "None"), ("link", "None"), ("output", "None"), ("feature_names", "None"), ("progress", "False")],
)
def test_core_names_are_in_the_vocabulary(name, default):
    assert _table()[name].default == default


@pytest.mark.parametrize(
    ("alias", "name"),
    [("inputs", "X"), ("x", "X"), ("labels", "y"), ("targets", "y"), ("y_true", "y"), ("seed", "random_state"),
     ("directory", "out"), ("steps", "n_steps"), ("baseline", "baselines")],
)
def test_the_known_synonyms_are_listed(alias, name):
    _, synonyms = _page()
    assert synonyms.get(alias) == name


def test_the_walk_sees_the_renamed_api():
    """The walk reaches functions, methods, constructors and method options (a guard on the walk itself)."""
    where = {(q, p.name) for q, p in PARAMETERS}
    assert ("featurelens.attribution._api.attribute", "X") in where
    assert ("featurelens.models._training.train", "train_batch_size") in where
    assert ("featurelens.dynamics._logging.MetricsLogger.__init__", "force") in where
    assert ("attribute(method='permutation') option", "y") in where
    assert not any(q.endswith("MLP.forward") for q, _ in where)  # nn.Module.forward is PyTorch's, exempt
