"""Seeded fakes of the Yellow River Estuary files in AsyFFNet's ``HHK`` layout.

``make_fake(folder, seed, layout="hhk")`` writes ``data_hsi.mat`` (key ``data``, rows x cols x 166,
float64), ``data_sar.mat`` (``data``, rows x cols x 3, float64), ``mask_train.mat`` (``mask_train``)
and ``mask_test.mat`` (``mask_test``), uint8 label maps (0 = unlabelled, 1..5), and returns
``{file name: sha256}``. ``counts`` places exactly that many pixels of each class (at random),
e.g. BDGF's totals on a 960 x 1170 grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench_core.data import save_mat
from tests.data import fakes

NUM_CLASSES = 5
BANDS = {"hsi": 166, "sar": 3}
SHAPE = (20, 24)
LAYOUTS = ("hhk",)
FILES = ("data_hsi.mat", "data_sar.mat", "mask_train.mat", "mask_test.mat")


def make_fake(folder: Path, seed: int = 0, layout: str = "hhk", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE, counts: Sequence[int] | None = None,
              hsi_dtype: str = "float64") -> dict[str, str]:
    """Write fake HHK files into ``folder``; returns ``{file name: sha256}``."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0x44])
    if counts is None:
        labels = fakes.block_labels(rng, shape, NUM_CLASSES)
    else:
        labels = fakes.labels_with_counts(rng, shape, counts)
    train, test = fakes.train_test_maps(rng, labels, per_class=6)
    scale = 4000.0 if np.dtype(hsi_dtype).kind in "iu" else 1.0
    save_mat(folder / "data_hsi.mat", {"data": fakes.class_cube(rng, labels, BANDS["hsi"], hsi_dtype, scale)},
             mat_version)
    save_mat(folder / "data_sar.mat", {"data": fakes.class_cube(rng, labels, BANDS["sar"], "float64")}, mat_version)
    save_mat(folder / "mask_train.mat", {"mask_train": train.astype(np.uint8)}, mat_version)
    save_mat(folder / "mask_test.mat", {"mask_test": test.astype(np.uint8)}, mat_version)
    return fakes.checksums(folder, FILES)
