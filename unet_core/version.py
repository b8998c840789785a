"""The package version, importable without the public API (engines record it in files)."""

__version__ = "0.1.0"
