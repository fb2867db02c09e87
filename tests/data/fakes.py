"""Building blocks of the fake dataset files: seeded labels, splits, rasters, checksums.

The fakes are tiny (tens of pixels a side) but carry the real band counts, file names,
variable names, dtypes and axis orders, so the real loaders read them unchanged.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checksums(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of files in ``folder``."""
    return {name: sha256(Path(folder) / name) for name in names}


def block_labels(rng: np.random.Generator, shape: tuple[int, int], k: int, block: int = 4) -> np.ndarray:
    """(H, W) int64 map of 4x4 blocks, each unlabelled (0) or one of 1..k; every class present twice.

    Needs at least ``2 * k + 1`` blocks.
    """
    rows, cols = -(-shape[0] // block), -(-shape[1] // block)
    n_blocks = rows * cols
    if n_blocks < 2 * k + 1:
        raise ValueError(f"shape {shape} has {n_blocks} blocks of {block} px; need {2 * k + 1} for {k} classes")
    values = np.concatenate([np.repeat(np.arange(1, k + 1), 2), [0], rng.integers(0, k + 1, n_blocks - 2 * k - 1)])
    grid = rng.permutation(values).reshape(rows, cols)
    full = np.kron(grid, np.ones((block, block), dtype=np.int64))
    return full[: shape[0], : shape[1]].astype(np.int64)


def train_test_maps(
    rng: np.random.Generator, labels: np.ndarray, per_class: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint train/test label maps: ``per_class`` random training pixels of each class."""
    train = np.zeros_like(labels)
    flat = labels.reshape(-1)
    for cls in range(1, int(labels.max()) + 1):
        members = np.flatnonzero(flat == cls)
        take = min(per_class, members.size - 1)
        train.reshape(-1)[rng.choice(members, size=take, replace=False)] = cls
    test = np.where((labels > 0) & (train == 0), labels, 0)
    return train, test


def class_cube(
    rng: np.random.Generator, labels: np.ndarray, bands: int, dtype: str = "float64", scale: float = 1.0
) -> np.ndarray:
    """(H, W, bands) image: a random mean spectrum per class plus noise, in MATLAB's axis order."""
    k = int(labels.max())
    means = rng.uniform(0.1, 0.9, size=(k + 1, bands))
    cube = means[labels] + 0.05 * rng.standard_normal((*labels.shape, bands))
    cube = np.clip(cube, 0.0, None) * scale
    if np.dtype(dtype).kind in "iu":
        cube = np.round(cube)
    return cube.astype(dtype)


def coords(label_map: np.ndarray) -> np.ndarray:
    """N x 2 (row, col) 0-based coordinates of the nonzero pixels, row-major."""
    return np.argwhere(label_map > 0).astype(np.int64)


def write_zip(zip_path: Path, members: Mapping[str, Path]) -> None:
    """A zip of ``{archive name: file}`` with fixed timestamps (same bytes every time)."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in members.items():
            info = zipfile.ZipInfo(arcname, date_time=(2021, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, Path(path).read_bytes())


def labels_with_counts(rng: np.random.Generator, shape: tuple[int, int], counts: Iterable[int]) -> np.ndarray:
    """(H, W) int64 map holding exactly ``counts[k - 1]`` pixels of class k at random places (0 elsewhere)."""
    counts = [int(c) for c in counts]
    size = shape[0] * shape[1]
    if sum(counts) > size:
        raise ValueError(f"{sum(counts)} labelled pixels do not fit a {shape[0]} x {shape[1]} map")
    flat = np.zeros(size, dtype=np.int64)
    places = rng.permutation(size)
    at = 0
    for cls, n in enumerate(counts, start=1):
        flat[places[at:at + n]] = cls
        at += n
    return flat.reshape(shape)
