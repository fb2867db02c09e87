"""DFC2018 (Houston 2018, 2018 IEEE GRSS Data Fusion Contest): CASI HSI 48 bands + multispectral LiDAR, 20 classes.

Registers ``dfc2018``. The scene is large (2404 x 8344 pixels at 0.5 m, 20 million pixels), so
the scene is built band by band into memory-mapped arrays and cached memory-mapped; the HSI
is stored as float16 when its source is 16-bit integers (see ``STORAGE``). Two
distributions are read, and they are **different protocols** (the run param ``data.layout``
says which one a run used):

* ``official``: the contest's phase-2 file tree (UH, on request; no redistribution):
  ``FullHSIDataset/20170218_UH_CASI_S4_NAD83.pix`` + ``.hdr`` (ENVI header; 1202 x 4172 at
  1 m, 50 channels of which 1-48 are spectral, 374-1047 nm; channels 49 and 50 are not
  spectral and are dropped), ``Lidar GeoTiff Rasters/<folder>/<raster>.tif`` (2404 x 8344 at
  0.5 m), ``TrainingGT/2018_IEEE_GRSS_DFC_GT_TR.tif`` (1202 x 4768: the training tiles (1, 1)-
  (1, 4) of the scene's 2 x 7 tiling, placed at rows 1202:2404, cols 1192:5960) and
  ``TestingGT/Test_Labels.tif`` (the full 0.5 m grid, labelled outside the training tiles).
  CoMiX's protocol: the HSI nearest-upsampled x2 to the 0.5 m grid, X = NDSM = DSM_C12 -
  DEM_C123_TLI, official train/test = all of GT_TR / all of Test_Labels (2,018,910 / 341,729
  pixels, the 40 per-class counts verified at load). Which rasters form X is a declared
  choice, overridable with ``BENCH_DFC2018_X`` (see ``X_CHOICES``); a non-default choice is
  a layout of its own (``official+x-...``: its own cache, fingerprint and cell key).
* ``ouc``: the OUC repackaging (``houston_hsi.mat`` 1202 x 4768 x 50, ``houston_lidar.mat`` 1 band
  of an undocumented raster, ``houston_gt.mat`` = GT_TR, ``houston_index.mat`` with 0-based
  (row, col) ``houston_train`` / ``houston_test``): the training box only, at 0.5 m, split
  *inside* it (18,750 / 2,000,160 pixels as one user counted). Not comparable with the
  official protocol.

No-data values (LiDAR sentinels such as -3.4e38 or 1e38, ``GDAL_NODATA``, the ENVI ``data
ignore value``, non-finite values, float HSI above 1e5) are masked **before** the per-band
normalisation, then set to the band's minimum (0 after min-max); how many per raster is in
``metadata["nodata"]``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench_core import DatasetContext, DatasetError, DatasetSpec, Scene, hookimpl
from bench_core.data import (
    CACHE_SCENES_DIR,
    DEFAULT_NORMALISATION,
    Layout,
    Located,
    OfficialCounts,
    Raster,
    describe_normalisation,
    label_map,
    maps_from_index,
    read_mat,
    read_raster,
    resolve_normalisation,
    search_roots,
)
from bench_plugins.datasets._rasters import MatBands, read_envi, read_geotiff
from bench_plugins.datasets._verified import PublishedFacts, VerifiedDataset

__all__ = [
    "CLASSES", "DEFAULT_X", "FACTS", "OFFICIAL", "RASTERS", "X_CHOICES", "X_ENV", "bench_register_datasets",
    "make_loader", "x_choice",
]

log = logging.getLogger("bench.data")
LOADER_VERSION = "1"
NAME = "dfc2018"
UH_URL = ("https://machinelearning.ee.uh.edu/2018-ieee-grss-data-fusion-challenge-fusion-of-multispectral-lidar-"
          "and-hyperspectral-data/")
PHASE2_ZIP = "http://machinelearning.ee.uh.edu/QZ23es1aMPH/2018IEEE/phase2.zip"
OUC_DRIVE = "https://drive.google.com/file/d/1iZEIAVhlt2QJb_RECp0bHFVN7C8po8ag"
HSI_PIX, HSI_HDR = "20170218_UH_CASI_S4_NAD83.pix", "20170218_UH_CASI_S4_NAD83.hdr"
GT_TR, GT_TEST = "2018_IEEE_GRSS_DFC_GT_TR.tif", "Test_Labels.tif"
HSI_BANDS = 48
"""Spectral channels kept of the 50 stored (49 and 50 are not spectral: off-nadir angle and DEM height)."""
HSI_FLOAT_NODATA_ABOVE = 1e5
"""A float HSI value above this is no-data (cdgood/thesis_test_harness's threshold)."""
LIDAR_NODATA_ABS = 1e10
"""A LiDAR value of magnitude >= this is a no-data sentinel (heights and intensities are far smaller)."""
X_ENV = "BENCH_DFC2018_X"
DEEP_SEARCH_DEPTH = 7
"""Folders below a dataset folder searched for the official tree (it nests 5 deep)."""


@dataclasses.dataclass(frozen=True)
class LidarRaster:
    file: str
    folder: str
    what: str


RASTERS = {
    "dsm": LidarRaster("UH17c_GEF051.tif", "DSM_C12", "first-return DSM"),
    "dem_3msr": LidarRaster("UH17_GEG051.tif", "DEM_C123_3msr", "bare-earth DEM from ground returns of all channels"),
    "dem_tli": LidarRaster("UH17_GEG05.tif", "DEM_C123_TLI", "bare-earth DEM, voids under structures filled"),
    "dem_b": LidarRaster("UH17_GEM051.tif", "DEM+B_C123", "hybrid ground + building DEM"),
    "intensity_1550": LidarRaster("UH17_GI1F051.tif", "Intensity_C1", "intensity, 1550 nm"),
    "intensity_1064": LidarRaster("UH17_GI2F051.tif", "Intensity_C2", "intensity, 1064 nm"),
    "intensity_532": LidarRaster("UH17_GI3F051.tif", "Intensity_C3", "intensity, 532 nm"),
}
"""The contest's LiDAR GeoTIFFs (``Lidar GeoTiff Rasters/<folder>/<file>``), 2404 x 8344 at 0.5 m."""
NDSM = {"ndsm": "dem_tli", "ndsm_3msr": "dem_3msr", "ndsm_b": "dem_b"}
"""NDSM choices: DSM_C12 minus this DEM."""
X_CHOICES = {**{t: f"{r.folder} ({r.file}): {r.what}" for t, r in RASTERS.items()},
             **{t: f"NDSM = DSM_C12 - {RASTERS[dem].folder}" for t, dem in NDSM.items()}}
DEFAULT_X = ("ndsm",)
"""CoMiX: NDSM = DSM - DEM (which DEM is not stated; DEM_C123_TLI, the void-filled bare earth, is the declared choice)."""

CLASSES = (
    "Healthy grass", "Stressed grass", "Artificial turf", "Evergreen trees", "Deciduous trees", "Bare earth",
    "Water", "Residential buildings", "Non-residential buildings", "Roads", "Sidewalks", "Crosswalks",
    "Major thoroughfares", "Highways", "Railways", "Paved parking lots", "Unpaved parking lots", "Cars", "Trains",
    "Stadium seats",
)
PALETTE = (
    (50, 205, 50), (173, 255, 47), (0, 128, 128), (0, 100, 0), (34, 139, 34), (139, 69, 19), (0, 0, 255),
    (255, 228, 196), (205, 92, 92), (128, 128, 128), (220, 220, 220), (255, 255, 255), (255, 140, 0),
    (255, 0, 0), (128, 0, 128), (105, 105, 105), (184, 134, 11), (255, 20, 147), (148, 0, 211), (255, 215, 0),
)
TRAIN_COUNTS = (39196, 130008, 2736, 54322, 20172, 18064, 1064, 158995, 894769, 183283, 136035, 6059, 185438,
                39438, 27748, 45932, 587, 26289, 21479, 27296)
TEST_COUNTS = (20000, 20000, 20000, 20000, 20000, 20000, 1628, 20000, 20000, 20000, 20000, 5345, 20000, 20000,
               11232, 20000, 3524, 20000, 20000, 20000)
OFFICIAL = OfficialCounts(
    train=TRAIN_COUNTS, test=TEST_COUNTS,
    source="the contest's GT_TR (training tiles) and Test_Labels.tif (other tiles) = CoMiX Table III; official layout",
)
FACTS = {
    "official": PublishedFacts(source="CoMiX Table III (= the contest's GT_TR / Test_Labels.tif)", shape=(2404, 8344),
                               train=TRAIN_COUNTS, test=TEST_COUNTS),
    "ouc": PublishedFacts(source="the contest's GT_TR (CoMiX Table III, train column)", shape=(1202, 4768),
                          labelled=TRAIN_COUNTS),
}
OFFICIAL_SHA256 = {
    GT_TR: "025b3813a0a52855567debf4b1e294937fd9b1ff17e00b9acd9e794ef29696d0",
    HSI_PIX: "6f29fd1863ceb0cf4ae3b162ffc48e11ce02bad46780531a99ac2b29164b38e2",
    RASTERS["dem_b"].file: "521b04abe70ef1452cdd74ee46b30efa4cc093e707a365bbdd6ad54f6317779a",
}
OUC_SHA256 = {
    "houston_hsi.mat": "35a4a9a2bad193740274c6388f18284fc586a2ef5bde579368796fbeec2a58ea",
    "houston_lidar.mat": "a55fa2d99684078dd0d8039b2ca1349190d86766426a25e8dff7fbd5df036d9b",
    "houston_gt.mat": "93f268e576fcf149fab8cb71b4a79691b420e9a3f369f0cbc73e2029639f6286",
    "houston_index.mat": "2d513db197f105b6b82e7039909878862fbe48750a93184017f22ab8f288d0b3",
}
OBTAIN = (
    f"the University of Houston, on request: {UH_URL} (email your name, contact and affiliation and agree to cite "
    "the dataset and acknowledge the IEEE GRSS IADF and the UH Hyperspectral Image Analysis Lab; no redistribution). "
    f"The phase-2 archive (phase2.zip, {PHASE2_ZIP}) unpacks to 2018IEEE_Contest/Phase2/...; put it and "
    "TestingGT/Test_Labels.tif in a folder named dfc2018. The OUC repackaging (houston_*.mat, a different protocol) "
    f"is on Google Drive: {OUC_DRIVE}"
)
CITATION = (
    "Y. Xu, B. Du, L. Zhang, D. Cerra, M. Pato, E. Carmona, S. Prasad, N. Yokoya, R. Haensch, B. Le Saux, "
    "Advanced multi-sensor optical remote sensing for urban land use and land cover classification: outcome of the "
    "2018 IEEE GRSS Data Fusion Contest, IEEE JSTARS 12(6):1709-1724, 2019, doi:10.1109/JSTARS.2019.2911113. "
    "Acknowledge the IEEE GRSS IADF and the Hyperspectral Image Analysis Lab at the University of Houston."
)
FIX = f"copy it again from the contest's distribution ({UH_URL})"


# ----------------------------------------------------------------------------- settings and layouts


def x_choice(env: Mapping[str, str]) -> tuple[str, ...]:
    """The X rasters ``BENCH_DFC2018_X`` asks for (comma-separated tokens of ``X_CHOICES``), else ``DEFAULT_X``."""
    text = (env.get(X_ENV) or "").strip()
    if not text:
        return DEFAULT_X
    tokens = tuple(t.strip().lower() for t in text.split(",") if t.strip())
    unknown = [t for t in tokens if t not in X_CHOICES]
    if not tokens or unknown or len(set(tokens)) != len(tokens):
        raise DatasetError(
            f"{X_ENV}={text!r}: expected distinct comma-separated rasters among {', '.join(X_CHOICES)} "
            f"(e.g. {X_ENV}=ndsm,intensity_1550,intensity_1064,intensity_532); "
            + (f"unknown: {', '.join(unknown)}" if unknown else "repeated or empty")
        )
    return tokens


def _x_rasters(tokens: Sequence[str]) -> list[str]:
    """The raster tokens the X tokens read, in ``RASTERS`` order."""
    needed = set()
    for t in tokens:
        needed.update(("dsm", NDSM[t]) if t in NDSM else (t,))
    return [t for t in RASTERS if t in needed]


def describe_x(tokens: Sequence[str]) -> str:
    return "; ".join(f"{t} = {X_CHOICES[t]}" for t in tokens)


def official_layout(tokens: Sequence[str] = DEFAULT_X) -> Layout:
    """The contest's tree with the LiDAR rasters the X choice needs."""
    tokens = tuple(tokens)
    rasters = [RASTERS[t].file for t in _x_rasters(tokens)]
    name = "official" if tokens == DEFAULT_X else "official+x-" + "-".join(tokens)
    return Layout(
        name=name,
        required=(HSI_PIX, HSI_HDR, GT_TR, GT_TEST, *rasters),
        description=(f"the contest's phase-2 tree (FullHSIDataset/, Lidar GeoTiff Rasters/, TrainingGT/) and "
                     f"TestingGT/{GT_TEST}; X = {', '.join(tokens)}"),
        read=lambda paths: ("official", tokens),
        sha256={n: s for n, s in OFFICIAL_SHA256.items() if n in (HSI_PIX, GT_TR, *rasters)},
    )


OUC_LAYOUT = Layout(
    name="ouc",
    required=("houston_hsi.mat", "houston_lidar.mat", "houston_gt.mat", "houston_index.mat"),
    description=("OUC repackaging (houston2018-ouc; training box only, 1202 x 4768, split inside it): a different "
                 "protocol from the official one"),
    read=lambda paths: ("ouc", ()),
    keys={"houston_hsi.mat": ("houston_hsi",), "houston_lidar.mat": ("houston_lidar",),
          "houston_gt.mat": ("houston_gt",), "houston_index.mat": ("houston_train", "houston_test", "houston_all")},
    sha256=OUC_SHA256,
)


def layouts_for(env: Mapping[str, str]) -> tuple[Layout, ...]:
    return (official_layout(x_choice(env)), OUC_LAYOUT)


# ----------------------------------------------------------------------------- band-wise writing


class _Arrays:
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
class _Band:
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


def _normalised(band: _Band, method: str) -> np.ndarray:
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


def _write_band(out: np.ndarray, index: int, band: np.ndarray, factor: int) -> None:
    """``out[index] = band`` nearest-upsampled by ``factor`` (1 = as is), written in place."""
    if factor == 1:
        out[index] = band
        return
    h, w = band.shape
    target = out[index].reshape(h, factor, w, factor)
    target[...] = band[:, None, :, None]


def _storage_dtype(source: np.dtype) -> np.dtype:
    """float16 for integer sources of at most 16 bits, else float32 (see ``STORAGE``)."""
    return np.dtype(np.float16) if source.kind in "iub" and source.itemsize <= 2 else np.dtype(np.float32)


STORAGE = (
    "HSI stored as float16 when the source is 16-bit (or narrower) integers: a normalised value is rounded to the "
    "nearest float16, an absolute error of at most 2^-12 (0.024 %) of the band's range, below the CASI's noise; "
    "float sources and all LiDAR rasters are stored as float32"
)


def _hsi_band(data: np.ndarray, ignore: float | None, source: str) -> _Band:
    values = np.asarray(data)
    valid = np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        valid &= np.isfinite(values) & (values <= HSI_FLOAT_NODATA_ABOVE)
    if ignore is not None:
        valid &= values != ignore
    return _Band(values, valid, source)


def _lidar_band(data: np.ndarray, nodata: float | None, source: str) -> _Band:
    values = np.asarray(data)
    valid = np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            valid &= np.isfinite(values) & (np.abs(values) < LIDAR_NODATA_ABS)
    if nodata is not None and np.isfinite(nodata):
        valid &= values != nodata
    return _Band(values, valid, source)


def _x_bands(tokens: Sequence[str], rasters: Mapping[str, _Band]) -> Iterator[tuple[str, _Band]]:
    for t in tokens:
        if t in NDSM:
            dsm, dem = rasters["dsm"], rasters[NDSM[t]]
            values = dsm.values.astype(np.float32) - dem.values.astype(np.float32)
            yield t, _Band(values, dsm.valid & dem.valid, f"{dsm.source} - {dem.source}")
        else:
            yield t, rasters[t]


# ----------------------------------------------------------------------------- the loader


class Dfc2018Dataset(VerifiedDataset):
    """The ``dfc2018`` loader: :class:`VerifiedDataset` with a band-by-band, memory-mapped build."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_root: Path | None = None
        self._builds: list[_Arrays] = []

    # ------------------------------------------------------------------ search

    def _locate(self, context: DatasetContext, env: Mapping[str, str]) -> Located:
        """Like every dataset, but the dataset folder is searched deeper (the official tree nests 5 deep)."""
        layouts = self.layouts_for(env)
        notes: list[str] = []
        for root in search_roots(context, env):
            if not root.path.is_dir():
                continue
            skip = CACHE_SCENES_DIR if root.origin == "cache" else None
            folders = _alias_folders(root.path, (self.name, *self.aliases), skip)
            candidates = [(root.path, 0)] + [(f, DEEP_SEARCH_DEPTH) for f in folders]
            if not folders:
                candidates.append((root.path, DEEP_SEARCH_DEPTH))
            for folder, depth in candidates:
                index = _index(folder, depth, skip if folder == root.path else None)
                for layout in layouts:
                    if all(n in index for n in layout.required):
                        return Located(layout=layout, paths={n: index[n] for n in layout.files if n in index},
                                       root=root)
                    have = [n for n in layout.required if n in index]
                    if have and depth:
                        notes.append(
                            f"  note: {folder} ({root.origin}, searched {depth} levels deep): incomplete "
                            f"{layout.name!r} file set: has {', '.join(have)} but lacks "
                            f"{', '.join(n for n in layout.required if n not in index)} (not loaded: a partial "
                            "dataset is never used)"
                        )
        try:
            return super()._locate(context, env)  # raises the usual message, with where to get the files
        except DatasetError as exc:
            lines = str(exc).splitlines()
            if notes:  # the deep search's notes replace the shallow search's "incomplete" ones
                lines = [ln for ln in lines if "incomplete" not in ln]
                at = next((i for i, ln in enumerate(lines) if ln.startswith("Fix:")), len(lines))
                lines[at:at] = notes
            raise DatasetError("\n".join(lines)) from None

    # ------------------------------------------------------------------ loading

    def load(
        self, context: DatasetContext, normalisation: str | None = None, env: Mapping[str, str] | None = None
    ) -> Scene:
        """:meth:`VerifiedDataset.load`; the build's memory maps are removed once the cache holds the scene."""
        self._build_root = Path(context.cache_dir) / CACHE_SCENES_DIR / self.name if context.cache_dir else None
        if self._build_root is not None:
            _remove_dead_builds(self._build_root)
        try:
            return super().load(context, normalisation, env)
        finally:
            for arrays in self._builds:
                if not arrays.temporary:
                    arrays.release()
            self._builds.clear()

    def build(
        self,
        located: Located,
        normalisation: str = DEFAULT_NORMALISATION,
        sha256: Mapping[str, str] | None = None,
        mismatches: Mapping[str, tuple[str, str]] | None = None,
    ) -> Scene:
        """Read, check and normalise band by band into memory maps (never the whole cube in memory)."""
        method = resolve_normalisation(normalisation)
        kind, tokens = located.layout.read(located.paths)  # type: ignore[misc]
        arrays = _Arrays(self._build_root)
        self._builds.append(arrays)
        try:
            if kind == "official":
                parts = self._official(located, tokens, method, arrays)
            else:
                parts = self._ouc(located, method, arrays)
            modalities, labels, train, test, meta = parts
            problems = meta.pop("_problems")
            metadata: dict[str, Any] = {
                "source": f"{self.name} files, layout {located.layout.name!r}: {located.layout.description}",
                "layout": located.layout.name,
                "source_dir": str(located.folder),
                "files": sorted(located.paths),
                "sha256": dict(sorted((sha256 or {}).items())),
                "normalisation": describe_normalisation(method, tuple(modalities)),
                "loader_version": self.version,
                "url": self.url,
                **meta,
            }
            if mismatches:
                metadata["sha256_mismatch"] = {n: {"expected": e, "actual": a} for n, (e, a) in mismatches.items()}
            scene = Scene(
                name=self.name, modalities=modalities, labels=labels, class_names=self.class_names,
                official_train=train, official_test=test, palette=self.palette,
                metadata=self.with_verification(metadata, located.layout, problems),
            )
        except BaseException:
            arrays.release()
            raise
        if arrays.temporary:
            arrays.release()  # no cache: the maps outlive their (removed) files
        return scene

    def _check(self, located: Located, shape: tuple[int, int], labels: np.ndarray | None, train: np.ndarray | None,
               test: np.ndarray | None) -> list[str]:
        return self.check_facts(located, self.class_names, shape, labels, train, test)

    def _official(self, located: Located, tokens: Sequence[str], method: str, arrays: _Arrays):
        paths = located.paths
        test_raster = read_geotiff(paths[GT_TEST], FIX)
        test = self._labels(Raster(test_raster.data, GT_TEST))
        height, width = test.shape
        if height % 2 or width % 14:
            raise DatasetError(
                f"{paths[GT_TEST]}: {height} x {width} pixels; expected the 0.5 m grid of the contest's 2 x 7 tiles "
                f"(2404 x 8344: an even number of rows and a multiple of 14 columns)"
            )
        tile = width // 7
        tr = self._labels(Raster(read_geotiff(paths[GT_TR], FIX).data, GT_TR))
        if tr.shape != (height // 2, 4 * tile):
            raise DatasetError(
                f"{paths[GT_TR]}: {tr.shape[0]} x {tr.shape[1]} pixels; expected {height // 2} x {4 * tile}, the "
                f"training tiles (1, 1)-(1, 4) of the {height} x {width} grid of {GT_TEST} (1202 x 4768 for the "
                "real files): the files come from different releases"
            )
        train = np.zeros((height, width), dtype=np.uint8)
        train[height // 2:, tile:5 * tile] = tr
        both = int(np.count_nonzero((train > 0) & (test > 0)))
        if both:
            raise DatasetError(
                f"{paths[GT_TR]} (placed at rows {height // 2}:{height}, cols {tile}:{5 * tile}) and {paths[GT_TEST]}: "
                f"{both} pixel(s) are labelled in both; expected the test labels outside the training tiles"
            )
        labels = np.where(train > 0, train, test)
        problems = self._check(located, (height, width), None, train, test)

        envi = read_envi(paths[HSI_HDR], paths[HSI_PIX], FIX)
        cube = envi.data
        if cube.shape[1:] != (height // 2, width // 2):
            raise DatasetError(
                f"{paths[HSI_PIX]}: HSI of {cube.shape[1]} x {cube.shape[2]} pixels at 1 m; expected {height // 2} x "
                f"{width // 2}, half the {height} x {width} grid of {GT_TEST} (1202 x 4172 for the real files)"
            )
        if cube.shape[0] < HSI_BANDS:
            raise DatasetError(f"{paths[HSI_PIX]}: {cube.shape[0]} band(s); expected 50 (48 spectral + 2 auxiliary)")
        storage = _storage_dtype(cube.dtype)
        hsi = arrays.new("hsi", (HSI_BANDS, height, width), storage)
        masked = 0
        for b in range(HSI_BANDS):
            band = _hsi_band(cube[b], envi.ignore_value, HSI_PIX)
            masked += int(band.valid.size - np.count_nonzero(band.valid))
            _write_band(hsi, b, _normalised(band, method), 2)
        hsi.flush()

        rasters: dict[str, Any] = {}
        nodata_notes = [f"hsi: {masked} value(s) of {HSI_PIX}"]
        for t in _x_rasters(tokens):
            tif = read_geotiff(paths[RASTERS[t].file], FIX)
            if tif.data.shape != (height, width):
                raise DatasetError(
                    f"{paths[RASTERS[t].file]}: {tif.data.shape[0]} x {tif.data.shape[1]} pixels; expected {height} x "
                    f"{width}, the 0.5 m grid of {GT_TEST}: the files come from different releases"
                )
            rasters[t] = _lidar_band(tif.data, tif.nodata, RASTERS[t].file)
            nodata_notes.append(f"{t}: {int(rasters[t].valid.size - np.count_nonzero(rasters[t].valid))} pixel(s)"
                                + (f" (GDAL_NODATA {tif.nodata:g})" if tif.nodata is not None else ""))
        x = arrays.new("lidar", (len(tokens), height, width), np.float32)
        for i, (_token, band) in enumerate(_x_bands(tokens, rasters)):
            _write_band(x, i, _normalised(band, method), 1)
        x.flush()
        del rasters
        meta = {
            "official_split": (f"{GT_TR} placed at rows {height // 2}:{height}, cols {tile}:{5 * tile} (training tiles "
                               f"(1, 1)-(1, 4)) / {GT_TEST} on the full grid (the other 10 tiles)"),
            "hsi_bands": f"channels 1-{HSI_BANDS} of {cube.shape[0]} (374-1047 nm); 49 and 50 are not spectral, dropped",
            "upsampling": "HSI 1 m -> 0.5 m, nearest (x2), after the per-band normalisation (the same values)",
            "lidar_bands": f"X = {', '.join(tokens)} ({len(tokens)} band(s)): {describe_x(tokens)}",
            "nodata": "masked before normalisation, then set to the band minimum: " + "; ".join(nodata_notes),
            "storage": f"hsi {hsi.dtype}, lidar float32: {STORAGE}",
            "gsd_m": 0.5,
            "run_params": {"x": ",".join(tokens), "hsi_storage": str(hsi.dtype)},
            "_problems": problems,
        }
        return {"hsi": hsi, "lidar": x}, labels, train, test, meta

    def _ouc(self, located: Located, method: str, arrays: _Arrays):
        paths = located.paths
        gt = self._labels(read_raster(paths, "houston_gt.mat", "houston_gt", FIX))
        index = read_mat(paths["houston_index.mat"], ["houston_train", "houston_test"], FIX)
        train, test = (maps_from_index(gt, Raster(index[f"houston_{p}"], "houston_index.mat", f"houston_{p}"))
                       for p in ("train", "test"))
        both = int(np.count_nonzero((train > 0) & (test > 0)))
        if both:
            raise DatasetError(f"houston_index.mat: {both} pixel(s) are in both houston_train and houston_test; "
                               "expected disjoint index sets")
        height, width = gt.shape
        problems = self._check(located, (height, width), gt, None, None)
        hsi_src = MatBands(paths["houston_hsi.mat"], "houston_hsi", FIX)
        lidar_src = MatBands(paths["houston_lidar.mat"], "houston_lidar", FIX)
        try:
            for src, bands in ((hsi_src, HSI_BANDS), (lidar_src, 1)):
                if src.shape[:2] != (height, width) or src.shape[2] < bands:
                    raise DatasetError(
                        f"{src.where}: {src.shape[0]} x {src.shape[1]} x {src.shape[2]}; expected {height} x {width} "
                        f"(the grid of houston_gt.mat) with at least {bands} band(s) (the OUC files: 50 HSI, 1 LiDAR)"
                    )
            storage = _storage_dtype(hsi_src.dtype)
            hsi = arrays.new("hsi", (HSI_BANDS, height, width), storage)
            masked = 0
            for b in range(HSI_BANDS):
                band = _hsi_band(hsi_src.band(b), None, "houston_hsi.mat")
                masked += int(band.valid.size - np.count_nonzero(band.valid))
                _write_band(hsi, b, _normalised(band, method), 1)
            hsi.flush()
            x = arrays.new("lidar", (1, height, width), np.float32)
            lidar = _lidar_band(lidar_src.band(0), None, "houston_lidar.mat")
            _write_band(x, 0, _normalised(lidar, method), 1)
            x.flush()
            hsi_total = hsi_src.shape[2]
        finally:
            hsi_src.close()
            lidar_src.close()
        counts = {p: np.bincount(np.asarray(m).ravel(), minlength=len(CLASSES) + 1)[1:].tolist()
                  for p, m in (("train", train), ("test", test))}
        meta = {
            "official_split": (f"houston_index.mat houston_train / houston_test (OUC's split inside the training box: "
                               f"{sum(counts['train'])} / {sum(counts['test'])} pixels); not the contest's protocol"),
            "ouc_split_counts": counts,
            "hsi_bands": f"channels 1-{HSI_BANDS} of {hsi_total}; 49 and 50 are not spectral, dropped",
            "lidar_bands": "houston_lidar.mat: 1 band (which LiDAR raster OUC used is not documented); "
                           f"{X_ENV} does not apply to this layout",
            "nodata": (f"masked before normalisation, then set to the band minimum: hsi: {masked} value(s); lidar: "
                       f"{int(lidar.valid.size - np.count_nonzero(lidar.valid))} pixel(s)"),
            "storage": f"hsi {hsi.dtype}, lidar float32: {STORAGE}",
            "gsd_m": 0.5,
            "run_params": {"x": "houston_lidar", "hsi_storage": str(hsi.dtype)},
            "_problems": problems,
        }
        return {"hsi": hsi, "lidar": x}, gt.astype(np.uint8), train.astype(np.uint8), test.astype(np.uint8), meta

    def _labels(self, raster: Raster) -> np.ndarray:
        labels = label_map(raster)
        k = len(self.class_names)
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > k:
            raise DatasetError(
                f"{raster.where}: labels range {lo}..{hi}; expected 0..{k} (0 = unlabelled, 1..{k} = the classes of "
                f"{self.name!r}). The file is corrupt or belongs to another dataset; {self.fix}"
            )
        return labels.astype(np.uint8)


def _alias_folders(root: Path, names: Sequence[str], skip: str | None) -> list[Path]:
    """Sub-folders of ``root`` (3 levels) whose name starts with a dataset name (any case); not descended."""
    prefixes = tuple(n.lower() for n in names)
    out: list[Path] = []
    base = len(root.parts)
    for dirpath, dirnames, _files in os.walk(root):
        top = dirpath == str(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (top and d == skip))
        keep = []
        for d in dirnames:
            if d.lower().startswith(prefixes):
                out.append(Path(dirpath) / d)  # searched deeply later; not descended here
            else:
                keep.append(d)
        dirnames[:] = keep if len(Path(dirpath).parts) - base < 2 else []
    return out


def _index(folder: Path, depth: int, skip: str | None) -> dict[str, Path]:
    """``{file name: first path}`` in ``folder`` and ``depth`` levels below it (sorted, hidden folders skipped)."""
    found: dict[str, Path] = {}
    base = len(folder.parts)
    for dirpath, dirnames, filenames in os.walk(folder):
        top = dirpath == str(folder)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (top and d == skip))
        for name in sorted(filenames):
            found.setdefault(name, Path(dirpath) / name)
        if len(Path(dirpath).parts) - base >= depth:
            dirnames[:] = []
    return found


def _remove_dead_builds(root: Path) -> None:
    """Remove ``.build-<pid>-*`` folders of processes that are gone (a build killed half-way)."""
    if not root.is_dir():
        return
    for path in root.glob(".build-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def make_loader(facts: Mapping[str, PublishedFacts] | None = None) -> Dfc2018Dataset:
    """The ``dfc2018`` loader (``facts``: what scenes are checked against; tests pass others)."""
    return Dfc2018Dataset(
        name=NAME,
        layouts=layouts_for({}),
        configure=layouts_for,
        class_names=CLASSES,
        bands={"hsi": HSI_BANDS, "lidar": len(DEFAULT_X)},
        palette=PALETTE,
        aliases=("DFC2018", "2018IEEE", "2018_IEEE", "houston2018", "Houston2018", "grss_dfc_2018", "Phase2",
                 "ImageryAndTrainingGT"),
        url=UH_URL,
        download_url="",
        fetchable=False,
        version=LOADER_VERSION,
        official=OFFICIAL,
        facts=FACTS if facts is None else facts,
        obtain=OBTAIN,
        settings={X_ENV: "comma-separated X rasters among " + ", ".join(X_CHOICES)
                  + f" (default {','.join(DEFAULT_X)}: {X_CHOICES['ndsm']})"},
        notes=[
            ("official layout: 2404 x 8344 pixels at 0.5 m; CASI HSI 1202 x 4172 at 1 m, channels 1-48 kept (374-1047 "
            "nm), nearest-upsampled x2; LiDAR rasters at 0.5 m; labels 0 = unclassified, 1..20"),
            f"X (modality 'lidar') = {describe_x(DEFAULT_X)} by default (CoMiX does not say which DEM); "
            f"{X_ENV} chooses other rasters: " + "; ".join(f"{t}: {d}" for t, d in X_CHOICES.items()),
            ("official split = CoMiX's: all of GT_TR (the training tiles (1, 1)-(1, 4), rows 1202:2404, cols "
            "1192:5960) for training, all of Test_Labels.tif (the other 10 tiles, capped at 20,000 pixels per class "
            "by the contest) for test; spatially disjoint; the 40 per-class counts are verified at load"),
            ("ouc layout (houston_*.mat): 1202 x 4768 = the training box only, 50 HSI channels (1-48 kept) and 1 LiDAR "
            "band of an undocumented raster, split inside the box (18,750 / 2,000,160 as one user counted): a "
            "DIFFERENT protocol, not comparable with the official one; the run param data.layout says which was used"),
            ("no-data values (LiDAR sentinels, GDAL_NODATA, non-finite) are masked before the per-band normalisation "
            "and set to the band minimum"),
            STORAGE,
            "terms of the UH/GRSS: email request, citation and acknowledgement; do not redistribute",
        ],
    )


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``dfc2018``."""
    register(DatasetSpec(
        name=NAME,
        load=make_loader(),
        modalities=("hsi", "lidar"),
        class_names=CLASSES,
        shape=None,  # 2404 x 8344 (official) or 1202 x 4768 (ouc): verified by the loader per layout
        files=(),  # on request from UH, no redistribution: bring your own files
        paper="Advanced multi-sensor optical remote sensing for urban land use and land cover classification: "
              "outcome of the 2018 IEEE GRSS Data Fusion Contest (Xu et al., 2019)",
        url=UH_URL,
        licence="UH/IEEE GRSS terms: on request, research use with citation and acknowledgement; no redistribution",
        citation=CITATION,
        description="DFC2018 / Houston 2018: CASI HSI 48 bands (1 m, upsampled x2) + LiDAR NDSM, 2404 x 8344 at "
                    "0.5 m, 20 classes, official split 2,018,910 train / 341,729 test pixels (CoMiX's protocol); "
                    "also reads the OUC .mat repackaging (a different protocol). Bring your own files.",
    ))
