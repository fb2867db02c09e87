"""One cell in small named steps, shared by ``bench run``, ``bench tune`` and the conformance checks.

    load_scene -> make_cell_split -> prepare -> build_and_fit -> evaluate_test -> record_cell

* ``bench run`` (:func:`bench_core.runner.run_cell`) runs every step inside a
  :class:`RunLifecycle`.
* ``bench tune`` stops after :func:`build_and_fit` and scores the validation pixels
  (:func:`score_validation`); it never reaches :func:`evaluate_test`, the only step that
  opens the test split.
* The conformance checks (:mod:`bench_core.testing`) call :func:`prepare` and
  :func:`build_and_fit` on their tiny scene.

The patch/crop size is resolved once, by :meth:`MethodSpec.resolve` into
``config.train.patch_size``, and read from there by every step.
"""

from __future__ import annotations

import io
import logging
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from bench_core.errors import ConfigError, DatasetError, ModelOutputError
from bench_core.process import Terminated
from bench_core.scene import Scene, SceneInfo
from bench_core.specs import (
    DatasetContext,
    DatasetSpec,
    MethodSpec,
    ResolvedConfig,
    SplitProtocol,
    SplitSpec,
)

if TYPE_CHECKING:
    import torch

    from bench_core.metrics import Scores
    from bench_core.splits import Split
    from bench_core.tracking import RunHandle, Tracker
    from bench_core.training import FitResult, TrainData, Trainer

log = logging.getLogger("bench.pipeline")

METHOD_TAG_PREFIX = "bench.method."
"""Run tags a model reports through ``bench_tags()`` are logged under this prefix."""


# ----------------------------------------------------------------------------- run lifecycle


