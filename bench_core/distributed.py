"""The benchmark grid through Optuna's storage: cells as queued trials, workers, heartbeats, retries.

``bench run ... --jobs N`` (or ``--storage URL``) does not run the cells itself:

1. :func:`enqueue_grid` puts each cell that is not already FINISHED in the MLflow store into
   the grid study ``bench-grid/<experiment>`` as a WAITING trial whose user attributes say
   what to run (method, profile, dataset, split, seed, overrides) and where to record it;
2. workers (``bench worker --storage URL``, here or on other machines, or the ``N`` processes
   ``bench run`` starts) claim WAITING trials one at a time (atomically: a row lock on a
   database server, a file lock beside a SQLite file), run the cell with
   :func:`bench_core.runner.run_cell` into its usual MLflow run, and mark the trial
   COMPLETE (value = test OA) or FAIL;
3. while a cell runs, a thread records an Optuna heartbeat for its trial. A worker that dies
   (``kill -9``, a lost machine) stops beating; after the grace period the next worker that
   looks at the study fails the trial, closes the dead worker's MLflow run as FAILED (tag
   ``bench.error``) and re-queues the cell (:class:`bench_core.tuning.StaleTrialHandler`);
4. before running a claimed cell, a worker checks the MLflow store for a FINISHED run with
   the cell's key: a finished cell is never run twice.

Tuning studies (``bench tune``) live in the same storage; a worker serves both kinds.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_core.errors import BenchError, ConfigError, RegistryError
from bench_core.runner import Cell, CellResult, GridOutcome, GridRequest, Reporter, expand_grid, run_cell
from bench_core.tuning import (
    ATTR_CELL_KEY,
    ATTR_EXPERIMENT,
    ATTR_KIND,
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    ATTR_TRACKING_URI,
    JOURNAL_PREFIX,
    KIND_GRID,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_WORKER,
    Heartbeat,
    StaleTrialHandler,
    StudyError,
    TaggingTracker,
    TuneObjective,
    bench_studies,
    default_storage_url,
    fail_stale_trials,
    has_heartbeat,
    has_waiting,
    make_pruner,
    make_sampler,
    open_storage,
    recipe_of,
    run_one_trial,
    storage_label,
    storage_lock,
    trials_used,
    worker_id,
)

if TYPE_CHECKING:
    import optuna

    from bench_core.plugins import PluginHost
    from bench_core.tracking import MLflowTracker

log = logging.getLogger("bench.distributed")

GRID_STUDY_PREFIX = "bench-grid/"
ATTR_CELL = "bench.cell"
ATTR_DISPLAY = "bench.display_id"
ATTR_BATCH = "bench.batch"
ATTR_RERUN = "bench.rerun"
ATTR_EXTRA_TAGS = "bench.extra_tags"
ATTR_ERROR = "bench.error"
ATTR_SKIPPED = "bench.skipped_finished_run"
TAG_BATCH = "bench.grid.batch"

# How a worker starts another worker (no console script needed).
_WORKER_MAIN = "import sys; from bench_core.cli import main; sys.exit(main(sys.argv[1:]))"


def grid_study_name(experiment: str) -> str:
    """``bench-grid/<experiment>``: one queue per MLflow experiment."""
    return f"{GRID_STUDY_PREFIX}{experiment}"


# ----------------------------------------------------------------------------- enqueue


def cell_payload(cell: Cell, request: GridRequest) -> dict[str, Any]:
    """What a worker needs to rebuild ``cell`` (JSON, stored as a trial user attribute)."""
    return json.loads(
        json.dumps(
            {
                "method": cell.method,
                "profile": cell.profile,
                "profile_source": cell.profile_source,
                "dataset": cell.dataset,
                "split": cell.split.display,
                "val_fraction": cell.split.val_fraction,
                "val_carve": cell.split.val_carve,
                "seed": cell.seed,
                "overrides": dict(request.overrides),
                "device": request.device,
            },
            default=list,
        )
    )


def rebuild_cell(
    host: PluginHost,
    payload: Mapping[str, Any],
    key: str,
    device: str | None = None,
    data_dir: Path | None = None,
) -> tuple[Cell, GridRequest]:
    """The cell a queued trial describes, built with this process's plugins.

    Raises StudyError when the key differs: the worker's plugin or harness versions (or the
    dataset files) are not those of the process that queued the cell.
    """
    request = GridRequest(
        plugins=[payload["method"]], datasets=[payload["dataset"]], splits=[payload["split"]],
        seeds=[int(payload["seed"])], profile=payload["profile"], val_fraction=float(payload["val_fraction"]),
        val_carve=str(payload.get("val_carve", "auto")),
        overrides=payload.get("overrides") or {}, device=device or payload.get("device", "auto"), data_dir=data_dir,
    )
    cells = [c for c in expand_grid(host, request) if c.method == payload["method"]]
    if not cells:
        raise RegistryError(
            f"queued cell method {payload['method']!r} is not installed in this worker; install the plugin "
            f"that registers it (`bench plugins` lists what is installed)"
        )
    cell = replace(cells[0], profile_source=str(payload.get("profile_source", "cli")))
    if cell.key != key:
        raise StudyError(
            f"cell {cell.display_id}: this worker computes key {cell.key} but the queue holds {key}; its "
            f"plugin {cell.plugin!r} ({cell.plugin_dist} {cell.plugin_version}), the harness or the dataset "
            f"files differ from those of the process that queued it. Install the same versions on every worker"
        )
    return cell, request


@dataclass
class EnqueueReport:
    """What :func:`enqueue_grid` did with each cell of the request."""

    study: str
    batch: str
    cells: list[Cell]
    enqueued: list[Cell] = field(default_factory=list)
    already_queued: list[Cell] = field(default_factory=list)
    finished: list[Cell] = field(default_factory=list)


def open_grid_study(storage: Any, name: str) -> optuna.Study:
    """Create or load the grid study ``name``; StudyError if it is a tuning study."""
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    kind = study.user_attrs.get(ATTR_KIND)
    if kind is not None and kind != KIND_GRID:
        raise StudyError(f"study {name!r} is a {kind!r} study, not a grid queue; use another --experiment")
    if kind is None:
        study.set_user_attr(ATTR_KIND, KIND_GRID)
    return study


def enqueue_grid(
    host: PluginHost,
    request: GridRequest,
    tracker: MLflowTracker,
    storage_url: str | None = None,
    storage: Any | None = None,
    extra_tags: Mapping[str, str] | None = None,
    study_name: str | None = None,
) -> EnqueueReport:
    """Queue every cell of ``request`` that is neither FINISHED in MLflow nor already queued or running."""
    import optuna

    url = storage_url or default_storage_url()
    if url.startswith(JOURNAL_PREFIX):
        raise ConfigError(
            f"storage {url!r}: a journal file has no heartbeat, so a dead worker's cell could never be "
            f"re-queued; run the grid with sqlite:///... (one machine) or postgresql://... (several)"
        )
    cells = expand_grid(host, request)
    storage = storage if storage is not None else open_storage(url)
    study = open_grid_study(storage, study_name or grid_study_name(tracker.experiment))
    done = set() if request.rerun else tracker.finished_cell_keys()
    report = EnqueueReport(study=study.study_name, batch=uuid.uuid4().hex[:12], cells=cells)
    live = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    with storage_lock(url):  # two `bench run`s on one SQLite file must not queue a cell twice
        queued = {t.user_attrs.get(ATTR_CELL_KEY) for t in study.get_trials(deepcopy=False, states=live)}
        for cell in cells:
            if cell.key in done:
                report.finished.append(cell)
            elif cell.key in queued:
                report.already_queued.append(cell)
            else:
                study.enqueue_trial(
                    {},
                    user_attrs={
                        ATTR_CELL: cell_payload(cell, request),
                        ATTR_CELL_KEY: cell.key,
                        ATTR_DISPLAY: cell.display_id,
                        ATTR_TRACKING_URI: tracker.uri,
                        ATTR_EXPERIMENT: tracker.experiment,
                        ATTR_BATCH: report.batch,
                        ATTR_RERUN: bool(request.rerun),
                        ATTR_EXTRA_TAGS: dict(extra_tags or {}),
                    },
                )
                queued.add(cell.key)
                report.enqueued.append(cell)
    return report


# ----------------------------------------------------------------------------- worker


class _HeartbeatThread:
    """Records an Optuna heartbeat for one trial every ``interval`` seconds while the block runs."""

    def __init__(self, storage: Any, trial_id: int, interval: float) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # a missed beat is survivable; grace covers a few
                log.warning("heartbeat of trial id %s failed: %s", self.trial_id, exc)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> _HeartbeatThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class WorkerOptions:
    """How ``bench worker`` runs.

    Attributes:
        storage_url: the Optuna storage holding the queue(s).
        studies: serve only these studies (default: every bench grid and tuning study there).
        tracking_uri: record in this MLflow store instead of the one each cell was queued with.
        device: run on this device instead of the one each cell was queued with.
        data_dir: dataset files folder.
        heartbeat: heartbeat interval, grace period and retries.
        idle_timeout: keep polling this many seconds for new work once the queue is empty.
        timeout: take no new work after this many seconds.
    """

    storage_url: str
    studies: tuple[str, ...] = ()
    tracking_uri: str | None = None
    device: str | None = None
    data_dir: Path | None = None
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    idle_timeout: float = 0.0
    timeout: float | None = None

    @property
    def poll_s(self) -> float:
        return float(min(5, self.heartbeat.interval))


@dataclass
class WorkerReport:
    """What one worker did."""

    finished: int = 0
    failed: int = 0
    skipped: int = 0
    trials: int = 0
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


class Worker:
    """Claims queued cells and tuning trials from one storage until there is nothing left to do.

    A worker stops when no study it serves has a WAITING trial or a RUNNING one (a running
    trial may still turn stale and be re-queued, so the worker waits for it), and
    ``idle_timeout`` seconds have passed without work.
    """

    def __init__(self, host: PluginHost, options: WorkerOptions, echo: Callable[[str], None] = print) -> None:
        self.host = host
        self.options = options
        self.echo = echo
        self.id = worker_id()
        self.handler = StaleTrialHandler(options.heartbeat.max_retry, options.tracking_uri)
        self.storage = open_storage(options.storage_url, options.heartbeat, self.handler)
        self.report = WorkerReport()
        self._studies: dict[str, optuna.Study] = {}
        self._trackers: dict[tuple[str, str], MLflowTracker] = {}
        self._objectives: dict[str, TuneObjective] = {}
        self._scenes: dict[str, Any] = {}

    # ----------------------------------------------------------------- main loop

    def run(self) -> WorkerReport:
        """Work until idle (see the class docstring); Ctrl-C gives the running cell back to the queue."""
        start = last_work = time.monotonic()
        self.echo(f"worker {self.id}: storage {storage_label(self.options.storage_url)}")
        try:
            while True:
                if self.options.timeout is not None and time.monotonic() - start >= self.options.timeout:
                    self.echo(f"worker {self.id}: --timeout {self.options.timeout:g} s reached")
                    break
                worked = busy = False
                for name, kind in self._served():
                    state = self._grid_step(name) if kind == KIND_GRID else self._tune_step(name)
                    worked = worked or state == "worked"
                    busy = busy or state == "busy"
                if worked:
                    last_work = time.monotonic()
                    continue
                if not busy and time.monotonic() - last_work >= self.options.idle_timeout:
                    break
                time.sleep(self.options.poll_s)
        except KeyboardInterrupt:
            self.report.interrupted = True
        r = self.report
        self.echo(
            f"worker {self.id}: {r.finished} cell(s) finished, {r.failed} failed, {r.skipped} skipped "
            f"(already FINISHED), {r.trials} tuning trial(s)" + (" - interrupted" if r.interrupted else "")
        )
        return r

    def _served(self) -> list[tuple[str, str]]:
        found = dict(bench_studies(self.storage))
        if not self.options.studies:
            return sorted(found.items())
        missing = [s for s in self.options.studies if s not in found]
        if missing:
            raise StudyError(
                f"study {missing[0]!r} not found in {storage_label(self.options.storage_url)}; bench studies "
                f"there: {sorted(found) or 'none'} (queue cells with `bench run --jobs 0 --storage URL` "
                f"or create a study with `bench tune --storage URL`)"
            )
        return [(s, found[s]) for s in self.options.studies]

    def _study(self, name: str, sampler: Any = None, pruner: Any = None) -> optuna.Study:
        import optuna

        if name not in self._studies:
            self._studies[name] = optuna.load_study(
                study_name=name, storage=self.storage, sampler=sampler, pruner=pruner
            )
        return self._studies[name]

    def _tracker(self, uri: str, experiment: str) -> MLflowTracker:
        from bench_core.tracking import MLflowTracker

        uri = self.options.tracking_uri or uri
        if (uri, experiment) not in self._trackers:
            self._trackers[(uri, experiment)] = MLflowTracker(uri, experiment)
        return self._trackers[(uri, experiment)]

    # ----------------------------------------------------------------- grid cells

    def _grid_step(self, name: str) -> str:
        """Claim and run one cell: ``"worked"``, ``"busy"`` (others still running) or ``"idle"``."""
        import optuna

        study = self._study(name)
        with storage_lock(self.options.storage_url):
            fail_stale_trials(study)  # closes dead workers' runs and re-queues their cells
            claimed = self._claim(name)
        if claimed is None:
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            return "busy" if running and has_heartbeat(self.storage) else "idle"
        self._run_cell(study, *claimed)
        return "worked"

    def _claim(self, name: str) -> tuple[optuna.trial.FrozenTrial, int] | None:
        """Move the first WAITING trial to RUNNING; the storage refuses a trial another worker took."""
        import optuna

        study_id = self.storage.get_study_id_from_name(name)
        waiting = self.storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        for trial in sorted(waiting, key=lambda t: t.number):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            try:
                if not self.storage.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if has_heartbeat(self.storage):
                self.storage.record_heartbeat(trial_id)  # stale-detectable from the first second
            return trial, trial_id
        return None

    def _finish(self, trial_id: int, number: int, state: Any, value: float | None = None) -> None:
        import optuna

        try:
            self.storage.set_trial_state_values(trial_id, state, None if value is None else [value])
        except optuna.exceptions.UpdateFinishedTrialError:
            self.echo(
                f"worker {self.id}: trial {number} was declared dead while this worker ran it (no heartbeat "
                f"within the grace period); raise --grace-period above the longest pause of a worker"
            )

    def _run_cell(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, trial_id: int) -> None:
        import optuna

        state = optuna.trial.TrialState
        attrs = trial.user_attrs
        key = str(attrs[ATTR_CELL_KEY])
        display = str(attrs.get(ATTR_DISPLAY, key))
        tracker = self._tracker(str(attrs[ATTR_TRACKING_URI]), str(attrs[ATTR_EXPERIMENT]))
        batch = str(attrs.get(ATTR_BATCH, ""))
        existing = finished_runs(tracker, key, batch if attrs.get(ATTR_RERUN) else None)
        if existing:
            run = existing[0]
            self.storage.set_trial_user_attr(trial_id, ATTR_SKIPPED, run.info.run_id)
            self._finish(trial_id, trial.number, state.COMPLETE, float(run.data.metrics.get("test_oa", 0.0)))
            self.report.skipped += 1
            self.echo(f"[{self.id}] {display}: already FINISHED in run {run.info.run_id}; not run again")
            return
        try:
            cell, request = rebuild_cell(
                self.host, attrs[ATTR_CELL], key, self.options.device, self.options.data_dir
            )
        except BenchError as exc:
            self.storage.set_trial_user_attr(trial_id, ATTR_ERROR, str(exc)[:4000])
            self._finish(trial_id, trial.number, state.FAIL)
            self.report.failed += 1
            self.echo(f"[{self.id}] {display} FAILED before starting: {exc}")
            return
        tags = {
            TAG_STUDY: study.study_name,
            TAG_TRIAL: str(trial.number),
            TAG_WORKER: self.id,
            TAG_BATCH: batch,
            **{str(k): str(v) for k, v in (attrs.get(ATTR_EXTRA_TAGS) or {}).items()},
        }

        def remember(run_id: str) -> None:
            self.storage.set_trial_user_attr(trial_id, ATTR_RUN_ID, run_id)

        self.echo(f"[{self.id}] {display} (trial {trial.number}) ...")
        try:
            with _HeartbeatThread(self.storage, trial_id, self.options.heartbeat.interval):
                result = run_cell(
                    self.host, cell, TaggingTracker(tracker, tags, remember), request, self._scenes,
                    Reporter(lambda _m: None),
                )
        except KeyboardInterrupt:
            self._give_back(study, trial, trial_id)
            raise
        if result.status == "FINISHED":
            self._finish(trial_id, trial.number, state.COMPLETE, float(result.metrics.get("test_oa", 0.0)))
            self.report.finished += 1
        else:
            if result.error:
                self.storage.set_trial_user_attr(trial_id, ATTR_ERROR, result.error[:4000])
            self._finish(trial_id, trial.number, state.FAIL)
            self.report.failed += 1
        oa = result.metrics.get("test_oa")
        detail = f" test_oa={oa:.2f}" if oa is not None else (f" ({result.error})" if result.error else "")
        self.echo(f"[{self.id}] {display} {result.status}{detail}")

    def _give_back(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, trial_id: int) -> None:
        """Ctrl-C: the cell's run is KILLED (run_cell did that); queue the cell again for others."""
        import optuna

        self._finish(trial_id, trial.number, optuna.trial.TrialState.FAIL)
        study.enqueue_trial({}, user_attrs=dict(trial.user_attrs))
        self.echo(f"[{self.id}] interrupted: {trial.user_attrs.get(ATTR_DISPLAY)} put back in the queue")

    # ----------------------------------------------------------------- tuning trials

    def _tune_step(self, name: str) -> str:
        """Run one trial of a tuning study while its budget allows."""
        import optuna

        if name not in self._studies:
            recipe = recipe_of(optuna.load_study(study_name=name, storage=self.storage))
            seed = (recipe.seed * 1_000_003 + os.getpid()) % 2**31  # workers explore different points
            self._study(name, make_sampler(seed, parallel=True), make_pruner(recipe.pruner))
        study = self._study(name)
        recipe = recipe_of(study)
        if trials_used(study) >= recipe.trials and not has_waiting(study):
            with storage_lock(self.options.storage_url):
                fail_stale_trials(study)
            if has_waiting(study):
                return "busy"
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            return "busy" if running and has_heartbeat(self.storage) else "idle"
        if name not in self._objectives:
            tracker = self._tracker(str(study.user_attrs[ATTR_TRACKING_URI]), str(study.user_attrs[ATTR_EXPERIMENT]))
            self._objectives[name] = TuneObjective(
                self.host, recipe, name, tracker, study.user_attrs.get(ATTR_PARENT_RUN),
                self.options.device or "auto", self.options.data_dir,
            )

        def report(t: optuna.trial.FrozenTrial) -> None:
            value = "" if t.value is None else f" {recipe.metric}={t.value:.2f}"
            self.echo(f"[{self.id}] {name} trial {t.number} {t.state.name}{value}")

        run_one_trial(study, self._objectives[name], report)
        self.report.trials += 1
        return "worked"


