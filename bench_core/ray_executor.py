"""The benchmark grid (and tuning trials) on a Ray cluster: one Ray task per cell.

``bench run ... --executor ray [--address auto|HOST:PORT]`` hands the scheduling, the
placement on GPUs and the retries after a dead worker or node to Ray; the harness keeps
what only it knows:

* **Idempotence by cell key, in MLflow.** The driver skips cells that are FINISHED in the
  store (as a plain ``bench run`` does). Each task checks again before it starts (a cell
  another command finished meanwhile is not run twice) and rebuilds the cell from its
  description with the worker's own plugins; a different cell key (other plugin, harness or
  data versions on that node) fails the cell with a message that says so.
* **Retries reuse the cell's history.** Ray re-runs a task whose worker process or node died
  (``max_retries``, default 3). The retried attempt closes the runs the dead attempt left
  RUNNING (same cell key, same grid batch) as FAILED with ``bench.error`` = ``"process lost
  ..."``, then runs the cell into a new run. Only Ray retries a task, and only after the
  attempt's worker is gone, so no live run is closed. An exception in the task (a bad cell)
  is not retried: it fails that cell only.
* **Resources.** Each task asks for ``--cpus-per-cell`` CPUs (torch gets as many threads)
  and, on GPU devices, ``--gpus-per-cell`` GPUs (default 1 when the cluster has GPUs and
  ``--device`` is auto or cuda): Ray sets ``CUDA_VISIBLE_DEVICES``, so a machine with 8 GPUs
  runs 8 cells at once, one per GPU.
* **Ctrl-C / SIGTERM** cancels the grid: queued tasks are dropped, running ones get a
  ``KeyboardInterrupt`` (their runs end KILLED, as in a plain ``bench run``); runs still
  RUNNING after a grace period are closed as KILLED by the driver.

Without ``--address`` a private local Ray instance is started for the command (all CPUs and
GPUs of this machine) and stopped at the end.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_core.errors import ConfigError, RegistryError
from bench_core.runner import (
    Cell,
    CellResult,
    GridOutcome,
    GridRequest,
    Reporter,
    expand_grid,
    method_overrides,
    plan_grid,
    run_cell,
)

if TYPE_CHECKING:
    from bench_core.plugins import PluginHost
    from bench_core.tracking import MLflowTracker

log = logging.getLogger("bench.ray")

TAG_BATCH = "bench.grid.batch"
TAG_EXECUTOR = "bench.executor"
TAG_RAY_NODE = "bench.ray.node"
TAG_RAY_TASK = "bench.ray.task"
TAG_ERROR = "bench.error"

DEFAULT_MAX_RETRIES = 3
CANCEL_GRACE_S = 30.0
# Settings of the driver's environment that change what a cell computes (or which plugins
# load): passed to the workers, so a cluster node started with other values cannot diverge.
# The data folder travels as the job's data_dir (--data-dir or the driver's BENCH_DATA_DIR); without
# one, each node's own BENCH_DATA_DIR applies (the cell key checks that the files are the same).
PASSED_ENV = ("BENCH_PLUGINS", "BENCH_DISABLE_PLUGINS", "BENCH_NORMALISATION", "BENCH_VERIFY_CHECKSUMS")


class RayMissing(ConfigError):
    """``--executor ray`` without the ``ray`` package."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayMissing(
            "--executor ray needs the ray package: pip install -e '.[ray]' (or pip install ray)"
        ) from None
    return ray


# ----------------------------------------------------------------------------- cell descriptions


def cell_payload(cell: Cell, request: GridRequest) -> dict[str, Any]:
    """What a worker needs to rebuild ``cell`` (JSON-able)."""
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
                "overrides": method_overrides(request, cell.method),
                "device": request.device,
            },
            default=list,
        )
    )


class CellKeyMismatch(ConfigError):
    """A worker computes another key for a cell than the driver (other versions or data)."""


