"""The grid through Optuna's storage with real worker processes, one of them killed with SIGKILL.

Each test queues a 12-cell grid (svm and two-branch-cnn on synthetic, seeds 0..5), freezes a
worker in the middle of a two-branch-cnn cell, kills it with SIGKILL, and checks that every
cell ends FINISHED exactly once and that the dead worker's MLflow run is closed as FAILED.

The PostgreSQL test needs a server: ci/run.sh starts a throwaway one on 127.0.0.1 and sets
BENCH_TEST_POSTGRES_URL; locally it is skipped without that variable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench_core.distributed import grid_study_name
from bench_core.plugins import load_plugins
from bench_core.runner import GridRequest, expand_grid, parse_overrides
from bench_core.tracking import MLflowTracker
from tests.conftest import subprocess_env

pytestmark = pytest.mark.slow

GRID = ["--plugins", "svm,two-branch-cnn", "--datasets", "synthetic", "--seeds", "0,1,2,3,4,5",
        "--set", "train.epochs=3"]
# Dead workers are noticed after 6 s without a heartbeat; one torch thread per worker.
ENV = {"BENCH_HEARTBEAT_INTERVAL": "1", "BENCH_GRACE_PERIOD": "6", "OMP_NUM_THREADS": "1"}
DEADLINE_S = 300  # a hang fails the test instead of blocking CI


def grid_keys() -> set[str]:
    request = GridRequest(plugins=["svm", "two-branch-cnn"], seeds=list(range(6)),
                          overrides=parse_overrides(["train.epochs=3"]))
    return {c.key for c in expand_grid(load_plugins(), request)}


def parent_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


def kill_a_worker_mid_cell(tracker: MLflowTracker, is_ours: Callable[[int], bool]) -> tuple[int, str]:
    """SIGKILL a worker while its two-branch-cnn cell is RUNNING; returns (pid, run id).

    The worker is frozen (SIGSTOP) first, so the run is known to be unfinished when it dies.
    """
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        for run in tracker.runs("attributes.status = 'RUNNING'"):
            if not run.info.run_name.startswith("two-branch-cnn"):
                continue
            pid = int(run.data.tags["bench.worker"].rsplit(":", 1)[1])
            if not is_ours(pid):
                continue
            os.kill(pid, signal.SIGSTOP)
            if tracker.client.get_run(run.info.run_id).info.status == "RUNNING":
                os.kill(pid, signal.SIGKILL)
                return pid, run.info.run_id
            os.kill(pid, signal.SIGCONT)  # it finished meanwhile: pick another
        time.sleep(0.2)
    raise AssertionError("no worker was seen running a two-branch-cnn cell")


def assert_every_cell_finished_once(tracker: MLflowTracker, storage_url: str, killed_run: str) -> None:
    runs = tracker.runs()
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    finished = Counter(r.data.tags["bench.cell_key"] for r in runs if r.info.status == "FINISHED")
    assert set(finished) == grid_keys() and len(finished) == 12  # none missing
    assert set(finished.values()) == {1}  # none twice

    dead = tracker.client.get_run(killed_run)
    assert dead.info.status == "FAILED"  # not left RUNNING
    assert "worker lost" in dead.data.tags["bench.error"]
    assert finished[dead.data.tags["bench.cell_key"]] == 1  # ... and its cell finished in another run

    study = optuna.load_study(study_name=grid_study_name("bench"), storage=storage_url)
    states = Counter(t.state for t in study.trials)
    assert states == {TrialState.COMPLETE: 12, TrialState.FAIL: 1}
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    retries = [t for t in study.trials if t.system_attrs.get("retry_history") == [failed.number]]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["bench.cell_key"] == dead.data.tags["bench.cell_key"]


def test_sqlite_two_local_workers_survive_a_sigkill(bench_exe: str) -> None:
    tracker = MLflowTracker(None, "bench")  # the store exists before any process races to create it
    storage = f"sqlite:///{Path('optuna.db').resolve()}"
    proc = subprocess.Popen(
        [bench_exe, "run", *GRID, "--storage", storage, "--jobs", "2"],
        env=subprocess_env(**ENV), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        pid, killed_run = kill_a_worker_mid_cell(tracker, lambda p: parent_pid(p) == proc.pid)
        out, _ = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"worker pid {pid} died from signal 9" in out
    assert "12 cell(s) queued" in out
    assert_every_cell_finished_once(tracker, storage, killed_run)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the server of $BENCH_TEST_POSTGRES_URL, dropped afterwards."""
    base = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not base:
        pytest.skip(
            "no PostgreSQL server: set BENCH_TEST_POSTGRES_URL=postgresql+psycopg2://postgres@127.0.0.1:PORT/postgres "
            "(ci/run.sh starts a throwaway server on 127.0.0.1 and sets it)"
        )
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"bench_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                             dbname=url.database or "postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
def test_postgres_three_workers_survive_a_sigkill(bench_exe: str, postgres_url: str) -> None:
    tracker = MLflowTracker(None, "bench")
    env = subprocess_env(**ENV)
    queued = subprocess.run([bench_exe, "run", *GRID, "--storage", postgres_url, "--jobs", "0"],
                            env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert queued.returncode == 0, queued.stderr
    assert "12 cell(s) queued" in queued.stdout and "bench worker --storage" in queued.stdout
    workers = [
        subprocess.Popen([bench_exe, "worker", "--storage", postgres_url], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(3)
    ]
    try:
        pids = {w.pid for w in workers}
        pid, killed_run = kill_a_worker_mid_cell(tracker, lambda p: p in pids)
        outputs = {w.pid: w.communicate(timeout=DEADLINE_S)[0] for w in workers}
    finally:
        for w in workers:
            w.kill()
    codes = {w.pid: w.returncode for w in workers}
    assert codes.pop(pid) == -signal.SIGKILL
    assert set(codes.values()) == {0}, outputs
    assert any("re-queued for another worker" in out for out in outputs.values()), outputs
    assert_every_cell_finished_once(tracker, postgres_url, killed_run)