def run_worker(host: PluginHost, options: WorkerOptions, echo: Callable[[str], None] = print) -> WorkerReport:
    """Serve the studies of ``options.storage_url`` until idle; see :class:`Worker`."""
    return Worker(host, options, echo).run()


def finished_runs(tracker: MLflowTracker, key: str, batch: str | None = None) -> list[Any]:
    """FINISHED MLflow runs of the cell ``key`` (only those of ``batch`` when given: ``--rerun``)."""
    query = f"tags.`bench.cell_key` = '{key}' and attributes.status = 'FINISHED'"
    if batch:
        query += f" and tags.`{TAG_BATCH}` = '{batch}'"
    return tracker.runs(query)


# ----------------------------------------------------------------------------- local workers


def spawn_workers(
    jobs: int,
    storage_url: str,
    studies: Sequence[str],
    extra_args: Sequence[str] = (),
    heartbeat: Heartbeat | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start ``jobs`` ``bench worker`` processes on this machine (output goes to ours).

    Without ``heartbeat`` they read ``$BENCH_HEARTBEAT_INTERVAL``/``$BENCH_GRACE_PERIOD``.
    Unless ``OMP_NUM_THREADS`` is set, each gets an equal share of the CPU cores for its
    torch threads, so ``jobs`` processes do not oversubscribe the machine.
    """
    cmd = [sys.executable, "-c", _WORKER_MAIN, "worker", "--storage", storage_url]
    for name in studies:
        cmd += ["--study", name]
    if heartbeat is not None:
        cmd += [
            "--heartbeat-interval", str(heartbeat.interval),
            "--grace-period", str(heartbeat.grace),
            "--max-retry", str(heartbeat.max_retry),
        ]
    cmd += list(extra_args)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    return [subprocess.Popen(cmd, env=env) for _ in range(jobs)]


def wait_for_workers(procs: Sequence[subprocess.Popen[bytes]], echo: Callable[[str], None] = print) -> bool:
    """Wait for the workers; returns True if interrupted (Ctrl-C is passed on, and waited for)."""
    try:
        for proc in procs:
            code = proc.wait()
            if code < 0:
                echo(
                    f"worker pid {proc.pid} died from signal {-code}; its cell is re-queued by another worker "
                    f"once its heartbeat is older than the grace period"
                )
        return False
    except KeyboardInterrupt:
        for proc in procs:
            try:
                proc.wait(timeout=2)  # the terminal's Ctrl-C reaches the whole process group
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.terminate()
        return True


def collect_outcome(cells: Sequence[Cell], tracker: MLflowTracker, skipped: set[str] | None = None) -> GridOutcome:
    """The grid's outcome as recorded in MLflow: each cell's FINISHED run, else its latest run."""
    by_key: dict[str, list[Any]] = {}
    for run in tracker.runs():
        key = run.data.tags.get("bench.cell_key")
        if key:
            by_key.setdefault(key, []).append(run)
    outcome = GridOutcome(cells=list(cells), results={})
    for cell in cells:
        runs = by_key.get(cell.key, [])
        finished = [r for r in runs if r.info.status == "FINISHED"]
        if finished:
            run = max(finished, key=lambda r: r.info.start_time or 0)
            outcome.results[cell.key] = CellResult(
                "FINISHED", run.info.run_id, dict(run.data.metrics), skipped=cell.key in (skipped or set())
            )
        elif runs:
            run = max(runs, key=lambda r: r.info.start_time or 0)
            outcome.results[cell.key] = CellResult(
                run.info.status, run.info.run_id, dict(run.data.metrics), error=run.data.tags.get("bench.error")
            )
        else:
            outcome.results[cell.key] = CellResult("QUEUED")
    return outcome


def run_grid_distributed(
    host: PluginHost,
    request: GridRequest,
    tracker: MLflowTracker,
    storage_url: str | None = None,
    jobs: int = 1,
    heartbeat: Heartbeat | None = None,
    echo: Callable[[str], None] = print,
    extra_tags: Mapping[str, str] | None = None,
) -> GridOutcome:
    """Queue the grid's cells, run ``jobs`` local workers until the queue is empty, read the outcome.

    ``jobs == 0`` only queues the cells (start ``bench worker --storage URL`` anywhere).
    """
    if jobs < 0:
        raise ConfigError(f"--jobs {jobs!r}: expected 0 (only queue the cells) or more worker processes")
    url = storage_url or default_storage_url()
    storage = open_storage(url)  # creates the tables here, before any worker races to
    report = enqueue_grid(host, request, tracker, url, storage, extra_tags)
    echo(
        f"grid queue {report.study!r} in {storage_label(url)}: {len(report.enqueued)} cell(s) queued, "
        f"{len(report.already_queued)} already queued or running, {len(report.finished)} already FINISHED"
    )
    interrupted = False
    if jobs == 0:
        echo(f"start workers: bench worker --storage '{storage_label(url)}' --study '{report.study}'")
    elif report.enqueued or report.already_queued:
        extra = [] if request.data_dir is None else ["--data-dir", str(request.data_dir)]
        procs = spawn_workers(jobs, url, [report.study], extra, heartbeat)
        interrupted = wait_for_workers(procs, echo)
    outcome = collect_outcome(report.cells, tracker, {c.key for c in report.finished})
    outcome.interrupted = interrupted
    return outcome


__all__ = [
    "GRID_STUDY_PREFIX",
    "EnqueueReport",
    "Worker",
    "WorkerOptions",
    "WorkerReport",
    "cell_payload",
    "collect_outcome",
    "enqueue_grid",
    "finished_runs",
    "grid_study_name",
    "open_grid_study",
    "rebuild_cell",
    "run_grid_distributed",
    "run_worker",
    "spawn_workers",
    "wait_for_workers",
]