class RunLifecycle:
    """One tracked run from start to a closed status, as a context manager.

    ``with RunLifecycle(tracker, name, tags, description) as life:`` starts the run; the
    body logs into ``life.run`` and writes artifacts into the folder ``life.out``. On
    exit the run is closed exactly once:

    * ``FINISHED`` when the body returned and every artifact was stored; a failure to
      store them turns it into ``FAILED`` (a run is never FINISHED with missing artifacts);
    * ``KILLED`` for ``KeyboardInterrupt`` (Ctrl-C, and SIGTERM as
      :class:`~bench_core.process.Terminated`; tag ``bench.interrupted`` says which) and
      the exception types in ``killed``;
    * ``FAILED`` for any other exception, with ``traceback.txt`` and the tag ``bench.error``.

    ``before_end(life)`` runs just before the run is closed (``life.status`` and
    ``life.exception`` are set), to add last tags. ``capture_logs`` records the ``bench``
    loggers (INFO and up) into ``log.txt``. With ``suppress=True`` ordinary exceptions are
    swallowed (the grid goes on); ``KeyboardInterrupt`` always propagates.
    """

    def __init__(
        self,
        tracker: Tracker,
        name: str,
        tags: Mapping[str, str],
        description: str = "",
        *,
        killed: tuple[type[BaseException], ...] = (),
        capture_logs: bool = True,
        suppress: bool = False,
        before_end: Callable[[RunLifecycle], None] | None = None,
    ) -> None:
        self.tracker = tracker
        self.name = name
        self.tags = dict(tags)
        self.description = description
        self.killed = (KeyboardInterrupt, *killed)
        self.capture_logs = capture_logs
        self.suppress = suppress
        self.before_end = before_end
        self.status = "RUNNING"
        self.error: str | None = None
        self.exception: BaseException | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._handler: logging.Handler | None = None
        self._buffer = io.StringIO()
        self._previous_level = logging.NOTSET

    @property
    def run(self) -> RunHandle:
        return self._run

    @property
    def out(self) -> Path:
        """Folder whose files become the run's artifacts when it closes."""
        assert self._tmp is not None, "RunLifecycle.out is only available inside the with block"
        return Path(self._tmp.name)

    def __enter__(self) -> RunLifecycle:
        self._run = self.tracker.start_run(self.name, self.tags, self.description)
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-run-")
        if self.capture_logs:
            self._handler = logging.StreamHandler(self._buffer)
            self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root = logging.getLogger("bench")
            root.addHandler(self._handler)
            self._previous_level = root.level
            root.setLevel(logging.INFO)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        assert self._tmp is not None
        out = self.out
        self.exception = exc
        if exc is None:
            self.status = "FINISHED"
        else:
            self.status = "KILLED" if isinstance(exc, self.killed) else "FAILED"
            if isinstance(exc, Terminated):  # SIGTERM: where it stopped is worth keeping
                self.error = f"{exc} (timeout, scheduler or docker stop)"
                (out / "traceback.txt").write_text("".join(traceback.format_exception(exc_type, exc, tb)))
            elif isinstance(exc, KeyboardInterrupt):
                self.error = "interrupted (Ctrl-C)"
                (out / "traceback.txt").write_text("KeyboardInterrupt: interrupted by the user\n")
            else:
                self.error = f"{type(exc).__name__}: {exc}"
                (out / "traceback.txt").write_text("".join(traceback.format_exception(exc_type, exc, tb)))
            if self.status == "FAILED":
                log.error("run %s failed: %s", self.name, self.error)
        try:
            if self.status == "FAILED" and self.error:
                self._run.set_tags({"bench.error": self.error[:4000]})
            elif isinstance(exc, KeyboardInterrupt) and self.error:
                self._run.set_tags({"bench.interrupted": self.error})
            self._detach_logs(out)
            if any(out.iterdir()):
                self._run.log_artifacts(out)
        except Exception as store_exc:  # noqa: BLE001 - any storage failure fails the run
            reason = f"artifacts not stored: {type(store_exc).__name__}: {store_exc}"
            log.error("run %s: %s", self.name, reason)
            if self.status == "FINISHED":
                self.status, self.error = "FAILED", reason
            try:
                self._run.set_tags({"bench.error": (self.error or reason)[:4000]})
            except Exception:  # noqa: BLE001 - the store itself may be gone; closing still matters
                pass
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM while storing: never FINISHED with missing artifacts
            if self.status == "FINISHED":
                self.status = "KILLED"
            raise
        finally:
            try:
                if self.before_end is not None:
                    self.before_end(self)
            finally:
                self._run.end(self.status)
                self._tmp.cleanup()
                self._tmp = None
        return self.suppress and exc is not None and isinstance(exc, Exception) and not isinstance(exc, self.killed)

    def _detach_logs(self, out: Path) -> None:
        if self._handler is None:
            return
        root = logging.getLogger("bench")
        root.removeHandler(self._handler)
        root.setLevel(self._previous_level)
        self._handler = None
        (out / "log.txt").write_text(self._buffer.getvalue())


# ----------------------------------------------------------------------------- steps


def dataset_context(data_dir: Path | None = None) -> DatasetContext:
    """Where ``bench run`` and ``bench tune`` look for dataset files: ``data_dir``, then the usual places."""
    from bench_core.tracking import bench_home

    return DatasetContext(data_dir=data_dir, cache_dir=bench_home() / "cache")


def load_scene(dataset: DatasetSpec, data_dir: Path | None = None) -> Scene:
    """Load a registered dataset (files looked for in ``data_dir``, then the usual places).

    A scene whose (rows, cols) differ from the dataset's declared ``shape`` raises
    :class:`~bench_core.errors.DatasetError`: it is another variant, a crop or another
    dataset, and must not be ranked under this dataset's name.
    """
    scene = dataset.load(dataset_context(data_dir))
    check_declared_shape(dataset, scene)
    return scene


