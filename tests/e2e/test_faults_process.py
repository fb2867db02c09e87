"""Fault injection with real processes: SIGTERM, SIGKILL, `bench ui` stopped, two processes on a
new store, an unreachable tracking server. Each test drives the installed `bench` script."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.e2e.conftest import store_row

pytestmark = pytest.mark.slow

# A cell that trains long enough to be caught RUNNING (each epoch logs metrics), yet finishes
# in well under a minute on one CPU thread when it is left alone.
SLOW_CELL = ["--plugins", "two-branch-cnn", "--profile", "fast", "--set", "train.epochs=200"]
# Long enough to be caught RUNNING (an epoch takes about 0.2 s), short enough to run again to the end.
LOST_CELL = ["--plugins", "two-branch-cnn", "--profile", "fast", "--set", "train.epochs=20"]
# A quick cell (the SVM: no torch optimizer to import and run): what these tests exercise is the store.
QUICK_CELL = ["--plugins", "svm", "--profile", "fast"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(BENCH_HOME=str(home), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", CI="1", **extra)


def _start(bench_exe: str, args: list[str], home: Path, log: Path, **popen: object) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([bench_exe, *args], stdout=out, stderr=subprocess.STDOUT, env=_env(home),
                                cwd=home.parent, **popen)  # type: ignore[call-overload]


def _wait_training(proc: subprocess.Popen[bytes], home: Path, log: Path, timeout: float = 180) -> str:
    """The id of the run that is RUNNING and has logged at least one epoch."""
    db = home / "mlflow.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"bench exited early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        if db.exists():
            row = store_row(db, "SELECT r.run_uuid FROM runs r WHERE r.status = 'RUNNING' AND EXISTS "
                                "(SELECT 1 FROM metrics m WHERE m.run_uuid = r.run_uuid)")
            if row:
                return str(row[0])
        time.sleep(0.2)
    raise AssertionError(f"no run started training within {timeout} s:\n{log.read_text()[-3000:]}")


def _runs(home: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench")
    assert exp is not None
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sigterm_kills_the_running_cell_and_starts_no_other(tmp_path: Path, bench_exe: str) -> None:
    from mlflow.tracking import MlflowClient

    home, log = tmp_path / "home", tmp_path / "run.log"
    proc = _start(bench_exe, ["run", *SLOW_CELL, "--seeds", "0,1"], home, log)
    try:
        run_id = _wait_training(proc, home, log)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        _stop(proc)
    output = log.read_text()
    assert code == 143, output[-3000:]
    runs = _runs(home)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "KILLED")], "seed 1 must not start"
    # The bench.interrupted tag is best-effort: in one loaded CI run it was missing (the SIGTERM
    # landed inside a store call); traceback.txt below is the record that must exist.
    assert "SIGTERM" in runs[0].data.tags.get("bench.interrupted", "SIGTERM")
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    text = Path(client.download_artifacts(run_id, "traceback.txt", str(tmp_path))).read_text()
    assert "Traceback" in text and "Terminated: terminated by SIGTERM" in text
    assert "Interrupted: the running cell is recorded as KILLED" in output


def test_sigkill_leaves_a_lost_run_that_the_next_run_fails_and_reruns(tmp_path: Path, bench_exe: str) -> None:
    home, log = tmp_path / "home", tmp_path / "run.log"
    proc = _start(bench_exe, ["run", *LOST_CELL], home, log)
    try:
        lost_id = _wait_training(proc, home, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _stop(proc)
    (lost,) = _runs(home)
    assert lost.info.status == "RUNNING"  # nobody could close it
    assert lost.data.tags["bench.pid"] == str(proc.pid)
    again = subprocess.run([bench_exe, "run", *LOST_CELL], env=_env(home), cwd=tmp_path,
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    reason = f"process lost (host {socket.gethostname()}, pid {proc.pid})"
    assert reason in again.stderr
    runs = {r.info.run_id: r for r in _runs(home)}
    assert runs[lost_id].info.status == "FAILED"
    assert runs[lost_id].data.tags["bench.error"] == reason
    (rerun,) = [r for r in runs.values() if r.info.run_id != lost_id]
    assert rerun.info.status == "FINISHED"
    assert rerun.data.tags["bench.cell_key"] == lost.data.tags["bench.cell_key"]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _port_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (SO_REUSEADDR, as servers do: connections of
    the old one in TIME_WAIT do not count, a process still listening does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_sigterm_stops_bench_ui_with_every_process_it_started(tmp_path: Path, bench_exe: str) -> None:
    home, log = tmp_path / "home", tmp_path / "ui.log"
    from bench_core.tracking import MLflowTracker

    MLflowTracker(f"sqlite:///{home / 'mlflow.db'}", "bench")
    port = _free_port()
    proc = _start(bench_exe, ["ui", "--port", str(port)], home, log)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"the UI did not answer:\n{log.read_text()}"
                time.sleep(1)
        started = _descendants(proc.pid)
        assert started, "bench ui started no server process"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        left = {p for p in started if _alive(p)}
        assert not left, f"bench ui exited ({code}) leaving {sorted(left)} running"
        assert code == 143
        assert _port_free(port), f"port {port} still held after bench ui stopped"
    finally:
        _stop(proc)
        for pid in started:  # whatever a failing run left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_two_runs_on_a_new_store_at_once_both_succeed(tmp_path: Path, bench_exe: str) -> None:
    home = tmp_path / "home"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_start(bench_exe, ["run", *QUICK_CELL, "--seeds", str(i)], home, log) for i, log in enumerate(logs)]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            _stop(p)
    assert codes == [0, 0], "\n----\n".join(log.read_text()[-3000:] for log in logs)
    assert sorted(r.info.status for r in _runs(home)) == ["FINISHED", "FINISHED"]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.mark.parametrize("server", ["closed-port", "silent-server"])
def test_an_unreachable_tracking_server_fails_in_seconds(
    server: str, tmp_path: Path, bench_exe: str, request: pytest.FixtureRequest
) -> None:
    port = _free_port() if server == "closed-port" else request.getfixturevalue("silent_server")
    uri = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    done = subprocess.run([bench_exe, "run", *QUICK_CELL, "--tracking-uri", uri],
                          env=_env(tmp_path / "home", BENCH_TRACKING_TIMEOUT="3"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=90, check=False)
    elapsed = time.monotonic() - start
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and uri in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"unreachable \(.*at most 3 s", errors[0])
    assert elapsed < 45, f"took {elapsed:.0f} s"
