"""Yellow River Estuary (HSI + SAR), the wetland scene of BDGF: ZY1-02D AHSI 166 bands + Sentinel-1 3 bands.

Registers ``yellow-river`` (5 classes). BDGF (Table I) gives 960 x 1170 pixels at 30 m and
233,478 labelled pixels; no public download of the data exists. The layout read is the
``HHK`` ("Huanghekou" = Yellow River Estuary) set of AsyFFNet (Li, Gao et al., TNNLS 2023,
formango/HSI_SAR_Multisource_Classification_AsyFFNet), whose loader fixes the files and keys:

* ``hhk``: ``data_hsi.mat`` (key ``data``, rows x cols x 166), ``data_sar.mat`` (``data``,
  rows x cols x 3), ``mask_train.mat`` (``mask_train``) and ``mask_test.mat`` (``mask_test``),
  label maps with 0 = unlabelled and 1..5 = the classes. The labels are the union of the two
  masks; the masks are AsyFFNet's fixed split (their counts are not published).

That AsyFFNet's HHK is BDGF's set is **inferred** from the band and class counts (166 + 3
bands, 5 classes); the loader verifies BDGF's shape and per-class totals at load, so a
different set is refused (or, with ``BENCH_VERIFY_CHECKSUMS=0``, loaded with the
differences recorded). BDGF's protocol is ``per-class:100`` (seeded per cell).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from bench_core import DatasetSpec, hookimpl
from bench_core.data import Layout, RawScene, read_raster
from bench_plugins.datasets._verified import PublishedFacts, VerifiedDataset

__all__ = ["CLASSES", "FACTS", "bench_register_datasets", "make_loader"]

LOADER_VERSION = "1"
NAME = "yellow-river"
ASYFFNET = "https://github.com/formango/HSI_SAR_Multisource_Classification_AsyFFNet"
CLASSES = ("Spartina alterniflora", "Suaeda salsa", "Tamarix forest", "Tidal creek", "Mudflat")
PALETTE = ((200, 40, 40), (150, 60, 160), (20, 110, 40), (40, 120, 230), (170, 140, 90))
FACTS = PublishedFacts(
    source="BDGF, Table I (960 x 1170 at 30 m; 233,478 labelled pixels)",
    shape=(960, 1170),
    labelled=(39784, 118213, 35216, 15673, 24592),
)
FIX = "copy the HHK files again from where you obtained them (there is no public download)"
OBTAIN = (
    "no public download exists. The files are the AsyFFNet 'HHK' set (data/HHK/data_hsi.mat, data_sar.mat, "
    f"mask_train.mat, mask_test.mat; {ASYFFNET}, which ships no data): request them from the AsyFFNet authors "
    "(W. Li, Y. Gao et al., Beijing Institute of Technology) or the BDGF authors, and put them in a folder named "
    "yellow-river"
)
CITATION = (
    "Y. Gao, X. Song, W. Li, J. Wang, J. He, X. Jiang, Y. Feng, Fusion classification of HSI and MSI using a "
    "spatial-spectral vision transformer for wetland remote sensing, Remote Sensing 14(4):850, 2022 (cited by "
    "BDGF for the scene); W. Li, Y. Gao, M. Zhang, R. Tao, Q. Du, Asymmetric feature fusion network for "
    "hyperspectral and SAR image classification, IEEE TNNLS 34(10):8057-8070, 2023, doi:10.1109/TNNLS.2022.3149394"
)


def _read_hhk(paths: Mapping[str, Path]) -> RawScene:
    return RawScene(
        modalities={
            "hsi": read_raster(paths, "data_hsi.mat", "data", FIX),
            "sar": read_raster(paths, "data_sar.mat", "data", FIX),
        },
        official_train=read_raster(paths, "mask_train.mat", "mask_train", FIX),
        official_test=read_raster(paths, "mask_test.mat", "mask_test", FIX),
        metadata={
            "official_split": "AsyFFNet's fixed masks mask_train.mat / mask_test.mat (counts not published); "
                              "BDGF's protocol is per-class:100",
            "labels": "union of mask_train and mask_test (0 = unlabelled, 1..5)",
            "sar_bands": "3 Sentinel-1 channels in the file's order (AsyFFNet: sar_bands = 3)",
            "gsd_m": 30.0,
        },
    )


LAYOUTS = (
    Layout(
        name="hhk",
        required=("data_hsi.mat", "data_sar.mat", "mask_train.mat", "mask_test.mat"),
        description=f"AsyFFNet's 'HHK' set (data/HHK/ of {ASYFFNET}; data not public); no published sha256",
        read=_read_hhk,
        keys={"data_hsi.mat": ("data",), "data_sar.mat": ("data",), "mask_train.mat": ("mask_train",),
              "mask_test.mat": ("mask_test",)},
    ),
)


def make_loader(facts: PublishedFacts = FACTS) -> VerifiedDataset:
    """The ``yellow-river`` loader (``facts``: what the scene is checked against; tests pass others)."""
    return VerifiedDataset(
        name=NAME,
        layouts=LAYOUTS,
        class_names=CLASSES,
        bands={"hsi": 166, "sar": 3},
        palette=PALETTE,
        aliases=("yellow_river", "yellowriver", "yre", "HHK", "huanghekou"),
        url=ASYFFNET,
        download_url="",
        fetchable=False,
        version=LOADER_VERSION,
        facts={"hhk": facts},
        obtain=OBTAIN,
        notes=[
            ("960 x 1170 pixels at 30 m (BDGF); ZY1-02D AHSI 166 bands (radiometrically and atmospherically "
            "corrected), Sentinel-1 SAR 3 channels; wetland of the Yellow River Estuary, Shandong, China"),
            ("the match between AsyFFNet's HHK files and BDGF's scene is inferred from the band and class counts "
            "(166 + 3 bands, 5 classes); BDGF's shape and per-class totals are verified at load"),
            ("official maps = AsyFFNet's fixed masks (their counts are not published); BDGF's protocol is "
            "per-class:100, seeded per cell (bench leaderboard --board bdgf-protocol)"),
            "not OUC's 18-class Yellow River Estuary (285 HSI bands, 1185 x 1342): another scene",
        ],
    )


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``yellow-river``."""
    register(make_loader().spec(
        shape=None,  # 960 x 1170 is verified by the loader (with the per-class totals)
        files=(),  # no public download: bring your own files
        paper="Yellow River Estuary HSI + SAR scene as used by BDGF (AsyFFNet's 'HHK' files)",
        licence="unknown: no licence is stated; the data are not public (obtain them from the authors)",
        citation=CITATION,
        description="Yellow River Estuary (BDGF): ZY1-02D HSI 166 bands + Sentinel-1 SAR 3 bands, 960 x 1170 at "
                    "30 m, 5 wetland classes, 233,478 labelled pixels; BDGF's protocol per-class:100. Files: "
                    "AsyFFNet's HHK set, brought by the user (no public download).",
    ))
