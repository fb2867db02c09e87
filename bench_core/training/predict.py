"""Applying a model: predictions for chosen pixels or the whole scene, chunked and checked.

Pixel and patch methods predict in chunks of :data:`PREDICT_CHUNK` pixels, dense methods
by sliding windows (:mod:`bench_core.sampling`), so that a scene of tens of millions of
pixels never needs all its features or logits at once. Every prediction runs in eval mode
and its logits are checked to be finite.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from bench_core.errors import MissingModalityError, SamplingError
from bench_core.sampling import (
    ModelOutputError,
    PatchSampler,
    as_index,
    sliding_window_logits_at,
    sliding_window_predict,
)
from bench_core.specs import MethodSpec, ResolvedConfig
from bench_core.timing import resolve_device
from bench_core.training.data import pixel_features
from bench_core.training.outputs import check_finite_logits, checked_labels, evaluating, logits_of
from bench_core.training.stages import derived_inputs

PREDICT_CHUNK = 2**18
"""Pixels predicted per chunk by pixel and patch methods (features, logits and patches stay bounded)."""


class Predictor:
    """Applies built (and trained) models of any input kind on one device.

    :class:`~bench_core.training.Trainer` is a Predictor that also builds and fits; use
    a Predictor on its own to apply a model trained elsewhere.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.
    """

    def __init__(self, device: str | torch.device = "auto") -> None:
        self.device = resolve_device(device)

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
            parts = [np.asarray(model.predict(pixel_features(inputs, flat[i:i + PREDICT_CHUNK]))).reshape(-1)
                     for i in range(0, flat.size, PREDICT_CHUNK)]
            labels = np.concatenate(parts) if parts else np.asarray(model.predict(pixel_features(inputs, flat)))
            return checked_labels(labels.reshape(-1), spec.name, where, num_classes)
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
        with evaluating(model), torch.inference_mode():
            for start in range(0, flat.size, config.train.eval_batch_size):
                chosen = flat[start : start + config.train.eval_batch_size]
                logits = logits_of(model(sampler.patches(chosen)), spec.name)
                if logits.ndim != 2 or logits.shape[0] != chosen.size:
                    raise ModelOutputError(
                        f"method {spec.name!r}: forward returned logits {tuple(logits.shape)} for "
                        f"{chosen.size} patches; expected ({chosen.size}, num_classes)"
                    )
                chunks.append(logits.float().cpu())
        out = torch.cat(chunks) if chunks else torch.zeros(0, 0)
        check_finite_logits(out, spec.name, where, pixel_dim=1)
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
        with evaluating(model):
            logits, _ = sliding_window_logits_at(
                lambda x: logits_of(model(x), spec.name),
                inputs,
                spec.effective_patch_size(config.train),
                flat,
                None,
                batch_size=config.train.batch_size,
                device=self.device,
            )
        logits = logits.cpu()
        check_finite_logits(logits, spec.name, where, pixel_dim=1)
        return logits

    def predict_scene(
        self, spec: MethodSpec, model: Any, config: ResolvedConfig, inputs: Mapping[str, np.ndarray],
        *, where: str = "scene prediction", known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """0-based predictions (H, W) int64 for every pixel (the classification map).

        ``known = (flat index, predictions)``: pixels this model has already predicted (the
        scored test pixels) keep those predictions, so the map shows exactly what was scored.
        Pixel and patch methods predict only the other pixels; a dense method's windows cover
        the whole scene anyway.

        Non-finite logits raise :class:`~bench_core.errors.NonFiniteOutputError` naming ``where``.
        """
        inputs = self._check_inputs(spec, inputs, model)
        first = next(iter(inputs.values()))
        height, width = int(first.shape[1]), int(first.shape[2])
        known_index, known_predicted = _known_pixels(known, height * width)
        if spec.input_kind == "dense":
            with evaluating(model):
                scene = sliding_window_predict(  # in strips when the scene is large
                    lambda x: logits_of(model(x), spec.name),
                    inputs,
                    spec.effective_patch_size(config.train),
                    None,
                    batch_size=config.train.batch_size,  # what fits while training fits here
                    device=self.device,
                    check=lambda logits: check_finite_logits(logits, spec.name, where, pixel_dim=0),
                ).reshape(-1)
        else:
            scene = np.full(height * width, -1, dtype=np.int64)
            todo = np.ones(height * width, dtype=bool)
            todo[known_index] = False
            rest = np.flatnonzero(todo)
            if rest.size:
                scene[rest] = self.predict(spec, model, config, inputs, rest, where=where)
        scene[known_index] = known_predicted
        return scene.reshape(height, width)


def _known_pixels(known: tuple[np.ndarray, np.ndarray] | None, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """``predict_scene``'s ``known`` as (unique flat index, int64 predictions), checked."""
    if known is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    index, predicted = known
    flat = as_index(index, n_pixels).numpy()
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if predicted.shape != flat.shape:
        raise SamplingError(
            f"predict_scene(known=...): {predicted.size} predictions for {flat.size} pixels; "
            f"expected one prediction per known pixel"
        )
    unique, first = np.unique(flat, return_index=True)
    return unique, predicted[first]


__all__ = ["PREDICT_CHUNK", "Predictor"]
