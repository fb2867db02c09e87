"""Opt-in pytest fixtures for plugin authors.

Enable them in a test module or ``conftest.py`` with::

    pytest_plugins = ["bench_core.testing.fixtures"]

They are deliberately not registered as a ``pytest11`` entry point, so installing the
harness never imports torch or the plugins into unrelated pytest runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench_core.plugins import PluginHost, load_plugins
from bench_core.scene import Scene
from bench_core.testing import tiny


@pytest.fixture
def tiny_scene() -> Scene:
    """A 24x24 scene: 8 HSI bands, 1 LiDAR band, 3 classes, official train/test maps (seed 0)."""
    return tiny.tiny_scene()


@pytest.fixture
def plugin_host() -> PluginHost:
    """The installed plugins, loaded fresh for this test (honours ``BENCH_PLUGINS``)."""
    return load_plugins()


@pytest.fixture
def tmp_bench_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway working directory, ``BENCH_HOME`` and SQLite MLflow store for one test.

    Yields the ``BENCH_HOME`` folder; the tracking store is ``<BENCH_HOME>/mlflow.db``.
    """
    home = tmp_path / "bench-home"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    yield home
