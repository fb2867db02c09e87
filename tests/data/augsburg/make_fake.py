"""Seeded tiny fakes of the Augsburg files (Hong et al. 2021 bundle and the OUC repackaging).

``make_fake(folder, seed, layout)`` writes files with the real names, ``.mat`` variable
names, band counts, dtypes and (rows, cols, bands) axis order, and returns
``{file name: sha256}``. Layouts:

* ``"ouc"``: ``augsburg_hsi.mat`` (uint16), ``augsburg_sar.mat`` (float64),
  ``augsburg_gt.mat`` (uint8), ``augsburg_index.mat`` (``augsburg_train``/``_test``/``_all``,
  N x 2 0-based (row, col) int64);
* ``"ouc-zip"``: the same four files inside ``augsburg-ouc.zip`` under ``Augsburg/``,
  as the public mirror serves them;
* ``"hong"``: ``data_HS_LR.mat``, ``data_SAR_HR.mat``, ``data_DSM.mat`` (float64) and
  ``TrainImage.mat`` / ``TestImage.mat`` (float64 label images).

``mat_version="7.3"`` writes HDF5-based v7.3 files instead of v5.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench_core.data import save_mat
from tests.data import fakes

NAME = "augsburg"
BANDS = {"hsi": 180, "sar": 4}
NUM_CLASSES = 7
SHAPE = (20, 24)
LAYOUTS = ("ouc", "ouc-zip", "hong")


def write_ouc(folder: Path, name: str, seed: int, shape: tuple[int, int], k: int, bands: dict[str, int],
              mat_version: str) -> list[str]:
    """The OUC four-file layout for ``name`` (shared with Berlin's generator)."""
    rng = np.random.default_rng([seed, 0x0C])
    labels = fakes.block_labels(rng, shape, k)
    train, test = fakes.train_test_maps(rng, labels)
    save_mat(folder / f"{name}_hsi.mat", {f"{name}_hsi": fakes.class_cube(rng, labels, bands["hsi"], "uint16", 4000)},
             mat_version)
    save_mat(folder / f"{name}_sar.mat", {f"{name}_sar": fakes.class_cube(rng, labels, bands["sar"], "float64")},
             mat_version)
    save_mat(folder / f"{name}_gt.mat", {f"{name}_gt": labels.astype(np.uint8)}, mat_version)
    every = np.argwhere(np.ones(shape, dtype=bool)).astype(np.int64)
    save_mat(folder / f"{name}_index.mat", {
        f"{name}_train": fakes.coords(train), f"{name}_test": fakes.coords(test), f"{name}_all": every,
    }, mat_version)
    return [f"{name}_{part}.mat" for part in ("hsi", "sar", "gt", "index")]


def write_hong(folder: Path, seed: int, shape: tuple[int, int], k: int, bands: dict[str, int],
               mat_version: str, dsm: bool) -> list[str]:
    """Hong's bundle layout (shared with Berlin's generator, which has no DSM)."""
    rng = np.random.default_rng([seed, 0x4B])
    labels = fakes.block_labels(rng, shape, k)
    train, test = fakes.train_test_maps(rng, labels)
    save_mat(folder / "data_HS_LR.mat", {"data_HS_LR": fakes.class_cube(rng, labels, bands["hsi"])}, mat_version)
    save_mat(folder / "data_SAR_HR.mat", {"data_SAR_HR": fakes.class_cube(rng, labels, bands["sar"])}, mat_version)
    names = ["data_HS_LR.mat", "data_SAR_HR.mat"]
    if dsm:
        save_mat(folder / "data_DSM.mat", {"data_DSM": fakes.class_cube(rng, labels, 1, scale=30.0)[..., 0]},
                 mat_version)
        names.append("data_DSM.mat")
    save_mat(folder / "TrainImage.mat", {"TrainImage": train.astype(np.float64)}, mat_version)
    save_mat(folder / "TestImage.mat", {"TestImage": test.astype(np.float64)}, mat_version)
    return [*names, "TrainImage.mat", "TestImage.mat"]


def write_layout(folder: Path, name: str, zip_root: str, seed: int, layout: str, mat_version: str,
                 shape: tuple[int, int], k: int, bands: dict[str, int], dsm: bool) -> dict[str, str]:
    """Write one Hong et al. 2021 dataset (Augsburg or Berlin) in ``layout``; ``{file name: sha256}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "ouc":
        names = write_ouc(folder, name, seed, shape, k, bands, mat_version)
    elif layout == "ouc-zip":
        with tempfile.TemporaryDirectory() as tmp:
            inner = write_ouc(Path(tmp), name, seed, shape, k, bands, mat_version)
            fakes.write_zip(folder / f"{name}-ouc.zip", {f"{zip_root}/{n}": Path(tmp) / n for n in inner})
        names = [f"{name}-ouc.zip"]
    elif layout == "hong":
        names = write_hong(folder, seed, shape, k, bands, mat_version, dsm=dsm)
    else:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    return fakes.checksums(folder, names)


def make_fake(folder: Path, seed: int = 0, layout: str = "ouc", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE) -> dict[str, str]:
    """Write fake Augsburg files of ``layout`` into ``folder``; returns ``{file name: sha256}``."""
    return write_layout(folder, NAME, "Augsburg", seed, layout, mat_version, shape, NUM_CLASSES, BANDS, dsm=True)
