"""``bench tune``: tune a method's hyper-parameters with Optuna on validation pixels; ``bench tune export``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bench_core.cli.options import (
    data_dir_option,
    device_option,
    ray_resource_options,
    tracking_uri,
    val_carve_option,
)
from bench_core.tuning import DEFAULT_TUNE_EXPERIMENT, ENV_STORAGE, METRICS, PRUNERS

storage_option = click.option(
    "--storage", envvar=ENV_STORAGE, show_envvar=True, default=None, metavar="URL",
    help="Optuna storage: sqlite:////abs/optuna.db, postgresql+psycopg2://user@host:5432/db or journal:PATH "
         "(default: sqlite:///$BENCH_HOME/optuna.db).",
)


@click.group(invoke_without_command=True)
@click.option("--plugin", "method", default=None, metavar="NAME",
              help="The method to tune (a registered method name).")
@click.option("--dataset", default=None, metavar="NAME", help="Dataset to tune on (`bench datasets list`).")
@click.option("--split", default="official", show_default=True,
              help="Split protocol: official, per-class:N, fraction:p, spatial-blocks.")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="The study's total number of trials (a re-run continues up to it).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop starting trials after this many seconds.")
@storage_option
@click.option("--study", default=None, metavar="NAME",
              help="Study name (default: tune/<method>.<profile>/<dataset>/<split>).")
@click.option("--metric", type=click.Choice(METRICS), default="val_oa", show_default=True,
              help="What the study maximises, on the validation pixels.")
@click.option("--profile", default=None,
              help="Method profile the search starts from (default: the dataset's recommendation).")
@click.option("--pruner", type=click.Choice(PRUNERS), default="median", show_default=True,
              help="Stop unpromising trials early on their per-epoch validation OA.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials running at once: more than 1 runs them as Ray tasks sharing the study's storage "
                   "(a local Ray instance, or the cluster of --address; pip install -e '.[ray]').")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="Ray cluster whose nodes run the --jobs trial tasks ('auto' after `ray start`); the storage "
                   "must then be reachable from every node (PostgreSQL).")
@ray_resource_options("trial", "trial task")
@click.option("--seed", type=int, default=0, show_default=True, help="Split seed and sampler seed.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Fixed config value under the sampled ones, e.g. --set train.epochs=3 (repeatable).")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of each class's training pixels held out to score the trials.")
@val_carve_option
@device_option
@data_dir_option
@click.option("--export", "export_path", type=click.Path(path_type=Path), default=None,
              help="Write the best config as JSON here (for `bench run --config-from-study FILE`).")
@tracking_uri
@click.option("--experiment", default=DEFAULT_TUNE_EXPERIMENT, show_default=True,
              help="MLflow experiment of the study's runs (kept apart from the benchmark's).")
@click.pass_context
def tune(ctx: click.Context, method: str | None, dataset: str | None, split: str, trials: int,
         timeout: float | None, storage: str | None, study: str | None, metric: str, profile: str | None,
         pruner: str, jobs: int, address: str | None, cpus_per_trial: float,
         gpus_per_trial: float | None, seed: int, overrides: tuple[str, ...], val_fraction: float, val_carve: str,
         device: str,
         data_dir: Path | None, export_path: Path | None, tracking_uri: str | None, experiment: str) -> int:
    """Tune a method with Optuna: train on training pixels, score on validation pixels carved from them.

    One study per method, dataset, split and profile; the search space is the method's own
    (its plugin declares it). Trials are pruned on per-epoch validation OA. The study is a
    parent MLflow run with one nested run per trial. The test split is never read.

    \b
      bench tune --plugin two-branch-cnn --dataset synthetic --trials 20 --export best.json
      bench run --plugins two-branch-cnn --config-from-study best.json
      bench tune export --study tune/two-branch-cnn.fast/synthetic/official

    Exit code 0 when the study has a complete trial, 1 when none completed, 130 if interrupted.
    """
    if ctx.invoked_subcommand is not None:
        return 0
    if not method or not dataset:
        raise click.UsageError("bench tune needs --plugin NAME and --dataset NAME (or a subcommand: export)")
    import optuna

    from bench_core.plugins import load_plugins
    from bench_core.runner import parse_overrides
    from bench_core.tracking import MLflowTracker
    from bench_core.tuning import Heartbeat, TuneRequest, export_best, load_study, resolve_recipe, run_tuning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    request = TuneRequest(
        method=method, dataset=dataset, split=split, profile=profile, metric=metric, trials=trials,
        timeout=timeout, seed=seed, pruner=pruner, val_fraction=val_fraction, val_carve=val_carve,
        overrides=parse_overrides(overrides), device=device, data_dir=data_dir, study=study,
    )
    host = load_plugins()
    for name, error in host.errors.items():
        click.echo(f"warning: plugin {name!r} failed to load: {error.splitlines()[0]}", err=True)
    resolve_recipe(host, request)  # a bad --set, split or method: exit 2 before the store is opened or created
    tracker = MLflowTracker(tracking_uri, experiment)
    if jobs > 1 or address is not None:
        from bench_core.ray_executor import import_ray

        import_ray()  # exit 2 with the install command when ray is missing
    outcome = run_tuning(host, request, tracker, storage, jobs, Heartbeat.from_env(), lambda m: click.echo(m),
                         address, cpus_per_trial, gpus_per_trial)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(outcome.counts.items()))
    click.echo(f"study {outcome.study!r} ({outcome.storage}): {counts or 'no trials'}")
    if outcome.best_trial is not None:
        click.echo(f"best: trial {outcome.best_trial} {outcome.recipe.metric}={outcome.best_value:.2f} "
                   f"{json.dumps(outcome.best_params, sort_keys=True)}")
        if export_path is not None:
            export_best(load_study(outcome.study, storage), export_path)
            click.echo(f"exported: {export_path}")
        store = "" if storage is None else f" --storage '{storage}'"
        click.echo(f"use it:  bench run --plugins {outcome.recipe.method} --datasets {outcome.recipe.dataset} "
                   f"--config-from-study '{outcome.study}'{store}")
    else:
        click.echo("no trial completed; the failed trials' tracebacks are artifacts of their MLflow runs", err=True)
    click.echo(f"runs:    MLflow experiment {experiment!r} in {tracker.uri} (trials nested under the study's run)")
    if outcome.interrupted:
        click.echo("Interrupted: run the same command to continue the study.", err=True)
    sys.stdout.flush()
    return outcome.exit_code


@tune.command("export")
@click.option("--study", required=True, metavar="NAME", help="The tuning study.")
@storage_option
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write the JSON here (default: print it).")
def export(study: str, storage: str | None, output: Path | None) -> int:
    """Print (or write) the best config of a tuning study as JSON."""
    from bench_core.tuning import best_config, export_best, load_study

    loaded = load_study(study, storage)
    if output is None:
        click.echo(json.dumps(best_config(loaded), indent=2, sort_keys=True, default=str))
    else:
        export_best(loaded, output)
        click.echo(f"exported: {output}")
    return 0
