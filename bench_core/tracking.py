"""Tracking: the Tracker protocol and its MLflow implementation.

One MLflow run per benchmark cell. The names logged here are a contract read by the
leaderboards and by re-runs (see docs/architecture.md, "The MLflow run contract").

Default store: ``sqlite:///<BENCH_HOME>/mlflow.db`` with artifacts under
``<BENCH_HOME>/artifacts``, where ``BENCH_HOME`` defaults to ``./bench-results``.
``--tracking-uri`` / ``MLFLOW_TRACKING_URI`` select any other store or server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ENV_HOME = "BENCH_HOME"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_TRACKING_TIMEOUT = "BENCH_TRACKING_TIMEOUT"
DEFAULT_TRACKING_TIMEOUT = 10.0
DEFAULT_HOME = "bench-results"
DEFAULT_EXPERIMENT = "bench"

TAG_CELL_KEY = "bench.cell_key"
STATUSES = ("FINISHED", "FAILED", "KILLED")

# MLflow's limits per log_batch call.
_MAX_PARAMS = 100
_MAX_METRICS = 1000


def bench_home() -> Path:
    """Folder of the embedded store: ``$BENCH_HOME`` or ``./bench-results``."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).resolve()


def env_or_home_sqlite(env_var: str, filename: str) -> str:
    """``$env_var`` when set and non-empty, else ``sqlite:///<BENCH_HOME>/<filename>``.

    The default of every store the harness keeps (MLflow runs, Optuna studies), so that
    they all live side by side under one ``BENCH_HOME``.
    """
    return os.environ.get(env_var) or f"sqlite:///{bench_home() / filename}"


def default_tracking_uri() -> str:
    """``--tracking-uri`` default: ``$MLFLOW_TRACKING_URI`` or the embedded SQLite store."""
    return env_or_home_sqlite(ENV_TRACKING_URI, "mlflow.db")


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:///")


def tracking_timeout() -> float:
    """Seconds to wait for a tracking server to answer: ``$BENCH_TRACKING_TIMEOUT`` (default 10)."""
    from bench_core.errors import ConfigError

    raw = os.environ.get(ENV_TRACKING_TIMEOUT, "").strip()
    if not raw:
        return DEFAULT_TRACKING_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{ENV_TRACKING_TIMEOUT}={raw!r}: expected a number of seconds above 0, e.g. 10")
    return value


def _redact(uri: str) -> str:
    """``uri`` without a password in its user part."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def check_server(uri: str, timeout: float | None = None) -> None:
    """Raise :class:`~bench_core.errors.TrackingError` unless the HTTP tracking server at ``uri``
    answers within ``timeout`` seconds (any HTTP answer counts; proxies from the environment apply).

    MLflow itself would retry for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES, _TIMEOUT) before failing.
    """
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    from bench_core.errors import TrackingError

    timeout = tracking_timeout() if timeout is None else timeout
    parts = urlsplit(uri)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # credentials are MLflow's business, not the probe's
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered (401, 404 behind a proxy...): reachable
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TrackingError(
            f"tracking server {_redact(uri)} is unreachable ({reason}; waited at most {timeout:g} s, see "
            f"{ENV_TRACKING_TIMEOUT}); start it, or fix --tracking-uri / {ENV_TRACKING_URI}"
        ) from None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold ``<store folder>/.store.lock`` (an exclusive ``flock``) for an embedded store, so two
    processes never create or migrate the same new SQLite store at once; no-op for other stores."""
    if not is_embedded(uri):
        yield
        return
    folder = Path(uri[len("sqlite:///") :]).parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(folder / ".store.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class DatasetInput:
    """The dataset a run was computed from, as MLflow shows it (the run table's Dataset column).

    Attributes:
        name: the dataset's registry name (``augsburg``).
        digest: the data fingerprint of the cell key (``bench.dataset_fingerprint``): same files,
            layout, loader and normalisation, same digest, wherever the files are.
        source: where the files were found (a folder), or ``generated:<seed>`` for generated data.
        source_type: ``local`` (files) or ``generated``.
        context: what the run used it for; the cell's split (``official``, ``per-class:20``).
        profile: a short JSON summary (shape, bands, classes), shown by MLflow's dataset view.
    """

    name: str
    digest: str
    source: str
    source_type: str = "local"
    context: str = ""
    profile: str | None = None


class RunHandle(Protocol):
    """One open run of a cell."""

    run_id: str

    def log_params(self, params: Mapping[str, object]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifacts(self, folder: Path) -> None: ...

    def log_dataset(self, dataset: DatasetInput) -> None: ...

    def end(self, status: str) -> None: ...


class Tracker(Protocol):
    """Where cells are recorded. :class:`MLflowTracker` is the implementation."""

    uri: str
    experiment: str

    def finished_cell_keys(self) -> set[str]: ...

    def start_run(self, run_name: str, tags: Mapping[str, str], description: str = "") -> RunHandle: ...


@dataclass
class MLflowRun:
    """An open MLflow run; every call batches what it logs."""

    client: MlflowClient
    run_id: str
    ended: bool = False

    def log_params(self, params: Mapping[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _truncate(str(v), 6000)) for k, v in params.items()]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + _MAX_PARAMS])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(str(k), float(v), now, int(step or 0))
            for k, v in metrics.items()
            if v is not None
        ]
        for i in range(0, len(items), _MAX_METRICS):
            self.client.log_batch(self.run_id, metrics=items[i : i + _MAX_METRICS])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _truncate(str(v), 5000)) for k, v in tags.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def log_artifacts(self, folder: Path) -> None:
        self.client.log_artifacts(self.run_id, str(folder))

    def log_dataset(self, dataset: DatasetInput) -> None:
        """Record ``dataset`` as the run's MLflow dataset input (with its context as the usual input tag)."""
        from mlflow.entities import Dataset
        from mlflow.entities import DatasetInput as MlflowDatasetInput
        from mlflow.entities import InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        entity = Dataset(name=dataset.name, digest=dataset.digest, source_type=dataset.source_type,
                         source=dataset.source, profile=dataset.profile)
        tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=dataset.context)] if dataset.context else []
        self.client.log_inputs(self.run_id, datasets=[MlflowDatasetInput(dataset=entity, tags=tags)])

    def end(self, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"run status {status!r}; expected one of {STATUSES}")
        if not self.ended:
            self.client.set_terminated(self.run_id, status=status)
            self.ended = True


