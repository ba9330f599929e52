"""The package version (one home: pyproject.toml reads it statically, without importing torch)."""
__version__ = "0.1.0"
