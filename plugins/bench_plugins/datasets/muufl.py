"""MUUFL Gulfport (campus 1): HSI 64 bands + LiDAR 2 rasters, 11 classes, 325 x 220 pixels.

Registers ``muufl``. Distributions read:

* ``gatorsense``: ``muufl_gulfport_campus_1_hsi_220_label.mat`` from GatorSense/MUUFLGulfport
  (tag v0.1): MATLAB struct ``hsi`` with ``Data`` (325 x 220 x 64), ``Lidar{1}.z``
  (325 x 220 x 2) and ``sceneLabels.labels`` (-1 = unlabelled, 1..11) with the class names
  in ``sceneLabels.Materials_Type`` (used as the truth: the tech report swaps 7 and 8);
* ``m3amba``: kaka-Cao/M3amba's ``hsi.mat`` (``HSI``), ``lidar.mat`` (``lidar``) and
  ``train_test_gt.mat`` (``trainlabels``, ``testlabels``), whose fixed maps are the split.

MUUFL publishes no train/test split; the literature draws 5 % of each class at random.
For the ``gatorsense`` files the official maps are that draw, made once and for all
with seed 0 and ``round(0.05 * n)`` (half up) pixels per class, so every run of every
method sees the same split (train 2,683 / test 51,004 on the real labels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench_core import DataFile, DatasetError, DatasetSpec, hookimpl
from bench_core.data import Layout, OfficialCounts, Raster, RawScene, RealDataset, read_mat, read_raster

__all__ = ["CLASSES", "bench_register_datasets", "fixed_fraction_split", "make_loader"]

LOADER_VERSION = "1"
NAME = "muufl"
FILE = "muufl_gulfport_campus_1_hsi_220_label.mat"
REPO = "https://github.com/GatorSense/MUUFLGulfport"
RAW_URL = f"https://raw.githubusercontent.com/GatorSense/MUUFLGulfport/v0.1/MUUFLGulfportSceneLabels/{FILE}"
FILE_SHA256 = "69420a72866dff4a858ae503e6e2981af46f406a4ad8f4dd642efa43feb59edc"
SPLIT_SEED, SPLIT_FRACTION = 0, 0.05

CLASSES = (
    "Trees", "Mostly grass", "Mixed ground surface", "Dirt and sand", "Road", "Water",
    "Building shadow", "Buildings", "Sidewalk", "Yellow curb", "Cloth panels",
)
PALETTE = (
    (0, 128, 0), (0, 255, 0), (0, 255, 255), (255, 204, 0), (255, 0, 153), (0, 0, 255),
    (102, 0, 204), (255, 127, 80), (153, 0, 0), (255, 255, 0), (255, 0, 255),
)
OFFICIAL = OfficialCounts(
    train=(1162, 214, 344, 91, 334, 23, 112, 312, 69, 9, 13),
    test_total=51_004,
    source="no official split; 5 % of each class at random (the literature's protocol), fixed with seed 0",
)
CITATION = (
    "P. Gader, A. Zare, R. Close, J. Aitken, G. Tuell, MUUFL Gulfport hyperspectral and LiDAR airborne "
    "data set, Univ. Florida, Tech. Rep. REP-2013-570, 2013; X. Du, A. Zare, Technical report: scene "
    "label ground truth map for MUUFL Gulfport data set, Univ. Florida, Tech. Rep. 20170417, 2017"
)
FIX = f"fetch it again with `bench datasets fetch {NAME}` ({REPO})"


def fixed_fraction_split(
    labels: np.ndarray, fraction: float = SPLIT_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Train/test label maps: ``round(fraction * n)`` random pixels of each class (half up) train.

    Classes are drawn in label order from one ``default_rng(seed)``, so the maps depend only
    on the labels.
    """
    rng = np.random.default_rng(seed)
    flat = labels.reshape(-1)
    train = np.zeros_like(flat)
    for cls in range(1, int(flat.max(initial=0)) + 1):
        members = np.flatnonzero(flat == cls)
        take = int(np.floor(fraction * members.size + 0.5))
        train[rng.choice(members, size=min(take, members.size), replace=False)] = cls
    test = np.where((flat > 0) & (train == 0), flat, 0)
    return train.reshape(labels.shape), test.reshape(labels.shape)


def _field(value: Any, path: Sequence[str], where: str) -> Any:
    """``value[path[0]][path[1]]...`` through structs (dicts) and 1-element cells (lists)."""
    for name in path:
        if isinstance(value, list) and value:
            value = value[0]  # Lidar{1}: the first cell
        if not isinstance(value, dict) or name not in value:
            have = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise DatasetError(
                f"{where}: struct field {'.'.join(path)!r} not found (at {name!r}: {have}); expected the "
                f"GatorSense layout hsi.Data, hsi.Lidar{{1}}.z, hsi.sceneLabels.labels; {FIX}"
            )
        value = value[name]
    return value


