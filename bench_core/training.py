"""The Trainer: the only epoch loop in the project.

Methods give ``build`` (a module or a scikit-learn-style estimator), optionally a
``loss`` on the module and :class:`~bench_core.specs.Stage` hooks; the Trainer owns
seeding, the device, batching (through :mod:`bench_core.sampling`), the optimizer and
scheduler, validation, early stopping and the timing of training.

It only ever sees training and validation pixels (:class:`TrainData`); the test split
is opened by the caller after :meth:`Trainer.fit` returns.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench_core.errors import (
    ConfigError,
    MissingModalityError,
    NonFiniteLossError,
    NonFiniteOutputError,
)
from bench_core.metrics import compute_scores
from bench_core.sampling import (
    CropSampler,
    ModelOutputError,
    PatchSampler,
    SamplingError,
    as_index,
    sliding_window_logits_at,
    sliding_window_predict,
)
from bench_core.scene import IGNORE_INDEX, SceneInfo
from bench_core.specs import (
    MethodSpec,
    PixelEstimator,
    ResolvedConfig,
    TrainConfig,
    check_name,
    crop_grid_stride,
)
from bench_core.stage_cache import StageCache, inputs_fingerprint
from bench_core.timing import Stopwatch, resolve_device

# Distinct streams derived from the one trainer seed (SeedSequence spawn keys).
_STREAM_SHUFFLE = 1
_STREAM_STAGE = 2
_STREAM_WARMUP = 3

Batches = Callable[[torch.Generator], Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]]
"""One epoch of training batches, drawn with the given generator."""


@dataclass(frozen=True)
class TrainData:
    """What the Trainer may see: method inputs, training and validation pixels.

    Attributes:
        inputs: ``{name: (C, H, W) float32}`` named as in ``spec.modalities``
            (``"x"`` already stacked).
        train_index, train_targets: flat pixel indices and their 0-based targets.
        val_index, val_targets: validation pixels (carved from training pixels; may be empty).
        num_classes: K.

    Never holds test pixels or test labels.
    """

    inputs: Mapping[str, np.ndarray]
    train_index: np.ndarray
    train_targets: np.ndarray
    val_index: np.ndarray
    val_targets: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if not self.inputs:
            raise SamplingError("TrainData.inputs is empty; expected {name: (C, H, W) array}")
        first = next(iter(self.inputs.values()))
        num_pixels = int(first.shape[1]) * int(first.shape[2])
        for part in ("train", "val"):
            index = np.asarray(getattr(self, f"{part}_index")).reshape(-1)
            targets = np.asarray(getattr(self, f"{part}_targets")).reshape(-1)
            if index.shape != targets.shape:
                raise SamplingError(
                    f"TrainData: {part}_index has {index.size} pixels but {part}_targets has "
                    f"{targets.size}; expected one target per pixel"
                )
            as_index(index, num_pixels)  # raises naming the range
            if targets.size and (targets.min() < 0 or targets.max() >= self.num_classes):
                raise SamplingError(
                    f"TrainData: {part}_targets range {int(targets.min())}..{int(targets.max())}; "
                    f"expected 0-based classes in 0..{self.num_classes - 1} (label - 1, unlabelled "
                    f"pixels excluded)"
                )
            object.__setattr__(self, f"{part}_index", index.astype(np.int64))
            object.__setattr__(self, f"{part}_targets", targets.astype(np.int64))
        if self.train_index.size == 0:
            raise SamplingError("TrainData.train_index is empty; expected at least one training pixel")

    @property
    def image_shape(self) -> tuple[int, int]:
        first = next(iter(self.inputs.values()))
        return int(first.shape[1]), int(first.shape[2])


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` reports.

    ``stop_reason`` is ``"completed"``, ``"early_stopping"`` or ``"estimator_fit"``
    (pixel methods). ``history`` has one entry per epoch: ``epoch``, ``train_loss``,
    ``lr`` (the rate used during that epoch) and ``val_oa`` (in [0, 1]) and ``val_loss`` (mean
    cross-entropy of the validation pixels) when validated. The best epoch has the highest
    ``val_oa``, ties broken by the lower ``val_loss``.
    ``final_val_oa`` is the validation OA of the model as returned (the best one when
    ``restore_best`` restored it). ``time_train_s`` excludes validation, stages and the
    untimed warm-up step (``time_warmup_s``: one forward and backward pass before training,
    no optimizer step, so that first-call costs stay out of ``time_train_s``).
    ``optimizer_params`` describes the parameter groups (logged as run params).
    ``stage_cache`` says for each stage-cache entry looked up whether it was a ``hit`` or a ``miss``.
    """

    epochs_run: int
    steps: int
    stop_reason: str
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_oa: float | None = None
    best_epoch: int | None = None
    final_val_oa: float | None = None
    time_train_s: float = 0.0
    time_val_s: float = 0.0
    time_warmup_s: float = 0.0
    stage_times: dict[str, float] = field(default_factory=dict)
    stage_cache: dict[str, str] = field(default_factory=dict)
    optimizer_params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageContext:
    """What a :class:`~bench_core.specs.Stage` ``run`` receives.

    Attributes:
        model: the built module (on ``device``).
        config: the resolved config (``config.model`` holds the stage's settings).
        data: the scene inputs (whole scene, no test labels) and the training/validation pixels.
        device: where to compute.
        generator: a CPU generator of this stage's own seed stream.
        seed: the stage seed (the cell's user seed in ``bench run``/``bench tune``, shared
            by every split and trial of that seed; put it in cache keys).
        cache: the method's :class:`~bench_core.stage_cache.StageCache`, or ``None`` when
            the caller keeps no cache (unit tests, conformance checks): then compute.

    A stage that reads training pixels or labels must put them in its cache key; one that
    reads only ``data.inputs`` (unsupervised pretraining) is keyed by the inputs' fingerprint.
    """

    model: Any
    config: ResolvedConfig
    data: TrainData
    device: torch.device
    generator: torch.Generator
    seed: int = 0
    cache: StageCache | None = None

    @property
    def cache_dir(self) -> Path | None:
        """``<BENCH_HOME>/cache/stages/<method>`` when there is a cache."""
        return None if self.cache is None else self.cache.root

    @property
    def dataset_fingerprint(self) -> str:
        """Hash of the input arrays (scene, band selection and normalisation: what the stage sees)."""
        return self.cache.dataset_fingerprint if self.cache is not None else inputs_fingerprint(self.data.inputs)

    def add_input(self, name: str, values: np.ndarray) -> None:
        """Make ``values`` (C, H, W) a *derived input* of the model, sampled like a scene input.

        The Trainer merges derived inputs into what it samples after the stages (training,
        validation) and whenever it predicts with this model; the FLOP example includes
        them. Large maps may be float16 or memory-mapped (:class:`~bench_core.sampling.PatchSampler`
        then gathers patches without a padded copy). Stored on the model as ``derived_inputs``.
        """
        add_derived_input(self.model, name, values, self.data.image_shape, reserved=tuple(self.data.inputs))


