"""``bench ui``: the MLflow UI on the same store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import click

from bench_core.cli.options import tracking_uri


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=None, help="Port (default: a free one).")
@tracking_uri
def ui(host: str, port: int | None, tracking_uri: str | None) -> int:
    """Start the MLflow UI on the benchmark store and print its URL (Ctrl-C stops it)."""
    from bench_core.tracking import default_tracking_uri, is_embedded

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        click.echo(f"The store is a tracking server already: open {uri}")
        return 0
    port = port or free_port(host)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if is_embedded(uri):
        from pathlib import Path

        artifacts = Path(uri[len("sqlite:///"):]).parent / "artifacts"
        cmd += ["--default-artifact-root", artifacts.as_uri()]
    click.echo(f"MLflow UI for {uri}\n  http://{host}:{port}\n(Ctrl-C to stop)")
    sys.stdout.flush()
    # One worker and no background job runner: starts in seconds and leaves no orphans.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen([*cmd, "--workers", "1"], env=env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        _stop_group(proc)
        return 0


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the UI server and every process it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
