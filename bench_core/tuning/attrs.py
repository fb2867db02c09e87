"""Names shared by ``bench tune``, ``bench run --config-from-study`` and the Ray tasks.

The Optuna study/trial user attributes and the MLflow tags below are a contract: a study
written by ``bench tune`` is read by the Ray tasks and by ``bench run``, and the stale-trial
handler finds a dead worker's MLflow runs by these tags. Nothing here imports Optuna or MLflow.
"""

from __future__ import annotations

import os
import socket

ENV_STORAGE = "BENCH_OPTUNA_STORAGE"
ENV_HEARTBEAT = "BENCH_HEARTBEAT_INTERVAL"
ENV_GRACE = "BENCH_GRACE_PERIOD"
JOURNAL_PREFIX = "journal:"
DEFAULT_STORAGE_FILE = "optuna.db"
DEFAULT_TUNE_EXPERIMENT = "bench-tune"

METRICS = ("val_oa", "val_aa", "val_kappa", "val_f1_macro")
PRUNERS = ("median", "hyperband", "halving", "none")

# Study and trial user attributes (the contract between `bench tune`, `bench run` and workers).
ATTR_KIND = "bench.kind"
KIND_TUNE = "tune"
ATTR_RECIPE = "bench.recipe"
ATTR_PARENT_RUN = "bench.mlflow_parent_run_id"
ATTR_TRACKING_URI = "bench.tracking_uri"
ATTR_EXPERIMENT = "bench.experiment"
ATTR_OVERRIDES = "bench.overrides"
ATTR_RUN_ID = "bench.mlflow_run_id"
ATTR_CELL_KEY = "bench.cell_key"

# MLflow tags on every run a study produces.
TAG_PARENT = "mlflow.parentRunId"
TAG_KIND = "bench.kind"
TAG_STUDY = "bench.optuna.study"
TAG_TRIAL = "bench.optuna.trial"
TAG_STATE = "bench.optuna.state"
TAG_STORAGE = "bench.optuna.storage"
TAG_WORKER = "bench.worker"
TAG_ERROR = "bench.error"


def worker_id() -> str:
    """``host:pid`` of this process: recorded on every run it starts (tag ``bench.worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = [
    "ATTR_CELL_KEY",
    "ATTR_EXPERIMENT",
    "ATTR_KIND",
    "ATTR_OVERRIDES",
    "ATTR_PARENT_RUN",
    "ATTR_RECIPE",
    "ATTR_RUN_ID",
    "ATTR_TRACKING_URI",
    "DEFAULT_STORAGE_FILE",
    "DEFAULT_TUNE_EXPERIMENT",
    "ENV_GRACE",
    "ENV_HEARTBEAT",
    "ENV_STORAGE",
    "JOURNAL_PREFIX",
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
    "worker_id",
]