_PREGATHER_BYTES = 256 * 2**20  # patches of the training pixels gathered once when they fit
PREDICT_CHUNK = 2**18
"""Pixels predicted per chunk by pixel and patch methods (features, logits and patches stay bounded)."""


def derived_inputs(model: Any) -> dict[str, np.ndarray]:
    """The derived inputs a stage added to ``model`` (``{}`` for most methods)."""
    found = getattr(model, "derived_inputs", None)
    return dict(found) if isinstance(found, Mapping) else {}


def add_derived_input(
    model: Any, name: str, values: np.ndarray, image_shape: tuple[int, int], reserved: tuple[str, ...] = ()
) -> None:
    """Attach a (C, H, W) map to ``model.derived_inputs`` after checking its name and shape."""
    check_name("derived input", name)
    if name in reserved:
        raise ConfigError(
            f"derived input {name!r}: the scene already gives an input of that name ({list(reserved)}); "
            f"expected a new name, e.g. 'dif'"
        )
    shape = tuple(np.shape(values))
    if len(shape) != 3 or shape[1:] != tuple(image_shape) or shape[0] < 1:
        raise SamplingError(
            f"derived input {name!r} has shape {shape}; expected (C, {image_shape[0]}, {image_shape[1]}), "
            f"one value per channel and scene pixel"
        )
    if not np.issubdtype(np.asarray(values[:0]).dtype, np.floating):
        raise SamplingError(f"derived input {name!r} has dtype {values.dtype}; expected float16/32/64")
    current = derived_inputs(model)
    current[name] = values
    model.derived_inputs = current


