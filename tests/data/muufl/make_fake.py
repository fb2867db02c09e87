"""Seeded tiny fakes of the MUUFL Gulfport files.

Layouts (``make_fake(folder, seed, layout)`` returns ``{file name: sha256}``):

* ``"gatorsense"``: ``muufl_gulfport_campus_1_hsi_220_label.mat`` holding the MATLAB
  struct ``hsi`` with ``Data`` (rows x cols x 64, float64), ``Lidar`` (a 1 x 1 cell whose
  struct has ``z``: rows x cols x 2), ``sceneLabels.labels`` (-1 = unlabelled, 1..11) and
  ``sceneLabels.Materials_Type`` (1 x 11 cell of names), ``info.wavelength``;
* ``"m3amba"``: ``hsi.mat`` (``HSI``), ``lidar.mat`` (``lidar``), ``train_test_gt.mat``
  (``trainlabels``, ``testlabels``).

``mat_version="7.3"`` writes the struct the HDF5 way (groups, cell references).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_core.data import save_mat
from tests.data import fakes

FILE = "muufl_gulfport_campus_1_hsi_220_label.mat"
MATERIALS = (
    "Trees", "Mostly grass", "Mixed ground surface", "Dirt and sand", "Road", "Water",
    "Building shadow", "Buildings", "Sidewalk", "Yellow curb", "Cloth panels",
)
BANDS = {"hsi": 64, "lidar": 2}
SHAPE = (28, 20)
LAYOUTS = ("gatorsense", "m3amba")


def make_fake(folder: Path, seed: int = 0, layout: str = "gatorsense", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE, materials: tuple[str, ...] = MATERIALS) -> dict[str, str]:
    """Write fake MUUFL files of ``layout`` into ``folder``; returns ``{file name: sha256}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0x3F])
    labels = fakes.block_labels(rng, shape, len(MATERIALS))
    hsi = fakes.class_cube(rng, labels, BANDS["hsi"])
    lidar = fakes.class_cube(rng, labels, BANDS["lidar"], scale=20.0)
    if layout == "gatorsense":
        struct = {
            "Data": hsi,
            "Lidar": [{"z": lidar}],
            "sceneLabels": {"labels": np.where(labels == 0, -1, labels).astype(np.float64),
                            "Materials_Type": list(materials)},
            "info": {"wavelength": np.linspace(375.0, 1050.0, BANDS["hsi"])},
        }
        save_mat(folder / FILE, {"hsi": struct}, mat_version)
        names = [FILE]
    elif layout == "m3amba":
        train, test = fakes.train_test_maps(rng, labels)
        save_mat(folder / "hsi.mat", {"HSI": hsi}, mat_version)
        save_mat(folder / "lidar.mat", {"lidar": lidar}, mat_version)
        save_mat(folder / "train_test_gt.mat", {"trainlabels": train, "testlabels": test}, mat_version)
        names = ["hsi.mat", "lidar.mat", "train_test_gt.mat"]
    else:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    return fakes.checksums(folder, names)
