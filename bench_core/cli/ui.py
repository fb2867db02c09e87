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


def check_port_free(host: str, port: int) -> None:
    """ConfigError (exit 2) unless ``host:port`` can be bound now (nothing else listens there)."""
    from bench_core.errors import ConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r}: cannot be resolved ({exc}); expected an interface, e.g. 127.0.0.1") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(
                f"--port {port}: {host}:{port} is not free ({exc.strerror or exc}; another service listens "
                f"there?); expected a free port: choose another --port, or omit --port for a free one"
            ) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: a free one).")
@tracking_uri
def ui(host: str, port: int | None, tracking_uri: str | None) -> int:
    """Start the MLflow UI on the benchmark store and print its URL (Ctrl-C or SIGTERM stops it,
    with every process the server started)."""
    from bench_core.tracking import default_tracking_uri, is_embedded

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        click.echo(f"The store is a tracking server already: open {uri}")
        return 0
    if port:
        check_port_free(host, port)  # else the server fails to bind, after this printed another service's URL
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
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (bench_core.process.Terminated)
        _stop_group(proc)
        return 0


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Stop the UI server and every process it started (its own process group): SIGTERM, then
    SIGKILL for whatever is still there after ``grace`` seconds; returns once the group is gone."""
    import time

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader; its children are waited for through the group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
