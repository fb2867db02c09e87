"""The package version, written here only: pyproject.toml reads it (dynamic version), and it is
part of every cell key, so runs of another release are never taken for finished cells. A module
of its own so that modules inside bench_core can read it without importing the package (which
would close an import cycle)."""

__version__ = "0.1.0"
