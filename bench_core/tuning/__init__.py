"""Tuning with Optuna: storage, the objective, pruning and the Optuna -> MLflow bridge.

``bench tune`` runs one Optuna study per (method, dataset, split, profile):

* the search space is the method plugin's ``MethodSpec.search_space(trial)``, whose
  ``{"train": ..., "model": ...}`` overrides go on top of the profile (and ``--set``);
* the objective trains on the training pixels and scores on the validation pixels carved
  from them (:func:`bench_core.splits.make_split`); the test split is never opened;
* every epoch's validation OA is reported to Optuna and a trial the pruner stops raises
  :class:`optuna.TrialPruned` from the Trainer's ``on_epoch_end``;
* the study is one parent MLflow run and every trial a run nested under it
  (``mlflow.parentRunId``) with the trial number, the sampled params and its state.

Storage (shared by the Ray tasks of ``bench tune --jobs N``, :mod:`bench_core.ray_executor`):
a local SQLite file next to the MLflow store by default, any Optuna RDB URL (PostgreSQL for several machines), or ``journal:PATH``
(a journal file; no heartbeat). With a heartbeat, a trial whose worker died is detected by
the next worker, its MLflow run is closed as FAILED and the trial is re-queued
(:class:`StaleTrialHandler`).

The modules, each importable on its own (none imports Optuna, MLflow or torch at import time):

* :mod:`~bench_core.tuning.attrs`: study/trial attributes, MLflow tags, environment variables;
* :mod:`~bench_core.tuning.storage`: storage URLs, :class:`Heartbeat`, :func:`open_storage`;
* :mod:`~bench_core.tuning.stale`: :class:`StaleTrialHandler`, :func:`close_trial_runs`;
* :mod:`~bench_core.tuning.recipe`: :class:`TuneRequest`, :class:`StudyRecipe`, sampler, pruner;
* :mod:`~bench_core.tuning.trials`: trial counts, running trials in this process;
* :mod:`~bench_core.tuning.export`: the best config, ``bench run --config-from-study``;
* :mod:`~bench_core.tuning.mlflow_bridge`: the parent run, :class:`TaggingTracker`;
* :mod:`~bench_core.tuning.objective`: :class:`TuneObjective`;
* :mod:`~bench_core.tuning.study`: :func:`create_tune_study`, :func:`run_tuning`;
* :mod:`~bench_core.tuning.space`: :func:`suggest_optimizer`, for plugins' search spaces (also
  exported by :mod:`bench_core`).

Import from ``bench_core.tuning``; code inside :mod:`bench_core` that ``run_tuning`` reaches
(:mod:`bench_core.ray_executor`) imports from the submodules, so that no import cycle forms.
"""

from __future__ import annotations

from bench_core.errors import StudyError
from bench_core.tuning.attrs import (
    ATTR_CELL_KEY,
    ATTR_EXPERIMENT,
    ATTR_KIND,
    ATTR_OVERRIDES,
    ATTR_PARENT_RUN,
    ATTR_RECIPE,
    ATTR_RUN_ID,
    ATTR_TRACKING_URI,
    DEFAULT_TUNE_EXPERIMENT,
    ENV_GRACE,
    ENV_HEARTBEAT,
    ENV_STORAGE,
    KIND_TUNE,
    METRICS,
    PRUNERS,
    TAG_ERROR,
    TAG_KIND,
    TAG_PARENT,
    TAG_STATE,
    TAG_STORAGE,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_WORKER,
    worker_id,
)
from bench_core.tuning.export import apply_study_config, best_config, config_from_study, export_best, load_study
from bench_core.tuning.mlflow_bridge import TaggingTracker, ensure_parent_run, finish_parent_run
from bench_core.tuning.objective import TuneObjective
from bench_core.tuning.recipe import StudyRecipe, TuneRequest, make_pruner, make_sampler, recipe_of, resolve_recipe
from bench_core.tuning.space import suggest_optimizer
from bench_core.tuning.stale import StaleTrialHandler, close_trial_runs
from bench_core.tuning.storage import (
    Heartbeat,
    default_storage_url,
    fail_stale_trials,
    has_heartbeat,
    open_storage,
    storage_label,
)
from bench_core.tuning.study import TuneOutcome, create_tune_study, run_tuning
from bench_core.tuning.trials import (
    best_trial_or_none,
    has_waiting,
    run_one_trial,
    trial_counts,
    trials_used,
    tune_in_process,
)

__all__ = [
    "ATTR_CELL_KEY",
    "ATTR_EXPERIMENT",
    "ATTR_KIND",
    "ATTR_OVERRIDES",
    "ATTR_PARENT_RUN",
    "ATTR_RECIPE",
    "ATTR_RUN_ID",
    "ATTR_TRACKING_URI",
    "DEFAULT_TUNE_EXPERIMENT",
    "ENV_GRACE",
    "ENV_HEARTBEAT",
    "ENV_STORAGE",
    "KIND_TUNE",
    "METRICS",
    "PRUNERS",
    "TAG_ERROR",
    "TAG_KIND",
    "TAG_PARENT",
    "TAG_STATE",
    "TAG_STORAGE",
    "TAG_STUDY",
    "TAG_TRIAL",
    "TAG_WORKER",
    "Heartbeat",
    "StaleTrialHandler",
    "StudyError",
    "StudyRecipe",
    "TaggingTracker",
    "TuneObjective",
    "TuneOutcome",
    "TuneRequest",
    "apply_study_config",
    "best_config",
    "best_trial_or_none",
    "close_trial_runs",
    "config_from_study",
    "create_tune_study",
    "default_storage_url",
    "ensure_parent_run",
    "export_best",
    "fail_stale_trials",
    "finish_parent_run",
    "has_heartbeat",
    "has_waiting",
    "load_study",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "recipe_of",
    "resolve_recipe",
    "run_one_trial",
    "run_tuning",
    "storage_label",
    "suggest_optimizer",
    "trial_counts",
    "trials_used",
    "tune_in_process",
    "worker_id",
]
