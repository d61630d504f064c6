"""End-to-end studies built from the library (used by ``featurelens demo`` and examples)."""

from featurelens.examples._spurious_demo import DemoResult, run_spurious_demo

__all__ = [
    "DemoResult",
    "run_spurious_demo",
]
