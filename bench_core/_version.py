"""The package version, in a module of its own so that modules inside bench_core can read it
without importing the package (which would close an import cycle)."""

__version__ = "0.1.0"
