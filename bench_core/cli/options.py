"""Options shared by several commands."""

from __future__ import annotations

import click

from bench_core.tracking import DEFAULT_EXPERIMENT

tracking_uri = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    default=None,
    show_envvar=True,
    help="MLflow tracking store or server (default: sqlite:///$BENCH_HOME/mlflow.db, BENCH_HOME=./bench-results).",
)


def _experiment_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value or not value.strip():
        raise click.BadParameter(
            f"{value!r}: expected a non-empty MLflow experiment name, e.g. --experiment {DEFAULT_EXPERIMENT}"
        )
    return value


experiment = click.option(
    "--experiment", default=DEFAULT_EXPERIMENT, show_default=True, callback=_experiment_name,
    help="MLflow experiment name.",
)
as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def csv_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str]:
    """Comma-separated option value -> list (empty entries dropped)."""
    if value is None:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]
