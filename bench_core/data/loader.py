"""The shared loader of real (file-based) datasets: locate -> cache -> read -> check -> Scene.

A dataset plugin describes its distributions as :class:`~bench_core.data.locate.Layout`
objects (file names, published sha256, a ``read`` function returning a
:class:`RawScene`) and registers ``RealDataset(...).spec(...)`` (a ``DatasetSpec`` whose
``load`` is the RealDataset). Everything else is done here, the same way for every dataset:

1. find the first complete file set (:func:`~bench_core.data.locate.locate`);
2. open the converted scene from the cache when its sources are unchanged;
3. otherwise hash the files (checked against the published sha256 unless
   ``BENCH_VERIFY_CHECKSUMS=0``), read them, check them (shapes agree between
   modalities, band counts, finite values, labels in 0..K, official maps consistent),
   normalise (:mod:`~bench_core.data.normalise`) and write the cache atomically.

Every problem raises :class:`~bench_core.errors.DatasetError` naming the file, what was
found, what was expected and the fix. The scene's metadata records the layout, the
source folder, ``sha256`` (``{file name: sha256}`` as computed when the cache was
made) and ``normalisation``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench_core.data.cache import SceneCache, sha256_file_once
from bench_core.data.locate import CACHE_SCENES_DIR, Layout, Located, locate
from bench_core.data.matfile import read_mat
from bench_core.data.normalise import (
    DEFAULT_NORMALISATION,
    NORMALISATION_ENV,
    NORMALISATIONS,
    normalise_modalities,
    resolve_normalisation,
)
from bench_core.errors import DatasetError
from bench_core.scene import Scene
from bench_core.specs import DataFile, DatasetContext, DatasetSpec

__all__ = [
    "VERIFY_ENV",
    "DataFingerprint",
    "OfficialCounts",
    "RawScene",
    "Raster",
    "RealDataset",
    "label_map",
    "maps_from_index",
    "read_raster",
]

VERIFY_ENV = "BENCH_VERIFY_CHECKSUMS"
log = logging.getLogger("bench.data")


@dataclass
class Raster:
    """An array as read from a file, with where it came from (for error messages).

    ``band_axis`` is -1 for MATLAB's (rows, cols, bands) order, 0 for (bands, rows, cols);
    a 2-D array is one band.
    """

    data: np.ndarray
    file: str
    key: str = ""
    band_axis: int = -1

    @property
    def where(self) -> str:
        """``file (variable 'key')`` for error messages."""
        return f"{self.file} (variable {self.key!r})" if self.key else self.file

    @property
    def spatial_shape(self) -> tuple[int, int]:
        """(rows, cols) of the raster."""
        shape = self.data.shape
        if self.data.ndim == 2:
            return (int(shape[0]), int(shape[1]))
        return (int(shape[0]), int(shape[1])) if self.band_axis == -1 else (int(shape[1]), int(shape[2]))

    def chw(self) -> np.ndarray:
        """(C, H, W) view of the data (no copy)."""
        if self.data.ndim == 2:
            return self.data[None]
        if self.data.ndim != 3:
            raise DatasetError(
                f"{self.where}: array of shape {self.data.shape}; expected an image (rows, cols) or "
                f"(rows, cols, bands)"
            )
        return np.moveaxis(self.data, self.band_axis, 0)

    def transposed(self) -> Raster:
        """The same raster with rows and columns swapped (a view)."""
        axes = (1, 0) if self.data.ndim == 2 else ((1, 0, 2) if self.band_axis == -1 else (0, 2, 1))
        return Raster(np.transpose(self.data, axes), self.file, self.key, self.band_axis)


@dataclass
class RawScene:
    """What a layout's ``read`` returns: rasters straight from the files, not yet checked.

    ``labels`` may be ``None`` when the distribution only has train and test maps; the
    labels are then their union (they must not overlap). ``class_names`` is given when
    the file itself names the classes (it then wins over the spec's list).
    """

    modalities: dict[str, Raster]
    labels: Raster | None = None
    official_train: Raster | None = None
    official_test: Raster | None = None
    class_names: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OfficialCounts:
    """The official split's size as published (for cards and tests): per class and totals."""

    train: tuple[int, ...] | None = None
    test: tuple[int, ...] | None = None
    train_total: int | None = None
    test_total: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            counts, total = getattr(self, part), getattr(self, f"{part}_total")
            if counts is not None:
                object.__setattr__(self, part, tuple(int(c) for c in counts))
                if total is None:
                    object.__setattr__(self, f"{part}_total", int(sum(counts)))
                elif total != sum(counts):
                    raise DatasetError(f"OfficialCounts: {part} counts sum to {sum(counts)}, total says {total}")


def read_raster(paths: Mapping[str, Path], file: str, key: str, fix: str = "") -> Raster:
    """Read one numeric variable of a ``.mat`` file as a :class:`Raster`."""
    value = read_mat(paths[file], [key], fix)[key]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise DatasetError(
            f"{paths[file]}: variable {key!r} is {type(value).__name__}"
            f"{' of dtype ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}; expected a "
            f"numeric array{'; ' + fix if fix else ''}"
        )
    return Raster(value, file, key)


def label_map(raster: Raster) -> np.ndarray:
    """A raster as an (H, W) int64 label map; non-integer values raise :class:`DatasetError`."""
    data = np.asarray(raster.data)
    if data.ndim == 3 and 1 in data.shape:
        data = data.reshape(raster.spatial_shape)
    if data.ndim != 2:
        raise DatasetError(f"{raster.where}: label array of shape {data.shape}; expected (rows, cols)")
    if data.dtype.kind == "b":
        data = data.astype(np.int64)
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all() or not np.array_equal(data, np.round(data)):
            bad = data[~finite | (data != np.round(np.where(finite, data, 0)))]
            raise DatasetError(
                f"{raster.where}: {bad.size} label value(s) are not integers (e.g. {bad.flat[0].item()!r}); "
                f"expected integer class labels (0 = unlabelled). The file may be corrupt"
            )
    elif data.dtype.kind not in "iu":
        raise DatasetError(f"{raster.where}: labels of dtype {data.dtype}; expected integers")
    return data.astype(np.int64)


def maps_from_index(gt: np.ndarray, coords: Raster) -> np.ndarray:
    """A label map holding ``gt`` at the (row, col) pairs of an N x 2 index array (0-based)."""
    idx = np.asarray(coords.data)
    if idx.size == 0:
        idx = idx.reshape(0, 2)
    if idx.ndim != 2 or idx.shape[1] != 2:
        idx = idx.reshape(-1, 2) if idx.ndim == 1 and idx.size % 2 == 0 else idx
    if idx.ndim != 2 or idx.shape[1] != 2 or idx.dtype.kind not in "iuf":
        raise DatasetError(
            f"{coords.where}: index array of shape {idx.shape}; expected N x 2 (row, col) integer pairs"
        )
    idx = idx.astype(np.int64)
    h, w = gt.shape
    outside = (idx[:, 0] < 0) | (idx[:, 0] >= h) | (idx[:, 1] < 0) | (idx[:, 1] >= w)
    if outside.any():
        r, c = idx[outside][0]
        raise DatasetError(
            f"{coords.where}: {int(outside.sum())} (row, col) pair(s) outside the {h} x {w} scene "
            f"(e.g. ({r}, {c})); expected 0-based coordinates inside the ground-truth map"
        )
    out = np.zeros_like(gt)
    out[idx[:, 0], idx[:, 1]] = gt[idx[:, 0], idx[:, 1]]
    unlabelled = int((out[idx[:, 0], idx[:, 1]] == 0).sum())
    if unlabelled:
        raise DatasetError(
            f"{coords.where}: {unlabelled} indexed pixel(s) are unlabelled in the ground truth; "
            f"expected every train/test coordinate on a labelled pixel (wrong file pairing?)"
        )
    return out


@dataclass(frozen=True)
class DataFingerprint:
    """What a real dataset's scene would be built from, known before it is read.

    Attributes:
        dataset: the dataset name.
        layout: the layout whose files were found.
        sha256: ``{file name: sha256}`` of the files found (from the cache's record while a
            file is unchanged at its recorded path, size and mtime; else hashed).
        normalisation: the normalisation method (``minmax``, ``zscore``).
        loader_version: the loader's version (a new conversion changes the scene).
        folder: where the files were found (informative; not part of :attr:`digest`).
    """

    dataset: str
    layout: str
    sha256: Mapping[str, str]
    normalisation: str
    loader_version: str
    folder: Path

    @property
    def digest(self) -> str:
        """16 hex digits over everything but the folder: the same files anywhere give the same digest."""
        import hashlib

        parts = [f"dataset={self.dataset}", f"layout={self.layout}", f"loader={self.loader_version}",
                 f"normalisation={self.normalisation}"]
        parts += [f"{name}:{sha}" for name, sha in sorted(self.sha256.items())]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _verify_checksums(env: Mapping[str, str]) -> bool:
    return env.get(VERIFY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class RealDataset:
    """``DatasetSpec.load`` for datasets read from files (see the module docstring); :meth:`spec` registers it.

    Args:
        name: the dataset name (registry name; cache and error messages use it).
        layouts: the distributions it reads, in order of preference.
        class_names: K class names, label k -> ``class_names[k - 1]``.
        bands: ``{modality: bands}`` every layout must deliver, in scene order.
        palette: K RGB colours.
        aliases: folder names the files may sit in (besides ``name``).
        url: the dataset's home page (recorded in the metadata).
        download_url: where the files are downloaded from (shown in errors); ``url`` if empty.
        fetchable: whether ``bench datasets fetch <name>`` can download the files.
        version: bump when the conversion changes, so old caches are rebuilt.
        official: the official split's published counts (cards, tests).
        notes: facts for the card (orientation fixes, caveats).
    """

    def __init__(
        self,
        *,
        name: str,
        layouts: Sequence[Layout],
        class_names: Sequence[str],
        bands: Mapping[str, int],
        palette: Sequence[tuple[int, int, int]] | None = None,
        aliases: Sequence[str] = (),
        url: str = "",
        download_url: str = "",
        fetchable: bool = True,
        version: str = "1",
        official: OfficialCounts | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.layouts = tuple(layouts)
        self.class_names = tuple(class_names)
        self.bands = dict(bands)
        self.palette = tuple(tuple(int(v) for v in c) for c in palette) if palette else None
        self.aliases = tuple(aliases)
        self.url = url
        self.download_url = download_url or url
        self.fetchable = fetchable
        self.version = str(version)
        self.official = official
        self.notes = tuple(notes)
        if self.palette is not None and len(self.palette) != len(self.class_names):
            raise DatasetError(f"dataset {name!r}: {len(self.palette)} colours for {len(self.class_names)} classes")

    def __repr__(self) -> str:
        return f"RealDataset({self.name!r}, layouts={[lay.name for lay in self.layouts]})"

    def spec(
        self,
        *,
        shape: tuple[int, int] | None = None,
        files: Sequence[DataFile] = (),
        paper: str = "",
        licence: str = "",
        citation: str = "",
        description: str = "",
        recommended_profile: str = "paper",
    ) -> DatasetSpec:
        """The :class:`~bench_core.DatasetSpec` that registers this dataset, with ``load=self``.

        Its name, modalities (the keys of ``bands``, in scene order), class names and url are
        the loader's, so a plugin states each fact once; the arguments are what only the
        registry holds, with ``DatasetSpec``'s defaults.
        """
        return DatasetSpec(
            name=self.name,
            load=self,
            modalities=tuple(self.bands),
            class_names=self.class_names,
            shape=shape,
            recommended_profile=recommended_profile,
            files=tuple(files),
            paper=paper,
            url=self.url,
            licence=licence,
            citation=citation,
            description=description,
        )

    @property
    def fix(self) -> str:
        """The fix suggested in error messages about a bad file."""
        source = f" (source: {self.download_url})" if self.download_url else ""
        if not self.fetchable:
            return f"download it again by hand{source}"
        return f"fetch it again with `bench datasets fetch {self.name}`{source}"

    # ------------------------------------------------------------------ loading

    def __call__(self, context: DatasetContext) -> Scene:
        """``DatasetSpec.load``: :meth:`load` with the environment's settings."""
        return self.load(context)

    def _locate(self, context: DatasetContext, env: Mapping[str, str]) -> Located:
        return locate(self.name, self.layouts, context, aliases=self.aliases, url=self.download_url,
                      fetchable=self.fetchable, env=env)

    def _cache(self, context: DatasetContext, located: Located, method: str) -> SceneCache | None:
        if context.cache_dir is None:
            return None
        folder = Path(context.cache_dir) / CACHE_SCENES_DIR / self.name / f"{located.layout.name}-{method}"
        return SceneCache(folder, version=self.version)

    def fingerprint(
        self, context: DatasetContext, normalisation: str | None = None, env: Mapping[str, str] | None = None
    ) -> DataFingerprint:
        """The files :meth:`load` would read for ``context`` and their sha256, without reading the scene.

        Raises :class:`DatasetError` (the message :meth:`load` gives) when no complete file
        set is found. A file the cache verified and that is unchanged at its recorded path,
        size and mtime is not read; any other is hashed (once per process: the load that
        follows reuses the hash).
        """
        env = os.environ if env is None else env
        method = resolve_normalisation(normalisation, env)
        located = self._locate(context, env)
        cache = self._cache(context, located, method)
        sha = cache.recorded_sha256(located.paths) if cache is not None else {}
        for name, path in located.paths.items():
            if name not in sha:
                sha[name] = sha256_file_once(path)
        return DataFingerprint(
            dataset=self.name, layout=located.layout.name, sha256=dict(sorted(sha.items())), normalisation=method,
            loader_version=self.version, folder=located.folder,
        )

    def fingerprint_of(self, scene: Scene) -> DataFingerprint | None:
        """The fingerprint of the files a loaded scene was built from (its metadata); ``None`` if it does not say."""
        meta = scene.metadata
        try:
            return DataFingerprint(
                dataset=self.name, layout=str(meta["layout"]), sha256=dict(meta["sha256"]),
                normalisation=str(meta["normalisation"]).split(":", 1)[0].strip(),
                loader_version=str(meta["loader_version"]), folder=Path(str(meta.get("source_dir", ""))),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def load(
        self, context: DatasetContext, normalisation: str | None = None, env: Mapping[str, str] | None = None
    ) -> Scene:
        """Locate, then open from the cache or convert (and cache) the scene."""
        env = os.environ if env is None else env
        method = resolve_normalisation(normalisation, env)
        located = self._locate(context, env)
        verify = _verify_checksums(env)
        cache = self._cache(context, located, method)
        if cache is not None:
            hit = cache.load(located.paths)
            if hit is not None:
                # The manifest's sha256 were computed when the cache was made: no re-hashing.
                mismatches = self._mismatches(located, hit.sha256)
                if verify and mismatches:
                    raise DatasetError(self._checksum_message(located, mismatches))
                return hit.scene
        sha = {name: sha256_file_once(path) for name, path in located.paths.items()}
        mismatches = self._mismatches(located, sha)
        if mismatches:
            if verify:
                raise DatasetError(self._checksum_message(located, mismatches))
            log.warning(
                "dataset %r: using %d file(s) whose sha256 differs from the published one (%s=0): %s",
                self.name, len(mismatches), VERIFY_ENV, ", ".join(sorted(mismatches)),
            )
        scene = self.build(located, method, sha, mismatches)
        if cache is None:
            return scene
        try:
            return cache.store(scene, located.paths, sha).scene
        except OSError as exc:  # an unwritable cache costs speed, not the run
            log.warning("could not write the scene cache %s (%s); using the scene in memory", cache.folder, exc)
            return scene

    def _mismatches(self, located: Located, sha: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        published = located.layout.sha256
        return {
            name: (published[name], actual)
            for name, actual in sha.items()
            if published.get(name) and published[name] != actual
        }

    def _checksum_message(self, located: Located, mismatches: Mapping[str, tuple[str, str]]) -> str:
        lines = [f"dataset {self.name!r} ({located.layout.name} layout): checksum mismatch."]
        for name, (expected, actual) in mismatches.items():
            lines.append(f"  {located.paths[name]}: sha256 {actual}, expected {expected}")
        lines.append(
            f"The file is truncated, corrupt or a different version than the published one. Fix: "
            f"{self.fix}, or set {VERIFY_ENV}=0 to use it anyway (the mismatch is then recorded in the "
            "scene metadata as 'sha256_mismatch')."
        )
        return "\n".join(lines)

    def build(
        self,
        located: Located,
        normalisation: str = DEFAULT_NORMALISATION,
        sha256: Mapping[str, str] | None = None,
        mismatches: Mapping[str, tuple[str, str]] | None = None,
    ) -> Scene:
        """Read, check and normalise the files of ``located`` into a Scene (no cache)."""
        layout = located.layout
        if layout.read is None:
            raise DatasetError(f"dataset {self.name!r}: layout {layout.name!r} has no read function")
        raw: RawScene = layout.read(located.paths)
        labels, train, test = self._label_maps(raw)
        shape = labels.shape
        modalities: dict[str, np.ndarray] = {}
        for modality, expected_bands in self.bands.items():
            raster = raw.modalities.get(modality)
            if raster is None:
                raise DatasetError(
                    f"dataset {self.name!r}: layout {layout.name!r} delivered no {modality!r} raster; "
                    f"expected {list(self.bands)}"
                )
            cube = self._check_raster(modality, raster, shape, expected_bands, raw.labels or raw.official_train)
            modalities[modality] = cube
        class_names = self._class_names(raw)
        k = len(class_names)
        for raster, lab in ((raw.labels, labels), (raw.official_train, train), (raw.official_test, test)):
            if raster is not None and lab is not None:
                lo, hi = int(lab.min()), int(lab.max())
                if lo < 0 or hi > k:
                    raise DatasetError(
                        f"{raster.where}: labels range {lo}..{hi}; expected 0..{k} (0 = unlabelled, "
                        f"1..{k} = the classes of {self.name!r}). The file is corrupt or belongs to "
                        f"another dataset; {self.fix}"
                    )
        normalised, description = normalise_modalities(modalities, normalisation)
        metadata: dict[str, Any] = {
            "source": f"{self.name} files, layout {layout.name!r}" + (f": {layout.description}" if layout.description else ""),
            "layout": layout.name,
            "source_dir": str(located.folder),
            "files": sorted(located.paths),
            "sha256": dict(sorted((sha256 or {}).items())),
            "normalisation": description,
            "loader_version": self.version,
            **raw.metadata,
        }
        if self.url:
            metadata["url"] = self.url
        if mismatches:
            metadata["sha256_mismatch"] = {n: {"expected": e, "actual": a} for n, (e, a) in mismatches.items()}
        return Scene(
            name=self.name,
            modalities=normalised,
            labels=labels,
            class_names=class_names,
            official_train=train,
            official_test=test,
            palette=self.palette if self.palette and len(self.palette) == k else None,
            metadata=metadata,
        )

    def _class_names(self, raw: RawScene) -> tuple[str, ...]:
        if raw.class_names is None:
            return self.class_names
        names = tuple(str(n).strip() for n in raw.class_names)
        if len(names) != len(self.class_names):
            raise DatasetError(
                f"dataset {self.name!r}: the file names {len(names)} classes {list(names)}; expected "
                f"{len(self.class_names)} ({list(self.class_names)}); this is another variant or a corrupt file"
            )
        return names

    def _label_maps(self, raw: RawScene) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        train = label_map(raw.official_train) if raw.official_train is not None else None
        test = label_map(raw.official_test) if raw.official_test is not None else None
        if train is not None and test is not None and train.shape != test.shape:
            raise DatasetError(
                f"{raw.official_train.where} is {train.shape[0]} x {train.shape[1]} but "  # type: ignore[union-attr]
                f"{raw.official_test.where} is {test.shape[0]} x {test.shape[1]}; expected "  # type: ignore[union-attr]
                f"train and test maps on one grid"
            )
        if train is not None and test is not None:
            both = int(((train > 0) & (test > 0)).sum())
            if both:
                raise DatasetError(
                    f"{raw.official_train.where} and {raw.official_test.where}: {both} pixel(s) "  # type: ignore[union-attr]
                    f"are labelled in both the train and the test map; expected disjoint maps"
                )
        if raw.labels is not None:
            labels = label_map(raw.labels)
            for raster, m in ((raw.official_train, train), (raw.official_test, test)):
                if m is None or raster is None:
                    continue
                if m.shape != labels.shape:
                    raise DatasetError(
                        f"{raster.where} is {m.shape[0]} x {m.shape[1]} but the labels in "
                        f"{raw.labels.where} are {labels.shape[0]} x {labels.shape[1]}; expected one grid"
                    )
                wrong = int(((m > 0) & (m != labels)).sum())
                if wrong:
                    raise DatasetError(
                        f"{raster.where}: {wrong} pixel(s) disagree with the labels in {raw.labels.where}; "
                        f"expected the official map to be a subset of the ground truth"
                    )
        elif train is not None and test is not None:
            labels = np.where(train > 0, train, test)
        else:
            raise DatasetError(f"dataset {self.name!r}: the layout gave no labels and no train/test maps")
        return labels, train, test

    def _check_raster(
        self, modality: str, raster: Raster, shape: tuple[int, int], bands: int, ref: Raster | None
    ) -> np.ndarray:
        cube = raster.chw()
        if cube.shape[1:] != shape:
            ref_text = ref.where if ref is not None else "the labels"
            raise DatasetError(
                f"{raster.where}: {modality} raster is {cube.shape[1]} x {cube.shape[2]} pixels but "
                f"{ref_text} is {shape[0]} x {shape[1]}; expected all rasters of {self.name!r} on one "
                f"co-registered grid (mixed files from different variants?)"
            )
        if cube.shape[0] != bands:
            raise DatasetError(
                f"{raster.where}: {modality} raster has {cube.shape[0]} band(s); expected {bands} for "
                f"{self.name!r} (another dataset's or variant's file?)"
            )
        if cube.dtype.kind not in "biuf":
            raise DatasetError(f"{raster.where}: {modality} raster has dtype {cube.dtype}; expected numbers")
        if cube.dtype.kind == "f":
            for b in range(cube.shape[0]):  # band by band: no full-size boolean mask
                finite = np.isfinite(cube[b])
                if not finite.all():
                    bad = int((~finite).sum())
                    r, c = np.argwhere(~finite)[0]
                    raise DatasetError(
                        f"{raster.where}: {modality} band {b} has {bad} NaN/inf value(s) (first at row "
                        f"{r}, col {c}); expected finite values. The file is corrupt or was saved with "
                        f"no-data values; {self.fix}"
                    )
        return cube

    # ------------------------------------------------------------------ cards

    def card_info(self) -> dict[str, Any]:
        """Facts for the dataset card beyond the DatasetSpec: bands, counts, layouts."""
        classes: list[dict[str, Any]] = []
        for i, name in enumerate(self.class_names):
            row: dict[str, Any] = {"label": i + 1, "name": name}
            if self.official and self.official.train is not None:
                row["official_train"] = self.official.train[i]
            if self.official and self.official.test is not None:
                row["official_test"] = self.official.test[i]
            classes.append(row)
        info: dict[str, Any] = {"bands": dict(self.bands), "classes": classes}
        if self.official is not None:
            split: dict[str, Any] = {}
            if self.official.train_total is not None:
                split["train"] = self.official.train_total
            if self.official.test_total is not None:
                split["test"] = self.official.test_total
            if self.official.source:
                split["source"] = self.official.source
            info["official_split"] = split
        info["normalisation"] = {
            "default": DEFAULT_NORMALISATION,
            "choices": dict(NORMALISATIONS),
            "env": NORMALISATION_ENV,
        }
        info["layouts"] = [
            {
                "name": lay.name,
                "description": lay.description,
                "files": [
                    {
                        "name": f,
                        "required": f in lay.required,
                        **({"keys": list(lay.keys[f])} if f in lay.keys else {}),
                        **({"sha256": lay.sha256[f]} if f in lay.sha256 else {}),
                    }
                    for f in lay.files
                ],
            }
            for lay in self.layouts
        ]
        if self.notes:
            info["notes"] = list(self.notes)
        return info
