"""Optuna storage: where studies live, and the heartbeat that detects dead workers.

A local SQLite file next to the MLflow store by default, any Optuna RDB URL (PostgreSQL for
several machines), or ``journal:PATH`` (a journal file; no heartbeat).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_core.errors import BenchError, ConfigError
from bench_core.tuning.attrs import DEFAULT_STORAGE_FILE, ENV_GRACE, ENV_HEARTBEAT, ENV_STORAGE, JOURNAL_PREFIX

if TYPE_CHECKING:
    import optuna


def default_storage_url() -> str:
    """``$BENCH_OPTUNA_STORAGE``, else ``sqlite:///$BENCH_HOME/optuna.db`` (next to the MLflow store)."""
    from bench_core.tracking import env_or_home_sqlite

    return env_or_home_sqlite(ENV_STORAGE, DEFAULT_STORAGE_FILE)


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


__all__ = [
    "Heartbeat",
    "default_storage_url",
    "fail_stale_trials",
    "has_heartbeat",
    "open_storage",
    "storage_label",
]
