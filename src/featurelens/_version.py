"""The package version, importable by any module without importing the package face."""

__version__ = "0.1.0"
