"""DFC2018 (Houston 2018, 2018 IEEE GRSS Data Fusion Contest): CASI HSI 48 bands + multispectral LiDAR, 20 classes.

Registers ``dfc2018``. The scene is large (2404 x 8344 pixels at 0.5 m, 20 million pixels), so
the scene is built band by band into memory-mapped arrays and cached memory-mapped; the HSI
is stored as float16 when its source is 16-bit integers (see ``STORAGE``). Two
distributions are read, and they are **different protocols** (the run param ``data.layout``
says which one a run used):

* ``official``: the contest's phase-2 file tree (UH, on request; no redistribution):
  ``FullHSIDataset/20170218_UH_CASI_S4_NAD83.pix`` + ``.hdr`` (ENVI header; 1202 x 4172 at
  1 m, 50 channels of which 1-48 are spectral, 374-1047 nm; channels 49 and 50 are not
  spectral and are dropped), ``Lidar GeoTiff Rasters/<folder>/<raster>.tif`` (2404 x 8344 at
  0.5 m), ``TrainingGT/2018_IEEE_GRSS_DFC_GT_TR.tif`` (1202 x 4768: the training tiles (1, 1)-
  (1, 4) of the scene's 2 x 7 tiling, placed at rows 1202:2404, cols 1192:5960) and
  ``TestingGT/Test_Labels.tif`` (the full 0.5 m grid, labelled outside the training tiles).
  CoMiX's protocol: the HSI nearest-upsampled x2 to the 0.5 m grid, X = NDSM = DSM_C12 -
  DEM_C123_TLI, official train/test = all of GT_TR / all of Test_Labels (2,018,910 / 341,729
  pixels, the 40 per-class counts verified at load). Which rasters form X is a declared
  choice, overridable with ``BENCH_DFC2018_X`` (see ``X_CHOICES``); a non-default choice is
  a layout of its own (``official+x-...``: its own cache, fingerprint and cell key).
* ``ouc``: the OUC repackaging (``houston_hsi.mat`` 1202 x 4768 x 50, ``houston_lidar.mat`` 1 band
  of an undocumented raster, ``houston_gt.mat`` = GT_TR, ``houston_index.mat`` with 0-based
  (row, col) ``houston_train`` / ``houston_test``): the training box only, at 0.5 m, split
  *inside* it (18,750 / 2,000,160 pixels as one user counted). Not comparable with the
  official protocol.

No-data values (LiDAR sentinels such as -3.4e38 or 1e38, ``GDAL_NODATA``, the ENVI ``data
ignore value``, non-finite values, float HSI above 1e5) are masked **before** the per-band
normalisation, then set to the band's minimum (0 after min-max); how many per raster is in
``metadata["nodata"]``.

The package: :mod:`.facts` (published facts, file names, X choices, layouts), :mod:`.bands`
(band-wise writing into memory-mapped arrays) and :mod:`.loader` (the loader).
"""

from __future__ import annotations

from collections.abc import Callable

from bench_core import DatasetSpec, hookimpl
from bench_plugins.datasets.dfc2018.facts import (
    CITATION,
    CLASSES,
    DEFAULT_X,
    FACTS,
    GT_TEST,
    GT_TR,
    HSI_HDR,
    HSI_PIX,
    OFFICIAL,
    RASTERS,
    TEST_COUNTS,
    TRAIN_COUNTS,
    X_CHOICES,
    X_ENV,
    x_choice,
)
from bench_plugins.datasets.dfc2018.loader import Dfc2018Dataset, make_loader

__all__ = [
    "CLASSES", "DEFAULT_X", "FACTS", "GT_TEST", "GT_TR", "HSI_HDR", "HSI_PIX", "OFFICIAL", "RASTERS", "TEST_COUNTS",
    "TRAIN_COUNTS", "X_CHOICES", "X_ENV", "Dfc2018Dataset", "bench_register_datasets", "make_loader", "x_choice",
]


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``dfc2018``."""
    register(make_loader().spec(
        shape=None,  # 2404 x 8344 (official) or 1202 x 4768 (ouc): verified by the loader per layout
        files=(),  # on request from UH, no redistribution: bring your own files
        paper="Advanced multi-sensor optical remote sensing for urban land use and land cover classification: "
              "outcome of the 2018 IEEE GRSS Data Fusion Contest (Xu et al., 2019)",
        licence="UH/IEEE GRSS terms: on request, research use with citation and acknowledgement; no redistribution",
        citation=CITATION,
        description="DFC2018 / Houston 2018: CASI HSI 48 bands (1 m, upsampled x2) + LiDAR NDSM, 2404 x 8344 at "
                    "0.5 m, 20 classes, official split 2,018,910 train / 341,729 test pixels (CoMiX's protocol); "
                    "also reads the OUC .mat repackaging (a different protocol). Bring your own files.",
    ))
