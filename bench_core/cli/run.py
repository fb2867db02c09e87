"""``bench run``: train and evaluate every selected method on every selected dataset."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bench_core.cli.options import (
    csv_list,
    data_dir_option,
    device_option,
    experiment,
    ray_resource_options,
    tracking_uri,
    val_carve_option,
)


def _seeds(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        seeds = [int(s) for s in csv_list(ctx, param, value)]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers >= 0, e.g. 0,1,2") from None
    negative = [s for s in seeds if s < 0]
    if negative:
        raise click.BadParameter(
            f"{value!r}: seed {negative[0]} is negative; expected comma-separated integers >= 0, e.g. 0,1,2"
        )
    return seeds


@click.command()
@click.option("--plugins", "plugins", default="all", show_default=True, callback=csv_list,
              help="Methods to run: method or plugin names (shell patterns), comma-separated; 'all' = every method.")
@click.option("--datasets", "datasets", default="synthetic", show_default=True, callback=csv_list,
              help="Datasets, comma-separated (`bench datasets list`).")
@click.option("--splits", "splits", default="official", show_default=True, callback=csv_list,
              help="Split protocols (comma-separated): official, per-class:N, fraction:p, "
                   "spatial-blocks[:B][:train=T][:guard=P].")
@click.option("--seeds", default="0", show_default=True, callback=_seeds, help="Seeds, comma-separated.")
@click.option("--profile", type=str, default=None,
              help="Method profile (fast|paper|...). Default: each dataset's recommended profile.")
@click.option("--set", "overrides", multiple=True, metavar="[METHOD:]SECTION.KEY=VALUE",
              help="Override a config value, e.g. --set train.epochs=3; with METHOD: for that method's "
                   "cells only, e.g. --set bdgf:model.ddpm_epochs=1 (repeatable).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of each class's training pixels held out for validation (0: none, "
                   "no best-epoch selection; the papers' setting).")
@val_carve_option
@device_option
@click.option("--rerun", is_flag=True, help="Run cells again even if already FINISHED in the store.")
@data_dir_option
@tracking_uri
@experiment
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage holding the study of --config-from-study NAME. "
                   "Default: sqlite:///$BENCH_HOME/optuna.db.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: cells one after another in this process; ray: one Ray task per cell, in parallel "
                   "on a local Ray instance or the cluster of --address (pip install -e '.[ray]').")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="Ray cluster to run on (with --executor ray): 'auto' = the cluster this machine belongs to "
                   "(after `ray start`), HOST:PORT = its head. Default: a private local instance using every CPU "
                   "and GPU of this machine.")
@ray_resource_options("cell", "cell")
@click.option("--max-retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="With --executor ray: re-runs of a cell whose worker process or node died.")
@click.option("--config-from-study", "config_from_study", default=None, metavar="NAME",
              help="Apply the best config of the tuning study NAME (or an exported best.json); --set wins.")
def run(plugins: list[str], datasets: list[str], splits: list[str], seeds: list[int], profile: str | None,
        overrides: tuple[str, ...], val_fraction: float, val_carve: str, device: str, rerun: bool,
        data_dir: Path | None,
        tracking_uri: str | None, experiment: str, storage: str | None, executor: str, address: str | None,
        cpus_per_cell: float, gpus_per_cell: float | None, max_retries: int,
        config_from_study: str | None) -> int:
    """Train and evaluate methods x datasets x splits x seeds; record every cell in MLflow.

    Cells already FINISHED in the store are skipped (--rerun forces them); runs left RUNNING by a
    killed process of this host are closed as FAILED first, and their cells run again. Exit code 0
    if every cell finished, 1 if some failed, 2 for usage errors, 130 if interrupted (Ctrl-C),
    143 if terminated (SIGTERM: the running cell is recorded as KILLED, like Ctrl-C).
    """
    from rich.console import Console

    from bench_core.plugins import load_plugins
    from bench_core.runner import (
        GridRequest,
        Reporter,
        RichReporter,
        expand_grid,
        parse_grid_overrides,
        run_grid,
        summary_rows,
    )
    from bench_core.tracking import MLflowTracker

    if not seeds:
        raise click.BadParameter("no seeds given", param_hint="--seeds")
    override_map, per_method = parse_grid_overrides(overrides)
    extra_tags: dict[str, str] = {}
    if config_from_study:
        from bench_core.tuning import apply_study_config
        from bench_core.tuning import config_from_study as load_study_config

        tuned = load_study_config(config_from_study, storage)
        plugins, profile, override_map = apply_study_config(tuned, plugins, profile, override_map)
        extra_tags = {"bench.config_from_study": str(tuned["study"]), "bench.config_from_trial": str(tuned["trial"])}
        click.echo(f"config from study {tuned['study']!r} trial {tuned['trial']}: {tuned['overrides']}")
    if address is not None and executor != "ray":
        raise click.BadParameter("--address needs --executor ray", param_hint="--address")
    if executor == "local":  # on Ray, the cluster's nodes have the devices, not necessarily this machine
        from bench_core.timing import resolve_device

        resolve_device(device)  # --device cuda without CUDA: exit 2 now, even if every cell is FINISHED
    else:
        from bench_core.ray_executor import import_ray

        import_ray()  # exit 2 with the install command when ray is missing
    request = GridRequest(
        plugins=plugins, datasets=datasets, splits=splits, seeds=seeds, profile=profile,
        val_fraction=val_fraction, val_carve=val_carve, overrides=override_map, method_overrides=per_method,
        rerun=rerun, device=device,
        data_dir=data_dir,
    )
    host = load_plugins()
    for name, error in host.errors.items():
        click.echo(f"warning: plugin {name!r} failed to load: {error.splitlines()[0]}", err=True)
    expand_grid(host, request)  # a bad --set, split or method: exit 2 before the store is opened or created
    tracker = MLflowTracker(tracking_uri, experiment)
    for name, reason in tracker.close_lost_runs():  # their cells run again below
        click.echo(f"run {name!r} was RUNNING, now FAILED: {reason}", err=True)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # whole cell ids in logs and CI
    interactive = console.is_terminal and not os.environ.get("CI")
    reporter = RichReporter(console) if interactive else Reporter(lambda m: click.echo(m))
    for name in datasets:
        spec = host.datasets.get(name)
        chosen = profile or spec.recommended_profile
        source = "--profile" if profile else "recommended by the dataset"
        click.echo(f"{name}: profile {chosen!r} ({source})")
    click.echo(f"store: {tracker.uri}  experiment: {experiment}")
    if executor == "ray":
        from bench_core.ray_executor import RayOptions, run_grid_ray

        options = RayOptions(address=address, cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell,
                             max_retries=max_retries)
        outcome = run_grid_ray(host, request, tracker, options, reporter, click.echo, extra_tags)
    else:
        from bench_core.tuning import TaggingTracker

        outcome = run_grid(host, request, TaggingTracker(tracker, extra_tags) if extra_tags else tracker, reporter)
    _print_summary(console, summary_rows(outcome))
    failed = len(outcome.failed)
    if outcome.interrupted:
        click.echo("Interrupted: the running cell is recorded as KILLED; run the same command to resume.", err=True)
    elif failed:
        click.echo(f"{failed} cell(s) did not finish; their tracebacks are run artifacts (traceback.txt).", err=True)
    click.echo(f"results: {tracker.uri} (experiment {experiment!r})")
    click.echo(f"browse:  {tracker.ui_hint()}    table: bench leaderboard"
               + ("" if tracking_uri is None else f" --tracking-uri '{tracker.uri}'"))
    sys.stdout.flush()
    return outcome.exit_code


def _print_summary(console: object, rows: list[dict[str, object]]) -> None:
    from rich.table import Table

    table = Table(title="cells")
    for col in ("cell", "status", "test_oa", "test_aa", "test_kappa", "time_train_s"):
        table.add_column(col, justify="left" if col in ("cell", "status") else "right")
    for row in rows:
        table.add_row(*[_fmt(row[c]) for c in ("cell", "status", "test_oa", "test_aa", "test_kappa", "time_train_s")])
    console.print(table)  # type: ignore[attr-defined]


def _fmt(value: object) -> str:
    from bench_core.leaderboard.formatting import MISSING, format_number

    if value is None:
        return MISSING
    if isinstance(value, float):
        return format_number(value)  # the leaderboard's rule: NaN '-', infinity 'inf'
    return str(value)