def check_declared_shape(dataset: DatasetSpec, scene: Scene) -> None:
    """Raise :class:`~bench_core.errors.DatasetError` when ``scene`` is not ``dataset.shape`` (if declared)."""
    if dataset.shape is None:
        return
    got = tuple(int(v) for v in scene.shape)
    expected = tuple(int(v) for v in dataset.shape)
    if got != expected:
        source = scene.metadata.get("source_dir") if isinstance(scene.metadata, Mapping) else None
        where = f" from {source}" if source else ""
        raise DatasetError(
            f"dataset {dataset.name!r}: the scene loaded{where} is {got[0]} x {got[1]} pixels (rows x cols); "
            f"expected {expected[0]} x {expected[1]}, the shape {dataset.name!r} declares. The files are "
            f"another variant, a crop or another dataset; point --data-dir (or BENCH_DATA_DIR) at the "
            f"{dataset.name} files, or register the data as a dataset of its own"
        )


def log_dataset(run: RunHandle, dataset: DatasetSpec, scene: Scene, digest: str, split: str) -> None:
    """Record the run's dataset as its MLflow dataset input (the run table's Dataset column).

    ``digest`` is the cell key's data fingerprint; the source is the folder the files were
    read from (``scene.metadata["source_dir"]``), or ``generated:<seed>`` for generated data;
    the context is the cell's split, e.g. ``official``.
    """
    import json

    from bench_core.tracking import DatasetInput

    meta = scene.metadata if isinstance(scene.metadata, Mapping) else {}
    if meta.get("source_dir"):
        source_type, source = "local", str(meta["source_dir"])
    elif not dataset.files:
        source_type, source = "generated", f"generated:{meta.get('seed', 'unknown')}"
    else:  # a third-party loader that does not say where its files were
        source_type, source = "local", "unknown (the loader records no source_dir)"
    profile = {"rows": int(scene.shape[0]), "cols": int(scene.shape[1]), "bands": dict(scene.bands),
               "num_classes": scene.num_classes}
    if meta.get("layout"):
        profile["layout"] = str(meta["layout"])
    run.log_dataset(DatasetInput(name=dataset.name, digest=digest, source=source, source_type=source_type,
                                 context=split, profile=json.dumps(profile)))


def make_cell_split(
    scene: Scene, split: SplitSpec, protocol: SplitProtocol, seed: int, window: int
) -> Split:
    """The cell's train/val/test pixels; leakage (and any guard band) is for ``window`` x ``window``
    neighbourhoods: :meth:`MethodSpec.leakage_window` (``2s - 1`` for dense methods)."""
    from bench_core.splits import make_split

    return make_split(scene, split, protocol, seed, patch_size=window)


@dataclass(frozen=True)
class CellData:
    """Everything a method is trained on in one cell; never test pixels or test labels.

    Attributes:
        spec, config: the method and its resolved config.
        scene: the loaded scene (for shapes, names, palette; the Trainer never sees it).
        inputs: ``{name: (C, H, W)}`` as the method asked for them (``"x"`` stacked).
        info: what ``build`` is told, including the cell seed and ``x_modalities``.
        data: training and validation pixels with their 0-based targets.
    """

    spec: MethodSpec
    config: ResolvedConfig
    scene: Scene
    inputs: Mapping[str, np.ndarray]
    info: SceneInfo
    data: TrainData

    @property
    def patch_size(self) -> int:
        return int(self.info.patch_size)


def prepare(
    spec: MethodSpec,
    config: ResolvedConfig,
    scene: Scene,
    train_index: np.ndarray,
    val_index: np.ndarray,
    seed: int,
) -> CellData:
    """Select the method's inputs and wrap the training/validation pixels for the Trainer."""
    from bench_core.training import TrainData

    where = f"method {spec.name!r}"
    inputs = scene.inputs_for(spec.modalities, where)
    patch = spec.effective_patch_size(config.train)
    info = scene.info(spec.modalities, where, patch_size=patch, seed=int(seed))
    labels = np.asarray(scene.labels).reshape(-1)
    train_index = np.asarray(train_index, dtype=np.int64)
    val_index = np.asarray(val_index, dtype=np.int64)
    data = TrainData(
        inputs=inputs,
        train_index=train_index,
        train_targets=labels[train_index] - 1,
        val_index=val_index,
        val_targets=labels[val_index] - 1,
        num_classes=scene.num_classes,
    )
    return CellData(spec=spec, config=config, scene=scene, inputs=inputs, info=info, data=data)


