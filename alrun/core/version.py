"""The package version (a leaf: the registry and the tracker record it)."""

__version__ = "0.1.0"
