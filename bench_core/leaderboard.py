"""Leaderboards read from the tracking store (never from logs).

A *board* ranks methods on one dataset, one split protocol and one profile: numbers from
different splits or profiles are never ranked together, and a request that would do so
is refused (:class:`~bench_core.errors.ConfigError`). A *board set* is what one
``bench leaderboard`` call prints: one board per (dataset, split, profile) selected.

Each row is a method (one row per distinct configuration when a method was run with
several) with test OA/AA/kappa as mean ± std over seeds and n, significance against the
rank-1 method (:mod:`bench_core.stats`), cost beside accuracy (params, FLOPs per sample,
train/inference time, throughput, device), per-class accuracy, and, in a separate group
that is never ranked, the numbers the papers report (``leaderboards/paper_numbers.toml``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bench_core.errors import ConfigError, MetricError
from bench_core.plugins import select
from bench_core.tracking import TAG_CELL_KEY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    import pandas as pd

    from bench_core.stats import Predictions
    from bench_core.tracking import MLflowTracker

BOARD_KEY = ["dataset", "split", "profile"]
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
FORMATS = ("table", "md", "csv", "json", "html")
ALPHA = 0.05

#: ``--sort`` names -> (row column, descending by default).
SORT_COLUMNS: dict[str, tuple[str, bool]] = {
    "rank": ("rank", False),
    "method": ("method", False),
    "n": ("n", True),
    "oa": ("test_oa_mean", True),
    "aa": ("test_aa_mean", True),
    "kappa": ("test_kappa_mean", True),
    "f1": ("test_f1_macro_mean", True),
    "params": ("params_total", False),
    "flops": ("flops_per_sample", False),
    "train_time": ("time_train_s", False),
    "infer_time": ("time_infer_s", False),
    "throughput": ("throughput_infer", True),
    "memory": ("mem_peak_bytes", False),
    "leakage": ("split_leakage", False),
    "p": ("p_holm", True),
    "device": ("device", False),
    "reported_oa": ("reported_oa", True),
}

_CONFIG_PREFIXES = ("train.", "model.", "data.")  # data.*: the layout and settings a scene was read with


# ----------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Shell-style patterns on dataset, split, profile and method; empty = everything."""

    datasets: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    def mask(self, runs: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the runs this selection keeps."""
        keep = np.ones(len(runs), dtype=bool)
        for column, patterns in (
            ("dataset", self.datasets), ("split", self.splits), ("profile", self.profiles), ("method", self.methods),
        ):
            if patterns and len(runs):
                values = runs[column].astype(str).tolist()
                ok = set(select(values, patterns))
                keep &= np.array([v in ok for v in values], dtype=bool)
        return keep


def parse_patterns(values: Iterable[str]) -> tuple[str, ...]:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``: repeatable, comma-separated CLI patterns."""
    out: list[str] = []
    for value in values:
        out.extend(p.strip() for p in str(value).split(",") if p.strip())
    return tuple(out)


# ----------------------------------------------------------------------------- board specs


@dataclass(frozen=True)
class BoardSpec:
    """A board set read from ``leaderboards/<name>.toml``.

    Either a grid (top-level ``datasets``/``splits``/``profiles``/``methods`` patterns:
    one board per (dataset, split, profile) found in the store) or explicit ``[[board]]``
    tables, each of which must resolve to exactly one dataset, split and profile.
    """

    name: str
    title: str
    description: str = ""
    grid: Selection | None = None
    boards: tuple[Selection, ...] = ()
    sort: str | None = None
    path: Path | None = None


_SPEC_KEYS = {"title", "description", "datasets", "splits", "profiles", "methods", "sort", "board"}
_BOARD_KEYS = {"dataset", "split", "profile", "methods", "title"}


def board_search_paths(cwd: Path | None = None) -> list[Path]:
    """Folders searched for ``<name>.toml``: ``./leaderboards`` then the repository's ``leaderboards/``."""
    here = (cwd or Path.cwd()) / "leaderboards"
    repo = Path(__file__).resolve().parents[1] / "leaderboards"
    return [here] if here.resolve() == repo.resolve() else [here, repo]


def find_board_spec(name_or_path: str, cwd: Path | None = None) -> Path:
    """Path of a board spec given a file path or a board name."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists() or "/" in name_or_path:
        if candidate.is_file():
            return candidate
        raise ConfigError(f"--board {name_or_path!r}: no such file; give a board name or an existing .toml path")
    searched = board_search_paths(cwd)
    for folder in searched:
        path = folder / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for f in searched if f.is_dir() for p in f.glob("*.toml") if p.stem != "paper_numbers"})
    raise ConfigError(
        f"--board {name_or_path!r}: no {name_or_path}.toml in {', '.join(str(f) for f in searched)}; "
        f"known boards: {', '.join(known) or 'none'} (or pass a path to a .toml file)"
    )


def _patterns(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, ())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} = {value!r}; expected a string or a list of non-empty strings")
    return tuple(value)


def _single(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A board's dataset/split/profile: one value (a pattern that must match one value in the store)."""
    value = data.get(key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        raise ConfigError(
            f"{where}: {key} = {value!r} names {len(value)} values for one board, but a board ranks "
            f"one dataset, one split protocol and one profile; write one [[board]] table per value, "
            f"or use top-level '{key}s = [...]' to get one board each"
        )
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} = {value!r}; expected one {key} name, e.g. {key} = \"...\"")
    return (value,)


