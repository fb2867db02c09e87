"""``bench worker``: claim queued grid cells and tuning trials from a shared Optuna storage."""

from __future__ import annotations

from pathlib import Path

import click

from bench_core.tuning import ENV_GRACE, ENV_HEARTBEAT, ENV_STORAGE

storage_option = click.option(
    "--storage", envvar=ENV_STORAGE, show_envvar=True, default=None, metavar="URL",
    help="Optuna storage: sqlite:////abs/optuna.db, postgresql+psycopg2://user@host:5432/db or journal:PATH "
         "(default: sqlite:///$BENCH_HOME/optuna.db).",
)
heartbeat_options = [
    click.option("--heartbeat-interval", type=click.IntRange(min=1), envvar=ENV_HEARTBEAT, show_envvar=True,
                 default=10, show_default=True, help="Seconds between two heartbeats of a running cell or trial."),
    click.option("--grace-period", type=click.IntRange(min=2), envvar=ENV_GRACE, show_envvar=True, default=60,
                 show_default=True,
                 help="Seconds without a heartbeat after which a worker counts as dead and its cell is re-queued."),
    click.option("--max-retry", type=click.IntRange(min=0), default=3, show_default=True,
                 help="How often one cell or trial is re-queued after its worker died."),
]


def with_heartbeat_options(func: click.decorators.FC) -> click.decorators.FC:
    """Add --heartbeat-interval, --grace-period and --max-retry (shared with `bench run` and `bench tune`)."""
    for option in reversed(heartbeat_options):
        func = option(func)
    return func


@click.command()
@storage_option
@click.option("--study", "studies", multiple=True, metavar="NAME",
              help="Serve only this study (repeatable). Default: every bench grid queue and tuning study "
                   "in the storage.")
@click.option("--tracking-uri", default=None,
              help="Record in this MLflow store instead of the one each cell or study was queued with.")
@click.option("--device", default=None, help="Run on this device (auto, cpu, cuda, cuda:N) instead of the queued one.")
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="BENCH_DATA_DIR", show_envvar=True,
              default=None, help="Folder with dataset files.")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Keep polling this many seconds for new work once the queue is empty ('inf' = forever).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Take no new work after this many seconds.")
@with_heartbeat_options
def worker(storage: str | None, studies: tuple[str, ...], tracking_uri: str | None, device: str | None,
           data_dir: Path | None, idle_timeout: float, timeout: float | None, heartbeat_interval: int,
           grace_period: int, max_retry: int) -> int:
    """Run queued benchmark cells and tuning trials from a shared Optuna storage until none are left.

    Start any number of workers, on any machines that reach the storage and the MLflow store
    (see docs/scaling.md). Each claims one waiting cell at a time, records an Optuna
    heartbeat while it runs, and re-queues the cell of a worker whose heartbeat stopped
    (its MLflow run is closed as FAILED). A worker exits when nothing is waiting or running.
    Exit code 0 if every cell it ran finished, 1 if some failed, 130 if interrupted (its
    running cell goes back to the queue).
    """
    import optuna

    from bench_core.distributed import WorkerOptions, run_worker
    from bench_core.plugins import load_plugins
    from bench_core.tuning import Heartbeat, default_storage_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = WorkerOptions(
        storage_url=storage or default_storage_url(),
        studies=tuple(studies),
        tracking_uri=tracking_uri,
        device=device,
        data_dir=data_dir,
        heartbeat=Heartbeat(interval=heartbeat_interval, grace=grace_period, max_retry=max_retry),
        idle_timeout=idle_timeout,
        timeout=timeout,
    )
    host = load_plugins()
    for name, error in host.errors.items():
        click.echo(f"warning: plugin {name!r} failed to load: {error.splitlines()[0]}", err=True)
    report = run_worker(host, options, lambda m: click.echo(m))
    return report.exit_code
