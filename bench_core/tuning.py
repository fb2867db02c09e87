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
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_core.errors import BenchError, ConfigError, StudyError
from bench_core.specs import SplitSpec

if TYPE_CHECKING:
    import optuna

    from bench_core.plugins import PluginHost
    from bench_core.scene import Scene
    from bench_core.splits import Split
    from bench_core.tracking import MLflowTracker, RunHandle, Tracker

log = logging.getLogger("bench.tuning")

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


# ----------------------------------------------------------------------------- storage


def default_storage_url() -> str:
    """``$BENCH_OPTUNA_STORAGE``, else ``sqlite:///$BENCH_HOME/optuna.db`` (next to the MLflow store)."""
    from bench_core.tracking import bench_home

    env = os.environ.get(ENV_STORAGE)
    if env:
        return env
    return f"sqlite:///{bench_home() / DEFAULT_STORAGE_FILE}"


def storage_label(url: str) -> str:
    """The URL with any password masked, safe for logs and MLflow tags."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL; open_storage reports it
        return url


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :])
    return None


@dataclass(frozen=True)
class Heartbeat:
    """How workers prove they are alive, and when a silent one counts as dead.

    Attributes:
        interval: seconds between two heartbeats of a running trial.
        grace: seconds without a heartbeat after which the trial is failed and re-queued;
            longer than any pause of the worker (a long GIL-holding call, a slow database).
        max_retry: how often one trial (cell) is re-queued after its worker died.
    """

    interval: int = 10
    grace: int = 60
    max_retry: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ConfigError(f"heartbeat interval = {self.interval!r}: expected a whole number of seconds >= 1")
        if not isinstance(self.grace, int) or self.grace <= self.interval:
            raise ConfigError(
                f"grace period = {self.grace!r} s with a heartbeat every {self.interval} s: expected a "
                f"whole number of seconds larger than the interval (e.g. 6x it), or a live worker "
                f"would be declared dead"
            )
        if not isinstance(self.max_retry, int) or self.max_retry < 0:
            raise ConfigError(f"max_retry = {self.max_retry!r}: expected an integer >= 0")

    @classmethod
    def from_env(cls) -> Heartbeat:
        """Defaults, with ``$BENCH_HEARTBEAT_INTERVAL`` and ``$BENCH_GRACE_PERIOD`` when set."""
        values: dict[str, int] = {}
        for var, name in ((ENV_HEARTBEAT, "interval"), (ENV_GRACE, "grace")):
            raw = os.environ.get(var)
            if raw:
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ConfigError(f"${var} = {raw!r}: expected a whole number of seconds") from None
        return cls(**values)


def open_storage(
    url: str | None = None,
    heartbeat: Heartbeat | None = None,
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url`` (default :func:`default_storage_url`).

    ``sqlite:///...`` and server URLs (``postgresql://``, ``mysql://``) give an
    :class:`optuna.storages.RDBStorage`, with ``heartbeat`` and the stale-trial callback
    ``on_stale`` when given; ``journal:PATH`` gives a JournalStorage (no heartbeat).
    Create the study from one process first: SQLite's first table creation races.
    """
    import optuna

    url = url or default_storage_url()
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :]).expanduser()
        if not str(path) or str(path) == ".":
            raise ConfigError(f"storage {url!r}: expected journal:PATH, e.g. journal:./optuna-journal.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(
            f"storage {url!r}: expected an Optuna RDB URL (sqlite:////abs/optuna.db, "
            f"postgresql+psycopg2://user@host:5432/db) or journal:PATH"
        )
    engine_kwargs: dict[str, Any] = {}
    sqlite_path = _sqlite_path(url)
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        # Several local processes write to one file: wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        kwargs = {
            "heartbeat_interval": heartbeat.interval,
            "grace_period": heartbeat.grace,
            "heartbeat_stale_trial_callback": on_stale,
        }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ImportError as exc:
        raise ConfigError(
            f"storage {storage_label(url)!r}: the database driver is missing ({exc}); for PostgreSQL "
            f"install psycopg2-binary (pip install 'rs-fusion-bench[postgres]')"
        ) from exc
    except Exception as exc:
        if isinstance(exc, BenchError):
            raise
        raise ConfigError(
            f"storage {storage_label(url)!r} cannot be opened: {type(exc).__name__}: {exc}; check the "
            f"URL, that the database server is reachable and that the database exists"
        ) from exc


