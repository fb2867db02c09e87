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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench_core.errors import ConfigError, NonFiniteLossError
from bench_core.sampling import ModelOutputError, PatchSampler
from bench_core.scene import IGNORE_INDEX, SceneInfo
from bench_core.specs import MethodSpec, PixelEstimator, ResolvedConfig
from bench_core.stage_cache import StageCache
from bench_core.timing import Stopwatch
from bench_core.training.data import Batches, TrainData, crop_batches, patch_batches, pixel_features
from bench_core.training.optim import describe_optimizer, make_optimizer, make_scheduler
from bench_core.training.outputs import (
    accuracy,
    check_logits_shape,
    logits_of,
    model_epoch_metrics,
    validation_scores,
)
from bench_core.training.predict import Predictor
from bench_core.training.stages import StageContext

# Distinct streams derived from the one trainer seed (SeedSequence spawn keys).
_STREAM_SHUFFLE = 1
_STREAM_STAGE = 2
_STREAM_WARMUP = 3


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


def _derive_seed(seed: int, *stream: int) -> int:
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


class Trainer(Predictor):
    """Builds, trains and applies methods under one seed and device.

    Applying (``predict``, ``predict_scene``, ``predict_dense_at``) is inherited from
    :class:`~bench_core.training.predict.Predictor`.

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
        super().__init__(device)
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
        features = pixel_features(inputs, data.train_index)
        with Stopwatch(self.device) as train_clock:
            model.fit(features, data.train_targets)
        result = FitResult(epochs_run=0, steps=0, stop_reason="estimator_fit", time_train_s=train_clock.elapsed)
        if data.val_index.size:
            with Stopwatch(self.device) as val_clock:
                predicted = self.predict(spec, model, config, inputs, data.val_index, where="validation",
                                         num_classes=data.num_classes)
            result.time_val_s = val_clock.elapsed
            result.best_val_oa = result.final_val_oa = accuracy(predicted, data)
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
            logits = logits_of(output, spec.name)
            check_logits_shape(logits, y, spec, data.num_classes)
            if custom_loss:
                return model.loss(output, y)  # type: ignore[operator]
            return F.cross_entropy(logits, y, ignore_index=IGNORE_INDEX)

        if spec.input_kind == "patch":
            sampler = PatchSampler(inputs, size, device=self.device)
            batches = patch_batches(sampler, data, train, self.device)

            def validate(epoch: int) -> torch.Tensor:
                return self._patch_logits(spec, model, config, sampler, data.val_index,
                                          where=f"validation epoch {epoch}")
        else:
            batches = crop_batches(inputs, data, size, train, self.device)

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
            metrics.update(model_epoch_metrics(model, spec.name))
            last = epoch == train.epochs
            # The last epoch is always validated so that final_val_oa describes the returned model.
            if has_val and (epoch % train.val_every == 0 or last):
                val_clock.start()
                val_oa, val_loss = validation_scores(validate(epoch), data)
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


__all__ = ["FitResult", "Trainer"]
