"""Trento (Italy): HSI 63 bands + LiDAR 1 band, 6 classes, 600 x 166 pixels.

Registers ``trento``. There is no official download (the data are "provided by Prof. L.
Bruzzone"); distributions read:

* ``mirror``: the public mirror tyust-dayu/Trento (``Italy_hsi.mat``, ``Italy_lidar.mat``,
  key ``data``; ``allgrd.mat``, key ``mask_test``, the full ground truth of 30,214 pixels).
  It is stored transposed (166 x 600) and its LiDAR has 2 bands. The standard 819 / 29,395
  train/test split is not in it: put ``TRLabel.mat`` / ``TSLabel.mat`` next to it to get
  official maps, otherwise use ``per-class:N`` or ``fraction:p`` splits;
* ``mmr``: ``HSI.mat`` (``HSI``), ``LiDAR.mat`` (``LiDAR``), ``TRLabel.mat``, ``TSLabel.mat``;
* ``ouc``: ``trento_hsi.mat``, ``trento_lidar.mat``, ``trento_gt.mat``, ``trento_index.mat``.

Every layout is brought to the literature's form, and the scene metadata says what was
done: a 166 x 600 grid is transposed to 600 x 166 (``metadata["orientation"]``), and a
2-band LiDAR keeps band 0, the elevation-like raster (0-20 m on the mirror), dropping band
1 (0-2901, intensity-like) (``metadata["lidar_bands"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench_core import DataFile, DatasetSpec, hookimpl
from bench_core.data import (
    Layout,
    OfficialCounts,
    Raster,
    RawScene,
    RealDataset,
    label_map,
    maps_from_index,
    read_mat,
    read_raster,
)

__all__ = ["CLASSES", "bench_register_datasets", "make_loader", "to_literature_form"]

LOADER_VERSION = "1"
NAME = "trento"
MIRROR = "https://github.com/tyust-dayu/Trento"
MIRROR_COMMIT = "b4afc449ce5d6936ddc04fe267d86f9f35536afd"
MIRROR_RAW = f"https://raw.githubusercontent.com/tyust-dayu/Trento/{MIRROR_COMMIT}"
LIDAR_BAND_KEPT = 0

CLASSES = ("Apple trees", "Buildings", "Ground", "Woods", "Vineyard", "Roads")
PALETTE = ((0, 160, 0), (200, 60, 60), (200, 170, 110), (0, 90, 40), (150, 60, 200), (120, 120, 120))
OFFICIAL = OfficialCounts(
    train=(129, 125, 105, 154, 184, 122),
    test=(3905, 2778, 374, 8969, 10317, 3052),
    source="the standard fixed split (MFT paper/README); not in the public mirror",
)
MIRROR_SHA256 = {
    "Italy_hsi.mat": "7b965fd405314b5c91451042e547a1923be6f5a38c6da83969032cff79729280",
    "Italy_lidar.mat": "a04dc90368d6a7b4f9d3936024ba9fef4105456c090daa14fff31b8b79e94ab1",
    "allgrd.mat": "7e3fb2a2ea22c2661dfc768db3cb93c9643b324e7e64fadedfa57f5edbf1818f",
}
MMR_SHA256 = {
    "HSI.mat": "44a84b4fe8bab9b2f5ec11af32602436ccc97653b7ae8c3283334da7d221c053",
    "LiDAR.mat": "d99347532e7b18982c9537fd4de43574dd64f9b35ccab251459e7b483ddd43df",
    "TRLabel.mat": "593976a1bef4edf06ec543926811509f997454557aa9313ed6165b3012c26e07",
    "TSLabel.mat": "629ae33464907098cacf58549996711bf7079f036946f9208fde8a67842ab499",
}
FIX = f"fetch it again with `bench datasets fetch {NAME}` ({MIRROR})"


def to_literature_form(raw: RawScene) -> RawScene:
    """Transpose a 166 x 600 (wide) scene to 600 x 166 and keep one LiDAR band; record both."""
    ref = raw.labels or raw.official_train
    height, width = ref.spatial_shape if ref is not None else raw.modalities["hsi"].spatial_shape
    meta: dict[str, Any] = dict(raw.metadata)
    if height < width:
        def flip(r: Raster | None) -> Raster | None:
            return r.transposed() if r is not None and r.spatial_shape == (height, width) else r

        raw = RawScene(
            modalities={k: flip(v) for k, v in raw.modalities.items()},  # type: ignore[misc]
            labels=flip(raw.labels), official_train=flip(raw.official_train), official_test=flip(raw.official_test),
            class_names=raw.class_names, metadata=meta,
        )
        meta["orientation"] = f"transposed from {height} x {width} (as stored) to {width} x {height} (literature)"
    else:
        meta["orientation"] = f"{height} x {width} as stored (already the literature's orientation)"
    lidar = raw.modalities["lidar"]
    cube = lidar.chw()
    if cube.shape[0] == 2:
        ranges = ", ".join(f"band {b}: {float(np.nanmin(cube[b])):g}..{float(np.nanmax(cube[b])):g}" for b in range(2))
        raw.modalities["lidar"] = Raster(cube[LIDAR_BAND_KEPT:LIDAR_BAND_KEPT + 1], lidar.file, lidar.key, band_axis=0)
        meta["lidar_bands"] = (
            f"2 bands in {lidar.file} ({ranges}); kept band {LIDAR_BAND_KEPT} (elevation-like), dropped band "
            f"{1 - LIDAR_BAND_KEPT} to match the 1-band LiDAR of the literature"
        )
    else:
        meta["lidar_bands"] = f"{cube.shape[0]} band(s) in {lidar.file}, kept as stored"
    raw.metadata = meta
    return raw


def _read_mirror(paths: Mapping[str, Path]) -> RawScene:
    has_split = "TRLabel.mat" in paths and "TSLabel.mat" in paths
    raw = RawScene(
        modalities={
            "hsi": read_raster(paths, "Italy_hsi.mat", "data", FIX),
            "lidar": read_raster(paths, "Italy_lidar.mat", "data", FIX),
        },
        labels=read_raster(paths, "allgrd.mat", "mask_test", FIX),
        official_train=read_raster(paths, "TRLabel.mat", "TRLabel", FIX) if has_split else None,
        official_test=read_raster(paths, "TSLabel.mat", "TSLabel", FIX) if has_split else None,
        metadata={
            "official_split": "TRLabel.mat / TSLabel.mat" if has_split else
            "not in this distribution (the mirror has the full ground truth only); add TRLabel.mat/"
            "TSLabel.mat or use per-class:N / fraction:p",
            "labels": "allgrd.mat 'mask_test' = the full ground truth (train + test of the standard split)",
        },
    )
    if has_split:
        # The split files may come from a 600 x 166 bundle while the mirror is 166 x 600.
        stored = raw.labels.spatial_shape  # type: ignore[union-attr]
        for attr in ("official_train", "official_test"):
            r = getattr(raw, attr)
            if r.spatial_shape != stored and r.spatial_shape == stored[::-1]:
                setattr(raw, attr, r.transposed())
    return to_literature_form(raw)


def _read_mmr(paths: Mapping[str, Path]) -> RawScene:
    return to_literature_form(RawScene(
        modalities={
            "hsi": read_raster(paths, "HSI.mat", "HSI", FIX),
            "lidar": read_raster(paths, "LiDAR.mat", "LiDAR", FIX),
        },
        official_train=read_raster(paths, "TRLabel.mat", "TRLabel", FIX),
        official_test=read_raster(paths, "TSLabel.mat", "TSLabel", FIX),
        metadata={"official_split": "TRLabel.mat / TSLabel.mat"},
    ))


def _read_ouc(paths: Mapping[str, Path]) -> RawScene:
    gt = read_raster(paths, "trento_gt.mat", "trento_gt", FIX)
    index = read_mat(paths["trento_index.mat"], ["trento_train", "trento_test"], FIX)
    labels = label_map(gt)
    maps = {
        part: Raster(maps_from_index(labels, Raster(index[f"trento_{part}"], "trento_index.mat", f"trento_{part}")),
                     "trento_index.mat", f"trento_{part}")
        for part in ("train", "test")
    }
    return to_literature_form(RawScene(
        modalities={
            "hsi": read_raster(paths, "trento_hsi.mat", "trento_hsi", FIX),
            "lidar": read_raster(paths, "trento_lidar.mat", "trento_lidar", FIX),
        },
        labels=gt, official_train=maps["train"], official_test=maps["test"],
        metadata={"official_split": "trento_index.mat (trento_train / trento_test)"},
    ))


LAYOUTS = (
    Layout(
        name="mirror",
        required=("Italy_hsi.mat", "Italy_lidar.mat", "allgrd.mat"),
        optional=("TRLabel.mat", "TSLabel.mat"),
        description=f"public mirror {MIRROR}@{MIRROR_COMMIT[:7]} (166 x 600, 2-band LiDAR, no split files)",
        read=_read_mirror,
        keys={"Italy_hsi.mat": ("data",), "Italy_lidar.mat": ("data",), "allgrd.mat": ("mask_test",),
              "TRLabel.mat": ("TRLabel",), "TSLabel.mat": ("TSLabel",)},
        sha256=MIRROR_SHA256,
    ),
    Layout(
        name="mmr",
        required=("HSI.mat", "LiDAR.mat", "TRLabel.mat", "TSLabel.mat"),
        description="MMRS-style .mat set (600 x 166, 1-band LiDAR, standard split); not publicly downloadable",
        read=_read_mmr,
        keys={"HSI.mat": ("HSI",), "LiDAR.mat": ("LiDAR",), "TRLabel.mat": ("TRLabel",), "TSLabel.mat": ("TSLabel",)},
        sha256=MMR_SHA256,
    ),
    Layout(
        name="ouc",
        required=("trento_hsi.mat", "trento_lidar.mat", "trento_gt.mat", "trento_index.mat"),
        description="OUC-style .mat set (trento_* with 0-based (row, col) index arrays); no published sha256",
        read=_read_ouc,
        keys={"trento_hsi.mat": ("trento_hsi",), "trento_lidar.mat": ("trento_lidar",),
              "trento_gt.mat": ("trento_gt",), "trento_index.mat": ("trento_train", "trento_test")},
    ),
)


def make_loader() -> RealDataset:
    """The ``trento`` loader."""
    return RealDataset(
        name=NAME,
        layouts=LAYOUTS,
        class_names=CLASSES,
        bands={"hsi": 63, "lidar": 1},
        palette=PALETTE,
        aliases=("italy",),
        url=MIRROR,
        version=LOADER_VERSION,
        official=OFFICIAL,
        notes=[
            "600 x 166 pixels (the public mirror stores 166 x 600: transposed on load, recorded in "
            "metadata['orientation'])",
            "the mirror's LiDAR has 2 bands; band 0 (elevation-like) is kept, recorded in metadata['lidar_bands']",
            "full ground truth: 30,214 labelled pixels (4034/2903/479/9123/10501/3174)",
        ],
    )


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``trento``."""
    register(make_loader().spec(
        shape=(600, 166),
        files=tuple(
            DataFile(name=n, sha256=MIRROR_SHA256[n], urls=(f"{MIRROR_RAW}/{n}",), size=size)
            for n, size in (("Italy_hsi.mat", None), ("Italy_lidar.mat", 404_109), ("allgrd.mat", 3_235))
        ),
        paper="Trento HSI + LiDAR scene (courtesy of L. Bruzzone, University of Trento)",
        licence="no licence stated; data courtesy of Prof. L. Bruzzone (cite the source of any use)",
        citation="Courtesy of L. Bruzzone, University of Trento; cite the paper you take the protocol from "
                 "(e.g. the MFT paper for the 819 / 29,395 split)",
        description="Trento: HSI 63 bands + LiDAR 1 band, 600 x 166, 6 classes (30,214 labelled pixels); "
                    "the public mirror has no train/test split.",
    ))
