"""The documentation cannot drift: README.md and docs/*.md are checked against the code.

- Every ```python block runs, with sybil, in one namespace per page (in page order) inside a
  temporary directory. When a ```python block is followed, with only blank lines or a line
  ``Output:`` between, by a plain ``` or ```text block that does not start with ``$ `` (a shell
  session), that block is the snippet's printed output and must equal its stdout (trailing
  whitespace of each line and leading/trailing blank lines ignored).
- Every ```text block of the form ``$ featurelens ... --help`` followed by the help text equals
  what the real parser prints at 80 columns. After changing CLI options, regenerate them with

      PYTHONPATH=src python tests/test_docs.py --update-cli-help

- The public API table of docs/index.md lists exactly ``featurelens.__all__``, and every
  ``featurelens.<module>.<name>`` that docs/index.md mentions exists.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import io
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from sybil import Document, Region
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

import featurelens
from featurelens.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: terminal width the --help blocks are rendered at (click caps help text at 80 columns)
HELP_COLUMNS = "80"
_HELP_BLOCK = re.compile(r"^```text\n\$ featurelens (?P<args>[^\n]*--help)\n(?P<body>.*?)^```$",
                         re.MULTILINE | re.DOTALL)


def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()).rstrip("\n")


class _PythonSnippet:
    """Runs one ```python block in the page's namespace; compares stdout with the shown output."""

    def __init__(self, source: str, line: int, expected: str | None):
        self.source, self.line, self.expected = source, line, expected

    def __call__(self, example) -> str | None:
        code = compile("\n" * self.line + self.source, example.path, "exec", dont_inherit=True)
        importlib.invalidate_caches()                  # a module the page wrote just before imports
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            exec(code, example.namespace)
        if self.expected is None:
            return None
        got, want = _normalise(stdout.getvalue()), _normalise(self.expected)
        if got == want:
            return None
        diff = difflib.unified_diff(want.splitlines(), got.splitlines(), "shown on the page", "printed",
                                    lineterm="")
        return "printed output differs from the page:\n" + "\n".join(diff)


def _snippet_parser(document: Document):
    """Sybil parser: a region per ```python block, with the output block that follows it, if any."""
    blocks = list(FencedCodeBlockLexer(language=r"[\w+-]*")(document))
    for i, block in enumerate(blocks):
        if block.lexemes["language"] != "python":
            continue
        expected = None
        if i + 1 < len(blocks):
            nxt = blocks[i + 1]
            adjacent = document.text[block.end:nxt.start].strip() in ("", "Output:")
            if adjacent and nxt.lexemes["language"] in ("", "text") and not nxt.lexemes["source"].startswith("$ "):
                expected = str(nxt.lexemes["source"])
        source = block.lexemes["source"]
        line = document.text.count("\n", 0, block.start) + 1
        yield Region(block.start, block.end, evaluator=_PythonSnippet(str(source), line, expected))


def _pages_with_python() -> list[Path]:
    return [p for p in PAGES if "```python" in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("page", _pages_with_python(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_snippets_run_and_print_what_the_page_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))        # a snippet's own module (e.g. nets.py) imports
    document = Document.parse(str(page), _snippet_parser)
    examples = list(document.examples())
    assert examples, f"{page.name} has no ```python block"
    try:
        with torch.random.fork_rng():                # snippets seed the global RNG; later tests keep theirs
            for example in examples:
                example.evaluate()
    finally:                                          # forget the modules the page wrote (nets.py, ...)
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
                del sys.modules[name]


# --- CLI --help blocks -------------------------------------------------------------------------


def render_help(args: list[str]) -> str:
    """What ``featurelens ARGS`` (ending in ``--help``) prints at HELP_COLUMNS columns."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            code = main(args)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    if code != 0:
        raise ValueError(f"featurelens {' '.join(args)} exited with {code}")
    return stdout.getvalue()


def _help_blocks(text: str) -> list[re.Match]:
    return list(_HELP_BLOCK.finditer(text))


def update_help_blocks(text: str) -> str:
    """``text`` with the body of every ``$ featurelens ... --help`` block re-rendered."""
    def replace(match: re.Match) -> str:
        body = _normalise(render_help(match["args"].split()))
        return f"```text\n$ featurelens {match['args']}\n{body}\n```"
    return _HELP_BLOCK.sub(replace, text)


_HELP_CASES = [(page, m["args"]) for page in PAGES for m in _help_blocks(page.read_text(encoding="utf-8"))]


def test_docs_show_help_blocks():
    assert len(_HELP_CASES) >= 3, "docs/cli.md should show `featurelens --help` and the commands' --help"


@pytest.mark.parametrize(("page", "args"), _HELP_CASES,
                         ids=[f"{p.name}:featurelens {a}" for p, a in _HELP_CASES])
def test_help_block_equals_the_parser(page, args):
    shown = next(m["body"] for m in _help_blocks(page.read_text(encoding="utf-8")) if m["args"] == args)
    assert _normalise(shown) == _normalise(render_help(args.split())), (
        f"{page.name}: the block `featurelens {args}` is out of date; regenerate it with "
        "`PYTHONPATH=src python tests/test_docs.py --update-cli-help`")


# --- public API table --------------------------------------------------------------------------


def _api_table_names(text: str) -> list[str]:
    """First-column names of the table under '## Public API' in docs/index.md."""
    section = text.split("\n## Public API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([\w.]+)` \|", section, flags=re.MULTILINE)


def test_index_api_table_matches_all():
    listed = _api_table_names((ROOT / "docs" / "index.md").read_text(encoding="utf-8"))
    assert len(listed) == len(set(listed)), f"listed twice: {sorted(n for n in listed if listed.count(n) > 1)}"
    assert sorted(listed) == sorted(featurelens.__all__), (
        f"docs/index.md lists {sorted(set(listed) - set(featurelens.__all__))} that featurelens.__all__ lacks; "
        f"featurelens.__all__ has {sorted(set(featurelens.__all__) - set(listed))} that the table lacks")


def test_dotted_names_in_index_exist():
    text = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    missing = []
    for dotted in sorted(set(re.findall(r"`(featurelens(?:\.\w+)+)`", text))):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):          # the longest importable module prefix
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            break
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                missing.append(dotted)
                break
            obj = getattr(obj, attr)
    assert not missing, f"docs/index.md names {missing}, which do not exist"


def _main(argv: list[str]) -> int:
    if argv != ["--update-cli-help"]:
        print("usage: PYTHONPATH=src python tests/test_docs.py --update-cli-help", file=sys.stderr)
        return 2
    for page in PAGES:
        old = page.read_text(encoding="utf-8")
        new = update_help_blocks(old)
        if new != old:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
