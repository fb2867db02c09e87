"""What a method's :class:`~bench_core.specs.Stage` sees, and the derived inputs it may add to the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench_core.errors import ConfigError
from bench_core.sampling import SamplingError
from bench_core.specs import ResolvedConfig, check_name
from bench_core.stage_cache import StageCache, inputs_fingerprint
from bench_core.training.data import TrainData


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


__all__ = ["StageContext", "add_derived_input", "derived_inputs"]
