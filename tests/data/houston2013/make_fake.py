"""Seeded tiny fakes of the Houston2013 files.

Layouts (``make_fake(folder, seed, layout)`` returns ``{file name: sha256}``):

* ``"dfc2013"``: ``2013_IEEE_GRSS_DF_Contest_CASI.tif`` (144 bands, uint16, rows x cols x
  bands), ``..._LiDAR.tif`` (float32 DSM) and the label rasters ``..._Samples_TR.tif`` /
  ``..._Samples_VA.tif`` (uint8, PackBits, as in danfenghong/ISPRS_S2FL);
* ``"dfc2013-zip"``: ``2013_DFTC.zip`` holding ``2013_DFTC/<CASI, LiDAR>.tif`` plus the
  two label rasters beside it, as `bench datasets fetch` would download them;
* ``"mmr"``: ``HSI.mat`` (``HSI``), ``LiDAR.mat`` (``LiDAR``), ``TRLabel.mat``, ``TSLabel.mat``;
* ``"m3amba"``: the same with ``LiDAR_1.mat`` (key ``LiDAR``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench_core.data import save_mat
from tests.data import fakes

PREFIX = "2013_IEEE_GRSS_DF_Contest"
CASI, LIDAR = f"{PREFIX}_CASI.tif", f"{PREFIX}_LiDAR.tif"
TRAIN_TIF, TEST_TIF = f"{PREFIX}_Samples_TR.tif", f"{PREFIX}_Samples_VA.tif"
BANDS = 144
NUM_CLASSES = 15
SHAPE = (16, 40)
LAYOUTS = ("dfc2013", "dfc2013-zip", "mmr", "m3amba")


def write_label_tif(path: Path, labels: np.ndarray) -> None:
    """A uint8 label raster compressed with PackBits, like the real ones."""
    Image.fromarray(labels.astype(np.uint8)).save(path, compression="packbits")


def write_rasters(folder: Path, rng: np.random.Generator, labels: np.ndarray, hsi_bands: int = BANDS) -> None:
    """The contest's CASI and LiDAR GeoTIFFs (without geo tags)."""
    import tifffile

    cube = fakes.class_cube(rng, labels, hsi_bands, "uint16", 3000)
    tifffile.imwrite(folder / CASI, cube, photometric="minisblack", planarconfig="contig")
    dsm = fakes.class_cube(rng, labels, 1, "float32", 40.0)[..., 0]
    tifffile.imwrite(folder / LIDAR, dsm, photometric="minisblack")


def make_fake(folder: Path, seed: int = 0, layout: str = "dfc2013", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE) -> dict[str, str]:
    """Write fake Houston2013 files of ``layout`` into ``folder``; returns ``{file name: sha256}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0x2013])
    labels = fakes.block_labels(rng, shape, NUM_CLASSES)
    train, test = fakes.train_test_maps(rng, labels)
    if layout in ("dfc2013", "dfc2013-zip"):
        write_label_tif(folder / TRAIN_TIF, train)
        write_label_tif(folder / TEST_TIF, test)
        if layout == "dfc2013":
            write_rasters(folder, rng, labels)
            names = [CASI, LIDAR, TRAIN_TIF, TEST_TIF]
        else:
            with tempfile.TemporaryDirectory() as tmp:
                write_rasters(Path(tmp), rng, labels)
                fakes.write_zip(folder / "2013_DFTC.zip", {f"2013_DFTC/{n}": Path(tmp) / n for n in (CASI, LIDAR)})
            names = ["2013_DFTC.zip", TRAIN_TIF, TEST_TIF]
    elif layout in ("mmr", "m3amba"):
        lidar_file = "LiDAR.mat" if layout == "mmr" else "LiDAR_1.mat"
        save_mat(folder / "HSI.mat", {"HSI": fakes.class_cube(rng, labels, BANDS)}, mat_version)
        save_mat(folder / lidar_file, {"LiDAR": fakes.class_cube(rng, labels, 1, scale=40.0)[..., 0]}, mat_version)
        save_mat(folder / "TRLabel.mat", {"TRLabel": train.astype(np.uint8)}, mat_version)
        save_mat(folder / "TSLabel.mat", {"TSLabel": test.astype(np.uint8)}, mat_version)
        names = ["HSI.mat", lidar_file, "TRLabel.mat", "TSLabel.mat"]
    else:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    return fakes.checksums(folder, names)
