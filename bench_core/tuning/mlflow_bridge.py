"""The Optuna -> MLflow bridge: a study is one parent MLflow run, every trial a run nested under it."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bench_core.tuning.attrs import ATTR_PARENT_RUN, TAG_KIND, TAG_STORAGE, TAG_STUDY
from bench_core.tuning.export import best_config
from bench_core.tuning.storage import storage_label
from bench_core.tuning.trials import best_trial_or_none, trial_counts

if TYPE_CHECKING:
    import optuna

    from bench_core.tracking import MLflowTracker, RunHandle, Tracker
    from bench_core.tuning.recipe import StudyRecipe

log = logging.getLogger("bench.tuning")


class TaggingTracker:
    """A :class:`~bench_core.tracking.Tracker` that adds tags to every run it starts.

    ``on_run_started(run_id)`` is called right after each run is created (the worker records
    the id on its Optuna trial). Everything else is the wrapped tracker's.
    """

    def __init__(
        self,
        inner: Tracker,
        tags: Mapping[str, str],
        on_run_started: Callable[[str], None] | None = None,
    ) -> None:
        self.inner = inner
        self.tags = dict(tags)
        self.on_run_started = on_run_started

    @property
    def uri(self) -> str:
        return self.inner.uri

    @property
    def experiment(self) -> str:
        return self.inner.experiment

    def finished_cell_keys(self) -> set[str]:
        return self.inner.finished_cell_keys()

    def start_run(self, run_name: str, tags: Mapping[str, str], description: str = "") -> RunHandle:
        run = self.inner.start_run(run_name, {**tags, **self.tags}, description)
        if self.on_run_started is not None:
            self.on_run_started(run.run_id)
        return run


def ensure_parent_run(tracker: MLflowTracker, study: optuna.Study, recipe: StudyRecipe, storage_url: str) -> str:
    """The study's parent MLflow run (created once, id kept on the study), set RUNNING again."""
    from mlflow.exceptions import MlflowException

    run_id = study.user_attrs.get(ATTR_PARENT_RUN)
    if run_id:
        try:
            tracker.client.get_run(run_id)
            tracker.client.update_run(run_id, status="RUNNING")
            return str(run_id)
        except MlflowException:  # recorded in another store: start a parent here
            log.info("parent run %s of study %s not in %s; creating one", run_id, study.study_name, tracker.uri)
    tags = {
        TAG_KIND: "tune-study",
        TAG_STUDY: study.study_name,
        TAG_STORAGE: storage_label(storage_url),
        "bench.method": recipe.method,
    }
    description = (
        f"Optuna study {study.study_name!r}: {recipe.method} ({recipe.profile} profile) on {recipe.dataset}, "
        f"split {recipe.split}, seed {recipe.seed}; objective {recipe.metric} on validation pixels carved "
        f"from the training pixels (the test split is never read). Each trial is a nested run."
    )
    run = tracker.start_run(f"study {study.study_name}", tags, description)
    run.log_params({f"tune.{k}": v for k, v in recipe.to_params().items()})
    study.set_user_attr(ATTR_PARENT_RUN, run.run_id)
    return run.run_id


def finish_parent_run(tracker: MLflowTracker, study: optuna.Study, recipe: StudyRecipe) -> None:
    """Log the study's counts and best trial on its parent run and mark it FINISHED."""
    from mlflow.tracking import MlflowClient

    from bench_core.tracking import MLflowRun

    run_id = study.user_attrs.get(ATTR_PARENT_RUN)
    if not run_id:
        return
    counts = trial_counts(study)
    metrics: dict[str, float] = {f"trials_{k.lower()}": float(v) for k, v in counts.items()}
    tags: dict[str, str] = {}
    best = best_trial_or_none(study)
    if best is not None and best.value is not None:
        metrics[f"best_{recipe.metric}"] = float(best.value)
        tags["bench.best_trial"] = str(best.number)
        tags.update({f"bench.best.{k}": str(v) for k, v in best.params.items()})
    client: MlflowClient = tracker.client
    run = MLflowRun(client, run_id)
    run.log_metrics(metrics)
    run.set_tags(tags)
    if best is not None:
        with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
            Path(tmp, "best_config.json").write_text(json.dumps(best_config(study), indent=2, default=str))
            client.log_artifacts(run_id, tmp)
    client.set_terminated(run_id, status="FINISHED")


__all__ = ["TaggingTracker", "ensure_parent_run", "finish_parent_run"]
