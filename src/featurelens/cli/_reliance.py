"""CLI commands: `featurelens reliance` and the finance/healthcare examples."""

from __future__ import annotations

import typer


def register(app: typer.Typer, example_app: typer.Typer) -> None:
    """Add this module's commands to ``app`` and its examples to ``example_app``."""
