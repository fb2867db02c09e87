"""Seeded tiny fakes of the Berlin files (Hong et al. 2021 bundle and the OUC repackaging).

Same layouts as Augsburg's generator (``"ouc"``, ``"ouc-zip"``, ``"hong"``; no DSM),
with Berlin's 244 HSI bands, 4 SAR bands and 8 classes; ``mat_version="7.3"`` writes v7.3
files (what a 1723 x 476 x 244 double cube often needs). Returns ``{file name: sha256}``.
"""

from __future__ import annotations

from pathlib import Path

from tests.data.augsburg.make_fake import write_layout

NAME = "berlin"
BANDS = {"hsi": 244, "sar": 4}
NUM_CLASSES = 8
SHAPE = (28, 16)
LAYOUTS = ("ouc", "ouc-zip", "hong")


def make_fake(folder: Path, seed: int = 0, layout: str = "ouc", *, mat_version: str = "5",
              shape: tuple[int, int] = SHAPE) -> dict[str, str]:
    """Write fake Berlin files of ``layout`` into ``folder``; returns ``{file name: sha256}``."""
    return write_layout(folder, NAME, "Berlin", seed, layout, mat_version, shape, NUM_CLASSES, BANDS, dsm=False)