def has_heartbeat(storage: object) -> bool:
    """Whether ``storage`` detects dead workers (an RDB storage opened with a heartbeat)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(interval) and interval() is not None


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail trials whose worker stopped beating; the storage's stale callback runs for each."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


# ----------------------------------------------------------------------------- stale trials


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


# ----------------------------------------------------------------------------- MLflow bridge


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


# ----------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class TuneRequest:
    """What ``bench tune`` was asked to do.

    ``trials`` is the study's total budget: a second ``bench tune`` on the same study
    continues up to it. ``overrides`` (from ``--set``) sit under the sampled values.
    """

    method: str
    dataset: str = "synthetic"
    split: str = "official"
    profile: str | None = None
    metric: str = "val_oa"
    trials: int = 20
    timeout: float | None = None
    seed: int = 0
    pruner: str = "median"
    val_fraction: float = 0.1
    val_carve: str = "auto"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    data_dir: Path | None = None
    study: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"--metric {self.metric!r}: expected one of {', '.join(METRICS)}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner {self.pruner!r}: expected one of {', '.join(PRUNERS)}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"--trials {self.trials!r}: expected a positive number of trials")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout {self.timeout!r}: expected a positive number of seconds")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"--val-fraction {self.val_fraction!r}: tuning scores trials on validation pixels carved "
                f"from the training pixels, so expected 0 < value < 1 (e.g. 0.1)"
            )


@dataclass(frozen=True)
class StudyRecipe:
    """What defines a tuning study; stored on the study so workers can rebuild the objective."""

    method: str
    dataset: str
    split: str
    profile: str
    metric: str
    seed: int
    val_fraction: float
    overrides: Mapping[str, Any]
    pruner: str = "median"
    trials: int = 20
    val_carve: str = "auto"

    # A study's trials are comparable only if these agree.
    IDENTITY = ("method", "dataset", "split", "profile", "metric", "seed", "val_fraction", "val_carve", "overrides")

    @property
    def default_study_name(self) -> str:
        """``tune/<method>.<profile>/<dataset>/<split>``: one study per method, dataset, split, profile."""
        return f"tune/{self.method}.{self.profile}/{self.dataset}/{self.split}"

    def to_attr(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=list))

    @classmethod
    def from_attr(cls, value: Mapping[str, Any]) -> StudyRecipe:
        return cls(**{k: value[k] for k in value if k in cls.__dataclass_fields__})

    def to_params(self) -> dict[str, str]:
        out = {k: str(v) for k, v in self.to_attr().items() if k != "overrides"}
        out["overrides"] = json.dumps(self.to_attr()["overrides"], sort_keys=True)
        return out

    def differences(self, other: StudyRecipe) -> list[str]:
        mine, theirs = self.to_attr(), other.to_attr()
        return [f"{k}: study has {theirs[k]!r}, asked {mine[k]!r}" for k in self.IDENTITY if mine[k] != theirs[k]]


def resolve_recipe(host: PluginHost, request: TuneRequest) -> StudyRecipe:
    """Check names and config against the registries; raises RegistryError/ConfigError."""
    spec = host.methods.get(request.method)
    if spec.search_space is None:
        raise ConfigError(
            f"method {spec.name!r} declares no search space, so there is nothing to tune; add "
            f"search_space=... (trial -> {{'train': ..., 'model': ...}}) to its MethodSpec"
        )
    dataset = host.datasets.get(request.dataset)
    profile = request.profile or dataset.recommended_profile
    overrides = _jsonable(request.overrides)
    spec.resolve(profile, overrides)  # validates profile and --set values now
    split = SplitSpec.parse(request.split, request.val_fraction, request.val_carve)
    protocol = host.splits.get(split.protocol)
    if protocol.check_argument is not None:
        protocol.check_argument(split.argument)
    return StudyRecipe(
        method=spec.name, dataset=dataset.name, split=split.display, profile=profile, metric=request.metric,
        seed=int(request.seed), val_fraction=float(request.val_fraction), overrides=overrides,
        pruner=request.pruner, trials=request.trials, val_carve=request.val_carve,
    )


def recipe_of(study: optuna.Study) -> StudyRecipe:
    """The recipe stored on a tuning study; StudyError if it is not one."""
    kind = study.user_attrs.get(ATTR_KIND)
    if kind != KIND_TUNE or ATTR_RECIPE not in study.user_attrs:
        raise StudyError(
            f"study {study.study_name!r} is not a bench tuning study (user attribute {ATTR_KIND} = {kind!r}); "
            f"expected one made by `bench tune`"
        )
    return StudyRecipe.from_attr(study.user_attrs[ATTR_RECIPE])


def merge_overrides(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` on top of ``base`` (``{"train": ..., "model": ...}``), nested mappings merged."""

    def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
        return out

    return merge(base, extra)