class MLflowTracker:
    """Records cells in an MLflow tracking store (a local SQLite file or any server)."""

    def __init__(self, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, *, create: bool = True) -> None:
        """Open the store. ``create=False`` (``bench leaderboard``) creates nothing: no store, folder or
        experiment; a missing one reads as empty (``client`` and ``experiment_id`` are then ``None``)."""
        from mlflow.tracking import MlflowClient

        from bench_core.errors import BenchError, TrackingError

        self.uri = uri or default_tracking_uri()
        self.experiment = experiment
        self.client: MlflowClient = None  # type: ignore[assignment]
        self.experiment_id: str = None  # type: ignore[assignment]
        if not check_store(self.uri, experiment, write=create) and not create:
            return  # an embedded store that does not exist, and nothing may be created
        if self.uri.startswith(("http://", "https://")):
            check_server(self.uri)
        lock = store_lock(self.uri) if create else nullcontext()
        try:
            with lock:  # the first access creates (or migrates) the store's tables
                self.client = MlflowClient(tracking_uri=self.uri)
                self.experiment_id = self._experiment_id(create)  # type: ignore[assignment]
        except BenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow's errors (schema, permissions, URI) as one line
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise TrackingError(
                f"tracking store {_redact(self.uri)} cannot be opened ({type(exc).__name__}: {first}); expected "
                f"a working MLflow store: fix --tracking-uri / {ENV_TRACKING_URI} / {ENV_HOME}"
            ) from None

    def _experiment_id(self, create: bool = True) -> str | None:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        if not create:
            return None
        location = None
        if is_embedded(self.uri):
            db = Path(self.uri[len("sqlite:///") :])
            location = (db.parent / "artifacts" / self.experiment).as_uri()
        try:
            return str(self.client.create_experiment(self.experiment, artifact_location=location))
        except Exception:  # another process created it first
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def runs(self, filter_string: str = "") -> list:
        """Every run of the experiment matching ``filter_string`` (all pages)."""
        out: list = []
        if self.experiment_id is None:  # create=False and no store or experiment yet
            return out
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=filter_string, max_results=1000, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def finished_cell_keys(self) -> set[str]:
        runs = self.runs("attributes.status = 'FINISHED'")
        return {r.data.tags[TAG_CELL_KEY] for r in runs if TAG_CELL_KEY in r.data.tags}

    def close_lost_runs(self) -> list[tuple[str, str]]:
        """Set RUNNING runs whose process is provably gone (killed with SIGKILL, out of memory...) to
        FAILED with ``bench.error = "process lost (host H, pid P)"``; returns ``(run name, reason)`` pairs.

        Only runs of this host, boot and pid namespace are judged (tags ``bench.host``, ``bench.pid``,
        ``bench.pid_start``, ``bench.pid_scope``; :mod:`bench_core.process`); a FAILED cell runs again.
        """
        from bench_core.process import lost_run_reason, process_tags

        here = process_tags()
        closed = []
        for run in self.runs("attributes.status = 'RUNNING'"):
            reason = lost_run_reason(run.data.tags, here)
            if reason is None:
                continue
            try:
                self.client.set_tag(run.info.run_id, "bench.error", reason)
                self.client.set_terminated(run.info.run_id, status="FAILED")
            except Exception as exc:  # noqa: BLE001 - a read-only store (bench leaderboard) stays as it is
                import logging

                logging.getLogger("bench.tracking").warning(
                    "run %s: %s, but it could not be closed: %s", run.info.run_name, reason, exc
                )
                continue
            closed.append((str(run.info.run_name), reason))
        return closed

    def start_run(self, run_name: str, tags: Mapping[str, str], description: str = "") -> MLflowRun:
        from bench_core.process import process_tags

        all_tags = {**process_tags(), **tags}
        if description:
            all_tags["mlflow.note.content"] = description
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        return MLflowRun(self.client, run.info.run_id)

    def ui_hint(self) -> str:
        if is_embedded(self.uri):
            return "bench ui" + ("" if self.uri == default_tracking_uri() else f" --tracking-uri '{self.uri}'")
        return f"open {self.uri} (experiment {self.experiment!r})"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."



