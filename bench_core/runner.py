"""The benchmark grid: cells, their stable keys, and running them with failure isolation.

A *cell* is (method, profile + resolved config, dataset, split, seed). ``run_grid``
expands the command line into cells, skips those already FINISHED in the tracking
store, and runs the others one by one: a cell whose plugin raises is recorded as
FAILED with its traceback and the grid goes on; Ctrl-C records the running cell as
KILLED and stops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bench_core
from bench_core.cells import Cell, CellResult
from bench_core.config import deep_merge
from bench_core.errors import ConfigError, DatasetError, RegistryError
from bench_core.pipeline import (
    RunLifecycle,
    build_and_fit,
    cell_metrics,
    dataset_context,
    evaluate_test,
    fitted_tags,
    load_scene,
    log_dataset,
    make_cell_split,
    method_tags,
    prepare,
    stage_cache_dir,
    write_cell_artifacts,
)
from bench_core.plugins import PluginHost, select
from bench_core.specs import DatasetSpec, MethodSpec, SplitSpec

if TYPE_CHECKING:
    from bench_core.scene import Scene
    from bench_core.splits import Split
    from bench_core.tracking import Tracker

log = logging.getLogger("bench.runner")


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class GridRequest:
    """What ``bench run`` was asked to do."""

    plugins: Sequence[str] = ("all",)
    datasets: Sequence[str] = ("synthetic",)
    splits: Sequence[str] = ("official",)
    seeds: Sequence[int] = (0,)
    profile: str | None = None
    val_fraction: float = 0.1
    val_carve: str = "auto"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    method_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``{method: overrides}`` for that method's cells only, on top of ``overrides``
    (``--set bdgf:model.ddpm_epochs=1``)."""
    rerun: bool = False
    device: str = "auto"
    data_dir: Path | None = None


def expand_grid(host: PluginHost, request: GridRequest) -> list[Cell]:
    """Cells for ``plugins x datasets x splits x seeds``; raises RegistryError/ConfigError on bad names."""
    method_names = _select_methods(host, request.plugins)
    failed_plugins = _select_failed_plugins(host, request.plugins)
    if not method_names and not failed_plugins:
        raise RegistryError(
            f"--plugins {','.join(request.plugins)!r} matches no method; registered methods: "
            f"{host.methods.names() or 'none'} (`bench plugins` lists them)"
        )
    strays = sorted(set(request.method_overrides) - set(method_names))
    if strays:
        raise ConfigError(
            f"--set {strays[0]}:...: method {strays[0]!r} is not in this grid (its methods: "
            f"{', '.join(method_names) or 'none'}); fix the name or add the method to --plugins"
        )
    datasets = [host.datasets.get(d) for d in request.datasets]  # raises on unknown names
    splits = [SplitSpec.parse(s, request.val_fraction, request.val_carve) for s in request.splits]
    for split in splits:
        protocol = host.splits.get(split.protocol)
        if protocol.check_argument is not None:  # per-class:-3 stops here, before any cell runs
            protocol.check_argument(split.argument)
    cells: list[Cell] = []
    for dspec in datasets:
        profile = request.profile or dspec.recommended_profile
        source = "cli" if request.profile else "dataset-recommended"
        fingerprint = dataset_fingerprint(host, dspec, request.data_dir)
        for split in splits:
            for seed in request.seeds:
                for name in method_names:
                    spec = host.methods.get(name)
                    plugin = host.methods.plugin_of(name)
                    info = host.plugins[plugin]
                    config = spec.resolve(profile, method_overrides(request, name))
                    cells.append(
                        Cell(
                            method=name, profile=profile, dataset=dspec.name, split=split, seed=seed,
                            plugin=plugin, plugin_dist=info.distribution, plugin_version=info.version,
                            config=config, profile_source=source, dataset_fingerprint=fingerprint,
                        )
                    )
                for plugin in failed_plugins:
                    info = host.plugins[plugin]
                    cells.append(
                        Cell(
                            method=plugin, profile=profile, dataset=dspec.name, split=split, seed=seed,
                            plugin=plugin, plugin_dist=info.distribution, plugin_version=info.version,
                            profile_source=source, dataset_fingerprint=fingerprint, load_error=info.error,
                        )
                    )
    return cells


def method_overrides(request: GridRequest, method: str) -> dict[str, Any]:
    """The overrides of ``method``'s cells: the grid's, then the method's own on top."""
    return deep_merge(request.overrides, request.method_overrides.get(method, {}))