@dataclass
class Fitted:
    """A trained model with the Trainer that trained it and what the fit reported."""

    trainer: Trainer
    model: Any
    fit: FitResult

    @property
    def is_module(self) -> bool:
        import torch

        return isinstance(self.model, torch.nn.Module)


def build_and_fit(
    cell: CellData,
    trainer: Trainer,
    on_built: Callable[[Any], None] | None = None,
) -> Fitted:
    """Build the model and train it; ``on_built(model)`` runs in between (e.g. to log tags)."""
    model = trainer.build(cell.spec, cell.config, cell.info)
    if on_built is not None:
        on_built(model)
    fit = trainer.fit(cell.spec, model, cell.config, cell.data)
    return Fitted(trainer=trainer, model=model, fit=fit)


def stage_cache_dir() -> Path:
    """Where ``bench run`` and ``bench tune`` keep stage results: ``<BENCH_HOME>/cache/stages``."""
    from bench_core.tracking import bench_home

    return bench_home() / "cache" / "stages"


def fitted_tags(fitted: Fitted) -> dict[str, str]:
    """Run tags known after the fit: the model's own tags again (stages may change them, e.g. a
    cache hit) and ``bench.stage_cache.<entry> = hit | miss`` for each stage-cache lookup."""
    tags = method_tags(fitted.model, fitted.trainer.device)
    tags.update({f"bench.stage_cache.{name}": event for name, event in fitted.fit.stage_cache.items()})
    return tags


def score_validation(fitted: Fitted, cell: CellData) -> Scores:
    """Scores of the trained model on the validation pixels (what ``bench tune`` optimises)."""
    from bench_core.metrics import compute_scores

    data = cell.data
    if data.val_index.size == 0:
        raise ConfigError(
            f"method {cell.spec.name!r}: no validation pixels to score; raise --val-fraction or use a "
            f"split with more training pixels"
        )
    predicted = fitted.trainer.predict(cell.spec, fitted.model, cell.config, cell.inputs, data.val_index,
                                       where="validation", num_classes=data.num_classes)
    return compute_scores(data.val_targets, predicted, data.num_classes)


@dataclass(frozen=True)
class TestEvaluation:
    """The one evaluation on the test split.

    ``scene_map`` is the whole-scene prediction (H, W) when the test prediction made one (a
    dense method predicts the scene and picks the test pixels), else None.
    """

    test_index: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray
    scores: Scores
    time_infer_s: float
    scene_map: np.ndarray | None = None


def example_input(cell: CellData, device: torch.device, model: Any = None) -> dict[str, torch.Tensor]:
    """One sample (a patch or a crop) of zeros: FLOPs do not depend on the values.

    With ``model``, the derived inputs its stages added (e.g. BDGF's diffusion features) are
    part of the sample, as they are in training and prediction.
    """
    import torch

    from bench_core.training import derived_inputs

    p = cell.patch_size
    inputs = {**cell.inputs, **derived_inputs(model)}
    return {k: torch.zeros(1, v.shape[0], p, p, device=device) for k, v in inputs.items()}


