"""Shared fixtures: every test gets its own store and working directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Property tests draw the same examples on every run and machine (a failure in CI reproduces
# locally), and write no example database into the working tree. A test's own @settings
# inherits these unless it overrides them; tests/test_hygiene.py checks none does.
settings.register_profile("bench", derandomize=True, database=None)
settings.load_profile("bench")


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (one worker process per core), torch runs on one thread in each worker
    and in every process a test starts: two-thread workers on a 2-core machine spin against each
    other (the fast loop took 16 worker-seconds in test_training.py instead of 1). Set
    OMP_NUM_THREADS to choose otherwise; one process (no -n) keeps torch's default."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


COLLECTED = pytest.StashKey[frozenset[str]]()
"""Every node id this session collected, before -k/-m deselection (tests/test_docs.py reads it)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    session.stash[COLLECTED] = frozenset(item.nodeid for item in items)


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip a test whose real data files (``../shared``) are missing from this checkout; in CI
    (``CI=true``) fail instead, so a CI run without the files cannot pass by skipping them."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true, so this test fails instead of skipping", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes into the repository or a user's store."""
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "bench-home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var in ("BENCH_PLUGINS", "BENCH_DISABLE_PLUGINS", "BENCH_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow SQLite file, copied by each test (the table migrations take seconds,
    so they run once per test process; no test writes to this file).

    Its only experiment is a placeholder: a test creates its own experiments in its copy, with
    artifact folders beside that copy (not beside this shared file).
    """
    from bench_core.tracking import MLflowTracker

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MLflowTracker(f"sqlite:///{path}", "store-template")
    return path


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test: two threads on a shared 2-core machine spin against
    other jobs (about 10x slower). Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bench_exe() -> str:
    """The installed console script of this environment."""
    exe = Path(sys.executable).parent / "bench"
    assert exe.exists(), f"console script missing at {exe}: install with pip install -e '.[test]'"
    return str(exe)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