def load_board_spec(path: Path) -> BoardSpec:
    """Read and validate a board spec file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"board spec {path}: cannot be read as TOML ({exc}); fix the file") from None
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(f"board spec {path}: unknown key(s) {unknown}; expected some of {sorted(_SPEC_KEYS)}")
    title = data.get("title", path.stem)
    description = data.get("description", "")
    sort = data.get("sort")
    for key, value in (("title", title), ("description", description)):
        if not isinstance(value, str):
            raise ConfigError(f"board spec {path}: {key} = {value!r}; expected a string")
    if sort is not None:
        try:
            parse_sort(str(sort))
        except ConfigError as exc:
            raise ConfigError(f"board spec {path}: sort = {sort!r}: {exc}") from None
    explicit = data.get("board", [])
    grid_keys = {"datasets", "splits", "profiles"} & set(data)
    if explicit and grid_keys:
        raise ConfigError(
            f"board spec {path}: has both [[board]] tables and top-level {sorted(grid_keys)}; "
            f"use one form: a grid (one board per dataset x split x profile) or explicit boards"
        )
    methods = _patterns(data, "methods", f"board spec {path}")
    if explicit:
        if not isinstance(explicit, list):
            raise ConfigError(f"board spec {path}: 'board' must be an array of tables ([[board]])")
        boards = []
        for i, table in enumerate(explicit, start=1):
            where = f"board spec {path}, board #{i}"
            bad = sorted(set(table) - _BOARD_KEYS)
            if bad:
                raise ConfigError(f"{where}: unknown key(s) {bad}; expected some of {sorted(_BOARD_KEYS)}")
            boards.append(
                Selection(
                    datasets=_single(table, "dataset", where),
                    splits=_single(table, "split", where),
                    profiles=_single(table, "profile", where),
                    methods=_patterns(table, "methods", where) or methods,
                )
            )
        return BoardSpec(path.stem, title, description, None, tuple(boards), sort, path)
    grid = Selection(
        datasets=_patterns(data, "datasets", f"board spec {path}"),
        splits=_patterns(data, "splits", f"board spec {path}"),
        profiles=_patterns(data, "profiles", f"board spec {path}"),
        methods=methods,
    )
    return BoardSpec(path.stem, title, description, grid, (), sort, path)


# ----------------------------------------------------------------------------- reported numbers


@dataclass(frozen=True)
class ReportedNumber:
    """What a paper reports for a method on a dataset, with the protocol it used."""

    method: str
    dataset: str
    source: str
    split: str
    oa: float | None
    aa: float | None
    kappa: float | None
    modalities: str = ""
    protocol: str = ""
    caveats: tuple[str, ...] = ()
    primary: bool = False
    runs: int | None = None

    def differences(self, split: str) -> list[str]:
        """Why these numbers are not comparable with a board on ``split`` (empty = same protocol)."""
        out = []
        if self.split != split:
            out.append(f"split {self.split} (board: {split})")
        out.extend(self.caveats)
        return out


_REPORTED_KEYS = {
    "method", "dataset", "source", "split", "oa", "aa", "kappa", "modalities", "protocol", "caveats",
    "primary", "runs",
}


def default_paper_numbers() -> Path | None:
    """``leaderboards/paper_numbers.toml`` next to the boards, if there is one."""
    for folder in board_search_paths():
        path = folder / "paper_numbers.toml"
        if path.is_file():
            return path
    return None


def load_paper_numbers(path: Path) -> list[ReportedNumber]:
    """Read and validate ``paper_numbers.toml`` (an array of ``[[reported]]`` tables)."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"paper numbers {path}: cannot be read as TOML ({exc}); fix the file") from None
    entries = data.get("reported")
    if not isinstance(entries, list):
        raise ConfigError(f"paper numbers {path}: expected [[reported]] tables, found keys {sorted(data)}")
    out = []
    for i, e in enumerate(entries, start=1):
        where = f"paper numbers {path}, entry #{i}"
        bad = sorted(set(e) - _REPORTED_KEYS)
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {bad}; expected some of {sorted(_REPORTED_KEYS)}")
        for key in ("method", "dataset", "source", "split"):
            if not isinstance(e.get(key), str) or not e[key]:
                raise ConfigError(f"{where}: {key} = {e.get(key)!r}; expected a non-empty string")
        values = {}
        for key in ("oa", "aa", "kappa"):
            v = e.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not -100 <= v <= 100):
                raise ConfigError(f"{where} ({e['method']} on {e['dataset']}): {key} = {v!r}; expected percent in [-100, 100]")
            values[key] = None if v is None else float(v)
        caveats = e.get("caveats", [])
        if not isinstance(caveats, list) or not all(isinstance(c, str) for c in caveats):
            raise ConfigError(f"{where}: caveats = {caveats!r}; expected a list of strings")
        out.append(
            ReportedNumber(
                method=e["method"], dataset=e["dataset"], source=e["source"], split=e["split"],
                modalities=str(e.get("modalities", "")), protocol=str(e.get("protocol", "")),
                caveats=tuple(caveats), primary=bool(e.get("primary", False)),
                runs=e.get("runs"), **values,
            )
        )
    return out


