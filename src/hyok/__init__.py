"""hyok: a self-hostable Hold-Your-Own-Key key management system."""

__all__ = ["__version__"]

__version__ = "0.1.0"
