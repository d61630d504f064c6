"""The ``featurelens`` command line. It parses, calls the library and renders."""

from featurelens.cli._app import app, main

__all__ = ["app", "main"]