# ----------------------------------------------------------------------------- reading the store


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


# ----------------------------------------------------------------------------- boards


@dataclass(frozen=True)
class BoardKey:
    """What one board ranks: one dataset, one split protocol, one profile."""

    dataset: str
    split: str
    profile: str

    @property
    def title(self) -> str:
        return f"{self.dataset} · split {self.split} · profile {self.profile}"

    @property
    def slug(self) -> str:
        return "-".join("".join(ch if ch.isalnum() else "_" for ch in v) for v in (self.dataset, self.split, self.profile))

    @property
    def mlflow_filter(self) -> str:
        """The MLflow search filter that lists this board's runs in the MLflow UI."""
        return (
            f"params.dataset = '{self.dataset}' and params.split = '{self.split}' and "
            f"params.profile = '{self.profile}' and attributes.status = 'FINISHED'"
        )


@dataclass
class Board:
    """One ranked table plus its per-class table, reported numbers and notes."""

    key: BoardKey
    rows: pd.DataFrame
    class_names: list[str]
    class_keys: list[str]
    reported: list[ReportedNumber]
    runs: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    significance: str = ""
    title: str = ""


@dataclass
class BoardSet:
    """Everything one ``bench leaderboard`` call shows."""

    title: str
    boards: list[Board]
    store: str = ""
    experiment: str = ""
    description: str = ""
    generated: str = ""
    alpha: float = ALPHA
    sort: str | None = None


def parse_sort(text: str) -> tuple[str, bool | None]:
    """``"oa"``, ``"params:asc"``, ``"time_train_s:desc"`` -> (name, descending or None for the default)."""
    name, _, direction = text.partition(":")
    if direction not in ("", "asc", "desc"):
        raise ConfigError(f"--sort {text!r}: direction {direction!r}; expected COLUMN, COLUMN:asc or COLUMN:desc")
    if not name:
        raise ConfigError(f"--sort {text!r}: no column; expected one of {', '.join(SORT_COLUMNS)}")
    return name, None if not direction else direction == "desc"


def sort_rows(rows: pd.DataFrame, sort: str | None) -> pd.DataFrame:
    """Rows reordered for display by ``sort`` (default: rank). The rank itself stays by test OA."""
    if rows.empty:
        return rows
    name, descending = parse_sort(sort or "rank")
    column, default_desc = SORT_COLUMNS.get(name, (name, False))
    if column not in rows.columns:
        raise ConfigError(
            f"--sort {sort!r}: no column {name!r}; expected one of {', '.join(SORT_COLUMNS)} "
            f"or a column of the JSON rows (e.g. test_acc_<class>_mean)"
        )
    desc = default_desc if descending is None else descending
    return rows.sort_values([column, "rank"], ascending=[not desc, True], na_position="last", kind="stable").reset_index(drop=True)


