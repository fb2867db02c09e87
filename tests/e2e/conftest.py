"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

BENCH_ENV = ("BENCH_DATA_DIR", "BENCH_NORMALISATION")
"""Variables a test's ``bench`` runs without (a module adds its own with a ``bench_env`` fixture)."""


@pytest.fixture
def bench_env() -> tuple[str, ...]:
    """The environment variables unset for ``bench``; override it in a module to unset more."""
    return BENCH_ENV


@pytest.fixture
def bench(tmp_path: Path, empty_store: Path, bench_env: tuple[str, ...], monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """``bench(*args) -> (exit code, stdout + stderr)``, in process, against this test's store.

    Plain progress lines (CI), no checksum verification (the fakes are scaled down: not the
    published files), and none of ``bench_env`` set. ``bench.uri`` is the store's URI.
    """
    from bench_core.cli import main

    db = tmp_path / "mlflow.db"
    shutil.copy(empty_store, db)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("BENCH_VERIFY_CHECKSUMS", "0")
    for var in bench_env:
        monkeypatch.delenv(var, raising=False)

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main([*args, "--tracking-uri", f"sqlite:///{db}"])
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    run.uri = f"sqlite:///{db}"  # type: ignore[attr-defined]
    return run
