"""The tiny scene the conformance checks run on, and the sample data they draw from it.

:func:`tiny_scene` is public (``bench_core.testing.tiny_scene``, and the ``tiny_scene``
fixture of :mod:`bench_core.testing.fixtures`); the helpers below build what a check feeds a
method without going through the Trainer: the official split, pixel spectra, and windows
centred on labelled pixels with their targets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench_core.errors import ConfigError
from bench_core.scene import AUX, IGNORE_INDEX, Scene
from bench_core.specs import MethodSpec

if TYPE_CHECKING:
    import torch

DEFAULT_AUX = ("lidar",)


def tiny_scene(
    seed: int = 0,
    height: int = 24,
    width: int = 24,
    hsi_bands: int = 8,
    aux_bands: int = 1,
    num_classes: int = 3,
    *,
    aux_modalities: tuple[str, ...] = DEFAULT_AUX,
    unlabelled_fraction: float = 0.1,
    train_fraction: float = 0.3,
) -> Scene:
    """A small random but learnable multimodal scene with official train/test maps.

    Classes fill spatially coherent Voronoi regions; each class has its own HSI
    spectrum and its own height in every auxiliary modality, plus Gaussian noise, so
    a working method beats chance within a few optimizer steps. ``official_train`` /
    ``official_test`` are label maps (0 outside the split) holding ``train_fraction``
    of each class's labelled pixels (at least 2) and the rest.
    """
    if height < 4 or width < 4 or num_classes < 2 or hsi_bands < 1 or aux_bands < 1:
        raise ConfigError(
            f"tiny_scene(height={height}, width={width}, num_classes={num_classes}, "
            f"hsi_bands={hsi_bands}, aux_bands={aux_bands}): expected height, width >= 4, "
            f"num_classes >= 2 and at least one band per modality"
        )
    rng = np.random.default_rng(seed)
    n_sites = 2 * num_classes
    site_y = rng.uniform(0, height, n_sites)
    site_x = rng.uniform(0, width, n_sites)
    yy, xx = np.mgrid[0:height, 0:width]
    dist = (yy[..., None] - site_y) ** 2 + (xx[..., None] - site_x) ** 2
    classes = (np.arange(n_sites) % num_classes)[dist.argmin(axis=-1)]
    # Guarantee every class a 2x2 block at its first site, however the regions fell.
    for k in range(num_classes):
        y0 = min(int(site_y[k]), height - 2)
        x0 = min(int(site_x[k]), width - 2)
        classes[y0 : y0 + 2, x0 : x0 + 2] = k

    labels = (classes + 1).astype(np.int64)
    unlabelled = rng.random((height, width)) < unlabelled_fraction
    for k in range(num_classes):  # keep >= 4 labelled pixels per class
        members = np.argwhere(classes == k)
        keep = members[: min(4, len(members))]
        unlabelled[keep[:, 0], keep[:, 1]] = False
    labels[unlabelled] = 0

    # Smooth class spectra (a random walk), so bands are correlated as in real HSI.
    spectra = np.cumsum(rng.normal(0, 0.15, (num_classes, hsi_bands)), axis=1) + rng.uniform(
        0.3, 0.7, (num_classes, 1)
    )
    hsi = spectra[classes].transpose(2, 0, 1) + rng.normal(0, 0.05, (hsi_bands, height, width))
    modalities: dict[str, np.ndarray] = {"hsi": hsi.astype(np.float32)}
    for name in aux_modalities:
        heights = rng.permutation(np.linspace(0.0, 1.0, num_classes))
        aux = heights[classes][None] + rng.normal(0, 0.1, (aux_bands, height, width))
        modalities[name] = aux.astype(np.float32)

    train = np.zeros_like(labels)
    test = np.zeros_like(labels)
    flat = labels.reshape(-1)
    for k in range(1, num_classes + 1):
        members = rng.permutation(np.flatnonzero(flat == k))
        n_train = max(2, int(round(train_fraction * members.size)))
        train.reshape(-1)[members[:n_train]] = k
        test.reshape(-1)[members[n_train:]] = k
    return Scene(
        name="tiny",
        modalities=modalities,
        labels=labels,
        class_names=tuple(f"class_{k}" for k in range(1, num_classes + 1)),
        official_train=train,
        official_test=test,
        metadata={"source": f"bench_core.testing.tiny_scene(seed={seed})"},
    )


def scene_for(spec: MethodSpec, seed: int = 0) -> Scene:
    """A tiny scene holding every modality the method names, big enough for its crops."""
    named = tuple(m for m in spec.modalities if m not in ("hsi", AUX))
    side = 24
    if spec.input_kind == "dense":
        side = max(side, spec.effective_patch_size(spec.resolve("fast").train) + 1)
    return tiny_scene(seed=seed, height=side, width=side, aux_modalities=named or DEFAULT_AUX)


def split_pixels(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) flat indices from the official maps; every 5th train pixel validates."""
    assert scene.official_train is not None and scene.official_test is not None
    train_all = np.flatnonzero(np.asarray(scene.official_train).reshape(-1) > 0)
    val = train_all[::5]
    train = np.setdiff1d(train_all, val)
    test = np.flatnonzero(np.asarray(scene.official_test).reshape(-1) > 0)
    return train, val, test


def pixel_features(spec: MethodSpec, scene: Scene, index: np.ndarray) -> np.ndarray:
    """(N, F) spectra: the requested inputs stacked along bands, as pixel methods get them."""
    inputs = scene.inputs_for(spec.modalities, f"method {spec.name!r}")
    stacked = np.concatenate([inputs[m] for m in spec.modalities], axis=0)
    return stacked.reshape(stacked.shape[0], -1)[:, index].T.astype(np.float32)


def windows(
    spec: MethodSpec, scene: Scene, index: np.ndarray, size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-input (B, C, size, size) windows centred on ``index`` and their targets.

    Targets are the centre pixels' classes (patch methods, (B,)) or the windows' label
    maps (dense methods, (B, size, size)), 0-based with IGNORE_INDEX outside labels.
    """
    import torch

    r = size // 2
    width = scene.shape[1]
    rows, cols = np.divmod(index, width)
    inputs = scene.inputs_for(spec.modalities, f"method {spec.name!r}")
    batch: dict[str, torch.Tensor] = {}
    for name, array in inputs.items():
        padded = np.pad(array, ((0, 0), (r, r), (r, r)))
        wins = np.stack([padded[:, y : y + size, x : x + size] for y, x in zip(rows, cols)])
        batch[name] = torch.from_numpy(np.ascontiguousarray(wins, dtype=np.float32))
    labels = np.pad(np.asarray(scene.labels, dtype=np.int64), r)
    maps = np.stack([labels[y : y + size, x : x + size] for y, x in zip(rows, cols)]) - 1
    maps[maps < 0] = IGNORE_INDEX
    target = maps if spec.input_kind == "dense" else maps[:, r, r]
    return batch, torch.from_numpy(np.ascontiguousarray(target))


def labelled_sample(scene: Scene, n: int) -> np.ndarray:
    """Up to ``n`` training pixels spread evenly over the training set (same pixels every call)."""
    train, _, _ = split_pixels(scene)
    return train[np.linspace(0, train.size - 1, num=min(n, train.size)).astype(int)]


__all__ = ["DEFAULT_AUX", "labelled_sample", "pixel_features", "scene_for", "split_pixels", "tiny_scene", "windows"]