def _dedupe(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the latest run per (board, method, config, seed): a re-run replaces, never adds a seed."""
    if runs.empty:
        return runs, 0
    ordered = runs.sort_values("start_time", kind="stable")
    kept = ordered.drop_duplicates(BOARD_KEY + ["method", "config_id", "seed"], keep="last")
    return kept.sort_index(), len(runs) - len(kept)


def _variant_labels(runs: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Per (method, config_id): '' when the method has one config on the board, else the differing settings."""
    labels: dict[tuple[str, str], str] = {}
    for method, group in runs.groupby("method", sort=True):
        configs = {cid: json.loads(text) for cid, text in zip(group["config_id"], group["config_json"])}
        if len(configs) == 1:
            labels[(method, next(iter(configs)))] = ""
            continue
        keys = sorted({k for c in configs.values() for k in c})
        differing = [k for k in keys if len({c.get(k) for c in configs.values()}) > 1]
        for cid, cfg in configs.items():
            text = ", ".join(f"{k}={cfg.get(k, '-')}" for k in differing)
            labels[(method, cid)] = text if len(text) <= 80 else text[:77] + "..."
    return labels


def _class_order(runs: pd.DataFrame, artifacts: ArtifactSource | None) -> tuple[list[str], list[str]]:
    """Class display names and metric keys, in label order (from a run's ``per_class.csv``)."""
    from bench_core.metrics import metric_key

    present = sorted({c[len(PER_CLASS_PREFIX):] for c in runs.columns if c.startswith(PER_CLASS_PREFIX)
                      and runs[c].notna().any()})
    if artifacts is not None and not runs.empty:
        path = artifacts.fetch(str(runs["run_id"].iloc[0]), "per_class.csv")
        if path is not None:
            import csv

            with Path(path).open(newline="") as fh:
                names = [row["class"] for row in csv.DictReader(fh) if row.get("class")]
            keys = [metric_key(n) for n in names]
            if set(keys) >= set(present):
                return names, keys
    return list(present), list(present)


def _aggregate(runs: pd.DataFrame, class_keys: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    labels = _variant_labels(runs)
    records = []
    for (method, cid), g in runs.groupby(["method", "config_id"], sort=True):
        rec: dict[str, Any] = {
            "dataset": g["dataset"].iloc[0], "split": g["split"].iloc[0], "profile": g["profile"].iloc[0],
            "method": method, "variant": labels[(method, cid)], "config_id": cid,
            "n": int(g["seed"].nunique()), "seeds": sorted(int(s) for s in g["seed"]),
        }
        for col in ACCURACY:
            vals = g[col].astype(float)
            rec[f"{col}_mean"] = float(vals.mean())
            rec[f"{col}_std"] = float(vals.std(ddof=1)) if vals.notna().sum() > 1 else math.nan
        for col in COST:
            rec[col] = float(g[col].astype(float).mean())
        for key in class_keys:
            col = PER_CLASS_PREFIX + key
            vals = g[col].astype(float) if col in g else pd.Series([math.nan])
            rec[f"{col}_mean"] = float(vals.mean())
            rec[f"{col}_std"] = float(vals.std(ddof=1)) if vals.notna().sum() > 1 else math.nan
        rec["val_fraction"] = float(g["val_fraction"].astype(float).iloc[0])  # part of the config id
        rec["device"] = ", ".join(sorted(set(map(str, g["device"]))))
        rec["method_status"] = "; ".join(sorted({str(v) for v in g["method_status"] if isinstance(v, str) and v}))
        untrained = [str(v) for v in g.get("classes_without_training", []) if isinstance(v, str) and v]
        rec["classes_without_training"] = "; ".join(sorted(set(untrained)))
        rec["seeds_without_training"] = len(untrained)
        best = g.loc[g["test_oa"].astype(float).idxmax()] if g["test_oa"].notna().any() else g.iloc[0]
        rec["best_run_id"] = str(best["run_id"])
        rec["best_seed"] = int(best["seed"])
        rec["best_run_name"] = str(best["run_name"])
        records.append(rec)
    rows = pd.DataFrame(records)
    order = rows["test_oa_mean"].rank(ascending=False, method="min", na_option="bottom")
    rows["rank"] = order.astype(int)
    return rows.sort_values(["rank", "method", "variant"], kind="stable").reset_index(drop=True)


PredictionLoader = Callable[[str], "Predictions | None"]


def _significance(
    rows: pd.DataFrame, runs: pd.DataFrame, load: PredictionLoader | None, alpha: float
) -> tuple[pd.DataFrame, str, list[str]]:
    """Test every row against rank 1; add p-value columns and the mark; return the legend."""
    from bench_core.stats import (
        WILCOXON_MIN_N,
        combine_seeds,
        holm,
        mcnemar,
        paired_correctness,
        wilcoxon_signed_rank,
    )

    rows = rows.copy()
    for col in ("p_mcnemar", "p_mcnemar_holm", "p_wilcoxon", "p_wilcoxon_holm", "p_holm"):
        rows[col] = math.nan
    rows["mcnemar_form"] = ""
    rows["test"] = ""
    rows["n_paired"] = 0
    rows["vs_best"] = ""
    notes: list[str] = []
    if rows.empty:
        return rows, "", notes
    best = rows.iloc[0]
    rows.loc[0, "vs_best"] = "best"
    others = list(range(1, len(rows)))
    if not others:
        return rows, "Only one method on this board: nothing to test.", notes

    def seed_runs(i: int) -> dict[int, pd.Series]:
        r = rows.iloc[i]
        g = runs[(runs["method"] == r["method"]) & (runs["config_id"] == r["config_id"])]
        return {int(s): row for s, row in zip(g["seed"], (g.iloc[j] for j in range(len(g))))}

    best_runs = seed_runs(0)
    label = method_label
    favours_best: dict[int, dict[str, bool]] = {i: {} for i in others}
    for i in others:
        row = rows.iloc[i]
        mine = seed_runs(i)
        common = sorted(set(best_runs) & set(mine))
        rows.loc[i, "n_paired"] = len(common)
        if not common:
            notes.append(f"{label(row)}: no seed in common with {label(best)}; not tested")
            continue
        if load is not None:
            per_seed = {}
            for s in common:
                pa, pb = load(str(best_runs[s]["run_id"])), load(str(mine[s]["run_id"]))
                if pa is None or pb is None:
                    notes.append(f"{label(row)}: seed {s} has no predictions_test.npz artifact; McNemar not used")
                    per_seed = {}
                    break
                try:
                    ca, cb = paired_correctness(pa, pb, f"{label(best)} and {label(row)} at seed {s}")
                except MetricError as exc:
                    notes.append(f"{label(row)}: {exc}")
                    per_seed = {}
                    break
                per_seed[s] = mcnemar(ca, cb)
            if per_seed:
                combined = combine_seeds(per_seed)
                rows.loc[i, "p_mcnemar"] = combined.p_value
                favours_best[i]["McNemar"] = combined.favours != "b"
                rows.loc[i, "mcnemar_form"] = "/".join(combined.methods)
        if len(common) >= WILCOXON_MIN_N:
            x = [float(best_runs[s]["test_oa"]) for s in common]
            y = [float(mine[s]["test_oa"]) for s in common]
            if all(map(math.isfinite, x + y)):
                w = wilcoxon_signed_rank(x, y)
                rows.loc[i, "p_wilcoxon"] = w.p_value
                favours_best[i]["Wilcoxon"] = w.w_plus >= w.n * (w.n + 1) / 4
    for raw, adj in (("p_mcnemar", "p_mcnemar_holm"), ("p_wilcoxon", "p_wilcoxon_holm")):
        tested = [i for i in others if not math.isnan(rows.loc[i, raw])]
        if tested:
            rows.loc[tested, adj] = holm([rows.loc[i, raw] for i in tested])
    for i in others:
        if not math.isnan(rows.loc[i, "p_mcnemar_holm"]):
            test, p = "McNemar", rows.loc[i, "p_mcnemar_holm"]
        elif not math.isnan(rows.loc[i, "p_wilcoxon_holm"]):
            test, p = "Wilcoxon", rows.loc[i, "p_wilcoxon_holm"]
        else:
            rows.loc[i, "vs_best"] = "untested"
            continue
        rows.loc[i, "test"] = test
        rows.loc[i, "p_holm"] = p
        # ">" only when the seeds both have disagree with the ranking over all seeds.
        rows.loc[i, "vs_best"] = "≈" if p >= alpha else "<" if favours_best[i][test] else ">"
    k_m = int(rows["p_mcnemar"].notna().sum())
    k_w = int(rows["p_wilcoxon"].notna().sum())
    legend = (
        f"vs best: each method against rank 1 ({label(best)}); ≈ = not significantly different at "
        f"α = {alpha:g} after Holm correction, < = significantly lower (> = significantly higher on the "
        f"seeds both have). Test used: McNemar on the "
        f"per-pixel correctness of the same test pixels, one test per seed (exact binomial form when "
        f"fewer than 25 pixels are discordant, else chi-square with continuity correction), a pair's p "
        f"being the largest per-seed p if every seed favours the same method (else 1), Holm-corrected "
        f"over the {k_m} McNemar comparison(s). Where no predictions are stored: a paired Wilcoxon "
        f"signed-rank test on test OA over seeds (n ≥ {WILCOXON_MIN_N}; shown as p Wilcoxon, Holm over "
        f"{k_w}); with 5 seeds its smallest possible p is 0.0625."
    )
    return rows, legend, notes


def _attach_reported(rows: pd.DataFrame, reported: Sequence[ReportedNumber], key: BoardKey) -> pd.DataFrame:
    rows = rows.copy()
    for col in ("reported_oa", "reported_aa", "reported_kappa"):
        rows[col] = math.nan
    rows["reported_source"] = ""
    rows["reported_protocol"] = ""
    for i, r in rows.iterrows():
        mine = [e for e in reported if e.method == r["method"] and e.dataset == key.dataset]
        if not mine:
            continue
        entry = sorted(mine, key=lambda e: (not e.primary, e.split != key.split))[0]
        rows.loc[i, ["reported_oa", "reported_aa", "reported_kappa"]] = [
            math.nan if v is None else v for v in (entry.oa, entry.aa, entry.kappa)
        ]
        rows.loc[i, "reported_source"] = entry.source
        diffs = entry.differences(key.split)
        rows.loc[i, "reported_protocol"] = "differs: " + "; ".join(diffs) if diffs else "same split, no known caveat"
    return rows


def build_board_set(
    runs: pd.DataFrame,
    selection: Selection | None = None,
    spec: BoardSpec | None = None,
    artifacts: ArtifactSource | None = None,
    reported: Sequence[ReportedNumber] = (),
    sort: str | None = None,
    significance: bool = True,
    alpha: float = ALPHA,
) -> BoardSet:
    """Boards from a frame of FINISHED runs (:func:`finished_runs`).

    ``selection`` (CLI filters) narrows ``spec``'s boards. Raises ConfigError when an
    explicit board of ``spec`` would mix datasets, splits or profiles in one ranking.
    """
    from bench_core.stats import load_predictions

    selection = selection or Selection()
    sort = sort if sort is not None else (spec.sort if spec else None)
    if sort is not None:
        parse_sort(sort)
    cli_mask = selection.mask(runs)
    groups: list[tuple[BoardKey | None, pd.DataFrame, Selection]] = []
    if spec is not None and spec.boards:
        for i, sel in enumerate(spec.boards, start=1):
            chosen = runs[sel.mask(runs) & cli_mask]
            keys = sorted({tuple(k) for k in chosen[BOARD_KEY].astype(str).itertuples(index=False)})
            if len(keys) > 1:
                _refuse_mix(keys, f"board #{i} of {spec.path or spec.name}")
            groups.append((BoardKey(*keys[0]) if keys else None, chosen, sel))
    else:
        sel = spec.grid if spec is not None and spec.grid is not None else selection
        chosen = runs[sel.mask(runs) & cli_mask]
        if not chosen.empty:
            for key_values, g in chosen.groupby(BOARD_KEY, sort=True):
                groups.append((BoardKey(*map(str, key_values)), g, sel))

    predictions: dict[str, Predictions | None] = {}

    def load(run_id: str) -> Predictions | None:
        if run_id not in predictions:
            path = artifacts.fetch(run_id, "predictions_test.npz") if artifacts is not None else None
            try:
                predictions[run_id] = load_predictions(path) if path is not None else None
            except MetricError:
                predictions[run_id] = None
        return predictions[run_id]

    boards = []
    for key, g, sel in groups:
        if key is None:
            empty_key = BoardKey(*("|".join(p) or "*" for p in (sel.datasets, sel.splits, sel.profiles)))
            boards.append(Board(empty_key, _empty_rows(), [], [], [], g, ["no FINISHED run matches this board"]))
            continue
        g, superseded = _dedupe(g)
        names, keys = _class_order(g, artifacts)
        rows = _aggregate(g, keys)
        notes = []
        if superseded:
            notes.append(f"{superseded} older run(s) of the same cell and seed were superseded by re-runs")
        if (rows["variant"] != "").any():
            notes.append("a method run with several configurations has one row per configuration (variant)")
        for _, r in rows.iterrows():
            if r.get("classes_without_training"):
                notes.append(
                    f"{r['method']}{' [' + r['variant'] + ']' if r.get('variant') else ''}: class(es) "
                    f"{r['classes_without_training']} had no training pixels in "
                    f"{r['seeds_without_training']} of {r['n']} seed(s) (run tag {TAG_CLASSES_WITHOUT_TRAINING}); "
                    f"the model never learned them, so its scores are not comparable to a split that has them"
                )
        legend = ""
        if significance:
            rows, legend, sig_notes = _significance(rows, g, load if artifacts is not None else None, alpha)
            notes.extend(sig_notes)
        mine = [e for e in reported if e.dataset == key.dataset and e.method in set(rows["method"])]
        rows = _attach_reported(rows, reported, key)
        boards.append(Board(key, sort_rows(rows, sort), names, keys, mine, g, notes, legend))
    title = spec.title if spec is not None else "Leaderboard"
    return BoardSet(
        title=title, boards=boards, description=spec.description if spec else "",
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), alpha=alpha, sort=sort,
    )


def _refuse_mix(keys: Sequence[tuple[str, ...]], where: str) -> None:
    parts = []
    for i, name in enumerate(BOARD_KEY):
        values = sorted({k[i] for k in keys})
        if len(values) > 1:
            parts.append(f"{len(values)} {name}s ({', '.join(values)})")
    raise ConfigError(
        f"{where} would rank runs of {' and '.join(parts)} in one table; a board ranks one dataset, one "
        f"split protocol and one profile. Narrow it (e.g. --profile {keys[0][2]} --split {keys[0][1]}, or "
        f"set dataset/split/profile in the spec) or drop the [[board]] form to get one board per combination"
    )


def _empty_rows() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=["rank", "method", "variant", "n"] + [f"{c}_mean" for c in ACCURACY])