def _derive_seed(seed: int, *stream: int) -> int:
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _logits(output: Any, method: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    raise ModelOutputError(
        f"method {method!r}: forward returned {type(output).__name__}; expected a logits tensor "
        f"or a mapping with a 'logits' tensor"
    )


class Trainer:
    """Builds, trains and applies methods under one seed and device.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.
        seed: the one seed of this training run (weights, shuffling, crops, stages).
        on_epoch_end: ``callback(epoch, metrics)`` after each epoch (1-based) with
            ``epoch``, ``train_loss``, ``lr``, ``val_oa`` when measured and whatever the model's
            optional ``epoch_metrics()`` returns; exceptions propagate (the tuner prunes that way).
        logger: where progress goes; default ``logging.getLogger("bench.training")``.
        stage_seed: seed of the stages (default ``seed``). ``bench run`` and ``bench tune``
            pass the user seed, so that a label-free stage is the same for every split,
            profile and trial of that seed, and its cached result is reused.
        stage_cache_dir: root of the stage cache (``<BENCH_HOME>/cache/stages``); ``None`` =
            stages get no cache and compute every time.
    """

    def __init__(
        self,
        device: str | torch.device = "auto",
        seed: int = 0,
        on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
        logger: logging.Logger | None = None,
        stage_seed: int | None = None,
        stage_cache_dir: Path | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.stage_seed = self.seed if stage_seed is None else int(stage_seed)
        self.stage_cache_dir = None if stage_cache_dir is None else Path(stage_cache_dir)
        self.on_epoch_end = on_epoch_end
        self.log = logger or logging.getLogger("bench.training")

    # ----------------------------------------------------------------- setup

    def seed_everything(self) -> None:
        """Seed Python's ``random``, NumPy's legacy global RNG and torch (CPU and CUDA)."""
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)  # also seeds every CUDA device

    def _generator(self, *stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(_derive_seed(self.seed, *stream))

    def build(self, spec: MethodSpec, config: ResolvedConfig, info: SceneInfo) -> Any:
        """Seed, call ``spec.build(config.model, info)`` and move a module to the device."""
        self.seed_everything()
        # The cell seed reaches build through info (a stand-in's random weights, a subsample).
        model = spec.build(config.model, replace(info, seed=self.seed))
        if spec.input_kind == "pixel":
            if not isinstance(model, PixelEstimator):
                raise ModelOutputError(
                    f"method {spec.name!r} (input_kind 'pixel'): build returned "
                    f"{type(model).__name__}; expected an estimator with fit(features, targets) "
                    f"and predict(features)"
                )
            return model
        if not isinstance(model, nn.Module):
            raise ModelOutputError(
                f"method {spec.name!r} (input_kind {spec.input_kind!r}): build returned "
                f"{type(model).__name__}; expected a torch.nn.Module"
            )
        return model.to(self.device)

    def _check_inputs(
        self, spec: MethodSpec, inputs: Mapping[str, np.ndarray], model: Any = None
    ) -> dict[str, np.ndarray]:
        """The method's scene inputs, plus the derived inputs its stages attached to ``model``."""
        missing = [m for m in spec.modalities if m not in inputs]
        if missing:
            raise MissingModalityError(
                f"method {spec.name!r} needs input(s) {missing} but got {list(inputs)}; build the "
                f"inputs with scene.inputs_for(spec.modalities)"
            )
        return {**{m: inputs[m] for m in spec.modalities}, **derived_inputs(model)}

    # ----------------------------------------------------------------- fit

    def fit(self, spec: MethodSpec, model: Any, config: ResolvedConfig, data: TrainData) -> FitResult:
        """Run the stages, then train ``model`` on ``data`` under ``config.train``."""
        self._check_inputs(spec, data.inputs)
        stage_times: dict[str, float] = {}
        stage_cache: dict[str, str] = {}
        for number, stage in enumerate(spec.stages):
            generator = torch.Generator().manual_seed(_derive_seed(self.stage_seed, _STREAM_STAGE, number))
            cache = None
            if self.stage_cache_dir is not None:
                cache = StageCache(self.stage_cache_dir / spec.name, data.inputs)
            context = StageContext(model, config, data, self.device, generator, self.stage_seed, cache)
            with Stopwatch(self.device) as clock:
                stage.run(context)
            stage_times[stage.name] = clock.elapsed
            if cache is not None:
                stage_cache.update(cache.events)
            self.log.info("method %s: stage %s took %.2f s", spec.name, stage.name, stage_times[stage.name])
        inputs = self._check_inputs(spec, data.inputs, model)  # now with the stages' derived inputs
        if spec.input_kind == "pixel":
            result = self._fit_estimator(spec, model, config, inputs, data)
        else:
            result = self._fit_module(spec, model, config, inputs, data)
        result.stage_times = stage_times
        result.stage_cache = stage_cache
        return result

    def _fit_estimator(
        self, spec: MethodSpec, model: Any, config: ResolvedConfig, inputs: dict[str, np.ndarray], data: TrainData
    ) -> FitResult:
        features = _pixel_features(inputs, data.train_index)
        with Stopwatch(self.device) as train_clock:
            model.fit(features, data.train_targets)
        result = FitResult(epochs_run=0, steps=0, stop_reason="estimator_fit", time_train_s=train_clock.elapsed)
        if data.val_index.size:
            with Stopwatch(self.device) as val_clock:
                predicted = self.predict(spec, model, config, inputs, data.val_index, where="validation",
                                         num_classes=data.num_classes)
            result.time_val_s = val_clock.elapsed
            result.best_val_oa = result.final_val_oa = _accuracy(predicted, data)
        return result

    def _fit_module(
        self, spec: MethodSpec, model: nn.Module, config: ResolvedConfig, inputs: dict[str, np.ndarray], data: TrainData
    ) -> FitResult:
        train = config.train
        size = spec.effective_patch_size(train)
        if train.crops_per_epoch is not None and spec.input_kind != "dense":
            raise ConfigError(
                f"train.crops_per_epoch = {train.crops_per_epoch!r} for {spec.input_kind} method "
                f"{spec.name!r}: it applies to dense methods only; use train.steps_per_epoch"
            )
        optimizer = make_optimizer(model, train, spec.name)
        scheduler = make_scheduler(optimizer, train)
        generator = self._generator(_STREAM_SHUFFLE)
        custom_loss = callable(getattr(model, "loss", None))

        def loss_of(output: Any, y: torch.Tensor) -> torch.Tensor:
            logits = _logits(output, spec.name)
            _check_logits(logits, y, spec, data.num_classes)
            if custom_loss:
                return model.loss(output, y)  # type: ignore[operator]
            return F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)

        if spec.input_kind == "patch":
            sampler = PatchSampler(inputs, size, device=self.device)
            batches = self._patch_batches(sampler, data, train)

            def validate(epoch: int) -> torch.Tensor:
                return self._patch_logits(spec, model, config, sampler, data.val_index,
                                          where=f"validation epoch {epoch}")
        else:
            batches = self._crop_batches(inputs, data, size, train)

            def validate(epoch: int) -> torch.Tensor:
                return self._dense_logits_at(spec, model, config, inputs, data.val_index,
                                             where=f"validation epoch {epoch}")

        result = FitResult(epochs_run=0, steps=0, stop_reason="completed")
        result.optimizer_params = describe_optimizer(model, train)
        result.time_warmup_s = self._warm_up(model, batches, loss_of)
        train_clock, val_clock = Stopwatch(self.device), Stopwatch(self.device)
        best_state: dict[str, torch.Tensor] | None = None
        best_val_loss = math.inf
        checks_without_gain = 0
        has_val = data.val_index.size > 0
        if train.restore_best and not has_val:
            self.log.warning("method %s: restore_best is set but there are no validation pixels; "
                             "keeping the last epoch", spec.name)
        for epoch in range(1, train.epochs + 1):
            model.train()
            lr = float(optimizer.param_groups[0]["lr"])  # the rate this epoch trains with
            train_clock.start()
            loss_sum, weight = 0.0, 0
            for step, (x, y) in enumerate(batches(generator), start=1):
                loss = loss_of(model(x), y)
                value = float(loss.detach())
                if not math.isfinite(value):
                    train_clock.stop()
                    raise NonFiniteLossError(
                        f"method {spec.name!r}: loss is {value} at epoch {epoch}, step {step} "
                        f"(lr {lr:g}); lower train.lr or set train.grad_clip"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if train.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
                loss_sum += value * y.shape[0]
                weight += y.shape[0]
                result.steps += 1
            if scheduler is not None:
                scheduler.step()  # once per epoch, after the optimizer steps
            train_clock.stop()
            result.epochs_run = epoch

            metrics: dict[str, float] = {"epoch": float(epoch), "train_loss": loss_sum / max(weight, 1), "lr": lr}
            metrics.update(_model_epoch_metrics(model, spec.name))
            last = epoch == train.epochs
            # The last epoch is always validated so that final_val_oa describes the returned model.
            if has_val and (epoch % train.val_every == 0 or last):
                val_clock.start()
                val_oa, val_loss = _validation_scores(validate(epoch), data)
                val_clock.stop()
                metrics["val_oa"], metrics["val_loss"] = val_oa, val_loss
                result.final_val_oa = val_oa
                # Validation OA saturates on small validation sets; among equal OAs the lower
                # validation loss is the better epoch (the earliest one only on an exact tie).
                if result.best_val_oa is None or (val_oa, -val_loss) > (result.best_val_oa, -best_val_loss):
                    result.best_val_oa, result.best_epoch, best_val_loss = val_oa, epoch, val_loss
                    checks_without_gain = 0
                    if train.restore_best:
                        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                else:
                    checks_without_gain += 1
            result.time_train_s, result.time_val_s = train_clock.elapsed, val_clock.elapsed
            result.history.append(metrics)
            self.log.info("method %s epoch %d/%d: %s", spec.name, epoch, train.epochs,
                          ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "epoch"))
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch, dict(metrics))
            patience = train.early_stopping_patience
            if patience is not None and checks_without_gain >= patience and not last:
                result.stop_reason = "early_stopping"
                break

        if best_state is not None and result.best_epoch != result.epochs_run:
            model.load_state_dict(best_state)
            result.final_val_oa = result.best_val_oa
            self.log.info("method %s: restored the weights of epoch %s (val_oa %.4f)",
                          spec.name, result.best_epoch, result.best_val_oa)
        return result

    def _warm_up(self, model: nn.Module, batches: Batches, loss_of: Callable[[Any, torch.Tensor], torch.Tensor]) -> float:
        """One untimed forward and backward pass; returns its seconds.

        It pays the first-call costs (kernel selection, allocator growth, lazy inits) outside
        ``time_train_s``. Nothing of it stays: no optimizer step, gradients cleared, buffers
        (BatchNorm statistics) restored, the batch drawn from its own seed stream and the
        global RNG state (dropout) restored, so training is the same as without it.
        """
        x, y = next(iter(batches(self._generator(_STREAM_WARMUP))))
        buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        model.train()
        with Stopwatch(self.device) as clock, torch.random.fork_rng(devices=devices):
            loss_of(model(x), y).backward()
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        return clock.elapsed

    def _patch_batches(self, sampler: PatchSampler, data: TrainData, train: TrainConfig) -> Batches:
        index = torch.from_numpy(data.train_index)
        targets = torch.from_numpy(data.train_targets).to(self.device)
        n = index.numel()
        # Training pixels are few (hundreds to thousands): when their patches fit in a modest
        # budget, gather them once per fit and index batches from that, as a hand-written loop
        # over pre-extracted tensors would; otherwise gather each batch from the strided view.
        bands = sum(sampler.channels.values())
        pregathered = (
            sampler.patches(index) if n * bands * sampler.patch_size**2 * 4 <= _PREGATHER_BYTES else None
        )

        def epoch_batches(generator: torch.Generator) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
            for chosen in _shuffled_batches(n, train, generator):
                if pregathered is not None:
                    batch = {k: v[chosen.to(v.device)] for k, v in pregathered.items()}
                else:
                    batch = sampler.patches(index[chosen])
                yield batch, targets[chosen.to(targets.device)]

        return epoch_batches

    def _crop_batches(self, inputs: dict[str, np.ndarray], data: TrainData, size: int, train: TrainConfig) -> Batches:
        height, width = data.image_shape
        target_map = np.full(height * width, IGNORE_INDEX, dtype=np.int64)
        target_map[data.train_index] = data.train_targets  # training pixels only
        sampler = CropSampler(inputs, target_map.reshape(height, width), size, device=self.device)
        stride = crop_grid_stride(train.crops_per_epoch)
        if stride is not None:
            rows, cols = sampler.grid_positions(stride)
            if rows.numel() == 0:
                raise ConfigError(
                    f"train.crops_per_epoch = {train.crops_per_epoch!r}: no {size}x{size} crop centred on "
                    f"the stride-{stride} grid holds a training pixel; use a stride <= the crop size"
                )

            def grid_batches(generator: torch.Generator) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
                for chosen in _shuffled_batches(rows.numel(), train, generator):
                    yield sampler.crops_at(rows[chosen], cols[chosen])

            return grid_batches
        if isinstance(train.crops_per_epoch, int):
            sizes = _batch_sizes(train.crops_per_epoch, train.batch_size)
            if train.steps_per_epoch is not None:
                sizes = sizes[: train.steps_per_epoch]
        else:
            default = max(1, math.ceil(data.train_index.size / (train.batch_size * 64)))
            sizes = [train.batch_size] * (train.steps_per_epoch or default)

        def random_batches(generator: torch.Generator) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
            for n in sizes:
                yield sampler.sample(n, generator)

        return random_batches

    # ----------------------------------------------------------------- predict

    def predict(
        self,
        spec: MethodSpec,
        model: Any,
        config: ResolvedConfig,
        inputs: Mapping[str, np.ndarray],
        index: np.ndarray,
        *,
        where: str = "prediction",
        num_classes: int | None = None,
    ) -> np.ndarray:
        """0-based predictions (N,) int64 for the flat pixel ``index``, in its order.

        Patch methods run in eval mode and ``inference_mode`` in batches of
        ``eval_batch_size`` patches; dense methods predict the whole scene with
        :func:`~bench_core.sampling.sliding_window_logits` (``batch_size`` windows at a time)
        and pick the indexed pixels; pixel methods call ``model.predict``.

        Non-finite logits raise :class:`~bench_core.errors.NonFiniteOutputError` naming
        ``where`` (e.g. ``"test prediction"``) instead of being scored as class 0; a pixel
        estimator's labels must be finite integers, in ``0..num_classes - 1`` when given.
        """
        inputs = self._check_inputs(spec, inputs, model)
        first = next(iter(inputs.values()))
        flat = as_index(index, int(first.shape[1]) * int(first.shape[2])).numpy()
        if spec.input_kind == "pixel":  # in chunks: a 20-million-pixel scene never needs all its features at once
            parts = [np.asarray(model.predict(_pixel_features(inputs, flat[i:i + PREDICT_CHUNK]))).reshape(-1)
                     for i in range(0, flat.size, PREDICT_CHUNK)]
            labels = np.concatenate(parts) if parts else np.asarray(model.predict(_pixel_features(inputs, flat)))
            return _checked_labels(labels.reshape(-1), spec.name, where, num_classes)
        if spec.input_kind == "dense":
            return self.predict_scene(spec, model, config, inputs, where=where).reshape(-1)[flat]
        sampler = PatchSampler(inputs, spec.effective_patch_size(config.train), device=self.device)
        return self._predict_patches(spec, model, config, sampler, flat, where)

    def _predict_patches(
        self, spec: MethodSpec, model: nn.Module, config: ResolvedConfig, sampler: PatchSampler, flat: np.ndarray,
        where: str = "prediction",
    ) -> np.ndarray:
        if flat.size == 0:
            return np.zeros(0, dtype=np.int64)
        # Chunk by chunk, keeping only the argmax: the logits of a whole scene are never held at once.
        return np.concatenate([
            self._patch_logits(spec, model, config, sampler, flat[i:i + PREDICT_CHUNK], where=where)
            .argmax(dim=1).numpy().astype(np.int64)
            for i in range(0, flat.size, PREDICT_CHUNK)
        ])

    def _patch_logits(
        self, spec: MethodSpec, model: nn.Module, config: ResolvedConfig, sampler: PatchSampler, flat: np.ndarray,
        where: str = "prediction",
    ) -> torch.Tensor:
        """(N, K) float32 CPU logits of the patches centred on ``flat``, in eval mode; finite or
        :class:`~bench_core.errors.NonFiniteOutputError` naming ``where``."""
        chunks = []
        with _evaluating(model), torch.inference_mode():
            for start in range(0, flat.size, config.train.eval_batch_size):
                chosen = flat[start : start + config.train.eval_batch_size]
                logits = _logits(model(sampler.patches(chosen)), spec.name)
                if logits.ndim != 2 or logits.shape[0] != chosen.size:
                    raise ModelOutputError(
                        f"method {spec.name!r}: forward returned logits {tuple(logits.shape)} for "
                        f"{chosen.size} patches; expected ({chosen.size}, num_classes)"
                    )
                chunks.append(logits.float().cpu())
        out = torch.cat(chunks) if chunks else torch.zeros(0, 0)
        _check_finite(out, spec.name, where, pixel_dim=1)
        return out

    def predict_dense_at(
        self, spec: MethodSpec, model: nn.Module, config: ResolvedConfig, inputs: Mapping[str, np.ndarray],
        flat: np.ndarray, *, where: str = "prediction",
    ) -> np.ndarray:
        """Dense predictions at ``flat`` from only the sliding windows that cover those pixels.

        Equal to whole-scene prediction at those pixels (same windows, same blending order);
        validation uses it so that an epoch's check costs the windows around the validation
        pixels, not the scene.
        """
        logits = self._dense_logits_at(spec, model, config, inputs, flat, where=where)
        return logits.argmax(dim=1).numpy().astype(np.int64)

    def _dense_logits_at(
        self, spec: MethodSpec, model: nn.Module, config: ResolvedConfig, inputs: Mapping[str, np.ndarray],
        flat: np.ndarray, where: str = "prediction",
    ) -> torch.Tensor:
        """(N, K) float32 CPU logits at ``flat`` from the sliding windows that cover those pixels;
        finite or :class:`~bench_core.errors.NonFiniteOutputError` naming ``where``."""
        inputs = self._check_inputs(spec, inputs, model)
        with _evaluating(model):
            logits, _ = sliding_window_logits_at(
                lambda x: _logits(model(x), spec.name),
                inputs,
                spec.effective_patch_size(config.train),
                flat,
                None,
                batch_size=config.train.batch_size,
                device=self.device,
            )
        logits = logits.cpu()
        _check_finite(logits, spec.name, where, pixel_dim=1)
        return logits

    def predict_scene(
        self, spec: MethodSpec, model: Any, config: ResolvedConfig, inputs: Mapping[str, np.ndarray],
        *, where: str = "scene prediction",
    ) -> np.ndarray:
        """0-based predictions (H, W) int64 for every pixel (the classification map).

        Non-finite logits raise :class:`~bench_core.errors.NonFiniteOutputError` naming ``where``.
        """
        inputs = self._check_inputs(spec, inputs, model)
        first = next(iter(inputs.values()))
        height, width = int(first.shape[1]), int(first.shape[2])
        if spec.input_kind != "dense":
            every = np.arange(height * width)
            return self.predict(spec, model, config, inputs, every, where=where).reshape(height, width)
        size = spec.effective_patch_size(config.train)
        with _evaluating(model):
            return sliding_window_predict(  # in strips when the scene is large
                lambda x: _logits(model(x), spec.name),
                inputs,
                size,
                None,
                batch_size=config.train.batch_size,  # what fits while training fits here
                device=self.device,
                check=lambda logits: _check_finite(logits, spec.name, where, pixel_dim=0),
            )


