"""Seeded fakes of the DFC2018 files: scaled-down scenes for tests, a full-size one for the benchmark.

Layouts (``make_fake(folder, seed, layout)`` returns ``{file name: sha256}``):

* ``"official"``: the contest's tree as the phase-2 archive and the test labels unpack::

      ImageryAndTrainingGT/2018IEEE_Contest/Phase2/FullHSIDataset/20170218_UH_CASI_S4_NAD83.pix + .hdr
      ImageryAndTrainingGT/2018IEEE_Contest/Phase2/Lidar GeoTiff Rasters/<DSM_C12, ...>/<UH17...>.tif
      ImageryAndTrainingGT/2018IEEE_Contest/Phase2/TrainingGT/2018_IEEE_GRSS_DFC_GT_TR.tif
      TestingGT/TestingGT/Test_Labels.tif

  The HSI is an ENVI binary (uint16, 50 channels, BIL interleave, behind a 512-byte header as
  the PCIDSK ``.pix`` is) at half the 0.5 m grid; the 7 LiDAR rasters are float32 GeoTIFFs with
  a ``GDAL_NODATA`` tag and a few no-data pixels (-3.4e38, and 1e38 untagged in one
  intensity); GT_TR covers the training tiles (1, 1)-(1, 4) of the 2 x 7 tiling, Test_Labels the
  whole grid outside them.
* ``"ouc"``: ``houston_hsi.mat`` (rows x cols x 50, uint16), ``houston_lidar.mat`` (float32),
  ``houston_gt.mat`` (uint8), ``houston_index.mat`` (0-based (row, col) N x 2 ``houston_train``,
  ``houston_test``, ``houston_all``).

``SHAPE`` (24 x 56) is the 0.5 m grid: even rows and a multiple of 14 columns, like 2404 x 8344.
:func:`make_full_size` writes the real-size official tree (2404 x 8344, the 40 official
per-class counts) streaming, for the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from bench_plugins.datasets import dfc2018 as d

from bench_core.data import save_mat
from tests.data import fakes

NUM_CLASSES = 20
SHAPE = (24, 56)
LAYOUTS = ("official", "ouc")
PHASE2 = Path("ImageryAndTrainingGT/2018IEEE_Contest/Phase2")
TREE = {
    d.HSI_PIX: PHASE2 / "FullHSIDataset",
    d.HSI_HDR: PHASE2 / "FullHSIDataset",
    d.GT_TR: PHASE2 / "TrainingGT",
    d.GT_TEST: Path("TestingGT/TestingGT"),
    **{r.filename: PHASE2 / "Lidar GeoTiff Rasters" / r.folder for r in d.RASTERS.values()},
}
"""Where each official file sits in the unpacked tree (relative to the dataset folder)."""
NODATA = np.float32(-3.4028235e38)
PIX_HEADER = 512


def envi_header(lines: int, samples: int, bands: int, interleave: str = "bil", data_type: int = 12) -> str:
    """An ENVI header describing a binary behind a 512-byte header, as the DFC2018 ``.hdr`` does."""
    return "\n".join([
        "ENVI", "description = {fake 20170218_UH_CASI_S4_NAD83, written by tests/data/dfc2018}",
        f"samples = {samples}", f"lines = {lines}", f"bands = {bands}", f"header offset = {PIX_HEADER}",
        "file type = ENVI Standard", f"data type = {data_type}", f"interleave = {interleave}", "byte order = 0",
        "wavelength units = Nanometers", "",
    ])


def write_pix(path: Path, hwc: np.ndarray, interleave: str = "bil") -> None:
    """(rows, cols, bands) uint16 as an ENVI binary behind a fake 512-byte PCIDSK header."""
    order = {"bsq": (2, 0, 1), "bil": (0, 2, 1), "bip": (0, 1, 2)}[interleave]
    with Path(path).open("wb") as fh:
        fh.write(b"PCIDSK  fake".ljust(PIX_HEADER, b" "))
        fh.write(np.ascontiguousarray(hwc.transpose(order)).astype("<u2").tobytes())


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None) -> None:
    """A one-band GeoTIFF-like TIFF (no geo keys), with a GDAL_NODATA tag when given."""
    import tifffile

    extratags = [(42113, "s", 0, repr(float(nodata)), True)] if nodata is not None else []
    tifffile.imwrite(path, data, photometric="minisblack", extratags=extratags)


def _lidar(rng: np.random.Generator, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The 7 rasters: ground ~ 10-12 m, objects up to 30 m above it, class-dependent intensities."""
    k = int(labels.max())
    height = rng.uniform(0.0, 30.0, k + 1)
    height[0] = 0.0
    ground = 10.0 + 2.0 * rng.random(labels.shape)
    dsm = ground + height[labels] + 0.1 * rng.standard_normal(labels.shape)
    out = {"dsm": dsm, "dem_3msr": ground + 0.05, "dem_tli": ground, "dem_b": ground + 0.5 * height[labels]}
    for t in ("intensity_1550", "intensity_1064", "intensity_532"):
        out[t] = fakes.class_cube(rng, labels, 1, "float64", 300.0)[..., 0]
    return {t: v.astype(np.float32) for t, v in out.items()}