# ----------------------------------------------------------------------------- formatting


def _pm(mean: float, std: float) -> str:
    if mean is None or mean != mean:
        return "-"
    return f"{mean:.2f}" if std is None or std != std else f"{mean:.2f} ± {std:.2f}"


def _int(v: Any) -> str:
    return "-" if v is None or v != v else f"{int(round(v)):,}"


def _sci(v: Any) -> str:
    return "-" if v is None or v != v else f"{v:.3g}"


def _num(v: Any, digits: int) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def format_p(v: Any) -> str:
    """A p-value for display: 3 decimals, scientific below 0.001, '<1e-16' below double precision's reach."""
    if v is None or v != v:
        return "-"
    if v < 1e-16:
        return "<1e-16"
    return f"{v:.3f}" if v >= 0.001 else f"{v:.1e}"


def method_label(row: Mapping[str, Any]) -> str:
    """Row label: the method, its variant when it has several configurations, and its status.

    The status (run tag ``bench.method.status``, from the model's ``bench_tags()``) marks a
    stand-in or an ablation, e.g. ``m3amba {STAND-IN: random CLIP weights}``, so that no
    board shows such a row under the bare name of the paper's method. A row whose runs had
    classes without a training pixel (run tag ``bench.classes_without_training``) is flagged
    ``(!no training pixels: class 3 Ground)``.
    """
    label = str(row["method"]) + (f" [{row['variant']}]" if row.get("variant") else "")
    status = row.get("method_status")
    label += f" {{{status}}}" if isinstance(status, str) and status else ""
    untrained = row.get("classes_without_training")
    return label + (f" (!no training pixels: class {untrained})" if isinstance(untrained, str) and untrained else "")


