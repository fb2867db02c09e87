"""Seeded fakes of the LCZ HK files (MDL-RS bundle; names and keys are not published).

``make_fake(folder, seed, layout)`` returns ``{file name: sha256}``. Layouts:

* ``"mdl-rs"``: the default names ``HK_MS.mat`` (one variable ``data``, rows x cols x 10),
  ``HK_SAR.mat`` (``HK_SAR``, rows x cols x 4) and ``HK_GT.mat`` (``HK_GT``, the 2017 DFC LCZ
  codes 1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 17), all band-wise [0, 1] like MATLAB's mat2gray;
* ``"custom"``: other names and keys, bands first (bands x rows x cols) and labels coded 1..13:
  ``lcz_hk_msi.mat`` (``msi`` plus an unrelated variable), ``lcz_hk_sar.mat`` (``sar``),
  ``lcz_hk_labels.mat`` (``gt``); load them with :data:`CUSTOM_ENV`.

``counts`` places exactly that many pixels of each class (e.g. BDGF's on a 529 x 528 grid).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from bench_plugins.datasets.lcz_hk import CODES

from bench_core.data import save_mat
from tests.data import fakes

NUM_CLASSES = 13
SHAPE = (24, 22)
LAYOUTS = ("mdl-rs", "custom")
CUSTOM_ENV = {
    "BENCH_LCZ_HK_MSI": "lcz_hk_msi.mat:msi", "BENCH_LCZ_HK_SAR": "lcz_hk_sar.mat:sar",
    "BENCH_LCZ_HK_GT": "lcz_hk_labels.mat:gt", "BENCH_LCZ_HK_CODES": ",".join(str(i) for i in range(1, 14)),
}


def _unit(cube: np.ndarray) -> np.ndarray:
    lo, hi = cube.min(axis=(0, 1), keepdims=True), cube.max(axis=(0, 1), keepdims=True)
    return (cube - lo) / np.where(hi > lo, hi - lo, 1.0)


def make_fake(folder: Path, seed: int = 0, layout: str = "mdl-rs", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE, counts: Sequence[int] | None = None) -> dict[str, str]:
    """Write fake LCZ HK files of ``layout`` into ``folder``; returns ``{file name: sha256}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0x1C2])
    if counts is None:
        labels = fakes.block_labels(rng, shape, NUM_CLASSES, block=2)
    else:
        labels = fakes.labels_with_counts(rng, shape, counts)
    msi = _unit(fakes.class_cube(rng, labels, 10))
    sar = _unit(fakes.class_cube(rng, labels, 4))
    if layout == "mdl-rs":
        codes = np.asarray((0, *CODES))[labels]
        save_mat(folder / "HK_MS.mat", {"data": msi}, mat_version)
        save_mat(folder / "HK_SAR.mat", {"HK_SAR": sar}, mat_version)
        save_mat(folder / "HK_GT.mat", {"HK_GT": codes.astype(np.uint8)}, mat_version)
        names = ["HK_MS.mat", "HK_SAR.mat", "HK_GT.mat"]
    elif layout == "custom":
        save_mat(folder / "lcz_hk_msi.mat", {"msi": msi.transpose(2, 0, 1), "wavelengths": np.arange(10.0)},
                 mat_version)
        save_mat(folder / "lcz_hk_sar.mat", {"sar": sar.transpose(2, 0, 1)}, mat_version)
        save_mat(folder / "lcz_hk_labels.mat", {"gt": labels.astype(np.float64)}, mat_version)
        names = ["lcz_hk_msi.mat", "lcz_hk_sar.mat", "lcz_hk_labels.mat"]
    else:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    return fakes.checksums(folder, names)
