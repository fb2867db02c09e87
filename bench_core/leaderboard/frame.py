"""The tracking store as a pandas frame: one row per FINISHED benchmark cell run, and its artifacts.

Only benchmark cells count (runs with the ``bench.cell_key`` tag and no parent run); the
column names here are the contract the boards are built on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench_core.tracking import TAG_CELL_KEY

if TYPE_CHECKING:
    import pandas as pd

    from bench_core.tracking import MLflowTracker

GROUP = ["dataset", "split", "method", "profile"]
TAG_METHOD_STATUS = "bench.method.status"
"""Run tag set from a model's ``bench_tags()["status"]``: a stand-in or ablation, shown in labels."""
TAG_CLASSES_WITHOUT_TRAINING = "bench.classes_without_training"
"""Run tag: comma-separated labels of the classes with no training pixel in the cell's split (e.g. ``"3,5"``)."""
TAG_CLASSES_WITHOUT_TRAINING_NAMES = "bench.classes_without_training_names"
"""Run tag: their class names, ``"; "``-separated, in the same order."""
ACCURACY = ["test_oa", "test_aa", "test_kappa", "test_f1_macro"]
COST = [
    "params_total", "params_trainable", "flops_per_sample", "time_train_s", "time_infer_s",
    "throughput_infer", "mem_peak_bytes", "split_leakage", "split_val_leakage",
]
PER_CLASS_PREFIX = "test_acc_"

_CONFIG_PREFIXES = ("train.", "model.", "data.")  # data.*: the layout and settings a scene was read with


class ArtifactSource(Protocol):
    """Fetches a run's artifact to a local file (None when the run has no such artifact)."""

    def fetch(self, run_id: str, path: str) -> Path | None: ...


class MLflowArtifacts:
    """Artifacts downloaded from the tracking store into a private temporary folder."""

    def __init__(self, tracker: MLflowTracker) -> None:
        self.client = tracker.client
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-board-")
        self._cache: dict[tuple[str, str], Path | None] = {}

    def fetch(self, run_id: str, path: str) -> Path | None:
        key = (run_id, path)
        if key not in self._cache:
            dst = Path(self._tmp.name) / run_id
            dst.mkdir(exist_ok=True)
            try:
                with _no_progress_bars():
                    self._cache[key] = Path(self.client.download_artifacts(run_id, path, str(dst)))
            except Exception:  # missing artifact or unreachable store: the board says so
                self._cache[key] = None
        return self._cache[key]

    def close(self) -> None:
        self._tmp.cleanup()


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar per download on stderr; silence it for the duration only."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _device_label(tags: Mapping[str, str]) -> str:
    gpu = tags.get("bench.env.gpu_name")
    if gpu:
        return f"cuda ({gpu})"
    device = tags.get("bench.device", "")
    cpu = tags.get("bench.env.cpu_model")
    threads = tags.get("bench.env.torch_threads")
    if device.startswith("cpu") and cpu:
        return f"cpu ({cpu}, {threads} threads)" if threads else f"cpu ({cpu})"
    return device or "unknown"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def config_of(params: Mapping[str, str], tags: Mapping[str, str]) -> dict[str, str]:
    """What must be equal for two runs of a method to be seeds of one row."""
    out = {k: v for k, v in params.items() if k.startswith(_CONFIG_PREFIXES)}
    out["val_fraction"] = params.get("val_fraction", "")
    out["plugin_version"] = tags.get("bench.plugin_version", "")
    return out


def runs_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """One row per benchmark cell run (MLflow ``Run`` objects): contract params, metrics, device, config id.

    Runs without the ``bench.cell_key`` tag or with a parent run (tuning trials) are skipped.
    """
    import pandas as pd

    rows = []
    for r in runs:
        p, m, t = r.data.params, r.data.metrics, r.data.tags
        # Benchmark cells only: tuning trials (nested runs) and foreign runs are not results.
        if "method" not in p or TAG_CELL_KEY not in t or "mlflow.parentRunId" in t:
            continue
        config = config_of(p, t)
        text = json.dumps(config, sort_keys=True)
        row: dict[str, Any] = {k: p.get(k) for k in GROUP}
        row.update(
            run_id=r.info.run_id, run_name=r.info.run_name or t.get("mlflow.runName", ""),
            start_time=int(r.info.start_time or 0), seed=int(p.get("seed", 0)),
            device=_device_label(t), config_id=hashlib.sha256(text.encode()).hexdigest()[:8],
            config_json=text, method_status=t.get(TAG_METHOD_STATUS, ""),
            val_fraction=_float(p.get("val_fraction")),
            classes_without_training=_untrained_classes(t),
        )
        for k in ACCURACY + COST:
            row[k] = m.get(k, math.nan)
        row.update({k: v for k, v in m.items() if k.startswith(PER_CLASS_PREFIX)})
        rows.append(row)
    base = GROUP + ["seed", "run_id", "run_name", "start_time", "device", "config_id", "config_json",
                    "method_status", "val_fraction", "classes_without_training"] + ACCURACY + COST
    frame = pd.DataFrame(rows)
    for col in base:
        if col not in frame:
            frame[col] = pd.Series(dtype=object)
    return frame[base + sorted(c for c in frame.columns if c not in base)]


def _untrained_classes(tags: Mapping[str, str]) -> str:
    """``"3 Ground, 5 Vineyard"`` from a run's tags: the classes it had no training pixel for ('' if none)."""
    labels = [v.strip() for v in str(tags.get(TAG_CLASSES_WITHOUT_TRAINING, "")).split(",") if v.strip()]
    names = [v.strip() for v in str(tags.get(TAG_CLASSES_WITHOUT_TRAINING_NAMES, "")).split(";")]
    if len(names) != len(labels):
        names = [""] * len(labels)
    return ", ".join(f"{label} {name}".strip() for label, name in zip(labels, names))


def finished_runs(tracker: MLflowTracker) -> pd.DataFrame:
    """One row per FINISHED run in the tracker's experiment (see :func:`runs_frame`)."""
    return runs_frame(tracker.runs("attributes.status = 'FINISHED'"))