# --------------------------------------------------------------------------- helpers


class _evaluating:
    """Eval mode inside the block; the module's previous mode afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _model_epoch_metrics(model: nn.Module, method: str) -> dict[str, float]:
    """What the model reports about the epoch through ``epoch_metrics()`` (e.g. a learned temperature)."""
    report = getattr(model, "epoch_metrics", None)
    if not callable(report):
        return {}
    values = report()
    reserved = {"epoch", "train_loss", "lr", "val_oa"}
    if not isinstance(values, Mapping) or any(not isinstance(k, str) or k in reserved for k in values):
        raise ModelOutputError(
            f"method {method!r}: epoch_metrics() returned {values!r}; expected a dict of str -> float whose "
            f"names are not {sorted(reserved)}"
        )
    return {k: float(v) for k, v in values.items()}


def _check_finite(logits: torch.Tensor, method: str, where: str, pixel_dim: int) -> None:
    """Raise :class:`NonFiniteOutputError` if ``logits`` hold NaN or inf (``pixel_dim``: the class axis)."""
    bad = ~torch.isfinite(logits)
    if not bool(bad.any()):
        return
    values = int(bad.sum())
    pixels = int(bad.any(dim=pixel_dim).sum())
    total = int(logits.numel() // max(int(logits.shape[pixel_dim]), 1))
    raise NonFiniteOutputError(
        f"method {method!r}: {values} non-finite logit value(s) (NaN or inf) at {where}, in {pixels} of "
        f"{total} pixel(s); they would be scored as class 0, so the cell stops. The model diverged or its "
        f"forward pass overflows (e.g. log/sqrt of a non-positive value, a division by zero, exp of a large "
        f"value): lower train.lr, set train.grad_clip, or guard the forward pass (clamp, add an epsilon)"
    )


def _checked_labels(labels: np.ndarray, method: str, where: str, num_classes: int | None) -> np.ndarray:
    """A pixel estimator's predicted labels as int64, after checking they are classes."""
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels)
        if bad.any():
            raise NonFiniteOutputError(
                f"method {method!r}: predict() returned {int(bad.sum())} non-finite label(s) (NaN or inf) of "
                f"{labels.size} at {where}; expected 0-based class labels. Fix the estimator (its inputs or "
                f"its fit) so that predict() returns classes"
            )
        if not np.array_equal(labels, np.round(labels)):
            wrong = labels[labels != np.round(labels)]
            raise ModelOutputError(
                f"method {method!r}: predict() returned {wrong.size} non-integer label(s) (e.g. {wrong[0].item()!r}) at "
                f"{where}; expected 0-based class labels (return classes, not probabilities)"
            )
    elif labels.dtype.kind not in "iub":
        raise ModelOutputError(
            f"method {method!r}: predict() returned labels of dtype {labels.dtype} at {where}; expected "
            f"0-based integer class labels"
        )
    out = labels.astype(np.int64)
    if num_classes is not None and out.size and (out.min() < 0 or out.max() >= num_classes):
        outside = int(((out < 0) | (out >= num_classes)).sum())
        raise ModelOutputError(
            f"method {method!r}: predict() returned {outside} label(s) outside 0..{num_classes - 1} at {where} "
            f"(range {int(out.min())}..{int(out.max())}); expected 0-based class labels (label - 1), as the "
            f"targets it was fitted on"
        )
    return out