def _jsonable(value: Any) -> Any:
    """Tuples to lists, mappings to dicts: what JSON (Optuna attrs, MLflow params) stores."""
    return json.loads(json.dumps(value, default=list))


# ----------------------------------------------------------------------------- sampler, pruner


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (default: stop a trial whose val_oa falls below the median of earlier trials at
    the same epoch, after 4 complete trials), ``hyperband``, ``halving`` or ``none``."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner {name!r}: expected one of {', '.join(PRUNERS)}")


def make_sampler(seed: int, parallel: bool = False) -> optuna.samplers.BaseSampler:
    """TPE under ``seed``; ``parallel`` lets concurrent workers avoid proposing the same point."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)


# ----------------------------------------------------------------------------- objective


class TuneObjective:
    """Optuna objective: train on the training pixels, score on the validation pixels.

    One MLflow run per trial, nested under the study's parent run, with the trial number,
    the sampled params (``optuna.<name>``), the resolved config, per-epoch ``train_loss``,
    ``lr`` and ``val_oa``, and the final ``val_oa/val_aa/val_kappa/val_f1_macro``. A pruned
    trial ends KILLED with tag ``bench.optuna.state = PRUNED``; a failed one FAILED with
    ``bench.error`` and ``traceback.txt``. The test split is never opened.
    """

    def __init__(
        self,
        host: PluginHost,
        recipe: StudyRecipe,
        study_name: str,
        tracker: Tracker,
        parent_run_id: str | None,
        device: str = "auto",
        data_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.recipe = recipe
        self.study_name = study_name
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.device = device
        self.data_dir = data_dir
        self._scene: Scene | None = None
        self._splits: dict[int, Split] = {}

    @property
    def train_seed(self) -> int:
        """One training seed for every trial, so trials differ only by their params."""
        digest = hashlib.sha256(f"tune/{self.study_name}/{self.recipe.seed}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

    def scene(self) -> Scene:
        if self._scene is None:
            from bench_core.pipeline import load_scene

            self._scene = load_scene(self.host.datasets.get(self.recipe.dataset), self.data_dir)
        return self._scene

    def split(self, patch_size: int) -> Split:
        """The study's split (same pixels for every trial; a guard band may depend on the patch)."""
        if patch_size not in self._splits:
            from bench_core.pipeline import make_cell_split

            spec = SplitSpec.parse(self.recipe.split, self.recipe.val_fraction, self.recipe.val_carve)
            split = make_cell_split(
                self.scene(), spec, self.host.splits.get(spec.protocol), self.recipe.seed, patch_size
            )
            if split.val.size == 0:
                raise ConfigError(
                    f"split {spec.display!r} of {self.recipe.dataset!r} with val_fraction {spec.val_fraction} "
                    f"leaves no validation pixels; raise --val-fraction or use a split with more training pixels"
                )
            self._splits[patch_size] = split
        return self._splits[patch_size]

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from bench_core.pipeline import RunLifecycle

        spec = self.host.methods.get(self.recipe.method)
        assert spec.search_space is not None  # checked by resolve_recipe
        tags = {
            TAG_KIND: "tune-trial",
            TAG_STUDY: self.study_name,
            TAG_TRIAL: str(trial.number),
            TAG_WORKER: worker_id(),
            "bench.method": spec.name,
        }
        if self.parent_run_id:
            tags[TAG_PARENT] = self.parent_run_id
        description = (
            f"Trial {trial.number} of study {self.study_name!r}: {spec.name} trained on the training pixels "
            f"of {self.recipe.dataset} ({self.recipe.split}, seed {self.recipe.seed}), scored on validation pixels."
        )

        def optuna_state(life: RunLifecycle) -> None:
            exc = life.exception
            state = {"FINISHED": "COMPLETE", "FAILED": "FAIL"}.get(life.status, "INTERRUPTED")
            if isinstance(exc, optuna.TrialPruned):
                state = "PRUNED"
            life.run.set_tags({TAG_STATE: state})

        with RunLifecycle(
            self.tracker, f"{spec.name} trial {trial.number}", tags, description,
            killed=(optuna.TrialPruned,), capture_logs=False, before_end=optuna_state,
        ) as life:
            trial.set_user_attr(ATTR_RUN_ID, life.run.run_id)
            sampled = spec.search_space(trial)
            overrides = _jsonable(merge_overrides(self.recipe.overrides, sampled))
            trial.set_user_attr(ATTR_OVERRIDES, overrides)
            config = spec.resolve(self.recipe.profile, overrides)
            params: dict[str, object] = {
                "trial": trial.number, "method": spec.name, "profile": config.profile,
                "dataset": self.recipe.dataset, "split": self.recipe.split, "seed": self.recipe.seed,
                "seed_train": self.train_seed, "val_fraction": self.recipe.val_fraction,
                "val_carve": self.recipe.val_carve,
            }
            params.update({f"optuna.{k}": v for k, v in trial.params.items()})
            params.update(config.to_params())
            life.run.log_params(params)
            value, metrics = self._train(trial, spec, config, life.run)
            life.run.log_metrics(metrics)
            return value

    def _train(self, trial: optuna.Trial, spec: Any, config: Any, run: RunHandle) -> tuple[float, dict[str, float]]:
        """The cell pipeline up to the fit, then the validation scores; the test split stays sealed."""
        import optuna

        from bench_core.pipeline import (
            build_and_fit,
            fitted_tags,
            method_tags,
            prepare,
            score_validation,
            stage_cache_dir,
        )
        from bench_core.training import Trainer

        scene = self.scene()
        split = self.split(spec.leakage_window(config.train))
        cell = prepare(spec, config, scene, split.train, split.val, self.train_seed)

        def on_epoch_end(epoch: int, values: Mapping[str, float]) -> None:
            logged = {k: v for k, v in values.items() if k != "epoch"}
            if "val_oa" in logged:
                logged["val_oa"] = 100.0 * logged["val_oa"]  # percent, like the final metric
            run.log_metrics(logged, step=epoch)
            if "val_oa" in logged:
                trial.report(logged["val_oa"], epoch)
                if trial.should_prune():
                    run.log_metrics({"pruned_at_epoch": float(epoch)})
                    raise optuna.TrialPruned(
                        f"trial {trial.number}: val_oa {logged['val_oa']:.2f} at epoch {epoch} is below "
                        f"what the pruner keeps"
                    )

        # The user seed seeds the stages, so every trial reuses a label-free stage's cached result.
        trainer = Trainer(device=self.device, seed=self.train_seed, on_epoch_end=on_epoch_end,
                          stage_seed=self.recipe.seed, stage_cache_dir=stage_cache_dir())
        fitted = build_and_fit(cell, trainer, on_built=lambda model: run.set_tags(method_tags(model, trainer.device)))
        run.set_tags(fitted_tags(fitted))
        scores = score_validation(fitted, cell)
        metrics = {
            "val_oa": 100.0 * scores.oa,
            "val_aa": 100.0 * scores.aa,
            "val_kappa": 100.0 * scores.kappa,
            "val_f1_macro": 100.0 * scores.f1_macro,
            "time_train_s": fitted.fit.time_train_s,
            "epochs_run": float(fitted.fit.epochs_run),
            "n_train": float(split.train.size),
            "n_val": float(split.val.size),
        }
        metrics.update({f"time_stage_{name}_s": t for name, t in fitted.fit.stage_times.items()})
        value = metrics[self.recipe.metric]
        if not math.isfinite(value):
            raise ConfigError(f"trial {trial.number}: {self.recipe.metric} = {value}; expected a finite score")
        return value, metrics