def display_rows(board: Board) -> list[dict[str, str]]:
    """The main table as strings, column name -> cell, in display order."""
    out = []
    for _, r in board.rows.iterrows():
        vs = r.get("vs_best", "")
        p = r.get("p_holm", math.nan)
        shown = format_p(p)
        sig = vs if vs in ("best", "untested", "") else f"{vs} (p{'' if shown.startswith('<') else '='}{shown}, {r['test']})"
        out.append(
            {
                "rank": str(r["rank"]),
                "method": method_label(r),
                "n": str(r["n"]),
                "OA (%)": _pm(r["test_oa_mean"], r["test_oa_std"]),
                "AA (%)": _pm(r["test_aa_mean"], r["test_aa_std"]),
                "kappa (%)": _pm(r["test_kappa_mean"], r["test_kappa_std"]),
                "vs best": sig,
                "p Wilcoxon": format_p(r.get("p_wilcoxon_holm", math.nan)),
                "params": _int(r.get("params_total")),
                "FLOPs/sample": _sci(r.get("flops_per_sample")),
                "train (s)": _num(r.get("time_train_s"), 1),
                "infer (s)": _num(r.get("time_infer_s"), 2),
                "px/s": _int(r.get("throughput_infer")),
                "leakage test / val (%)": f"{_num(r.get('split_leakage'), 1)} / {_num(r.get('split_val_leakage'), 1)}",
                "device": str(r.get("device", "")),
                "reported OA (paper, not ranked)": _reported_cell(r),
            }
        )
    return out