def rebuild_cell(
    host: PluginHost,
    payload: Mapping[str, Any],
    key: str,
    device: str | None = None,
    data_dir: Path | None = None,
) -> tuple[Cell, GridRequest]:
    """The cell ``payload`` describes, built with this process's plugins; the key must be ``key``."""
    request = GridRequest(
        plugins=[payload["method"]], datasets=[payload["dataset"]], splits=[payload["split"]],
        seeds=[int(payload["seed"])], profile=payload["profile"], val_fraction=float(payload["val_fraction"]),
        val_carve=str(payload.get("val_carve", "auto")),
        # The cell's own overrides, for its method alone (the name can also select its plugin's other methods).
        method_overrides={payload["method"]: payload.get("overrides") or {}},
        device=device or payload.get("device", "auto"), data_dir=data_dir,
    )
    cells = [c for c in expand_grid(host, request) if c.method == payload["method"]]
    if not cells:
        raise RegistryError(
            f"cell method {payload['method']!r} is not installed on this worker; install the plugin "
            f"that registers it (`bench plugins` lists what is installed)"
        )
    cell = replace(cells[0], profile_source=str(payload.get("profile_source", "cli")))
    if cell.key != key:
        raise CellKeyMismatch(
            f"cell {cell.display_id}: this worker computes key {cell.key} but the driver sent {key}; its "
            f"plugin {cell.plugin!r} ({cell.plugin_dist} {cell.plugin_version}), the harness or the dataset "
            f"files differ from those of the driver. Install the same versions on every node"
        )
    return cell, request


def finished_runs(tracker: MLflowTracker, key: str, batch: str | None = None) -> list[Any]:
    """FINISHED MLflow runs of the cell ``key`` (only those of ``batch`` when given: ``--rerun``)."""
    query = f"tags.`bench.cell_key` = '{key}' and attributes.status = 'FINISHED'"
    if batch:
        query += f" and tags.`{TAG_BATCH}` = '{batch}'"
    return tracker.runs(query)


def close_batch_runs(
    tracker: MLflowTracker, batch: str, status: str, reason: str, key: str | None = None
) -> list[str]:
    """Close the RUNNING runs of grid ``batch`` (of cell ``key`` only, when given); returns their names."""
    from bench_core.process import lost_run_reason

    query = f"tags.`{TAG_BATCH}` = '{batch}' and attributes.status = 'RUNNING'"
    if key:
        query += f" and tags.`bench.cell_key` = '{key}'"
    closed = []
    for run in tracker.runs(query):
        why = lost_run_reason(run.data.tags) or reason  # same host: says which pid is gone
        try:
            if status == "FAILED":
                tracker.client.set_tag(run.info.run_id, TAG_ERROR, f"{why}; {reason}" if why != reason else why)
            else:
                tracker.client.set_tag(run.info.run_id, "bench.interrupted", reason)
            tracker.client.set_terminated(run.info.run_id, status=status)
        except Exception as exc:  # noqa: BLE001 - a store that went away: the next command closes it
            log.warning("run %s could not be closed as %s: %s", run.info.run_name, status, exc)
            continue
        closed.append(str(run.info.run_name))
    return closed


# ----------------------------------------------------------------------------- the task (on workers)


_WORKER_STATE: dict[str, Any] = {}


def _worker_host() -> PluginHost:
    """Plugins of this Ray worker process, loaded once (a worker runs many cells)."""
    if "host" not in _WORKER_STATE:
        from bench_core.plugins import load_plugins

        _WORKER_STATE["host"] = load_plugins()
        _WORKER_STATE["scenes"] = {}
    return _WORKER_STATE["host"]


def run_cell_task(job: Mapping[str, Any]) -> dict[str, Any]:
    """Body of one Ray task: skip a FINISHED cell, close a dead attempt's run, run the cell.

    Returns :class:`CellResult` as a dict. A cell that fails is a FAILED run and a normal
    return; only an error before the run starts (plugin missing, other cell key) raises.
    """
    from bench_core.tracking import MLflowTracker
    from bench_core.tuning.mlflow_bridge import TaggingTracker

    ray = import_ray()
    cpus = int(job.get("cpus") or 0)
    if cpus > 0:
        import torch

        torch.set_num_threads(cpus)
    tracker = MLflowTracker(job["tracking_uri"], job["experiment"])
    key, batch = str(job["key"]), str(job["batch"])
    existing = finished_runs(tracker, key, batch if job.get("rerun") else None)
    if existing:
        run = existing[0]
        return asdict(CellResult("FINISHED", run.info.run_id, dict(run.data.metrics), skipped=True))
    # Ray runs a task again only once its earlier attempt's worker is dead: runs it left RUNNING are lost.
    close_batch_runs(tracker, batch, "FAILED", "process lost: its Ray worker died; the task was retried", key)
    host = _worker_host()
    data_dir = Path(job["data_dir"]) if job.get("data_dir") else None
    cell, request = rebuild_cell(host, job["payload"], key, job.get("device"), data_dir)
    context = ray.get_runtime_context()
    tags = {
        TAG_BATCH: batch,
        TAG_EXECUTOR: "ray",
        TAG_RAY_NODE: str(context.get_node_id()),
        TAG_RAY_TASK: str(context.get_task_id()),
        **{str(k): str(v) for k, v in (job.get("extra_tags") or {}).items()},
    }
    result = run_cell(host, cell, TaggingTracker(tracker, tags), request, _WORKER_STATE["scenes"],
                      Reporter(lambda _m: None))
    return asdict(result)


