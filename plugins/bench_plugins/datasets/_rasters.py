"""Large rasters read without loading them whole: ENVI binaries, GeoTIFFs with no-data tags, .mat bands.

* :func:`read_envi`: an ENVI header (``.hdr``) and its binary (any extension, e.g. the PCIDSK
  ``.pix`` of DFC2018, which ships an ENVI header with a ``header offset``) as a read-only
  memory map in (bands, rows, cols) order, whatever the interleave.
* :func:`read_geotiff`: a one-band GeoTIFF and its ``GDAL_NODATA`` value.
* :class:`MatBands`: one band at a time of a (rows, cols, bands) ``.mat`` variable (v7.3 through
  h5py, so a multi-GB cube never sits in memory at once; v5 files are read whole).

Every problem raises :class:`~bench_core.errors.DatasetError` naming the file, what was found
and what was expected.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench_core import DatasetError
from bench_core.data import mat_version, read_mat

__all__ = ["ENVI_DTYPES", "EnviImage", "GeoTiff", "MatBands", "parse_envi_header", "read_envi", "read_geotiff"]

ENVI_DTYPES = {
    1: np.uint8, 2: np.int16, 3: np.int32, 4: np.float32, 5: np.float64, 12: np.uint16, 13: np.uint32,
    14: np.int64, 15: np.uint64,
}
"""ENVI ``data type`` codes -> numpy dtypes (complex types are not rasters of this project)."""


def parse_envi_header(path: Path, fix: str = "") -> dict[str, str]:
    """``{field: value}`` of an ENVI header (keys lower-case; ``{...}`` lists kept as text)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc}); expected an ENVI header; {fix}") from exc
    if not text.lstrip().upper().startswith("ENVI"):
        raise DatasetError(f"{path}: does not start with 'ENVI'; expected an ENVI header file; {fix}")
    fields: dict[str, str] = {}
    for match in re.finditer(r"^\s*([^=\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", text, flags=re.MULTILINE):
        fields[match.group(1).strip().lower()] = match.group(2).strip()
    return fields


@dataclass(frozen=True)
class EnviImage:
    """An ENVI raster: ``data`` is a read-only (bands, rows, cols) view of the memory-mapped file."""

    data: np.ndarray
    header: dict[str, str]
    file: str

    @property
    def ignore_value(self) -> float | None:
        """The header's ``data ignore value`` (no-data), if any."""
        text = self.header.get("data ignore value")
        try:
            return float(text) if text else None
        except ValueError:
            return None


def read_envi(header_path: Path, data_path: Path, fix: str = "") -> EnviImage:
    """Memory-map the ENVI raster ``data_path`` described by ``header_path`` (no copy)."""
    header = parse_envi_header(header_path, fix)
    where = f"{header_path}"

    def integer(field: str, default: int | None = None) -> int:
        value = header.get(field)
        if value is None and default is not None:
            return default
        try:
            return int(str(value).strip())
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: field {field!r} is {value!r}; expected an integer; {fix}") from None

    samples, lines, bands = integer("samples"), integer("lines"), integer("bands")
    offset, code, order = integer("header offset", 0), integer("data type"), integer("byte order", 0)
    if code not in ENVI_DTYPES:
        raise DatasetError(f"{where}: data type {code}; expected one of {sorted(ENVI_DTYPES)} (real numbers); {fix}")
    dtype = np.dtype(ENVI_DTYPES[code]).newbyteorder(">" if order == 1 else "<")
    interleave = header.get("interleave", "bsq").strip().lower()
    shapes = {"bsq": (bands, lines, samples), "bil": (lines, bands, samples), "bip": (lines, samples, bands)}
    if interleave not in shapes:
        raise DatasetError(f"{where}: interleave {interleave!r}; expected bsq, bil or bip; {fix}")
    expected = offset + samples * lines * bands * dtype.itemsize
    size = Path(data_path).stat().st_size
    if size < expected:
        raise DatasetError(
            f"{data_path}: {size} bytes; expected at least {expected} ({lines} lines x {samples} samples x {bands} "
            f"bands of {dtype.name} after a {offset}-byte header, as {header_path.name} says): the file is "
            f"truncated or does not belong to this header; {fix}"
        )
    raw = np.memmap(data_path, dtype=dtype, mode="r", offset=offset, shape=shapes[interleave])
    cube = {"bsq": raw, "bil": raw.transpose(1, 0, 2), "bip": raw.transpose(2, 0, 1)}[interleave]
    return EnviImage(data=cube, header=header, file=Path(data_path).name)