# ----------------------------------------------------------------------------- running a study


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def trials_used(study: optuna.Study) -> int:
    """Trials that count against the budget: finished or running, except failures re-queued as retries."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    state = optuna.trial.TrialState
    return sum(
        1
        for t in trials
        if t.state in (state.COMPLETE, state.PRUNED, state.RUNNING)
        or (t.state == state.FAIL and t.number not in retried)
    )


def has_waiting(study: optuna.Study) -> bool:
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def best_trial_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def run_one_trial(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """One trial through Optuna (heartbeat, stale-trial check, re-queued trials first).

    A trial whose objective raises is recorded FAIL and the study goes on; Ctrl-C propagates.
    ``on_trial(frozen_trial)`` is called with the finished trial.
    """
    callbacks = [] if on_trial is None else [lambda _study, trial: on_trial(trial)]
    study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False, callbacks=callbacks)


def tune_in_process(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    budget: int,
    timeout: float | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> int:
    """Run trials until the study holds ``budget`` of them (or ``timeout`` s pass); returns how many ran here."""
    start = time.monotonic()
    ran = 0
    while True:
        if timeout is not None and time.monotonic() - start >= timeout:
            break
        if trials_used(study) >= budget and not has_waiting(study):
            break
        run_one_trial(study, objective, on_trial)
        ran += 1
    return ran


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


# ----------------------------------------------------------------------------- best config


def load_study(name: str, storage_url: str | None = None) -> optuna.Study:
    """Open an existing study; StudyError naming the studies that exist when it is missing."""
    import optuna

    url = storage_url or default_storage_url()
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise StudyError(
            f"no study {name!r} in {storage_label(url)}; studies there: {names or 'none'} "
            f"(pass --storage URL if it lives elsewhere)"
        ) from None


def best_config(study: optuna.Study) -> dict[str, Any]:
    """The study's best trial as an exportable config (``bench run --config-from-study`` reads it)."""
    recipe = recipe_of(study)
    best = best_trial_or_none(study)
    if best is None:
        raise StudyError(
            f"study {study.study_name!r} has no complete trial yet (counts: {trial_counts(study)}); "
            f"run `bench tune` (or workers) until one completes"
        )
    overrides = best.user_attrs.get(ATTR_OVERRIDES)
    if overrides is None:
        raise StudyError(
            f"best trial {best.number} of study {study.study_name!r} has no {ATTR_OVERRIDES!r} user attribute; "
            f"expected a trial run by bench's objective"
        )
    return {
        "study": study.study_name,
        "method": recipe.method,
        "dataset": recipe.dataset,
        "split": recipe.split,
        "profile": recipe.profile,
        "seed": recipe.seed,
        "metric": recipe.metric,
        "value": best.value,
        "trial": best.number,
        "params": dict(best.params),
        "overrides": overrides,
    }