# ----------------------------------------------------------------------------- the driver


@dataclass(frozen=True)
class RayOptions:
    """How the grid uses Ray.

    Attributes:
        address: a running cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None starts a
            private local instance for this command.
        cpus_per_cell: CPUs each cell reserves (and torch threads it uses).
        gpus_per_cell: GPUs each cell reserves; None: 1 when the cluster has GPUs and the
            device is auto or cuda, else 0. Fractions share a GPU (0.5: two cells per GPU).
        max_retries: re-runs of a cell whose worker process or node died.
        local_cpus: CPUs of the private local instance (default: all of this machine).
    """

    address: str | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    local_cpus: int | None = None


def _passed_env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASSED_ENV if k in os.environ}


def start_ray(options: RayOptions) -> tuple[Any, bool]:
    """Connect to the cluster of ``options`` (or start a local one); returns (ray, started_here)."""
    ray = import_ray()
    env = _passed_env()
    runtime_env = {"env_vars": env} if env else None
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False, "runtime_env": runtime_env}
    if options.address:
        try:
            ray.init(address=options.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"--address {options.address}: no Ray cluster there ({str(exc).strip().splitlines()[0]}); start one "
                f"with `ray start --head` (docs/scaling.md) or leave --address out for a local instance"
            ) from None
        return ray, False
    # A private instance: never join another user's (or another test's) cluster by accident.
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=options.local_cpus, include_dashboard=False, **kwargs)
    return ray, True


def cell_resources(request: GridRequest, options: RayOptions, cluster: Mapping[str, float]) -> tuple[float, float, str]:
    """``(num_cpus, num_gpus, device)`` of each cell's task, given the cluster's resources."""
    device = request.device
    gpus = options.gpus_per_cell
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) > 0 and (device == "auto" or device.startswith("cuda")) else 0.0
    if gpus > 0:
        if device.startswith("cuda:"):
            log.warning("--device %s with Ray: each task sees only the GPU(s) Ray gives it, as cuda", device)
        device = "cuda" if device != "auto" else "auto"
    elif device.startswith("cuda"):
        raise ConfigError(
            f"--device {device} with --gpus-per-cell 0: a cell would use a GPU Ray did not reserve for it"
        )
    else:
        device = "cpu" if device == "auto" else device
    if gpus > 0 and cluster.get("GPU", 0) < gpus:
        raise ConfigError(
            f"each cell asks for {gpus:g} GPU(s) but the Ray cluster has {cluster.get('GPU', 0):g}; "
            f"start the nodes with their GPUs (ray start --num-gpus N) or use --device cpu"
        )
    if cluster.get("CPU", 0) < options.cpus_per_cell:
        raise ConfigError(
            f"each cell asks for {options.cpus_per_cell:g} CPU(s) but the Ray cluster has {cluster.get('CPU', 0):g}"
        )
    return float(options.cpus_per_cell), float(gpus), device


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