@dataclass(frozen=True)
class GeoTiff:
    """A one-band raster and its ``GDAL_NODATA`` value (``None`` when untagged)."""

    data: np.ndarray
    nodata: float | None
    file: str


def read_geotiff(path: Path, fix: str = "") -> GeoTiff:
    """The first band of a (Geo)TIFF and its ``GDAL_NODATA`` tag (42113)."""
    import tifffile

    path = Path(path)
    quiet = logging.getLogger("tifffile")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # tifffile warns when a float32 raster's GDAL_NODATA rounds past float32's range
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tag = page.tags.get(42113)
            data = np.asarray(page.asarray())
    except Exception as exc:  # tifffile raises many types for damaged files
        raise DatasetError(
            f"{path}: cannot read as a TIFF image ({type(exc).__name__}: {exc}); expected a complete GeoTIFF, the "
            f"file is probably truncated or corrupt; {fix}"
        ) from exc
    finally:
        quiet.setLevel(level)
    if data.ndim == 3 and 1 in (data.shape[0], data.shape[-1]):
        data = data.reshape(data.shape[1:] if data.shape[0] == 1 else data.shape[:2])
    if data.ndim != 2:
        raise DatasetError(f"{path}: image of shape {data.shape}; expected one band (rows, cols); {fix}")
    nodata = None
    if tag is not None:
        try:
            nodata = float(str(tag.value).strip().strip("\x00"))
        except ValueError:
            nodata = None
    return GeoTiff(data=data, nodata=nodata, file=path.name)


class MatBands:
    """Bands of a (rows, cols, bands) ``.mat`` variable, one at a time.

    v7.3 (HDF5) variables are read band by band through h5py (MATLAB's column-major layout
    makes each band one contiguous block); v5 variables are read whole.
    """

    def __init__(self, path: Path, key: str, fix: str = "") -> None:
        self.path, self.key, self.fix = Path(path), key, fix
        self.version = mat_version(self.path, fix)
        self._array: np.ndarray | None = None
        self._h5: Any = None
        if self.version == "5":
            value = read_mat(self.path, [key], fix)[key]
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                raise DatasetError(f"{self.path}: variable {key!r} is not a numeric array; {fix}")
            self._array = value if value.ndim == 3 else value[..., None]
            self.shape = tuple(int(v) for v in self._array.shape)
            self.dtype = self._array.dtype
        else:
            import h5py

            try:
                self._h5 = h5py.File(self.path, "r")
            except Exception as exc:
                raise DatasetError(f"{self.path}: cannot read as a MATLAB v7.3 file ({exc}); {fix}") from exc
            if key not in self._h5:
                names = [k for k in self._h5 if not k.startswith("#")]
                self._h5.close()
                raise DatasetError(
                    f"{self.path}: variable(s) [{key!r}] not found; the file holds {names}. Expected the variables "
                    f"[{key!r}]: this is not the expected file, or it is truncated; {fix}"
                )
            ds = self._h5[key]
            stored = tuple(int(v) for v in ds.shape)  # reversed: (bands, cols, rows)
            if len(stored) == 2:
                stored = (1, *stored)
            if len(stored) != 3 or ds.dtype.kind not in "biuf":
                raise DatasetError(f"{self.path}: variable {key!r} has shape {stored[::-1]} {ds.dtype}; expected a "
                                   f"numeric (rows, cols, bands) image; {fix}")
            self._ds = ds
            self.shape = stored[::-1]
            self.dtype = ds.dtype

    @property
    def where(self) -> str:
        return f"{self.path.name} (variable {self.key!r})"

    def band(self, index: int) -> np.ndarray:
        """Band ``index`` as a (rows, cols) array."""
        if self._array is not None:
            return np.asarray(self._array[..., index])
        try:
            block = self._ds[index] if len(self._ds.shape) == 3 else self._ds[()]
        except Exception as exc:
            raise DatasetError(f"{self.path}: cannot read band {index} of {self.key!r} ({exc}); the file is "
                               f"truncated or corrupt; {self.fix}") from exc
        return np.asarray(block).T

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None
