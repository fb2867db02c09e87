"""The DFC2018 loader: finds either distribution, builds the scene band by band and checks it."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench_core import DatasetContext, DatasetError, Scene
from bench_core.data import (
    CACHE_SCENES_DIR,
    DEFAULT_NORMALISATION,
    Located,
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
from bench_plugins.datasets.dfc2018.bands import (
    STORAGE,
    BandArrays,
    hsi_band,
    lidar_band,
    normalised,
    storage_dtype,
    write_band,
    x_bands,
)
from bench_plugins.datasets.dfc2018.facts import (
    CLASSES,
    DEEP_SEARCH_DEPTH,
    DEFAULT_X,
    FACTS,
    FIX,
    GT_TEST,
    GT_TR,
    HSI_BANDS,
    HSI_HDR,
    HSI_PIX,
    LOADER_VERSION,
    NAME,
    OBTAIN,
    OFFICIAL,
    PALETTE,
    RASTERS,
    UH_URL,
    X_CHOICES,
    X_ENV,
    describe_x,
    layouts_for,
    x_rasters,
)

log = logging.getLogger("bench.data")

# ----------------------------------------------------------------------------- the loader


class Dfc2018Dataset(VerifiedDataset):
    """The ``dfc2018`` loader: :class:`VerifiedDataset` with a band-by-band, memory-mapped build."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_root: Path | None = None
        self._builds: list[BandArrays] = []

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
        arrays = BandArrays(self._build_root)
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

    def _official(self, located: Located, tokens: Sequence[str], method: str, arrays: BandArrays):
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
        storage = storage_dtype(cube.dtype)
        hsi = arrays.new("hsi", (HSI_BANDS, height, width), storage)
        masked = 0
        for b in range(HSI_BANDS):
            band = hsi_band(cube[b], envi.ignore_value, HSI_PIX)
            masked += int(band.valid.size - np.count_nonzero(band.valid))
            write_band(hsi, b, normalised(band, method), 2)
        hsi.flush()

        rasters: dict[str, Any] = {}
        nodata_notes = [f"hsi: {masked} value(s) of {HSI_PIX}"]
        for t in x_rasters(tokens):
            tif = read_geotiff(paths[RASTERS[t].filename], FIX)
            if tif.data.shape != (height, width):
                raise DatasetError(
                    f"{paths[RASTERS[t].filename]}: {tif.data.shape[0]} x {tif.data.shape[1]} pixels; expected {height} x "
                    f"{width}, the 0.5 m grid of {GT_TEST}: the files come from different releases"
                )
            rasters[t] = lidar_band(tif.data, tif.nodata, RASTERS[t].filename)
            nodata_notes.append(f"{t}: {int(rasters[t].valid.size - np.count_nonzero(rasters[t].valid))} pixel(s)"
                                + (f" (GDAL_NODATA {tif.nodata:g})" if tif.nodata is not None else ""))
        x = arrays.new("lidar", (len(tokens), height, width), np.float32)
        for i, (_token, band) in enumerate(x_bands(tokens, rasters)):
            write_band(x, i, normalised(band, method), 1)
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

    def _ouc(self, located: Located, method: str, arrays: BandArrays):
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
            storage = storage_dtype(hsi_src.dtype)
            hsi = arrays.new("hsi", (HSI_BANDS, height, width), storage)
            masked = 0
            for b in range(HSI_BANDS):
                band = hsi_band(hsi_src.band(b), None, "houston_hsi.mat")
                masked += int(band.valid.size - np.count_nonzero(band.valid))
                write_band(hsi, b, normalised(band, method), 1)
            hsi.flush()
            x = arrays.new("lidar", (1, height, width), np.float32)
            lidar = lidar_band(lidar_src.band(0), None, "houston_lidar.mat")
            write_band(x, 0, normalised(lidar, method), 1)
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