def run_grid_ray(
    host: PluginHost,
    request: GridRequest,
    tracker: MLflowTracker,
    options: RayOptions | None = None,
    reporter: Reporter | None = None,
    echo: Callable[[str], None] = print,
    extra_tags: Mapping[str, str] | None = None,
) -> GridOutcome:
    """Run every cell of ``request`` not FINISHED in ``tracker`` as one Ray task each."""
    options = options or RayOptions()
    reporter = reporter or Reporter(echo)
    outcome, todo = plan_grid(host, request, tracker)
    cells = outcome.cells
    if not todo:  # nothing to run: no cluster to start
        reporter.grid_started(len(cells), len(cells))
        reporter.close()
        return outcome
    ray, started_here = start_ray(options)
    batch = uuid.uuid4().hex[:12]
    refs: dict[Any, Cell] = {}
    pending: list[Any] = []
    try:
        cluster = ray.cluster_resources()
        cpus, gpus, device = cell_resources(request, options, cluster)
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        echo(
            f"ray: {'local instance' if started_here else options.address} - {nodes} node(s), "
            f"{cluster.get('CPU', 0):g} CPU(s), {cluster.get('GPU', 0):g} GPU(s); each cell: {cpus:g} CPU(s), "
            f"{gpus:g} GPU(s), device {device}; batch {batch}"
        )
        task = ray.remote(run_cell_task)
        common = {
            "tracking_uri": tracker.uri, "experiment": tracker.experiment, "batch": batch,
            "rerun": bool(request.rerun), "extra_tags": dict(extra_tags or {}), "device": device,
            "data_dir": str(request.data_dir) if request.data_dir is not None else None, "cpus": cpus,
        }
        reporter.grid_started(len(cells), len(cells) - len(todo))
        for cell in todo:
            job = {**common, "key": cell.key, "payload": cell_payload(cell, request)}
            ref = task.options(
                num_cpus=cpus, num_gpus=gpus, max_retries=options.max_retries, retry_exceptions=False,
                name=f"bench-cell {cell.display_id}",
            ).remote(job)
            refs[ref] = cell
        pending = list(refs)
        index = len(cells) - len(todo)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                cell = refs[ref]
                index += 1
                outcome.results[cell.key] = _collect(ray, ref, cell, tracker, batch)
                reporter.cell_finished(index, len(cells), cell, outcome.results[cell.key])
    except KeyboardInterrupt:
        outcome.interrupted = True
        echo("interrupted: cancelling the grid's Ray tasks ...")
        _cancel(ray, pending or list(refs), tracker, batch, echo)
    finally:
        reporter.close()
        ray.shutdown()  # stops a local instance started here; only disconnects from a cluster
    return outcome


def _collect(ray: Any, ref: Any, cell: Cell, tracker: MLflowTracker, batch: str) -> CellResult:
    """The result of one finished task; a task that raised or died for good fails its cell only."""
    try:
        return CellResult(**ray.get(ref))
    except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError (retries spent), ...
        error = _error_text(exc)
        closed = close_batch_runs(tracker, batch, "FAILED", f"Ray task failed: {error}", cell.key)
        log.error("cell %s: %s", cell.display_id, error)
        return CellResult("FAILED", error=error + (f" (run {closed[0]} closed as FAILED)" if closed else ""))


def _cancel(ray: Any, pending: list[Any], tracker: MLflowTracker, batch: str, echo: Callable[[str], None]) -> None:
    """Ctrl-C: drop queued tasks, interrupt running ones (their runs end KILLED), then close leftovers."""
    for ref in pending:
        try:
            ray.cancel(ref, force=False)
        except Exception as exc:  # noqa: BLE001 - already finished or gone
            log.info("cancel: %s", exc)
    end = time.monotonic() + CANCEL_GRACE_S
    remaining = list(pending)
    while remaining and time.monotonic() < end:
        try:
            _, remaining = ray.wait(remaining, num_returns=len(remaining), timeout=1.0)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            break
    for ref in remaining:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001
            pass
    closed = close_batch_runs(tracker, batch, "KILLED", "interrupted (Ctrl-C): the grid was cancelled")
    if closed:
        echo(f"closed {len(closed)} run(s) as KILLED: {', '.join(closed)}")


# ----------------------------------------------------------------------------- tuning trials


