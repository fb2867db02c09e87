"""SIGTERM as an interrupt, process identity of runs, lost runs, the tracking-server probe."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench_core.errors import ConfigError, TrackingError
from bench_core.pipeline import RunLifecycle
from bench_core.process import (
    TAG_HOST,
    TAG_PID,
    TAG_PID_SCOPE,
    TAG_PID_START,
    Terminated,
    lost_run_reason,
    process_tags,
    sigterm_as_interrupt,
)
from bench_core.tracking import MLflowTracker, check_server, tracking_timeout


def test_sigterm_raises_terminated_inside_the_block_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, sigterm_as_interrupt() as state:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs between bytecodes, well before this ends
    assert isinstance(caught.value, KeyboardInterrupt) and str(caught.value) == "terminated by SIGTERM"
    assert state.terminated and state.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_main_leaves_no_signal_handler_behind() -> None:
    from bench_core.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert main(["--version"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_is_lost_only_when_its_process_is_provably_gone() -> None:
    here = process_tags()
    assert here[TAG_PID] == str(os.getpid()) and here[TAG_HOST] == socket.gethostname()
    assert lost_run_reason(here, here) is None  # this process
    dead = _dead_pid()
    gone = {**here, TAG_PID: str(dead)}
    gone.pop(TAG_PID_START, None)
    assert lost_run_reason(gone, here) == f"process lost (host {here[TAG_HOST]}, pid {dead})"
    assert lost_run_reason({**gone, TAG_HOST: "elsewhere"}, here) is None
    assert lost_run_reason({**gone, TAG_PID_SCOPE: "another-boot/pid:[1]"}, here) is None
    assert lost_run_reason({}, here) is None  # a run from before these tags
    if TAG_PID_START in here:  # Linux: a reused pid is another process
        reused = {**here, TAG_PID_START: str(int(here[TAG_PID_START]) - 1)}
        assert "another process" in (lost_run_reason(reused, here) or "")


@pytest.mark.slow
def test_close_lost_runs_fails_the_dead_processes_runs_only(tmp_path: Path) -> None:
    tracker = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    mine = tracker.start_run("alive", {"bench.cell_key": "a"})
    assert tracker.client.get_run(mine.run_id).data.tags[TAG_PID] == str(os.getpid())
    dead = _dead_pid()
    lost = tracker.start_run("lost", {"bench.cell_key": "b", TAG_PID: str(dead)})
    lost_start = tracker.client.get_run(lost.run_id).data.tags
    assert lost_start[TAG_PID] == str(dead)
    closed = tracker.close_lost_runs()
    assert [name for name, _ in closed] == ["lost"]
    run = tracker.client.get_run(lost.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["bench.error"].startswith(f"process lost (host {socket.gethostname()}, pid {dead})")
    assert tracker.client.get_run(mine.run_id).info.status == "RUNNING"


@pytest.mark.slow
def test_a_terminated_run_is_killed_with_its_traceback(tmp_path: Path) -> None:
    tracker = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "t")
    life = RunLifecycle(tracker, "cell", {}, suppress=True)
    with pytest.raises(Terminated), life:
        raise Terminated()
    run = tracker.client.get_run(life.run.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["bench.interrupted"].startswith("terminated by SIGTERM")
    text = Path(tracker.client.download_artifacts(life.run.run_id, "traceback.txt", str(tmp_path))).read_text()
    assert "Traceback" in text and "Terminated: terminated by SIGTERM" in text


def test_a_closed_port_fails_the_probe_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TrackingError, match=rf"http://127\.0\.0\.1:{port} is unreachable"):
        check_server(f"http://127.0.0.1:{port}", timeout=5)
    assert time.monotonic() - start < 5
    monkeypatch.setenv("BENCH_TRACKING_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="BENCH_TRACKING_TIMEOUT"):
        tracking_timeout()
    monkeypatch.setenv("BENCH_TRACKING_TIMEOUT", "2.5")
    assert tracking_timeout() == 2.5


def test_a_signal_while_artifacts_are_stored_does_not_leave_the_run_finished() -> None:
    class Run:
        run_id = "r"
        status = None

        def set_tags(self, tags):
            pass

        def log_artifacts(self, folder):
            raise Terminated()

        def end(self, status):
            Run.status = status

    class Tracker:
        def start_run(self, name, tags, description=""):
            return Run()

    life = RunLifecycle(Tracker(), "cell", {})  # type: ignore[arg-type]
    with pytest.raises(Terminated), life:
        (life.out / "predictions.npy").write_bytes(b"x")
    assert Run.status == "KILLED"


@pytest.mark.slow
def test_bench_leaderboard_closes_lost_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench_core.cli import main

    tracker = MLflowTracker(None, "bench")  # the default store of this test's BENCH_HOME
    dead = _dead_pid()
    lost = tracker.start_run("lost", {"bench.cell_key": "b", TAG_PID: str(dead)})
    assert main(["leaderboard", "--no-paper-numbers", "--no-significance"]) == 0
    assert tracker.client.get_run(lost.run_id).info.status == "FAILED"
    assert f"pid {dead}" in capsys.readouterr().err