def _validation_scores(logits: torch.Tensor, data: TrainData) -> tuple[float, float]:
    """Validation OA in [0, 1] (the metric code of the test scores) and mean cross-entropy."""
    predicted = logits.argmax(dim=1).numpy().astype(np.int64)
    loss = F.cross_entropy(logits.float(), torch.from_numpy(data.val_targets))
    return _accuracy(predicted, data), float(loss)


def _accuracy(predicted: np.ndarray, data: TrainData) -> float:
    """Validation OA in [0, 1], through the same metric code as the test scores."""
    return float(compute_scores(data.val_targets, predicted, data.num_classes).oa)


def _shuffled_batches(n: int, train: TrainConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """A random order of ``n`` items cut into ``batch_size`` batches (capped by ``steps_per_epoch``)."""
    order = list(torch.randperm(n, generator=generator).split(train.batch_size))
    if len(order) > 1 and order[-1].numel() == 1:
        # A batch of one breaks BatchNorm in train mode; fold it into the previous.
        order[-2:] = [torch.cat(order[-2:])]
    if train.steps_per_epoch is not None:
        order = order[: train.steps_per_epoch]
    return order


def _batch_sizes(total: int, batch_size: int) -> list[int]:
    """``total`` items in batches of ``batch_size``; a last batch of one joins the previous."""
    sizes = [batch_size] * (total // batch_size) + ([total % batch_size] if total % batch_size else [])
    if len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [sizes[-2] + 1]
    return sizes


def _pixel_features(inputs: Mapping[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """(N, sum C) float32: the inputs' bands concatenated at the given flat pixels."""
    columns = [np.asarray(arr).reshape(arr.shape[0], -1)[:, index].T for arr in inputs.values()]
    return np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.float32)


def _check_logits(
    logits: torch.Tensor, targets: torch.Tensor, spec: MethodSpec, num_classes: int | None = None
) -> None:
    """ModelOutputError naming the method, the shape got and the one expected (K = ``num_classes``)."""
    n = targets.shape[0]
    k = "num_classes" if num_classes is None else str(num_classes)
    if spec.input_kind == "patch":
        ok = logits.ndim == 2 and logits.shape[0] == n
        expected = f"({n}, {k})"
    else:
        ok = logits.ndim == 4 and logits.shape[0] == n and logits.shape[2:] == targets.shape[1:]
        expected = f"({n}, {k}, {targets.shape[1]}, {targets.shape[2]})"
    wide = num_classes is None or (logits.ndim >= 2 and logits.shape[1] == num_classes)
    if not (ok and wide):
        # Right layout but another width: say so, K is the usual mistake (a hard-coded class count).
        what = f" ({logits.shape[1]} class scores, the dataset has K = {num_classes} classes)" if ok else ""
        raise ModelOutputError(
            f"method {spec.name!r} (input_kind {spec.input_kind!r}): forward returned logits "
            f"{tuple(logits.shape)}{what}; expected {expected}: the output layer needs info.num_classes channels"
        )


def no_decay(parameter: nn.Parameter, train: TrainConfig) -> bool:
    """Whether ``parameter`` gets weight decay 0: flagged ``_no_weight_decay``, or 1-D under ``no_decay_1d``."""
    return bool(getattr(parameter, "_no_weight_decay", False)) or (train.no_decay_1d and parameter.ndim <= 1)


def make_optimizer(model: nn.Module, train: TrainConfig, method: str = "the method") -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` over the module's trainable parameters.

    Two parameter groups: ``train.weight_decay`` for most, 0 for those :func:`no_decay`
    picks (SSM ``A_logs``/``Ds``, attention temperatures: the VMamba and UNETR++ convention).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelOutputError(
            f"method {method!r}: the built module has no trainable parameters; expected at least one "
            f"parameter with requires_grad=True"
        )
    decayed: list[nn.Parameter] = []
    exempt: list[nn.Parameter] = []
    for p in params:
        (exempt if no_decay(p, train) else decayed).append(p)
    groups: list[dict[str, Any]] = []
    if decayed:
        groups.append({"params": decayed, "weight_decay": train.weight_decay})
    if exempt:
        groups.append({"params": exempt, "weight_decay": 0.0})
    if train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=train.lr)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train.lr)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum)
    raise ConfigError(f"train.optimizer = {train.optimizer!r}: expected 'adam', 'adamw' or 'sgd'")


def describe_optimizer(model: nn.Module, train: TrainConfig) -> dict[str, str]:
    """Run params saying how many trainable tensors (and values) get weight decay 0."""
    exempt = [p for p in model.parameters() if p.requires_grad and no_decay(p, train)]
    return {
        "optimizer.no_decay_tensors": str(len(exempt)),
        "optimizer.no_decay_values": str(sum(p.numel() for p in exempt)),
    }


def make_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch scheduler ``train.scheduler`` (``None`` for ``"none"``)."""
    sched = torch.optim.lr_scheduler
    kind = train.scheduler
    if kind == "none":
        return None
    if kind == "step":
        return sched.StepLR(optimizer, step_size=train.step_size, gamma=train.gamma)
    if kind == "multistep":
        return sched.MultiStepLR(optimizer, milestones=list(train.milestones), gamma=train.gamma)
    if kind == "exponential":
        return sched.ExponentialLR(optimizer, gamma=train.gamma)
    if kind == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=train.epochs)
    if kind == "poly":
        epochs, power = train.epochs, train.power
        return sched.LambdaLR(optimizer, lambda e: max(0.0, 1.0 - e / epochs) ** power)
    raise ConfigError(
        f"train.scheduler = {kind!r}: expected 'none', 'step', 'multistep', 'exponential', 'cosine' or 'poly'"
    )


__all__ = [
    "FitResult",
    "StageContext",
    "TrainData",
    "Trainer",
    "add_derived_input",
    "derived_inputs",
    "describe_optimizer",
    "make_optimizer",
    "make_scheduler",
    "no_decay",
]
