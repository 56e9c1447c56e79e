"""The package version: a leaf module, so that library modules can stamp it on outputs
without importing the package root (which would close an import cycle)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