def _select_methods(host: PluginHost, patterns: Sequence[str]) -> list[str]:
    """Methods named directly or registered by a named plugin (shell-style patterns)."""
    by_method = set(select(host.methods.names(), patterns))
    plugins = set(select(host.plugins, patterns))
    by_plugin = {m for m in host.methods.names() if host.methods.plugin_of(m) in plugins}
    return sorted(by_method | by_plugin)


def _select_failed_plugins(host: PluginHost, patterns: Sequence[str]) -> list[str]:
    """Plugins that failed to load and were asked for: their cells fail visibly.

    With ``all``, only plugins that registered nothing at all count (a broken dataset-only
    plugin cannot be told apart, so it fails cells too: a broken install must be seen).
    """
    failed = [n for n, info in host.plugins.items() if info.error]
    return select(failed, patterns)


MISSING_DATA = "missing"
"""Data fingerprint of a dataset whose files are not found: no FINISHED run has it, so its cells run (and fail)."""


def dataset_fingerprint(host: PluginHost, spec: DatasetSpec, data_dir: Path | None = None) -> str:
    """The data part of the cell key: what the cells of ``spec`` would be computed from, known before loading.

    * A loader with ``fingerprint(context)`` (every :class:`~bench_core.data.RealDataset`):
      the digest of the files it would load for ``data_dir`` (found as the loader finds them),
      their sha256, layout, loader version and normalisation, not where they are. Other files,
      an empty or a zero-byte copy give another key, so no stale result is reused; the same
      files anywhere give the same key. Files not found give :data:`MISSING_DATA` and their
      cells run and fail with the loader's message (never "already FINISHED").
    * Generated data (no files): the generator plugin's distribution and version.
    * Another loader with files: the spec's checksums, the normalisation and the data folder asked for.
    """
    loader_fingerprint = getattr(spec.load, "fingerprint", None)
    if callable(loader_fingerprint):
        try:
            return str(loader_fingerprint(dataset_context(data_dir)).digest)
        except (DatasetError, OSError) as exc:  # the load fails the same way, cell by cell
            log.info("dataset %r: no data to fingerprint (%s)", spec.name, str(exc).splitlines()[0])
            return MISSING_DATA
    plugin = host.plugins[host.datasets.plugin_of(spec.name)]
    parts = [f"{f.name}:{f.sha256}" for f in spec.files] or [f"{plugin.distribution}=={plugin.version}"]
    if spec.files:  # real data: the normalisation chosen by BENCH_NORMALISATION changes the inputs
        from bench_core.data.normalise import resolve_normalisation

        parts.append(f"normalisation={resolve_normalisation()}")
        parts.append(f"data_dir={Path(data_dir).resolve() if data_dir is not None else ''}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def data_params(scene: Scene) -> dict[str, str]:
    """Run params that say which data a real dataset's scene was built from: ``data.layout`` (the
    distribution read) and ``data.<name>`` for each entry of ``scene.metadata["run_params"]``
    (e.g. which rasters form X, whether the published facts were verified)."""
    meta = scene.metadata
    out = {"data.layout": str(meta["layout"])} if meta.get("layout") else {}
    extra = meta.get("run_params")
    if isinstance(extra, Mapping):
        out.update({f"data.{k}": str(v) for k, v in extra.items()})
    return out


def check_loaded_data(spec: DatasetSpec, cell: Cell, scene: Scene) -> None:
    """Raise :class:`DatasetError` if the loaded scene was not built from the files the cell key names."""
    fingerprint_of = getattr(spec.load, "fingerprint_of", None)
    if not callable(fingerprint_of):
        return
    used = fingerprint_of(scene)
    if used is not None and used.digest != cell.dataset_fingerprint:
        raise DatasetError(
            f"dataset {spec.name!r}: the scene was built from files (in {used.folder}) whose fingerprint "
            f"{used.digest} is not the {cell.dataset_fingerprint!r} the cell key was made from: the files "
            f"changed or appeared while the grid ran. Run the command again (the key is then taken anew)"
        )


# ----------------------------------------------------------------------------- progress


class Reporter:
    """Plain progress lines (CI, pipes); :class:`RichReporter` draws bars on a terminal."""

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.echo = echo

    def grid_started(self, total: int, skipped: int) -> None:
        self.echo(f"{total} cell(s): {total - skipped} to run, {skipped} already FINISHED (skipped)")

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        self.echo(f"[{index}/{total}] {cell.display_id} ...")

    def epoch(self, cell: Cell, epoch: int, total: int, metrics: Mapping[str, float]) -> None:
        pass

    def warn(self, cell: Cell, message: str) -> None:
        """A problem of a running cell that does not stop it (also logged and tagged on the run)."""
        self.echo(f"warning: {cell.display_id}: {message}")

    def cell_finished(self, index: int, total: int, cell: Cell, result: CellResult) -> None:
        oa = result.metrics.get("test_oa")
        detail = f" test_oa={oa:.2f}" if oa is not None else ""
        if result.error:
            detail += f" ({result.error.strip().splitlines()[-1][:160]})"
        self.echo(f"[{index}/{total}] {cell.display_id} {result.status}{detail}")

    def close(self) -> None:
        pass


class RichReporter(Reporter):
    """Progress bars for cells and epochs on an interactive terminal."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        super().__init__(console.print)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self.progress.start()
        self.cells_task = self.progress.add_task("cells", total=0)
        self.epoch_task = self.progress.add_task("epochs", total=0, visible=False)

    def grid_started(self, total: int, skipped: int) -> None:
        super().grid_started(total, skipped)
        self.progress.update(self.cells_task, total=total, completed=skipped)

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        self.progress.update(self.epoch_task, description=cell.display_id, completed=0, visible=True)

    def epoch(self, cell: Cell, epoch: int, total: int, metrics: Mapping[str, float]) -> None:
        self.progress.update(self.epoch_task, total=total, completed=epoch)

    def cell_finished(self, index: int, total: int, cell: Cell, result: CellResult) -> None:
        super().cell_finished(index, total, cell, result)
        self.progress.advance(self.cells_task)

    def close(self) -> None:
        self.progress.stop()


# ----------------------------------------------------------------------------- running


@dataclass
class GridOutcome:
    """Summary of one ``run_grid`` call."""

    cells: list[Cell]
    results: dict[str, CellResult]
    interrupted: bool = False

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if self.results.get(c.key, CellResult("?")).status != "FINISHED"]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


def plan_grid(host: PluginHost, request: GridRequest, tracker: Tracker) -> tuple[GridOutcome, list[Cell]]:
    """The grid's outcome so far (cells already FINISHED in ``tracker`` recorded as skipped, none
    with ``--rerun``) and the cells still to run, in grid order."""
    cells = expand_grid(host, request)
    done = set() if request.rerun else tracker.finished_cell_keys()
    outcome = GridOutcome(cells=cells, results={})
    for c in cells:
        if c.key in done:
            outcome.results[c.key] = CellResult("FINISHED", skipped=True)
    return outcome, [c for c in cells if c.key not in done]


def run_grid(
    host: PluginHost,
    request: GridRequest,
    tracker: Tracker,
    reporter: Reporter | None = None,
) -> GridOutcome:
    """Run every cell of the request that is not already FINISHED in ``tracker``."""
    reporter = reporter or Reporter()
    outcome, todo = plan_grid(host, request, tracker)
    cells = outcome.cells
    reporter.grid_started(len(cells), len(cells) - len(todo))
    scenes: dict[str, Scene | BaseException] = {}
    try:
        for i, cell in enumerate(todo, start=len(cells) - len(todo) + 1):
            reporter.cell_started(i, len(cells), cell)
            result = run_cell(host, cell, tracker, request, scenes, reporter)
            outcome.results[cell.key] = result
            reporter.cell_finished(i, len(cells), cell, result)
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        reporter.close()
    return outcome


def _load_scene(host: PluginHost, name: str, request: GridRequest, cache: dict[str, Any]) -> Scene:
    """Load each dataset once per grid; a dataset that fails to load fails each of its cells."""
    if name not in cache:
        try:
            cache[name] = load_scene(host.datasets.get(name), request.data_dir)
        except Exception as exc:  # re-raised for every cell of this dataset
            cache[name] = exc
    value = cache[name]
    if isinstance(value, BaseException):
        raise value
    return value


def git_sha() -> str | None:
    """Commit of the harness source, when it runs from a git checkout."""
    here = Path(bench_core.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def run_cell(
    host: PluginHost,
    cell: Cell,
    tracker: Tracker,
    request: GridRequest,
    scenes: dict[str, Any] | None = None,
    reporter: Reporter | None = None,
) -> CellResult:
    """Run one cell into one tracked run; never raises except KeyboardInterrupt."""
    from bench_core.timing import resolve_device

    scenes = {} if scenes is None else scenes
    reporter = reporter or Reporter(lambda _msg: None)
    tags = {
        "bench.cell_key": cell.key,
        "bench.display_id": cell.display_id,
        "bench.plugin": cell.plugin,
        "bench.plugin_dist": str(cell.plugin_dist),
        "bench.plugin_version": str(cell.plugin_version),
        "bench.version": bench_core.__version__,
        "bench.profile_source": cell.profile_source,
        "bench.dataset_fingerprint": cell.dataset_fingerprint,
    }
    sha = git_sha()
    if sha:
        tags["bench.git_sha"] = sha
    description = (
        f"{cell.method} ({cell.profile} profile) on {cell.dataset}, split {cell.split.display}, "
        f"seed {cell.seed}. Test pixels scored once each; model chosen without the test split."
    )
    result = CellResult("RUNNING")
    life = RunLifecycle(tracker, cell.display_id, tags, description, suppress=True)
    try:
        with life:
            result.run_id = life.run.run_id
            params: dict[str, object] = {
                "method": cell.method,
                "profile": cell.profile,
                "dataset": cell.dataset,
                "split": cell.split.display,
                "seed": cell.seed,
                "seed_train": cell.train_seed,
                "val_fraction": cell.split.val_fraction,
                "val_carve": cell.split.val_carve,
            }
            if cell.config is not None:
                params.update(cell.config.to_params())
            life.run.log_params(params)
            host.cell_started(cell)
            if cell.load_error is not None:
                raise RegistryError(cell.load_error)
            device = resolve_device(request.device)
            life.run.set_tags({"bench.device": str(device)})
            result.metrics = _execute(host, cell, request, scenes, life, device, reporter)
    finally:
        if life.status != "RUNNING":  # the run was started and is now closed
            result.status, result.error = life.status, life.error
            host.cell_finished(cell, result)
    return result


def _execute(
    host: PluginHost,
    cell: Cell,
    request: GridRequest,
    scenes: dict[str, Any],
    life: RunLifecycle,
    device: Any,
    reporter: Reporter,
) -> dict[str, float]:
    """The cell pipeline: load, split, prepare, build and fit, evaluate once on test, record."""
    from bench_core.timing import PeakMemory, environment
    from bench_core.training import Trainer

    run = life.run
    spec: MethodSpec = host.methods.get(cell.method)
    assert cell.config is not None
    config = cell.config
    scene = _load_scene(host, cell.dataset, request, scenes)
    check_loaded_data(host.datasets.get(cell.dataset), cell, scene)
    patch = spec.leakage_window(config.train)
    split = make_cell_split(scene, cell.split, host.splits.get(cell.split.protocol), cell.seed, patch)
    _warn_classes_without_training(cell, scene, split, run, reporter)
    data = prepare(spec, config, scene, split.train, split.val, cell.train_seed)
    run.set_tags({"bench.val_carve": split.val_carve, "bench.leakage_window": str(split.patch_size)})
    env = environment(device)
    run.set_tags({f"bench.env.{k}": v for k, v in env.items()})
    # Checksums of the files the scene was built from (real datasets).
    run.set_tags({f"bench.data_sha256.{name}": sha for name, sha in scene.metadata.get("sha256", {}).items()})
    if scene.metadata.get("source_dir"):
        run.set_tags({"bench.data_source_dir": str(scene.metadata["source_dir"])[:4000]})
    log_dataset(run, host.datasets.get(cell.dataset), scene, cell.dataset_fingerprint, cell.split.display)
    run.log_params({"normalisation": scene.metadata.get("normalisation", "as provided by the dataset")})
    run.log_params(data_params(scene))
    log.info(
        "split %s: %d train, %d val (%s carve), %d test pixels; leakage %.4f (test), %.4f (validation) "
        "for %dx%d windows",
        cell.split.display, split.train.size, split.val.size, split.val_carve, split.num_test, split.leakage,
        split.val_leakage, patch, patch,
    )

    def on_epoch_end(epoch: int, values: Mapping[str, float]) -> None:
        # Per-epoch curves get their own names (percent), so the final `val_oa` stays the
        # value MLflow shows as latest.
        curves = {k: v for k, v in values.items() if k not in ("epoch", "val_oa")}  # incl. the model's epoch_metrics
        if "val_oa" in values:
            curves["epoch_val_oa"] = 100.0 * values["val_oa"]
        run.log_metrics(curves, step=epoch)
        reporter.epoch(cell, epoch, config.train.epochs, values)

    trainer = Trainer(device=device, seed=cell.train_seed, on_epoch_end=on_epoch_end,
                      stage_seed=cell.seed, stage_cache_dir=stage_cache_dir())
    with PeakMemory(device) as peak:
        fitted = build_and_fit(data, trainer, on_built=lambda model: run.set_tags(method_tags(model, device)))
        run.set_tags(fitted_tags(fitted))
        test = evaluate_test(fitted, data, split)
    metrics = cell_metrics(data, split, fitted, test, peak.peak_bytes)
    run.log_metrics(metrics)
    run.log_params(fitted.fit.optimizer_params)
    run.set_tags({"bench.stop_reason": fitted.fit.stop_reason, "bench.mem_kind": peak.kind})
    write_cell_artifacts(
        life.out, cell.display_id, data, split, fitted, test, {"cell_key": cell.key, "environment": env}
    )
    return metrics


def classes_without_training(scene: Scene, split: Split) -> list[tuple[int, str, int]]:
    """``(label, class name, test pixels)`` of each class with no training pixel (validation carved out)."""
    import numpy as np

    counts = split.class_counts(scene.labels, num_classes=scene.num_classes)
    return [(int(k) + 1, scene.class_names[k], int(counts["test"][k])) for k in np.flatnonzero(counts["train"] == 0)]


def _warn_classes_without_training(cell: Cell, scene: Scene, split: Split, run: Any, reporter: Reporter) -> None:
    """Warn (log, reporter line) and tag the run when a class has no training pixel; the cell goes on."""
    from bench_core.leaderboard import (
        TAG_CLASSES_WITHOUT_TRAINING,
        TAG_CLASSES_WITHOUT_TRAINING_NAMES,
    )

    missing = classes_without_training(scene, split)
    if not missing:
        return
    listed = ", ".join(f"{label} ({name}, {n_test} test pixels)" for label, name, n_test in missing)
    message = (
        f"{len(missing)} class(es) without training pixels after the validation carve: {listed}; the model "
        f"never trains on them, so their test pixels are scored as errors or chance hits. Use a split with "
        f"training pixels for every class (e.g. per-class:N) or a lower --val-fraction"
    )
    log.warning("dataset %s, split %s, seed %d: %s", cell.dataset, cell.split.display, cell.seed, message)
    reporter.warn(cell, message)
    run.set_tags({
        TAG_CLASSES_WITHOUT_TRAINING: ",".join(str(label) for label, _, _ in missing),
        TAG_CLASSES_WITHOUT_TRAINING_NAMES: "; ".join(name for _, name, _ in missing)[:4000],
    })


def summary_rows(outcome: GridOutcome) -> list[dict[str, Any]]:
    """One row per cell for the end-of-run table."""
    rows = []
    for cell in outcome.cells:
        res = outcome.results.get(cell.key)
        status = "not run" if res is None else ("skipped" if res.skipped else res.status)
        m = res.metrics if res else {}
        rows.append(
            {
                "cell": cell.display_id,
                "status": status,
                "test_oa": m.get("test_oa"),
                "test_aa": m.get("test_aa"),
                "test_kappa": m.get("test_kappa"),
                "time_train_s": m.get("time_train_s"),
            }
        )
    return rows


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["train.epochs=3", "model.width=16"]`` -> ``{"train": {"epochs": 3}, "model": {"width": 16}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        _set_override(out, item, item)
    return out


def parse_grid_overrides(items: Iterable[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``bench run --set``: ``SECTION.KEY=VALUE`` for every cell, ``METHOD:SECTION.KEY=VALUE`` for
    that method's cells only. Returns (the grid's overrides, ``{method: its overrides}``)."""
    common: dict[str, dict[str, Any]] = {}
    per_method: dict[str, dict[str, Any]] = {}
    for item in items:
        method, colon, _ = item.partition("=")[0].partition(":")
        if not colon:
            _set_override(common, item, item)
        elif not method or any(c in method for c in "*?[, "):
            raise ConfigError(
                f"--set {item!r}: expected METHOD:SECTION.KEY=VALUE with one method's name before "
                f"the colon, e.g. --set bdgf:model.ddpm_epochs=1"
            )
        else:
            _set_override(per_method.setdefault(method, {}), item[len(method) + 1:], item)
    return common, per_method


def _set_override(out: dict[str, Any], assignment: str, item: str) -> None:
    """Put ``SECTION.KEY=VALUE`` (``item`` as the user wrote it, for the error) into ``out``."""
    key, sep, raw = assignment.partition("=")
    section, dot, name = key.partition(".")
    if not sep or not dot or section not in ("train", "model") or not name:
        raise ConfigError(
            f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION 'train' or 'model', "
            f"e.g. --set train.epochs=3"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    target = out.setdefault(section, {})
    parts = name.split(".")
    for p in parts[:-1]:
        target = target.setdefault(p, {})
    target[parts[-1]] = value