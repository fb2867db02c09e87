"""Tracking: the Tracker protocol and its MLflow implementation.

One MLflow run per benchmark cell. The names logged here are a contract read by the
leaderboards and by re-runs (see docs/architecture.md, "The MLflow run contract").

Default store: ``sqlite:///<BENCH_HOME>/mlflow.db`` with artifacts under
``<BENCH_HOME>/artifacts``, where ``BENCH_HOME`` defaults to ``./bench-results``.
``--tracking-uri`` / ``MLFLOW_TRACKING_URI`` select any other store or server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

ENV_HOME = "BENCH_HOME"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
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


def default_tracking_uri() -> str:
    """``--tracking-uri`` default: ``$MLFLOW_TRACKING_URI`` or the embedded SQLite store."""
    env = os.environ.get(ENV_TRACKING_URI)
    if env:
        return env
    return f"sqlite:///{bench_home() / 'mlflow.db'}"


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:///")


class RunHandle(Protocol):
    """One open run of a cell."""

    run_id: str

    def log_params(self, params: Mapping[str, object]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_artifacts(self, folder: Path) -> None: ...

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

    def end(self, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"run status {status!r}; expected one of {STATUSES}")
        if not self.ended:
            self.client.set_terminated(self.run_id, status=status)
            self.ended = True


class MLflowTracker:
    """Records cells in an MLflow tracking store (a local SQLite file or any server)."""

    def __init__(self, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri or default_tracking_uri()
        self.experiment = experiment
        if is_embedded(self.uri):
            Path(self.uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = self._experiment_id()

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
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
        out = []
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

    def start_run(self, run_name: str, tags: Mapping[str, str], description: str = "") -> MLflowRun:
        all_tags = dict(tags)
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

