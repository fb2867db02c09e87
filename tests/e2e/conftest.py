"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_core.tracking import MLflowTracker


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow SQLite file, copied by each test (the table migrations take seconds)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MLflowTracker(f"sqlite:///{path}", "bench")
    return path
