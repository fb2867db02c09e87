"""Stale trials: a worker that stopped beating has its MLflow run closed and its trial re-queued."""

from __future__ import annotations

import logging
import traceback
import warnings
from typing import TYPE_CHECKING

from bench_core.errors import StudyError
from bench_core.tuning.attrs import (
    ATTR_CELL_KEY,
    ATTR_EXPERIMENT,
    ATTR_TRACKING_URI,
    TAG_ERROR,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
)

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("bench.tuning")


class StaleTrialHandler:
    """Heartbeat-stale trial callback: close the dead worker's MLflow run, then re-queue the trial.

    Pass it as ``on_stale`` to :func:`open_storage`. For every trial a worker stopped beating
    for, it (1) sets each MLflow run still RUNNING for that trial (tags ``bench.optuna.study``
    and ``bench.optuna.trial``) to FAILED with a ``bench.error`` saying why, and (2) re-queues
    the trial with Optuna's ``RetryHeartbeatStaleTrialCallback`` (same params and user
    attributes, at most ``max_retry`` times) unless a queued or running trial already holds
    the same grid cell.

    Args:
        max_retry: re-queues per original trial.
        tracking_uri: MLflow store to close runs in; default: the one recorded on the trial
            (grid cells) or on the study (tuning).
    """

    def __init__(self, max_retry: int | None = 3, tracking_uri: str | None = None) -> None:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.max_retry = max_retry
        self.tracking_uri = tracking_uri
        self.closed_runs: list[str] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        import optuna

        history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
        will_retry = self.max_retry is None or len(history) <= self.max_retry
        key = trial.user_attrs.get(ATTR_CELL_KEY)
        duplicate = None
        if key is not None:
            for other in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,
                                                                  optuna.trial.TrialState.RUNNING)):
                if other.number != trial.number and other.user_attrs.get(ATTR_CELL_KEY) == key:
                    duplicate = other.number
        if duplicate is not None:
            fate = f"trial {duplicate} already holds the same cell"
        elif will_retry:
            fate = "re-queued for another worker"
        else:
            fate = f"not re-queued: it was retried {len(history) - 1} time(s) already (max_retry {self.max_retry})"
        reason = (
            f"worker lost: trial {trial.number} of study {study.study_name!r} sent no Optuna heartbeat "
            f"within the grace period (the worker was killed or hung); {fate}"
        )
        try:
            self.closed_runs += close_trial_runs(study, trial, reason, self.tracking_uri)
        except Exception:  # the retry must happen even if the MLflow store is unreachable
            log.warning("could not close the MLflow run of stale trial %s:\n%s", trial.number, traceback.format_exc())
        log.warning("%s", reason)
        if duplicate is None:
            self._retry(study, trial)


def _where_runs_are(study: optuna.Study, trial: optuna.trial.FrozenTrial, override: str | None) -> tuple[str, str]:
    attrs = {**study.user_attrs, **trial.user_attrs}
    uri = override or attrs.get(ATTR_TRACKING_URI)
    experiment = attrs.get(ATTR_EXPERIMENT)
    if not uri or not experiment:
        raise StudyError(
            f"trial {trial.number} of study {study.study_name!r} records no MLflow store "
            f"({ATTR_TRACKING_URI}/{ATTR_EXPERIMENT} user attributes); expected a study made by bench"
        )
    return str(uri), str(experiment)


def close_trial_runs(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str, tracking_uri: str | None = None
) -> list[str]:
    """Set every MLflow run still RUNNING for ``trial`` to FAILED with ``reason``; returns their ids."""
    from mlflow.tracking import MlflowClient

    uri, experiment_name = _where_runs_are(study, trial, tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    query = (
        f"tags.`{TAG_STUDY}` = '{_quote(study.study_name)}' and tags.`{TAG_TRIAL}` = '{trial.number}' "
        f"and attributes.status = 'RUNNING'"
    )
    closed = []
    for run in client.search_runs([experiment.experiment_id], filter_string=query, max_results=100):
        client.set_tag(run.info.run_id, TAG_ERROR, reason[:4000])
        client.set_tag(run.info.run_id, TAG_STATE, "STALE")
        client.set_terminated(run.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    return closed


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


__all__ = ["StaleTrialHandler", "close_trial_runs"]