def _reported_cell(r: Mapping[str, Any]) -> str:
    oa = r.get("reported_oa", math.nan)
    if oa is None or oa != oa:
        return "-"
    protocol = str(r.get("reported_protocol", ""))
    flag = " (protocol differs)" if protocol.startswith("differs") else ""
    return f"{oa:.2f}{flag}"


def per_class_rows(board: Board) -> list[dict[str, str]]:
    """Per-class accuracy (%) mean ± std over seeds, one row per method."""
    out = []
    for _, r in board.rows.iterrows():
        row = {"method": method_label(r), "n": str(r["n"])}
        for name, key in zip(board.class_names, board.class_keys):
            row[name] = _pm(r.get(f"{PER_CLASS_PREFIX}{key}_mean"), r.get(f"{PER_CLASS_PREFIX}{key}_std"))
        out.append(row)
    return out


def reported_rows(board: Board) -> list[dict[str, str]]:
    """The papers' numbers matched to this board, with what differs from its protocol."""
    out = []
    fractions = sorted({float(v) for v in board.rows.get("val_fraction", []) if v == v and v > 0})
    trained_on = [
        f"the harness trains on {100 * (1 - v):g} % of the split's training pixels and validates on the rest "
        f"(val_fraction {v:g}; --val-fraction 0 trains on all of them, as the papers do)"
        for v in fractions
    ]
    for e in board.reported:
        diffs = e.differences(board.key.split) + trained_on
        out.append(
            {
                "method": e.method,
                "source": e.source,
                "modalities": e.modalities or "-",
                "split": e.split,
                "OA (%)": _num(e.oa, 2),
                "AA (%)": _num(e.aa, 2),
                "kappa (%)": _num(e.kappa, 2),
                "protocol": e.protocol or "-",
                "differs from this board": "; ".join(diffs) if diffs else "no known difference",
            }
        )
    return out


