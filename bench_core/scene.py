"""Scene: one co-registered multimodal scene, and the label convention.

The label convention lives here and only here:

* ``labels`` is an (H, W) integer map, ``0`` = unlabelled, ``1..K`` = classes.
* Model targets are 0-based (``label - 1``) and ``IGNORE_INDEX`` (-1) marks pixels
  that carry no target for the current purpose (unlabelled, or not in this split).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from bench_core.errors import DatasetError, MissingModalityError

IGNORE_INDEX = -1
"""Target value of a pixel that contributes nothing to the loss or the metrics."""

AUX = "x"
"""Pseudo-modality a method can ask for: every non-HSI modality of the scene, band-stacked."""

KNOWN_MODALITIES = ("hsi", "lidar", "sar", "dsm", "msi")


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Scene:
    """One co-registered multimodal scene (immutable once built).

    Attributes:
        name: dataset name, e.g. ``"augsburg"``.
        modalities: ``{name: (C, H, W) float32}`` (float16 allowed for large scenes: the
            samplers and pixel features read it as float32); ``"hsi"`` is the hyperspectral
            image, the others (``lidar``, ``sar``, ``dsm``, ``msi``) are "X" modalities.
        labels: (H, W) integer map, 0 = unlabelled, 1..K = classes.
        class_names: K names; ``class_names[k - 1]`` is the name of label ``k``.
        official_train: optional (H, W) map of the dataset's own training pixels.
        official_test: optional (H, W) map of the dataset's own test pixels.
        palette: optional K RGB triples (0..255) for classification maps.
        metadata: free-form facts (GSD, sensor, source files and their sha256).
    """

    name: str
    modalities: Mapping[str, np.ndarray]
    labels: np.ndarray
    class_names: tuple[str, ...]
    official_train: np.ndarray | None = None
    official_test: np.ndarray | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise DatasetError(f"scene {self.name!r}: no modalities given; expected at least 'hsi'")
        labels = np.asarray(self.labels)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(
                f"scene {self.name!r}: labels must be an (H, W) integer map, "
                f"got shape {labels.shape} dtype {labels.dtype}"
            )
        height, width = labels.shape
        mods: dict[str, np.ndarray] = {}
        for key, value in self.modalities.items():
            arr = np.asarray(value)
            if arr.ndim != 3 or arr.shape[1:] != (height, width):
                raise DatasetError(
                    f"scene {self.name!r}: modality {key!r} has shape {arr.shape}; "
                    f"expected (C, {height}, {width}) to match the labels"
                )
            if arr.dtype not in (np.float32, np.float16):
                raise DatasetError(
                    f"scene {self.name!r}: modality {key!r} has dtype {arr.dtype}; expected float32 "
                    f"(or float16, for large scenes stored at half precision)"
                )
            mods[key] = _readonly(arr)
        k = len(self.class_names)
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > k:
            raise DatasetError(
                f"scene {self.name!r}: labels range {lo}..{hi}, expected 0..{k} "
                f"(0 = unlabelled, {k} class names given)"
            )
        for attr in ("official_train", "official_test"):
            m = getattr(self, attr)
            if m is not None:
                m = np.asarray(m)
                if m.shape != (height, width):
                    raise DatasetError(
                        f"scene {self.name!r}: {attr} has shape {m.shape}, expected {(height, width)}"
                    )
                object.__setattr__(self, attr, _readonly(m))
        if self.palette is not None and len(self.palette) != k:
            raise DatasetError(
                f"scene {self.name!r}: palette has {len(self.palette)} colours for {k} classes"
            )
        object.__setattr__(self, "modalities", MappingProxyType(mods))
        object.__setattr__(self, "labels", _readonly(labels))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the scene."""
        return tuple(self.labels.shape)  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def bands(self) -> dict[str, int]:
        """Number of bands per modality."""
        return {k: int(v.shape[0]) for k, v in self.modalities.items()}

    @property
    def aux_modalities(self) -> tuple[str, ...]:
        """The non-HSI modalities, in scene order (what the ``"x"`` pseudo-modality stacks)."""
        return tuple(k for k in self.modalities if k != "hsi")

    def inputs_for(self, requested: tuple[str, ...], method: str = "the method") -> dict[str, np.ndarray]:
        """Return the (C, H, W) arrays a method asked for.

        ``"x"`` stands for every non-HSI modality stacked along bands. Raises
        :class:`MissingModalityError` naming the method, the missing modality and
        what the scene has.
        """
        out: dict[str, np.ndarray] = {}
        for name in requested:
            if name == AUX:
                aux = self.aux_modalities
                if not aux:
                    raise MissingModalityError(
                        f"{method} needs an auxiliary modality ('x': LiDAR/SAR/DSM/...) but scene "
                        f"{self.name!r} has only {list(self.modalities)}; pick a multimodal dataset"
                    )
                arrays = [self.modalities[a] for a in aux]
                out[AUX] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            elif name in self.modalities:
                out[name] = self.modalities[name]
            else:
                raise MissingModalityError(
                    f"{method} needs modality {name!r} but scene {self.name!r} has "
                    f"{list(self.modalities)}; pick a dataset that provides {name!r}"
                )
        return out

    def input_bands(self, requested: tuple[str, ...], method: str = "the method") -> dict[str, int]:
        """Bands of each requested input (see :meth:`inputs_for`), without copying data."""
        out: dict[str, int] = {}
        for name in requested:
            if name == AUX:
                aux = self.aux_modalities
                if not aux:
                    self.inputs_for((AUX,), method)  # raises the clear error
                out[AUX] = sum(int(self.modalities[a].shape[0]) for a in aux)
            else:
                if name not in self.modalities:
                    self.inputs_for((name,), method)
                out[name] = int(self.modalities[name].shape[0])
        return out

    def info(self, requested: tuple[str, ...], method: str = "the method", **extra: Any) -> SceneInfo:
        """What a method's ``build`` may know about this scene (no pixel data)."""
        return SceneInfo(
            dataset=self.name,
            bands=self.input_bands(requested, method),
            num_classes=self.num_classes,
            class_names=self.class_names,
            image_shape=self.shape,
            x_modalities=self.aux_modalities if AUX in requested else (),
            **extra,
        )


@dataclass(frozen=True)
class SceneInfo:
    """What a method is told when it is built: shapes and classes, never pixels.

    Attributes:
        dataset: dataset name.
        bands: bands per input the method asked for (``{"hsi": 180, "x": 4}``).
        num_classes: K.
        class_names: the K class names.
        image_shape: (H, W) of the whole scene.
        patch_size: patch side for patch methods, crop side for dense methods, 1 for pixel methods.
        x_modalities: the scene modalities stacked, in order, into the ``"x"`` input
            (``("sar",)``, ``("lidar",)``); empty when the method did not ask for ``"x"``.
        seed: the cell's training seed. ``build`` runs under it already; a method that seeds
            something of its own (a subsampling RNG, a stand-in's random weights) uses this.
    """

    dataset: str
    bands: Mapping[str, int]
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    patch_size: int = 1
    x_modalities: tuple[str, ...] = ()
    seed: int = 0


def labels_to_targets(labels: np.ndarray) -> np.ndarray:
    """Map 0 = unlabelled / 1..K to 0-based targets with :data:`IGNORE_INDEX` for unlabelled."""
    labels = np.asarray(labels)
    return np.where(labels > 0, labels.astype(np.int64) - 1, IGNORE_INDEX).astype(np.int64)
