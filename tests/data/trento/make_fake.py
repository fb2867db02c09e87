"""Seeded tiny fakes of the Trento files.

Layouts (``make_fake(folder, seed, layout)`` returns ``{file name: sha256}``):

* ``"mirror"``: tyust-dayu/Trento's ``Italy_hsi.mat`` / ``Italy_lidar.mat`` (key ``data``,
  stored transposed: cols x rows x bands, float32, LiDAR with 2 bands: an elevation-like
  0-20 band and an intensity-like 0-2900 band) and ``allgrd.mat`` (``mask_test``, uint8,
  the full ground truth, transposed);
* ``"mirror-split"``: the mirror plus ``TRLabel.mat`` / ``TSLabel.mat`` in the literature's
  rows x cols orientation (as taken from another bundle);
* ``"mmr"``: ``HSI.mat``, ``LiDAR.mat`` (1 band), ``TRLabel.mat``, ``TSLabel.mat`` (rows x cols);
* ``"ouc"``: ``trento_hsi.mat``, ``trento_lidar.mat``, ``trento_gt.mat``, ``trento_index.mat``.

``SHAPE`` is the literature's orientation (rows > cols, like 600 x 166).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_core.data import save_mat
from tests.data import fakes

NUM_CLASSES = 6
HSI_BANDS = 63
SHAPE = (40, 14)
LAYOUTS = ("mirror", "mirror-split", "mmr", "ouc")


def scene_arrays(seed: int, shape: tuple[int, int] = SHAPE) -> dict[str, np.ndarray]:
    """The fake scene in the literature's orientation: labels, train, test, hsi, 2-band lidar."""
    rng = np.random.default_rng([seed, 0x7E])
    labels = fakes.block_labels(rng, shape, NUM_CLASSES)
    train, test = fakes.train_test_maps(rng, labels)
    hsi = fakes.class_cube(rng, labels, HSI_BANDS, "float32", 1000.0)
    elevation = fakes.class_cube(rng, labels, 1, "float32", 20.0)
    intensity = fakes.class_cube(rng, labels, 1, "float32", 2900.0)
    return {"labels": labels, "train": train, "test": test, "hsi": hsi,
            "lidar": np.concatenate([elevation, intensity], axis=2)}


def make_fake(folder: Path, seed: int = 0, layout: str = "mirror", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE) -> dict[str, str]:
    """Write fake Trento files of ``layout`` into ``folder``; returns ``{file name: sha256}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    a = scene_arrays(seed, shape)
    if layout in ("mirror", "mirror-split"):
        swap = (1, 0, 2)  # the mirror stores cols x rows
        save_mat(folder / "Italy_hsi.mat", {"data": a["hsi"].transpose(swap)}, mat_version)
        save_mat(folder / "Italy_lidar.mat", {"data": a["lidar"].transpose(swap)}, mat_version)
        save_mat(folder / "allgrd.mat", {"mask_test": a["labels"].T.astype(np.uint8)}, mat_version)
        names = ["Italy_hsi.mat", "Italy_lidar.mat", "allgrd.mat"]
        if layout == "mirror-split":
            save_mat(folder / "TRLabel.mat", {"TRLabel": a["train"].astype(np.uint8)}, mat_version)
            save_mat(folder / "TSLabel.mat", {"TSLabel": a["test"].astype(np.uint8)}, mat_version)
            names += ["TRLabel.mat", "TSLabel.mat"]
    elif layout == "mmr":
        save_mat(folder / "HSI.mat", {"HSI": a["hsi"].astype(np.float64)}, mat_version)
        save_mat(folder / "LiDAR.mat", {"LiDAR": a["lidar"][..., 0].astype(np.float64)}, mat_version)
        save_mat(folder / "TRLabel.mat", {"TRLabel": a["train"].astype(np.uint8)}, mat_version)
        save_mat(folder / "TSLabel.mat", {"TSLabel": a["test"].astype(np.uint8)}, mat_version)
        names = ["HSI.mat", "LiDAR.mat", "TRLabel.mat", "TSLabel.mat"]
    elif layout == "ouc":
        save_mat(folder / "trento_hsi.mat", {"trento_hsi": a["hsi"]}, mat_version)
        save_mat(folder / "trento_lidar.mat", {"trento_lidar": a["lidar"][..., :1]}, mat_version)
        save_mat(folder / "trento_gt.mat", {"trento_gt": a["labels"].astype(np.uint8)}, mat_version)
        save_mat(folder / "trento_index.mat", {"trento_train": fakes.coords(a["train"]),
                                               "trento_test": fakes.coords(a["test"])}, mat_version)
        names = ["trento_hsi.mat", "trento_lidar.mat", "trento_gt.mat", "trento_index.mat"]
    else:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    return fakes.checksums(folder, names)