def export_best(study: optuna.Study, path: Path) -> dict[str, Any]:
    """Write :func:`best_config` as JSON to ``path``; returns it."""
    config = best_config(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    return config


def config_from_study(name: str, storage_url: str | None = None) -> dict[str, Any]:
    """The best config of study ``name``, or of an exported ``best.json`` when ``name`` is such a file."""
    if name.endswith(".json"):  # a file: never looked up as a study name
        return _read_best_json(Path(name))
    return best_config(load_study(name, storage_url))


def _read_best_json(path: Path) -> dict[str, Any]:
    """An exported ``best.json``, checked: ConfigError naming the file and what is wrong."""
    fix = "expected a file written by `bench tune --export` or `bench tune export --output`"
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"--config-from-study {str(path)!r}: the file {what}; {fix} (or pass a study name)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config-from-study {str(path)!r}: cannot read it ({exc}); {fix}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--config-from-study {str(path)!r}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            f"{fix}"
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(
            f"--config-from-study {str(path)!r}: holds a JSON {type(config).__name__}; expected an object with "
            f"keys method, profile, overrides ({fix})"
        )
    missing = [k for k in ("method", "profile", "overrides") if k not in config]
    if missing:
        raise ConfigError(f"--config-from-study {str(path)!r}: keys {missing} missing; {fix}")
    for key in ("method", "profile"):
        if not isinstance(config[key], str) or not config[key]:
            raise ConfigError(
                f"--config-from-study {str(path)!r}: {key} = {config[key]!r}; expected a {key} name (a string), {fix}"
            )
    overrides = config["overrides"]
    if not isinstance(overrides, dict) or any(
        k not in ("train", "model") or not isinstance(v, dict) for k, v in overrides.items()
    ):
        raise ConfigError(
            f"--config-from-study {str(path)!r}: overrides = {overrides!r}; expected an object "
            f'{{"train": {{...}}, "model": {{...}}}}, {fix}'
        )
    config.setdefault("study", str(path))
    config.setdefault("trial", "?")
    return config


def apply_study_config(
    config: Mapping[str, Any],
    plugins: Sequence[str],
    profile: str | None,
    overrides: Mapping[str, Any],
) -> tuple[list[str], str, dict[str, Any]]:
    """``bench run --config-from-study``: (plugins, profile, overrides) with the tuned values applied.

    The study tuned one method, so ``--plugins`` must be ``all`` (narrowed to it) or name it;
    ``--set`` values win over tuned ones; ``--profile`` defaults to the study's.
    """
    method = str(config["method"])
    chosen = [p for p in plugins if p != "all"]
    if chosen and chosen != [method]:
        raise ConfigError(
            f"--config-from-study {config.get('study', '?')!r} holds a tuned config of method {method!r} "
            f"but --plugins is {','.join(plugins)!r}; use --plugins {method}"
        )
    if profile is not None and profile != config["profile"]:
        log.warning("--profile %s differs from the study's profile %s; tuned values go on top of %s",
                    profile, config["profile"], profile)
    merged = merge_overrides(_jsonable(config["overrides"]), overrides)
    return [method], profile or str(config["profile"]), merged


__all__ = [
    "DEFAULT_TUNE_EXPERIMENT",
    "ENV_GRACE",
    "ENV_HEARTBEAT",
    "ENV_STORAGE",
    "METRICS",
    "PRUNERS",
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
    "close_trial_runs",
    "config_from_study",
    "create_tune_study",
    "default_storage_url",
    "ensure_parent_run",
    "export_best",
    "fail_stale_trials",
    "finish_parent_run",
    "load_study",
    "make_pruner",
    "make_sampler",
    "merge_overrides",
    "open_storage",
    "recipe_of",
    "resolve_recipe",
    "run_one_trial",
    "run_tuning",
    "storage_label",
    "trial_counts",
    "trials_used",
    "tune_in_process",
    "worker_id",
]
