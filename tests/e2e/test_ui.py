"""`bench ui` starts the real MLflow UI on the benchmark store, on 127.0.0.1."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

pytestmark = pytest.mark.slow


def test_bench_ui_serves_the_store(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "bench"
    env = subprocess_env(BENCH_HOME=str(tmp_path / "home"))
    # A store with one experiment, so the UI has something to list.
    from bench_core.tracking import MLflowTracker

    MLflowTracker(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}", "bench")
    proc = subprocess.Popen([str(exe), "ui"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        url = None
        for _ in range(20):
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            if match:
                url = match.group(0)
                break
        assert url, "bench ui printed no URL"
        deadline = time.monotonic() + 90
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/", timeout=5) as resp:
                    body = resp.read().decode(errors="replace")
                    break
            except OSError:
                time.sleep(1)
        assert "<title>MLflow</title>" in body
        req = urllib.request.Request(
            url + "/api/2.0/mlflow/experiments/search", data=b'{"max_results": 10}',
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert '"name": "bench"' in resp.read().decode().replace('":"', '": "')
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
