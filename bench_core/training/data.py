"""What the Trainer trains on: :class:`TrainData` and the epoch's batches drawn from it.

Patch methods get batches of patches centred on training pixels, dense methods batches of
crops (random, or every crop of a grid); pixel methods get the pixels' band vectors. The
sampling itself lives in :mod:`bench_core.sampling`; this module decides what an epoch is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from bench_core.errors import ConfigError
from bench_core.sampling import CropSampler, PatchSampler, SamplingError, as_index
from bench_core.scene import IGNORE_INDEX
from bench_core.specs import TrainConfig, crop_grid_stride

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


_PREGATHER_BYTES = 256 * 2**20  # patches of the training pixels gathered once when they fit


def patch_batches(sampler: PatchSampler, data: TrainData, train: TrainConfig, device: torch.device) -> Batches:
    """Training batches of patches centred on the training pixels, in a new random order each epoch."""
    index = torch.from_numpy(data.train_index)
    targets = torch.from_numpy(data.train_targets).to(device)
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


def crop_batches(
    inputs: dict[str, np.ndarray], data: TrainData, size: int, train: TrainConfig, device: torch.device
) -> Batches:
    """Training batches of ``size`` x ``size`` crops, as ``train.crops_per_epoch`` defines an epoch.

    Only training pixels carry targets in the crops; every other pixel is ``IGNORE_INDEX``.
    """
    height, width = data.image_shape
    target_map = np.full(height * width, IGNORE_INDEX, dtype=np.int64)
    target_map[data.train_index] = data.train_targets  # training pixels only
    sampler = CropSampler(inputs, target_map.reshape(height, width), size, device=device)
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


def pixel_features(inputs: Mapping[str, np.ndarray], index: np.ndarray) -> np.ndarray:
    """(N, sum C) float32: the inputs' bands concatenated at the given flat pixels."""
    columns = [np.asarray(arr).reshape(arr.shape[0], -1)[:, index].T for arr in inputs.values()]
    return np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.float32)


__all__ = ["Batches", "TrainData", "crop_batches", "patch_batches", "pixel_features"]