def evaluate_test(fitted: Fitted, cell: CellData, split: Split) -> TestEvaluation:
    """Open the test split (here and only here), predict every test pixel once, score it.

    Inference is warmed up by one untimed forward pass on a zero sample, so that the
    timed prediction excludes first-call costs.
    """
    from bench_core.metrics import compute_scores
    from bench_core.timing import Stopwatch

    trainer = fitted.trainer
    if fitted.is_module:
        warm_up_inference(fitted.model, example_input(cell, trainer.device, fitted.model), trainer.device)
    test_index = split.open_test()
    scene_map = None
    with Stopwatch(trainer.device) as clock:
        if cell.spec.input_kind == "dense":  # the windows predict every pixel: keep the map for the artifacts
            scene_map = trainer.predict_scene(cell.spec, fitted.model, cell.config, cell.inputs,
                                              where="test prediction")
            predicted = scene_map.reshape(-1)[test_index]
        else:
            predicted = trainer.predict(cell.spec, fitted.model, cell.config, cell.inputs, test_index,
                                        where="test prediction", num_classes=cell.scene.num_classes)
    truth = np.asarray(cell.scene.labels).reshape(-1)[test_index] - 1
    if predicted.shape != truth.shape:
        raise ModelOutputError(
            f"method {cell.spec.name!r}: {predicted.shape[0]} predictions for {truth.shape[0]} test pixels; "
            f"expected one per test pixel"
        )
    scores = compute_scores(truth, predicted, cell.scene.num_classes)
    return TestEvaluation(test_index, predicted, truth, scores, clock.elapsed, scene_map)


def warm_up_inference(model: Any, example: Mapping[str, Any], device: Any) -> None:
    """One untimed forward pass in eval mode (the module's mode is restored)."""
    import torch

    from bench_core.timing import synchronize

    was_training = model.training
    model.eval()
    with torch.inference_mode():
        model(dict(example))
    synchronize(device)
    model.train(was_training)


def method_tags(model: Any, device: torch.device) -> dict[str, str]:
    """Run tags that describe the built model: which kernels its shared ops run on, and its own tags.

    ``bench.scan_backend`` for models with selective-scan modules (``bench_core.ops.ss2d``),
    ``bench.dcn_backend`` for models with DCNv4 layers. A model may define
    ``bench_tags() -> dict[str, str]`` (CLIP weights checksum, stand-in status, stage-cache
    hit); each entry is logged as ``bench.method.<key>``.
    """
    import torch

    tags: dict[str, str] = {}
    if isinstance(model, torch.nn.Module):
        modules = {type(m).__module__ for m in model.modules()}
        if "bench_core.ops.ss2d" in modules:
            from bench_core.ops import default_scan_backend

            tags["bench.scan_backend"] = default_scan_backend(device)  # which scan really ran
        if "bench_core.ops.dcnv4" in modules:
            from bench_core.ops import dcn_backend

            tags["bench.dcn_backend"] = str(dcn_backend(model, device))
    reported = getattr(model, "bench_tags", None)
    if callable(reported):
        values = reported()
        if not isinstance(values, Mapping):
            raise ModelOutputError(
                f"{type(model).__name__}.bench_tags() returned {type(values).__name__}; expected a "
                f"dict of str -> str"
            )
        for key, value in values.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ModelOutputError(
                    f"{type(model).__name__}.bench_tags() has {key!r}: {value!r}; expected str keys and "
                    f"str values (convert numbers with str())"
                )
            tags[METHOD_TAG_PREFIX + key] = value
    return tags


