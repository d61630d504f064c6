"""featurelens: which input features does a PyTorch model rely on, with evidence."""

__version__ = "0.1.0"

__all__ = ["__version__"]
