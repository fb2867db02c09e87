"""``bench run --executor ray`` on a real local Ray cluster: a head and a second node joined on 127.0.0.1.

* 12 cells (svm and two-branch-cnn on synthetic, seeds 0..5); a Ray worker process is frozen
  in the middle of a two-branch-cnn cell and killed with SIGKILL: Ray retries the task, the
  retry closes the dead attempt's run as FAILED, and every cell ends FINISHED exactly once.
  The same command again runs nothing.
* A task that raises (a cell whose key the worker computes differently) fails that cell only.
* SIGINT (Ctrl-C) on the driver cancels the grid: the running cells' runs end KILLED.
* ``bench tune --jobs 2`` on a private local Ray instance, and on the cluster with a PostgreSQL study.

The cluster is started by the test (``ray start --block`` in new sessions, stopped by their
process groups) and shared by the tests of this module. Every test that starts Ray lives in this
module: ``pytest -n auto --dist loadfile`` (ci/test.sh) runs a module on one worker, and two Ray
instances on one host at once clash. The local-instance test comes first, before the cluster
fixture starts (pytest runs a module's tests in file order).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install -e '.[test]'")

from bench_core.cli import main  # noqa: E402
from bench_core.plugins import load_plugins  # noqa: E402
from bench_core.runner import GridRequest, expand_grid, parse_overrides  # noqa: E402
from bench_core.tracking import MLflowTracker  # noqa: E402
from tests.conftest import subprocess_env  # noqa: E402
from tests.e2e.conftest import store_row  # noqa: E402

pytestmark = pytest.mark.slow

GRID = ["--plugins", "svm,two-branch-cnn", "--datasets", "synthetic", "--seeds", "0,1,2,3,4,5",
        "--set", "train.epochs=3"]
# No token to share between the test's processes; one torch thread per cell.
ENV = {"RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "CI": "1"}
DEADLINE_S = 240  # a hang fails the test instead of blocking CI
RAY = str(Path(sys.executable).parent / "ray")


def grid_keys() -> set[str]:
    request = GridRequest(plugins=["svm", "two-branch-cnn"], seeds=list(range(6)),
                          overrides=parse_overrides(["train.epochs=3"]))
    return {c.key for c in expand_grid(load_plugins(), request)}


def test_tune_with_two_jobs_shares_one_study_across_ray_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    """``bench tune --jobs 2`` without --address: two tasks on a private local Ray instance, one study."""
    import numpy as np
    import optuna

    from bench_core.tuning import ATTR_PARENT_RUN, TAG_PARENT, default_storage_url

    code = main(["tune", "--plugin", "svm", "--dataset", "synthetic", "--trials", "2", "--jobs", "2"])
    assert code == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tune/svm.fast/synthetic/official", storage=default_storage_url())
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 2 <= len(finished) <= 3  # each Ray task checks the budget before its next trial
    assert len(study.trials) == len(finished)
    tracker = MLflowTracker(None, "bench-tune")
    parent_id = study.user_attrs[ATTR_PARENT_RUN]
    children = [r for r in tracker.runs() if r.info.run_id != parent_id]
    assert len(children) == len(finished)
    assert {r.data.tags[TAG_PARENT] for r in children} == {parent_id}
    workers = {r.data.tags["bench.worker"].rsplit(":", 1)[1] for r in children}
    assert str(os.getpid()) not in workers  # the trials ran in the Ray worker processes
    params = [(t.params["C"], t.params["gamma"]) for t in finished]
    assert len(set(params)) == len(params)  # the tasks sampled different points
    assert np.isfinite([t.value for t in finished]).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive_nodes(address: str) -> int:
    """Active nodes that ``ray status`` lists (no dashboard needed)."""
    out = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True,
                         env=subprocess_env(**ENV), timeout=60)
    active = out.stdout.partition("Active:")[2].partition("Pending:")[0]
    return len(re.findall(r"^\s*1 node_", active, flags=re.MULTILINE)) if out.returncode == 0 else 0


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in reversed(procs):  # the node first, then the head
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops what it started
    deadline = time.monotonic() + 3  # for both together; then SIGKILL (a clean stop took over 10 s)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of that session is left
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """``127.0.0.1:PORT`` of a two-node Ray cluster (1 CPU each) on this machine."""
    port = _free_port()
    # A short folder: Ray's AF_UNIX socket paths under it must stay within 107 bytes, which a
    # pytest-xdist worker's tmp_path (/tmp/pytest-of-USER/pytest-N/popen-gwK/...) can exceed.
    temp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    env = subprocess_env(**ENV)
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0", "--block",
              "--disable-usage-stats"]
    procs: list[subprocess.Popen[str]] = []
    address = f"127.0.0.1:{port}"
    logs = [open(temp / name, "w") for name in ("head.log", "node.log")]  # what `ray start` says, for a failure
    try:
        procs.append(subprocess.Popen(
            [RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp),
             *common], env=env, start_new_session=True, stdout=logs[0], stderr=subprocess.STDOUT, text=True,
        ))
        end = time.monotonic() + 120
        while _alive_nodes(address) < 1:
            assert time.monotonic() < end and procs[0].poll() is None, f"the Ray head did not start:\n{_tail(logs[0])}"
            time.sleep(1)
        procs.append(subprocess.Popen(
            [RAY, "start", "--address", address, *common], env=env, start_new_session=True,
            stdout=logs[1], stderr=subprocess.STDOUT, text=True,
        ))
        while _alive_nodes(address) < 2:
            assert time.monotonic() < end and procs[1].poll() is None, f"the second Ray node did not join:\n{_tail(logs[1])}"
            time.sleep(1)
        yield address
    finally:
        _stop(procs)
        for log in logs:
            log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _tail(log: IO[str], lines: int = 30) -> str:
    log.flush()
    return "\n".join(Path(log.name).read_text(errors="replace").splitlines()[-lines:])


def _bench(bench_exe: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([bench_exe, "run", *args], env=subprocess_env(**ENV), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _running_cell(tracker: MLflowTracker, prefix: str, proc: subprocess.Popen[str]) -> tuple[int, str]:
    """(pid, run id) of a RUNNING run whose name starts with ``prefix``."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[0]
        for run in tracker.runs("attributes.status = 'RUNNING'"):
            if run.info.run_name.startswith(prefix):
                return int(run.data.tags["bench.pid"]), run.info.run_id
        time.sleep(0.2)
    raise AssertionError(f"no {prefix} cell was seen RUNNING")