def write_official(folder: Path, labels: np.ndarray, rng: np.random.Generator, interleave: str = "bil",
                   rasters: tuple[str, ...] = tuple(d.RASTERS), nodata: bool = True) -> dict[str, Path]:
    """The official tree for an (H, W) label map at 0.5 m; returns ``{file name: path}``."""
    height, width = labels.shape
    tile = width // 7
    train = np.zeros_like(labels)
    train[height // 2:, tile:5 * tile] = labels[height // 2:, tile:5 * tile]
    test = np.where(train > 0, 0, labels)
    paths = {name: folder / sub / name for name, sub in TREE.items()}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    coarse = labels[::2, ::2]  # the 1 m pixel's class (labels come in aligned 2 x 2 blocks)
    hsi = fakes.class_cube(rng, coarse, 50, "uint16", 3000)
    write_pix(paths[d.HSI_PIX], hsi, interleave)
    paths[d.HSI_HDR].write_text(envi_header(coarse.shape[0], coarse.shape[1], 50, interleave))
    write_tif(paths[d.GT_TR], train[height // 2:, tile:5 * tile].astype(np.uint8))
    write_tif(paths[d.GT_TEST], test.astype(np.uint8))
    for token, values in _lidar(rng, labels).items():
        if token not in rasters:
            paths.pop(d.RASTERS[token].filename).parent.rmdir()
            continue
        if nodata and token in ("dsm", "dem_tli"):
            values[rng.integers(0, height, 3), rng.integers(0, width, 3)] = NODATA
        if nodata and token == "intensity_1550":
            values[0, 0] = 1e38  # an untagged sentinel
        write_tif(paths[d.RASTERS[token].filename], values, NODATA if token != "intensity_1550" else None)
    return paths


def write_ouc(folder: Path, labels: np.ndarray, rng: np.random.Generator, mat_version: str) -> dict[str, Path]:
    train, test = fakes.train_test_maps(rng, labels)
    folder.mkdir(parents=True, exist_ok=True)
    save_mat(folder / "houston_hsi.mat", {"houston_hsi": fakes.class_cube(rng, labels, 50, "uint16", 3000)},
             mat_version)
    save_mat(folder / "houston_lidar.mat", {"houston_lidar": _lidar(rng, labels)["dsm"]}, mat_version)
    save_mat(folder / "houston_gt.mat", {"houston_gt": labels.astype(np.uint8)}, mat_version)
    every = np.argwhere(np.ones(labels.shape, dtype=bool)).astype(np.int64)
    save_mat(folder / "houston_index.mat", {"houston_train": fakes.coords(train), "houston_test": fakes.coords(test),
                                            "houston_all": every}, mat_version)
    return {n: folder / n for n in ("houston_hsi.mat", "houston_lidar.mat", "houston_gt.mat", "houston_index.mat")}


def fake_labels(seed: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """(H, W) labels in aligned 2 x 2 blocks, every class present."""
    rng = np.random.default_rng([seed, 0x2018])
    return fakes.block_labels(rng, shape, NUM_CLASSES, block=2)


def make_fake(folder: Path, seed: int = 0, layout: str = "official", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE, interleave: str = "bil", rasters: tuple[str, ...] = tuple(d.RASTERS),
              nodata: bool = True) -> dict[str, str]:
    """Write fake DFC2018 files of ``layout`` into ``folder``; returns ``{file name: sha256}``."""
    folder = Path(folder)
    rng = np.random.default_rng([seed, 0x18])
    labels = fake_labels(seed, shape)
    if layout == "official":
        paths = write_official(folder, labels, rng, interleave, rasters, nodata)
    elif layout == "ouc":
        paths = write_ouc(folder, labels, rng, mat_version)
    else:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    return {name: fakes.sha256(p) for name, p in paths.items()}


# ----------------------------------------------------------------------------- full size (benchmark)


def _runs(counts: tuple[int, ...], size: int, rng: np.random.Generator) -> np.ndarray:
    """A flat label array of ``size`` holding exactly ``counts[k-1]`` pixels of class k, in runs with gaps."""
    out = np.zeros(size, dtype=np.uint8)
    gap = (size - sum(counts)) // (len(counts) + 1)
    at = gap
    for cls in rng.permutation(len(counts)) + 1:
        n = counts[cls - 1]
        out[at:at + n] = cls
        at += n + gap
    return out


def make_full_size(folder: Path, seed: int = 0, rasters: tuple[str, ...] = ("dsm", "dem_tli"),
                   chunk_lines: int = 64) -> dict[str, Path]:
    """The official tree at the real size (2404 x 8344, HSI 1202 x 4172 x 50) with the official per-class counts.

    Written streaming: the 501 MB HSI binary line block by line block, each LiDAR raster (80 MB)
    at once. Returns ``{file name: path}``.
    """
    height, width = d.FACTS["official"].shape  # type: ignore[misc]
    tile = width // 7
    rng = np.random.default_rng([seed, 0xF011])
    gt_tr = _runs(d.TRAIN_COUNTS, (height // 2) * (4 * tile), rng).reshape(height // 2, 4 * tile)
    test = np.zeros((height, width), dtype=np.uint8)
    test[: height // 2] = _runs(d.TEST_COUNTS, (height // 2) * width, rng).reshape(height // 2, width)
    labels = test.copy()
    labels[height // 2:, tile:5 * tile] = gt_tr
    paths = {name: Path(folder) / sub / name for name, sub in TREE.items()
             if name not in {r.filename for t, r in d.RASTERS.items() if t not in rasters}}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    write_tif(paths[d.GT_TR], gt_tr)
    write_tif(paths[d.GT_TEST], test)
    lines, samples, bands = height // 2, width // 2, 50
    paths[d.HSI_HDR].write_text(envi_header(lines, samples, bands, "bil"))
    means = rng.uniform(500, 3500, (NUM_CLASSES + 1, bands))
    with paths[d.HSI_PIX].open("wb") as fh:
        fh.write(b"PCIDSK  fake full size".ljust(PIX_HEADER, b" "))
        for start in range(0, lines, chunk_lines):
            stop = min(lines, start + chunk_lines)
            cls = labels[2 * start:2 * stop:2, ::2]  # (n, samples)
            block = means[cls] + 60.0 * rng.standard_normal((*cls.shape, bands))  # (n, samples, bands)
            fh.write(np.clip(block, 0, 65535).astype("<u2").transpose(0, 2, 1).tobytes())  # BIL
    heights = rng.uniform(0.0, 30.0, NUM_CLASSES + 1)
    heights[0] = 0.0
    ground = (10.0 + 2.0 * rng.random((height, width))).astype(np.float32)
    for token in rasters:
        if token == "dsm":
            values = ground + heights[labels].astype(np.float32)
        elif token.startswith("dem"):
            values = ground
        else:
            values = (100.0 + 300.0 * rng.random((height, width))).astype(np.float32)
        values = values.copy()
        values[rng.integers(0, height, 100), rng.integers(0, width, 100)] = NODATA
        write_tif(paths[d.RASTERS[token].filename], values, NODATA)
        del values
    return paths
