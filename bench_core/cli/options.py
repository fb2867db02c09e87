"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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
val_carve_option = click.option(
    "--val-carve", type=click.Choice(["auto", "random", "spatial"]), default="auto", show_default=True,
    help="How validation pixels are carved from the training pixels: random pixels, spatial blocks "
         "with a guard band (validation leakage 0), or auto (spatial for spatial-blocks, else random).",
)
device_option = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path), envvar="BENCH_DATA_DIR", show_envvar=True,
    default=None, help="Folder with dataset files.",
)

_Command = TypeVar("_Command", bound=Callable[..., object])


def ray_resource_options(unit: str, task: str) -> Callable[[_Command], _Command]:
    """``--cpus-per-UNIT`` and ``--gpus-per-UNIT``: what each Ray ``task`` (a cell, a trial) reserves."""
    cpus = click.option(
        f"--cpus-per-{unit}", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
        help=f"CPUs each {task} reserves on the Ray cluster (and torch threads it uses).",
    )
    gpus = click.option(
        f"--gpus-per-{unit}", type=click.FloatRange(min=0), default=None,
        help=f"GPUs each {task} reserves (fractions share a GPU). Default: 1 when the Ray cluster has GPUs "
             f"and --device is auto or cuda, else 0.",
    )

    def apply(command: _Command) -> _Command:
        return cpus(gpus(command))

    return apply


def csv_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str]:
    """Comma-separated option value -> list (empty entries dropped)."""
    if value is None:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]