def _status_of_a_frozen_writer(tracker: MLflowTracker, run_id: str) -> str | None:
    """The run's status, or None while the frozen worker holds the store's lock."""
    db = tracker.uri.removeprefix("sqlite:///")
    row = store_row(db, "SELECT status FROM runs WHERE run_uuid = ?", run_id, timeout=1)
    return str(row[0]) if row else None


def test_ray_grid_on_two_nodes_survives_a_sigkilled_worker(bench_exe: str, ray_cluster: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    tracker = MLflowTracker(None, "bench")  # the store exists before the workers write to it
    proc = _bench(bench_exe, *GRID, "--executor", "ray", "--address", ray_cluster)
    try:
        end = time.monotonic() + DEADLINE_S
        while True:  # freeze the worker, so its run is known to be unfinished when it dies
            pid, killed_run = _running_cell(tracker, "two-branch-cnn", proc)
            os.kill(pid, signal.SIGSTOP)
            if _status_of_a_frozen_writer(tracker, killed_run) == "RUNNING":
                os.kill(pid, signal.SIGKILL)
                break
            os.kill(pid, signal.SIGCONT)  # it finished meanwhile, or was frozen mid-commit: try again
            assert time.monotonic() < end
        out, _ = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "2 node(s)" in out and "12 cell(s): 12 to run" in out
    runs = tracker.runs()
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    finished = Counter(r.data.tags["bench.cell_key"] for r in runs if r.info.status == "FINISHED")
    assert set(finished) == grid_keys() and set(finished.values()) == {1}  # every cell, once
    dead = tracker.client.get_run(killed_run)
    assert dead.info.status == "FAILED", dead.data.tags
    assert "process lost" in dead.data.tags["bench.error"] and "retried" in dead.data.tags["bench.error"]
    assert dead.data.tags["bench.executor"] == "ray"
    nodes = {r.data.tags["bench.ray.node"] for r in runs if r.info.status == "FINISHED"}
    assert len(nodes) == 2  # both nodes ran cells

    capsys.readouterr()  # the same command again, in this process: it has nothing to run
    assert main(["run", *GRID, "--executor", "ray", "--address", ray_cluster]) == 0
    again = capsys.readouterr().out
    assert "12 cell(s): 0 to run, 12 already FINISHED" in again
    assert "ray:" not in again  # nothing to run: not even a connection to the cluster
    assert len(tracker.runs()) == len(runs)


def test_a_task_that_raises_fails_only_its_cell(ray_cluster: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench_core.ray_executor as rx

    tracker = MLflowTracker(None, "bench")
    payload = rx.cell_payload

    def bad_seed_for_svm_s1(cell, request):  # the worker rebuilds another cell: its key differs
        out = payload(cell, request)
        if cell.method == "svm" and cell.seed == 1:
            out["seed"] = 99
        return out

    monkeypatch.setattr(rx, "cell_payload", bad_seed_for_svm_s1)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    request = GridRequest(plugins=["svm"], seeds=[0, 1, 2])
    outcome = rx.run_grid_ray(load_plugins(), request, tracker, rx.RayOptions(address=ray_cluster),
                              echo=lambda _m: None)
    statuses = {c.seed: outcome.results[c.key].status for c in outcome.cells}
    assert statuses == {0: "FINISHED", 1: "FAILED", 2: "FINISHED"}
    (bad,) = [c for c in outcome.cells if c.seed == 1]
    assert "CellKeyMismatch" in (outcome.results[bad.key].error or "")
    assert outcome.exit_code == 1 and not outcome.interrupted
    assert not tracker.runs("attributes.status = 'RUNNING'")


def test_ctrl_c_cancels_the_grid_and_kills_running_cells(bench_exe: str, ray_cluster: str) -> None:
    tracker = MLflowTracker(None, "bench")
    proc = _bench(bench_exe, "--plugins", "two-branch-cnn", "--seeds", "0,1,2,3", "--set", "train.epochs=200",
                  "--executor", "ray", "--address", ray_cluster)
    try:
        _running_cell(tracker, "two-branch-cnn", proc)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    runs = tracker.runs()
    assert runs and not [r.info.run_name for r in runs if r.info.status == "RUNNING"], out
    assert {r.info.status for r in runs} == {"KILLED"}, [(r.info.run_name, r.info.status) for r in runs]
    assert "run the same command to resume" in out


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
def test_tune_on_the_cluster_shares_one_postgresql_study(bench_exe: str, ray_cluster: str, postgres_url: str) -> None:
    """Optuna's own distributed mode: two Ray tasks, one on each node, run trials of one study in PostgreSQL."""
    import optuna

    out = subprocess.run(
        [bench_exe, "tune", "--plugin", "svm", "--dataset", "synthetic", "--trials", "6", "--jobs", "2",
         "--address", ray_cluster, "--storage", postgres_url],
        env=subprocess_env(**ENV), capture_output=True, text=True, timeout=DEADLINE_S,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ray: 2 task(s) share study" in out.stdout
    study = optuna.load_study(study_name="tune/svm.fast/synthetic/official", storage=postgres_url)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 6 <= len(complete) <= 7  # each task checks the budget before its next trial
    runs = MLflowTracker(None, "bench-tune").runs()
    workers = {r.data.tags["bench.worker"] for r in runs if "bench.worker" in r.data.tags}
    assert workers  # the trials ran in the Ray tasks (bench.worker = host:pid of each)
