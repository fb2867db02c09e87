"""The ``bench`` command line: one module per command, no logic beyond parsing and printing.

``main(argv=None)`` runs in-process, so tests drive the real CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from bench_core import __version__

ENV_HELP = """\b
Environment variables:
  BENCH_HOME             folder of the embedded store (default ./bench-results)
  MLFLOW_TRACKING_URI    any MLflow tracking store or server (overrides BENCH_HOME)
  BENCH_TRACKING_TIMEOUT seconds to wait for a tracking server to answer (default 10)
  BENCH_PLUGINS          comma-separated entry-point names: load only these plugins
  BENCH_DISABLE_PLUGINS  comma-separated entry-point names never to load
  BENCH_TRACE_PLUGINS    set to 1 to trace every hook call
  BENCH_DATA_DIR         folder with dataset files (--data-dir)
  BENCH_OPTUNA_STORAGE   Optuna storage of bench tune (default sqlite:///$BENCH_HOME/optuna.db)
  BENCH_HEARTBEAT_INTERVAL  seconds between Optuna heartbeats of a running tuning trial (default 10)
  BENCH_GRACE_PERIOD     seconds without a heartbeat before a tuning trial's task counts as dead (default 60)
  BENCH_NORMALISATION    minmax (default) or zscore: per-band normalisation of real datasets
  BENCH_VERIFY_CHECKSUMS set to 0 to load dataset files whose sha256 differs from the published one
"""


@click.group(
    help="Benchmark multimodal remote-sensing fusion methods under one honest protocol.\n\n" + ENV_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="bench")
def cli() -> None:
    """Root group; subcommands live in their own modules."""


def _register_commands() -> None:
    from bench_core.cli import datasets, leaderboard, plugins, run, tune, ui

    cli.add_command(run.run)
    cli.add_command(plugins.plugins)
    cli.add_command(datasets.datasets)
    cli.add_command(leaderboard.leaderboard)
    cli.add_command(ui.ui)
    cli.add_command(tune.tune)


_register_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bench`` console script; returns the exit code.

    0: everything asked for finished; 1: some cells failed; 2: usage error
    (bad option, unknown name, invalid value); 130: interrupted (Ctrl-C); 143: terminated
    (SIGTERM, handled like Ctrl-C: the running cell is recorded as KILLED).
    """
    from bench_core.process import EXIT_TERMINATED, sigterm_as_interrupt

    with sigterm_as_interrupt() as term:
        try:
            code = _main(argv)
        except KeyboardInterrupt:  # a signal that arrived outside click's own handling
            code = 130
    return EXIT_TERMINATED if term.terminated else code


def _main(argv: Sequence[str] | None) -> int:
    from bench_core.errors import BenchError
    from bench_core.process import Terminated

    try:
        code = cli.main(
            args=list(argv) if argv is not None else None, prog_name="bench", standalone_mode=False
        )
    except click.exceptions.Abort as exc:
        click.echo("Terminated." if isinstance(exc.__cause__, Terminated) else "Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BenchError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    except SystemExit as exc:  # click's --help / --version
        return int(exc.code or 0)
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
