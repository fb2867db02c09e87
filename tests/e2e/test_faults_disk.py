"""A real full filesystem under the store's artifacts: the run is FAILED, not FINISHED, and runs again.

The artifact folder of the embedded store (``$BENCH_HOME/artifacts``) is a 16 KiB tmpfs, so MLflow's
copy of the cell's artifacts stops with ENOSPC. Needs root and ``mount`` (CI runs as root); elsewhere
the test skips and tests/e2e/test_runner_behaviour.py's injected OSError covers the same path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench_core.cli import main
from bench_core.tracking import MLflowTracker

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@contextmanager
def tiny_tmpfs(folder: Path, size: str = "16k") -> Iterator[None]:
    """Mount a ``size`` tmpfs on ``folder`` for the duration; skip where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-limited tmpfs needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def test_artifacts_on_a_full_filesystem_fail_the_run_and_it_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    monkeypatch.setenv("CI", "true")
    argv = ["run", "--plugins", "svm", "--datasets", "synthetic"]
    with tiny_tmpfs(home / "artifacts"):
        assert main(argv) == 1
        tracker = MLflowTracker()
        (run,) = tracker.runs()
        assert run.info.status == "FAILED"
        error = run.data.tags["bench.error"]
        assert "artifacts not stored" in error and "No space left on device" in error, error
        assert tracker.finished_cell_keys() == set()
    capsys.readouterr()
    # The disk has room again: the same command runs the cell again instead of skipping it.
    assert main(argv) == 0
    assert "0 already FINISHED" in capsys.readouterr().out
    statuses = sorted(r.info.status for r in MLflowTracker().runs())
    assert statuses == ["FAILED", "FINISHED"]
