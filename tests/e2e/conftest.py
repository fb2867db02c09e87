"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SHORT_TRAINING = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2"]
"""One epoch of two steps, for the grids that check what reaches the store, not accuracy."""
SHORT_BDGF = ["--set", "bdgf:model.ddpm_epochs=1", "--set", "bdgf:train.patch_size=5"]
"""BDGF's DDPM stage for one epoch, and 5 x 5 patches: its 9 x 9 diffusion tokens dominated the
inference of a grid (the every-method grid of test_bench_run.py: 122 s, 76 s with both of these)."""
SMALL_S2MAMBA_PATCHES = ["--set", "s2mamba-fused:train.patch_size=3", "--set", "s2mamba-bidir:train.patch_size=3"]
"""The S2Mamba variants on 3 x 3 patches (as ``s2mamba``'s fast profile): their scans dominated too."""

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


def store_row(db: Path | str, sql: str, *args: Any, timeout: float = 5) -> tuple[Any, ...] | None:
    """The first row of a read-only query on an SQLite store another process writes, or None
    while it cannot answer: tables not created yet, or locked (a writer mid-commit, or one
    frozen there with SIGSTOP, holds the lock; MLflow's own reads would wait 20 s and fail)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout) as con:
            row = con.execute(sql, args).fetchone()
    except sqlite3.OperationalError:
        return None
    return tuple(row) if row else None
