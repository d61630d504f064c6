"""The package's structure is a checked contract: no circles, no privates across subpackages.

The layer order itself is import-linter's ``layers`` contract in pyproject.toml
(``lint-imports``, run by ``make test``); these tests cover what it does not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "featurelens"
TESTS = ROOT / "tests"

#: Optional dependencies: the only imports allowed inside a function body.
OPTIONAL = {"pyarrow", "ray", "shap", "quantus", "captum", "kan", "hmmlearn", "zennit"}


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _subpackage(path: Path, base: Path) -> str | None:
    """The first-level subpackage a file belongs to (None for the root package's own modules)."""
    parts = path.relative_to(base).parts
    return parts[0] if len(parts) > 1 else None


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owner(parts: list[str]) -> str | None:
    """The subpackage ``featurelens.<parts[1]>...`` belongs to (None for the root package's shared modules)."""
    return None if len(parts) < 2 or _is_private(parts[1]) else parts[1]


def _cross_private_imports(path: Path, mine: str | None) -> list[str]:
    """Imports in ``path`` of a private name or a private module of another subpackage.

    The root package's shared modules (``featurelens._validation``, ``_io``, ...) are
    importable from everywhere; their private names are not.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules, names = [node.module], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [a.name for a in node.names], []
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] != "featurelens" or len(parts) < 2 or _owner(parts) == mine:
                continue
            private_module = _owner(parts) is not None and any(_is_private(p) for p in parts[2:])
            private_names = [n for n in names if _is_private(n)]
            if private_module or private_names:
                found.append(f"{path}:{node.lineno}: {module} {', '.join(names)}".rstrip())
    return found


def test_no_private_names_across_subpackages_in_the_library():
    hits = [h for p in _modules(SRC) for h in _cross_private_imports(p, _subpackage(p, SRC))]
    assert hits == [], "\n".join(hits)


def test_tests_use_privates_of_their_own_subpackage_only():
    hits = [h for p in _modules(TESTS) for h in _cross_private_imports(p, _subpackage(p, TESTS))]
    assert hits == [], "\n".join(hits)


def test_no_function_level_imports_except_optional_dependencies():
    hits = []
    for path in _modules(SRC):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                bad = [n for n in names if n.split(".")[0] not in OPTIONAL]
                if bad:
                    hits.append(f"{path}:{node.lineno}: {', '.join(bad)} in {fn.name}()")
    assert hits == [], "\n".join(hits)


def test_no_module_imports_the_package_face():
    """Only ``featurelens/__init__.py`` may be imported as ``featurelens`` (leaves would load everything)."""
    hits = []
    for path in _modules(SRC):
        if path == SRC / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "featurelens":
                hits.append(f"{path}:{node.lineno}")
            if isinstance(node, ast.Import) and any(a.name == "featurelens" for a in node.names):
                hits.append(f"{path}:{node.lineno}")
    assert hits == [], "\n".join(hits)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_circles_between_modules():
    """Counts every import statement, module level or not (a function-level import hides no circle)."""
    graph = grimp.build_graph("featurelens")
    # a package's __init__ re-exporting its own modules is not a circle of the code
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported != module and module.startswith(imported + "."):
                graph.remove_import(importer=module, imported=imported)
    assert _cycles(graph) == []


def test_the_layer_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail(f"lint-imports not installed next to {sys.executable}: install the dev extra")
    run = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
