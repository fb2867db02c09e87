"""``bench tune``: create (or resume) a study, run its trials here or on Ray, summarise it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench_core.errors import ConfigError, StudyError
from bench_core.tuning.attrs import (
    ATTR_EXPERIMENT,
    ATTR_KIND,
    ATTR_PARENT_RUN,
    ATTR_RECIPE,
    ATTR_TRACKING_URI,
    KIND_TUNE,
)
from bench_core.tuning.mlflow_bridge import ensure_parent_run, finish_parent_run
from bench_core.tuning.objective import TuneObjective
from bench_core.tuning.recipe import StudyRecipe, TuneRequest, make_pruner, make_sampler, resolve_recipe
from bench_core.tuning.stale import StaleTrialHandler
from bench_core.tuning.storage import Heartbeat, default_storage_url, open_storage, storage_label
from bench_core.tuning.trials import best_trial_or_none, trial_counts, trials_used, tune_in_process

if TYPE_CHECKING:
    import optuna

    from bench_core.plugins import PluginHost
    from bench_core.tracking import MLflowTracker


@dataclass
class TuneOutcome:
    """Summary of a ``bench tune`` call."""

    study: str
    storage: str
    recipe: StudyRecipe
    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any]
    parent_run_id: str | None
    ran_here: int = 0
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.best_trial is not None else 1


def create_tune_study(
    host: PluginHost,
    request: TuneRequest,
    tracker: MLflowTracker,
    storage_url: str,
    storage: optuna.storages.BaseStorage | None = None,
    parallel: bool = False,
) -> tuple[optuna.Study, StudyRecipe]:
    """Create (or re-open) the study for ``request``; refuses one made with other settings."""
    import optuna

    recipe = resolve_recipe(host, request)
    name = request.study or recipe.default_study_name
    storage = storage if storage is not None else open_storage(storage_url)
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=make_sampler(recipe.seed, parallel), pruner=make_pruner(recipe.pruner),
    )
    kind = study.user_attrs.get(ATTR_KIND)
    if kind is not None and kind != KIND_TUNE:
        raise StudyError(
            f"study {name!r} in {storage_label(storage_url)} is a {kind!r} study, not a tuning study; "
            f"pick another name with --study"
        )
    if ATTR_RECIPE in study.user_attrs:
        diff = recipe.differences(StudyRecipe.from_attr(study.user_attrs[ATTR_RECIPE]))
        if diff:
            raise StudyError(
                f"study {name!r} was made with other settings ({'; '.join(diff)}); its trials would not "
                f"be comparable. Use the same options, or a new study with --study NAME"
            )
    if study.trials:  # resuming: a sampler seeded as before would propose the same points again
        study.sampler = make_sampler((recipe.seed * 1_000_003 + len(study.trials)) % 2**31, parallel)
    study.set_user_attr(ATTR_KIND, KIND_TUNE)
    study.set_user_attr(ATTR_RECIPE, recipe.to_attr())  # the latest budget and pruner win
    study.set_user_attr(ATTR_TRACKING_URI, tracker.uri)
    study.set_user_attr(ATTR_EXPERIMENT, tracker.experiment)
    ensure_parent_run(tracker, study, recipe, storage_url)
    return study, recipe


def run_tuning(
    host: PluginHost,
    request: TuneRequest,
    tracker: MLflowTracker,
    storage_url: str | None = None,
    jobs: int = 1,
    heartbeat: Heartbeat | None = None,
    echo: Callable[[str], None] = print,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float | None = None,
) -> TuneOutcome:
    """Create the study, run its trials (here, or in ``jobs`` parallel Ray tasks), summarise it.

    ``jobs == 1`` (and no ``address``) runs the trials in this process; otherwise ``jobs``
    Ray tasks (a private local Ray instance, or the cluster at ``address``) each run trials
    of the study through the shared Optuna storage until its budget is used
    (:func:`bench_core.ray_executor.run_tuning_ray`).
    """
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs!r}: expected at least 1 parallel trial")
    url = storage_url or default_storage_url()
    heartbeat = heartbeat or Heartbeat()
    storage = open_storage(url, heartbeat, StaleTrialHandler(heartbeat.max_retry))
    study, recipe = create_tune_study(host, request, tracker, url, storage, parallel=jobs > 1 or address is not None)
    parent = study.user_attrs.get(ATTR_PARENT_RUN)
    echo(f"study {study.study_name!r} in {storage_label(url)}: {trials_used(study)}/{recipe.trials} trial(s) so far")
    interrupted = False
    ran = 0
    try:
        if jobs == 1 and address is None:
            objective = TuneObjective(host, recipe, study.study_name, tracker, parent, request.device, request.data_dir)

            def report(t: optuna.trial.FrozenTrial) -> None:
                value = "" if t.value is None else f" {recipe.metric}={t.value:.2f}"
                echo(f"trial {t.number} {t.state.name}{value} {t.params}")

            ran = tune_in_process(study, objective, recipe.trials, request.timeout, report)
        else:
            from bench_core.ray_executor import RayOptions, run_tuning_ray

            options = RayOptions(address=address, cpus_per_cell=cpus_per_trial, gpus_per_cell=gpus_per_trial)
            ran, interrupted = run_tuning_ray(
                study.study_name, url, heartbeat, tracker, jobs, request.device, request.data_dir,
                request.timeout, options, echo,
            )
    except KeyboardInterrupt:
        interrupted = True
    finish_parent_run(tracker, study, recipe)
    best = best_trial_or_none(study)
    return TuneOutcome(
        study=study.study_name,
        storage=storage_label(url),
        recipe=recipe,
        counts=trial_counts(study),
        best_value=None if best is None else best.value,
        best_trial=None if best is None else best.number,
        best_params={} if best is None else dict(best.params),
        parent_run_id=parent,
        ran_here=ran,
        interrupted=interrupted,
    )


__all__ = ["TuneOutcome", "create_tune_study", "run_tuning"]