def _md_table(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return "_(no rows)_\n"
    cols = list(rows[0])
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _text_table(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return "(no rows)\n"
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    line = lambda cells: "  ".join(str(v).ljust(w) for v, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(cols), line("-" * w for w in widths)] + [line([r[c] for c in cols]) for r in rows]) + "\n"


def _board_header(board: Board) -> list[str]:
    seeds = sorted({s for ss in board.rows.get("seeds", []) for s in ss}) if not board.rows.empty else []
    return [f"Ranked by test OA, mean ± std over seeds (n per row; seeds {seeds or '-'}). "
            f"Cost columns are means over the same runs."]


def to_markdown(board_set: BoardSet) -> str:
    """All boards as Markdown: main table, per-class table, reported numbers, legend."""
    parts = [f"# {board_set.title}\n"]
    if board_set.description:
        parts.append(board_set.description.strip() + "\n")
    if board_set.store:
        parts.append(f"Store: `{board_set.store}`, experiment `{board_set.experiment}`; generated {board_set.generated}.\n")
    if not board_set.boards:
        parts.append("_No FINISHED runs match; run `bench run` first._\n")
    for b in board_set.boards:
        parts.append(f"## {b.key.title}\n")
        parts.extend(line + "\n" for line in _board_header(b))
        parts.append(_md_table(display_rows(b)))
        if b.significance:
            parts.append(f"_{b.significance}_\n")
        parts.extend(f"- note: {n}\n" for n in b.notes)
        parts.append(f"\nMLflow UI filter for these runs: `{b.key.mlflow_filter}`\n")
        if b.class_names:
            parts.append(f"### {b.key.dataset}: per-class accuracy (%), mean ± std over seeds\n")
            parts.append(_md_table(per_class_rows(b)))
        parts.append(f"### {b.key.dataset}: reported by the papers (not ranked; not comparable unless the protocol matches)\n")
        parts.append(_md_table(reported_rows(b)) if b.reported else "_No paper reports numbers for these methods on this dataset._\n")
    return "\n".join(parts)


def to_text(board_set: BoardSet) -> str:
    """Plain-text rendering for a terminal."""
    parts = [board_set.title, "=" * len(board_set.title), ""]
    if not board_set.boards:
        parts.append("No FINISHED runs match; run `bench run` first.")
    for b in board_set.boards:
        parts += [b.key.title, "-" * len(b.key.title), *_board_header(b), _text_table(display_rows(b))]
        if b.significance:
            parts.append(b.significance)
        parts += [f"note: {n}" for n in b.notes]
        if b.class_names:
            parts += ["", "per-class accuracy (%):", _text_table(per_class_rows(b))]
        if b.reported:
            parts += ["reported by the papers (not ranked):", _text_table(reported_rows(b))]
        parts.append("")
    return "\n".join(parts) + "\n"


_JSON_DROP = {"config_json"}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def board_records(board: Board) -> list[dict[str, Any]]:
    """The board's rows as plain dicts (raw numbers, NaN -> None)."""
    return [{k: _clean(v) for k, v in r.items() if k not in _JSON_DROP} for r in board.rows.to_dict("records")]


def to_json(board_set: BoardSet) -> str:
    """Structured JSON: ``{"title", "store", ..., "boards": [{"dataset", "split", "profile", "rows", ...}]}``."""
    doc = {
        "title": board_set.title,
        "description": board_set.description,
        "store": board_set.store,
        "experiment": board_set.experiment,
        "generated": board_set.generated,
        "alpha": board_set.alpha,
        "boards": [
            {
                "dataset": b.key.dataset,
                "split": b.key.split,
                "profile": b.key.profile,
                "mlflow_filter": b.key.mlflow_filter,
                "significance": b.significance,
                "notes": b.notes,
                "classes": b.class_names,
                "rows": board_records(b),
                "reported": [
                    {**{k: _clean(v) for k, v in e.__dict__.items()}, "differences": e.differences(b.key.split)}
                    for e in b.reported
                ],
            }
            for b in board_set.boards
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def to_csv(board_set: BoardSet) -> str:
    """One flat CSV of every board's rows (raw numbers; the board is named by dataset, split, profile)."""
    import pandas as pd

    frames = [pd.DataFrame(board_records(b)) for b in board_set.boards if not b.rows.empty]
    if not frames:
        return ",".join(["dataset", "split", "profile", "rank", "method", "n"]) + "\n"
    frame = pd.concat(frames, ignore_index=True)
    frame["seeds"] = frame["seeds"].map(lambda s: " ".join(map(str, s)) if isinstance(s, list) else s)
    first = ["dataset", "split", "profile", "rank", "method", "variant", "n"]
    return frame[first + [c for c in frame.columns if c not in first]].to_csv(index=False)


def format_board_set(board_set: BoardSet, fmt: str, artifacts: ArtifactSource | None = None) -> str:
    """Render as ``table``, ``md``, ``csv``, ``json`` or ``html`` (one self-contained page)."""
    if fmt == "md":
        return to_markdown(board_set)
    if fmt == "csv":
        return to_csv(board_set)
    if fmt == "json":
        return to_json(board_set)
    if fmt == "html":
        from bench_core.report_html import render_html

        return render_html(board_set, artifacts)
    if fmt == "table":
        return to_text(board_set)
    raise ConfigError(f"--format {fmt!r}; expected one of {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------- Pareto


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """Mask of points no other point beats: lower-or-equal cost and higher-or-equal accuracy, one strictly.

    Points with a NaN coordinate are never on the front.
    """
    c = np.asarray(cost, dtype=np.float64)
    a = np.asarray(accuracy, dtype=np.float64)
    if c.shape != a.shape or c.ndim != 1:
        raise MetricError(f"cost and accuracy have shapes {c.shape} and {a.shape}; expected two 1-D vectors of one length")
    ok = np.isfinite(c) & np.isfinite(a)
    front = np.zeros(c.size, dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))
        front[i] = not dominated.any()
    return front
