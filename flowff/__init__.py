"""flowff: smooth normalizing flows as molecular force fields for OpenMM."""

__version__ = "0.1.0"

__all__ = ["__version__"]