def tune_trials_task(job: Mapping[str, Any]) -> int:
    """Body of one tuning Ray task: trials of one study until its budget is used; returns how many ran here.

    Optuna's own distributed mode: every task loads the study from the shared storage and calls
    ``study.optimize``; the storage hands out trial numbers, Optuna's heartbeat and stale-trial
    callback fail (and re-queue) the trial of a task whose worker died.
    """
    from bench_core.tracking import MLflowTracker
    # From the submodules: bench_core.tuning.study imports this module to run trials on Ray.
    from bench_core.tuning.attrs import ATTR_PARENT_RUN
    from bench_core.tuning.objective import TuneObjective
    from bench_core.tuning.recipe import make_pruner, make_sampler, recipe_of
    from bench_core.tuning.stale import StaleTrialHandler
    from bench_core.tuning.storage import Heartbeat, open_storage
    from bench_core.tuning.trials import tune_in_process

    import_ray()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cpus = int(job.get("cpus") or 0)
    if cpus > 0:
        import torch

        torch.set_num_threads(cpus)
    heartbeat = Heartbeat(**job["heartbeat"])
    storage = open_storage(job["storage"], heartbeat, StaleTrialHandler(heartbeat.max_retry))
    study = optuna.load_study(study_name=job["study"], storage=storage)
    recipe = recipe_of(study)
    seed = (recipe.seed * 1_000_003 + int(job["index"]) * 7919 + os.getpid()) % 2**31  # tasks explore apart
    study.sampler = make_sampler(seed, parallel=True)
    study.pruner = make_pruner(recipe.pruner)
    tracker = MLflowTracker(job["tracking_uri"], job["experiment"])
    data_dir = Path(job["data_dir"]) if job.get("data_dir") else None
    objective = TuneObjective(_worker_host(), recipe, study.study_name, tracker,
                              study.user_attrs.get(ATTR_PARENT_RUN), job["device"], data_dir)
    return tune_in_process(study, objective, recipe.trials, job.get("timeout"))


def run_tuning_ray(
    study_name: str,
    storage_url: str,
    heartbeat: Any,
    tracker: MLflowTracker,
    jobs: int,
    device: str = "auto",
    data_dir: Path | None = None,
    timeout: float | None = None,
    options: RayOptions | None = None,
    echo: Callable[[str], None] = print,
) -> tuple[int, bool]:
    """``jobs`` Ray tasks run trials of ``study_name`` in parallel; returns (trials run, interrupted)."""
    options = options or RayOptions()
    if storage_url.startswith("sqlite:") and options.address:
        log.warning("tuning study in %s: a SQLite file is only shared by the processes of one machine", storage_url)
    ray, _ = start_ray(options)
    refs: list[Any] = []
    interrupted = False
    ran = 0
    try:
        cluster = ray.cluster_resources()
        cpus, gpus, task_device = cell_resources(
            GridRequest(device=device), options, cluster
        )
        echo(f"ray: {jobs} task(s) share study {study_name!r}; each: {cpus:g} CPU(s), {gpus:g} GPU(s), "
             f"device {task_device}")
        task = ray.remote(tune_trials_task)
        for index in range(jobs):
            job = {
                "study": study_name, "storage": storage_url, "index": index,
                "heartbeat": {"interval": heartbeat.interval, "grace": heartbeat.grace,
                              "max_retry": heartbeat.max_retry},
                "tracking_uri": tracker.uri, "experiment": tracker.experiment, "device": task_device,
                "data_dir": str(data_dir) if data_dir is not None else None, "timeout": timeout, "cpus": cpus,
            }
            refs.append(task.options(num_cpus=cpus, num_gpus=gpus, max_retries=options.max_retries,
                                     retry_exceptions=False, name=f"bench-tune {study_name} #{index}").remote(job))
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                try:
                    ran += int(ray.get(ref))
                except Exception as exc:  # noqa: BLE001 - one task lost for good: the others go on
                    echo(f"a tuning task failed: {_error_text(exc)}")
    except KeyboardInterrupt:
        interrupted = True
        for ref in refs:
            try:
                ray.cancel(ref, force=False)  # KeyboardInterrupt in the trial: its run ends KILLED
            except Exception:  # noqa: BLE001
                pass
        try:
            ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        except KeyboardInterrupt:
            pass
    finally:
        ray.shutdown()
    return ran, interrupted


__all__ = [
    "RayOptions",
    "cell_payload",
    "cell_resources",
    "close_batch_runs",
    "finished_runs",
    "rebuild_cell",
    "run_cell_task",
    "run_grid_ray",
    "run_tuning_ray",
    "tune_trials_task",
    "start_ray",
]
