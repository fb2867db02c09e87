"""Band-wise writing of the DFC2018 scene: one band at a time, normalised, into memory-mapped arrays."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench_plugins.datasets.dfc2018.facts import (
    HSI_FLOAT_NODATA_ABOVE,
    LIDAR_NODATA_ABS,
    NAME,
    NDSM,
)

# ----------------------------------------------------------------------------- band-wise writing


class BandArrays:
    """Memory-mapped ``.npy`` arrays of one scene being built (removed once the cache holds a copy)."""

    def __init__(self, root: Path | None) -> None:
        if root is None:
            self.folder = Path(tempfile.mkdtemp(prefix=f"bench-{NAME}-"))
            self.temporary = True
        else:
            root.mkdir(parents=True, exist_ok=True)
            self.folder = root / f".build-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self.folder.mkdir()
            self.temporary = False

    def new(self, name: str, shape: tuple[int, ...], dtype: Any) -> np.memmap:
        return np.lib.format.open_memmap(self.folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)

    def release(self) -> None:
        """Remove the files; open memory maps stay valid (POSIX) until they are dropped."""
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclasses.dataclass
class Band:
    """One raster band as read, before normalisation: values and where they are valid."""

    values: np.ndarray
    valid: np.ndarray
    source: str


def _stats(values: np.ndarray, method: str) -> tuple[float, float]:
    """(shift, scale) of the valid values: min and range (minmax) or mean and std (zscore)."""
    if values.size == 0:
        return 0.0, 0.0
    if method == "minmax":
        lo, hi = float(values.min()), float(values.max())
        return lo, hi - lo
    return float(values.mean()), float(values.std())


def normalised(band: Band, method: str) -> np.ndarray:
    """(rows, cols) float32: valid values normalised, no-data set to the normalised band minimum."""
    values = band.values.astype(np.float64)
    valid_values = values[band.valid]
    shift, scale = _stats(valid_values, method)
    if not (scale > 0 and np.isfinite(scale)):
        return np.zeros(values.shape, dtype=np.float32)
    out = ((values - shift) / scale).astype(np.float32)
    if not band.valid.all():
        out[~band.valid] = (float(valid_values.min()) - shift) / scale
    return out


def write_band(out: np.ndarray, index: int, band: np.ndarray, factor: int) -> None:
    """``out[index] = band`` nearest-upsampled by ``factor`` (1 = as is), written in place."""
    if factor == 1:
        out[index] = band
        return
    h, w = band.shape
    target = out[index].reshape(h, factor, w, factor)
    target[...] = band[:, None, :, None]


def storage_dtype(source: np.dtype) -> np.dtype:
    """float16 for integer sources of at most 16 bits, else float32 (see ``STORAGE``)."""
    return np.dtype(np.float16) if source.kind in "iub" and source.itemsize <= 2 else np.dtype(np.float32)


STORAGE = (
    "HSI stored as float16 when the source is 16-bit (or narrower) integers: a normalised value is rounded to the "
    "nearest float16, an absolute error of at most 2^-12 (0.024 %) of the band's range, below the CASI's noise; "
    "float sources and all LiDAR rasters are stored as float32"
)


def hsi_band(data: np.ndarray, ignore: float | None, source: str) -> Band:
    values = np.asarray(data)
    valid = np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        valid &= np.isfinite(values) & (values <= HSI_FLOAT_NODATA_ABOVE)
    if ignore is not None:
        valid &= values != ignore
    return Band(values, valid, source)


def lidar_band(data: np.ndarray, nodata: float | None, source: str) -> Band:
    values = np.asarray(data)
    valid = np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            valid &= np.isfinite(values) & (np.abs(values) < LIDAR_NODATA_ABS)
    if nodata is not None and np.isfinite(nodata):
        valid &= values != nodata
    return Band(values, valid, source)


def x_bands(tokens: Sequence[str], rasters: Mapping[str, Band]) -> Iterator[tuple[str, Band]]:
    for t in tokens:
        if t in NDSM:
            dsm, dem = rasters["dsm"], rasters[NDSM[t]]
            values = dsm.values.astype(np.float32) - dem.values.astype(np.float32)
            yield t, Band(values, dsm.valid & dem.valid, f"{dsm.source} - {dem.source}")
        else:
            yield t, rasters[t]
