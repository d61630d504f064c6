"""Founding documents are cited by name, never as "seed 000" .. "seed 004".

A reader of the docs, a docstring or a report cannot resolve an internal number. Cite instead:
the deep-hedging lottery-ticket notebook; deepdow's ``gradient_wrt_input``; the superposition
and spurious-correlation notebook; pykan's feature-attribution tutorial; Latent State Models of
Training Dynamics (Hu et al., 2023).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: "seed 002", "Seed 000's", "seeds 002 and 003", "seed-001", "(seed\n    004", "# seed 003"
SEED_NUMBER = re.compile(r"seeds?[\s#*>_-]*00[0-4](?!\d)", re.IGNORECASE)


def _user_facing_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("src", "benchmarks"):
        files += sorted(p for p in (ROOT / folder).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                        and not any(part.endswith(".egg-info") for part in p.parts))  # build output
    return files


def _hits(text: str) -> list[tuple[int, str]]:
    return [(text.count("\n", 0, m.start()) + 1, m.group(0)) for m in SEED_NUMBER.finditer(text)]


@pytest.mark.parametrize("text", [
    "seed 002's transformer", "Seed 000 compares", "(seed 001)", "seeds 002 and 003",
    "the seed-004 notebook", "from seed\n    002's notebook", "# seed\n# 003's function",
    "SEED 000", "_seed003(n)",
])
def test_pattern_finds_every_spelling(text):
    assert _hits(text)


@pytest.mark.parametrize("text", [
    "random seed 0", "seeds 1 and 2", "seed 0002", "seed=002", "0.002", "--seed 0",
    "the superposition and spurious-correlation notebook",
])
def test_pattern_leaves_other_seeds_alone(text):
    assert not _hits(text)


def test_no_seed_numbers_in_user_facing_text():
    found = []
    for path in _user_facing_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary asset
            continue
        found += [f"{path.relative_to(ROOT)}:{line}: {hit!r}" for line, hit in _hits(text)]
    assert not found, (
        "cite the founding document by name (see this module's docstring), not by seed number:\n"
        + "\n".join(found))