def _read_gatorsense(paths: Mapping[str, Path]) -> RawScene:
    path = paths[FILE]
    hsi = read_mat(path, ["hsi"], FIX)["hsi"]
    labels = np.asarray(_field(hsi, ["sceneLabels", "labels"], FILE))
    names = _field(hsi, ["sceneLabels", "Materials_Type"], FILE)
    names = [names] if isinstance(names, str) else list(names)
    if labels.dtype.kind not in "iuf":
        raise DatasetError(f"{FILE}: hsi.sceneLabels.labels has dtype {labels.dtype}; expected numbers")
    unlabelled = int((labels == -1).sum())
    labels = np.where(labels == -1, 0, labels)  # the file's "unlabelled" is -1, ours is 0
    k = len(names)
    if k:
        labels_int = np.rint(labels).astype(np.int64) if labels.dtype.kind == "f" else labels.astype(np.int64)
        in_range = (labels_int >= 0) & (labels_int <= k)
        train, test = fixed_fraction_split(np.where(in_range, labels_int, 0))
    else:
        train = test = np.zeros(labels.shape, dtype=np.int64)
    metadata: dict[str, Any] = {
        "official_split": f"none published: 5 % of each class drawn with seed {SPLIT_SEED} (round half up)",
        "labels": f"hsi.sceneLabels.labels; -1 (unlabelled, {unlabelled} pixels) mapped to 0",
        "class_names_source": "hsi.sceneLabels.Materials_Type",
        "lidar": "hsi.Lidar{1}.z: 2 rasters (first and last return heights)",
        "gsd_m": 1.0,
    }
    try:
        metadata["wavelengths_nm"] = [round(float(w), 3) for w in np.ravel(_field(hsi, ["info", "wavelength"], FILE))]
    except DatasetError:
        pass  # optional
    derived = f"{FILE} (derived: seeded 5 % per class)"
    return RawScene(
        modalities={
            "hsi": Raster(np.asarray(_field(hsi, ["Data"], FILE)), FILE, "hsi.Data"),
            "lidar": Raster(np.asarray(_field(hsi, ["Lidar", "z"], FILE)), FILE, "hsi.Lidar{1}.z"),
        },
        labels=Raster(labels, FILE, "hsi.sceneLabels.labels"),
        official_train=Raster(train, derived),
        official_test=Raster(test, derived),
        class_names=tuple(names),
        metadata=metadata,
    )


def _read_m3amba(paths: Mapping[str, Path]) -> RawScene:
    maps = read_mat(paths["train_test_gt.mat"], ["trainlabels", "testlabels"], FIX)
    return RawScene(
        modalities={
            "hsi": read_raster(paths, "hsi.mat", "HSI", FIX),
            "lidar": read_raster(paths, "lidar.mat", "lidar", FIX),
        },
        official_train=Raster(np.asarray(maps["trainlabels"]), "train_test_gt.mat", "trainlabels"),
        official_test=Raster(np.asarray(maps["testlabels"]), "train_test_gt.mat", "testlabels"),
        metadata={"official_split": "train_test_gt.mat (M3amba's fixed maps)", "gsd_m": 1.0},
    )


LAYOUTS = (
    Layout(
        name="gatorsense",
        required=(FILE,),
        description=f"GatorSense/MUUFLGulfport v0.1, MUUFLGulfportSceneLabels/{FILE}",
        read=_read_gatorsense,
        keys={FILE: ("hsi",)},
        sha256={FILE: FILE_SHA256},
    ),
    Layout(
        name="m3amba",
        required=("hsi.mat", "lidar.mat", "train_test_gt.mat"),
        description="kaka-Cao/M3amba's .mat set with a fixed split; no published sha256",
        read=_read_m3amba,
        keys={"hsi.mat": ("HSI",), "lidar.mat": ("lidar",), "train_test_gt.mat": ("trainlabels", "testlabels")},
    ),
)


def make_loader() -> RealDataset:
    """The ``muufl`` loader."""
    return RealDataset(
        name=NAME,
        layouts=LAYOUTS,
        class_names=CLASSES,
        bands={"hsi": 64, "lidar": 2},
        palette=PALETTE,
        aliases=("MUUFLGulfport", "muufl_gulfport"),
        url=REPO,
        version=LOADER_VERSION,
        official=OFFICIAL,
        notes=[
            "325 x 220 pixels at 1 m (the campus 1 scene cropped to its first 220 columns); HSI 64 bands "
            "(72 minus 4 + 4 noisy), LiDAR 2 rasters",
            "labels 7 = building shadow, 8 = buildings (2018 correction of the tech report)",
            "citing Gader et al. 2013 and Du & Zare 2017 is required whenever the data or labels are used",
        ],
    )


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``muufl``."""
    register(make_loader().spec(
        shape=(325, 220),
        files=(DataFile(name=FILE, sha256=FILE_SHA256, urls=(RAW_URL,)),),
        paper="MUUFL Gulfport hyperspectral and LiDAR airborne data set (Gader et al., 2013)",
        licence="MIT (GatorSense/MUUFLGulfport); citing Gader et al. 2013 and Du & Zare 2017 is required",
        citation=CITATION,
        description="MUUFL Gulfport campus 1: HSI 64 bands + LiDAR 2 rasters, 325 x 220 at 1 m, 11 classes; "
                    "split: 5 % per class fixed with seed 0 (train 2,683 / test 51,004).",
    ))