def cell_metrics(
    cell: CellData, split: Split, fitted: Fitted, test: TestEvaluation, peak_bytes: int
) -> dict[str, float]:
    """The run's metrics: test scores in percent, cost, split sizes and leakage."""
    from bench_core.timing import count_parameters, flops_per_sample, measure_throughput

    fit = fitted.fit
    total, trainable = count_parameters(fitted.model)
    example = example_input(cell, fitted.trainer.device, fitted.model) if fitted.is_module else {}
    flops = flops_per_sample(fitted.model, example)
    metrics: dict[str, float] = dict(test.scores.as_metrics(cell.scene.class_names, prefix="test_"))
    metrics.update(
        {
            "time_train_s": fit.time_train_s,
            "time_warmup_s": fit.time_warmup_s,
            "time_val_s": fit.time_val_s,
            "time_infer_s": test.time_infer_s,
            "throughput_infer": measure_throughput(int(test.test_index.size), test.time_infer_s),
            "params_total": float(total),
            "params_trainable": float(trainable),
            "mem_peak_bytes": float(peak_bytes),
            "split_leakage": 100.0 * split.leakage,
            "split_val_leakage": 100.0 * split.val_leakage,
            "n_train": float(split.train.size),
            "n_val": float(split.val.size),
            "n_test": float(test.test_index.size),
            "epochs_run": float(fit.epochs_run),
        }
    )
    if flops is not None:
        metrics["flops_per_sample"] = float(flops)
    if fit.final_val_oa is not None:
        metrics["val_oa"] = 100.0 * fit.final_val_oa
    if fit.best_val_oa is not None:
        metrics["val_oa_best"] = 100.0 * fit.best_val_oa
    for name, seconds in fit.stage_times.items():
        metrics[f"time_stage_{name}_s"] = seconds
    return metrics


def write_cell_artifacts(
    out: Path,
    display_id: str,
    cell: CellData,
    split: Split,
    fitted: Fitted,
    test: TestEvaluation,
    extra_config: Mapping[str, Any],
) -> None:
    """Confusion matrix, per-class table, predictions, resolved config and the classification map."""
    from bench_core import artifacts

    scene = cell.scene
    names = scene.class_names
    scores = test.scores
    fit = fitted.fit
    counts = split.class_counts(scene.labels, num_classes=scene.num_classes)
    artifacts.write_confusion_csv(out / "confusion_matrix.csv", scores.confusion, names)
    artifacts.plot_confusion(out / "confusion_matrix.png", scores.confusion, names, display_id)
    artifacts.write_per_class_csv(
        out / "per_class.csv", names, scores.per_class_accuracy, scores.per_class_f1, scores.support,
        train_counts=counts["train"],
    )
    artifacts.save_predictions(out / "predictions_test.npz", test.test_index, test.predicted, test.truth)
    artifacts.write_json(
        out / "config.json",
        {
            "cell": display_id,
            **extra_config,
            "config": cell.config.to_dict(),
            "split": {
                "name": split.spec.display,
                "val_fraction": split.spec.val_fraction,
                "leakage": split.leakage,
                "val_leakage": split.val_leakage,
                "val_carve": split.val_carve,
                "leakage_window": split.patch_size,
                "patch_size": cell.patch_size,
            },
            "fit": {"stop_reason": fit.stop_reason, "history": fit.history, "best_epoch": fit.best_epoch},
        },
    )
    scene_map = test.scene_map
    if scene_map is None:  # the scored test predictions fill their pixels: the map shows what was scored
        scene_map = fitted.trainer.predict_scene(cell.spec, fitted.model, cell.config, cell.inputs,
                                                 where="classification map prediction",
                                                 known=(test.test_index, test.predicted))
    artifacts.plot_classification_map(
        out / "classification_map.png",
        scene_map,
        np.asarray(scene.labels),
        names,
        artifacts.palette_for(scene.num_classes, scene.palette),
        f"{display_id}  OA {100 * scores.oa:.2f}%",
    )


__all__ = [
    "METHOD_TAG_PREFIX",
    "CellData",
    "Fitted",
    "RunLifecycle",
    "TestEvaluation",
    "build_and_fit",
    "cell_metrics",
    "check_declared_shape",
    "dataset_context",
    "evaluate_test",
    "example_input",
    "fitted_tags",
    "load_scene",
    "log_dataset",
    "make_cell_split",
    "method_tags",
    "prepare",
    "score_validation",
    "stage_cache_dir",
    "warm_up_inference",
    "write_cell_artifacts",
]