def check_store(uri: str, experiment: str, *, write: bool = True) -> bool:
    """Usage errors about the store, found before MLflow touches it (each one line, exit 2 in the CLI).

    :class:`~bench_core.errors.ConfigError` for an empty experiment name or a URI scheme MLflow has no
    store for; :class:`~bench_core.errors.TrackingError` for an embedded store whose folder is a file
    (``BENCH_HOME`` pointing at a file), whose ``mlflow.db`` is not an SQLite database, or, with
    ``write``, is read-only. Returns whether the store exists: ``False`` only for an embedded store
    whose database file is not there yet (``write=False`` callers such as ``bench leaderboard`` then
    read nothing and create nothing).
    """
    from bench_core.errors import ConfigError, TrackingError

    if not isinstance(experiment, str) or not experiment.strip():
        raise ConfigError(
            f"experiment name {experiment!r}: expected a non-empty MLflow experiment name, e.g. "
            f"--experiment {DEFAULT_EXPERIMENT}"
        )
    if not is_embedded(uri):
        _check_scheme(uri)
        return True
    db = Path(uri[len("sqlite:///") :])
    folder = db.parent
    where = f"set {ENV_HOME} to a folder or pass --tracking-uri sqlite:///FOLDER/mlflow.db"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TrackingError(
            f"store folder {folder}: {existing} is a file, not a folder; expected a folder for mlflow.db "
            f"and artifacts: {where}"
        )
    if not db.exists():
        if write and not os.access(existing, os.W_OK):
            raise TrackingError(
                f"store folder {folder}: {existing} is not writable, so the store cannot be created; "
                f"expected a writable folder: fix its permissions or {where}"
            )
        return False
    if not db.is_file():
        raise TrackingError(f"store {db} is not a file; expected the SQLite database mlflow.db: {where}")
    _check_sqlite(db, where)
    if write and not (os.access(db, os.W_OK) and os.access(folder, os.W_OK)):
        raise TrackingError(
            f"store {db} is read-only (the file or its folder is not writable); expected a writable store "
            f"to record runs: fix the permissions or {where} (bench leaderboard can still read this one)"
        )
    return True


def _check_sqlite(db: Path, where: str) -> None:
    """TrackingError if ``db`` is not an SQLite database ("file is not a database", "malformed")."""
    import sqlite3

    from bench_core.errors import TrackingError

    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise TrackingError(f"store {db} cannot be opened ({exc}); expected a readable SQLite file: {where}") from None
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # Locked by a writer, or a hot journal a read-only connection may not roll back (a process
        # killed mid-write): a live store, not a broken one; MLflow opens it (or says why, one line).
        return
    except sqlite3.DatabaseError as exc:
        raise TrackingError(
            f"store {db} is not an SQLite database ({exc}): corrupt or another file; move it away (a new store "
            f"is then created) or {where}"
        ) from None
    finally:
        connection.close()


def _check_scheme(uri: str) -> None:
    """ConfigError for a URI whose scheme no installed MLflow tracking store handles (``foo://bar``)."""
    from urllib.parse import urlsplit

    from bench_core.errors import ConfigError

    scheme = urlsplit(uri).scheme.lower()
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        known = set(_tracking_store_registry._registry)
    except Exception:  # noqa: BLE001  # pragma: no cover - MLflow moved its registry; its own error applies
        return
    base = scheme.split("+", 1)[0]  # postgresql+psycopg2
    if len(scheme) <= 1 or scheme in known or base in known:  # '' or a Windows drive letter: a folder
        return
    raise ConfigError(
        f"--tracking-uri {_redact(uri)!r}: MLflow has no tracking store for scheme {scheme!r}; expected "
        f"sqlite:///PATH/mlflow.db, http(s)://HOST:PORT, a database URL (postgresql://, mysql://, mssql://) "
        f"or file:///FOLDER ({ENV_TRACKING_URI} takes the same values)"
    )
