"""DFC2018's published facts, file names and X raster choices, and the layouts they make."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from bench_core import DatasetError
from bench_core.data import Layout, OfficialCounts
from bench_plugins.datasets._verified import PublishedFacts

LOADER_VERSION = "1"
NAME = "dfc2018"
UH_URL = ("https://machinelearning.ee.uh.edu/2018-ieee-grss-data-fusion-challenge-fusion-of-multispectral-lidar-"
          "and-hyperspectral-data/")
PHASE2_ZIP = "http://machinelearning.ee.uh.edu/QZ23es1aMPH/2018IEEE/phase2.zip"
OUC_DRIVE = "https://drive.google.com/file/d/1iZEIAVhlt2QJb_RECp0bHFVN7C8po8ag"
HSI_PIX, HSI_HDR = "20170218_UH_CASI_S4_NAD83.pix", "20170218_UH_CASI_S4_NAD83.hdr"
GT_TR, GT_TEST = "2018_IEEE_GRSS_DFC_GT_TR.tif", "Test_Labels.tif"
HSI_BANDS = 48
"""Spectral channels kept of the 50 stored (49 and 50 are not spectral: off-nadir angle and DEM height)."""
HSI_FLOAT_NODATA_ABOVE = 1e5
"""A float HSI value above this is no-data (cdgood/thesis_test_harness's threshold)."""
LIDAR_NODATA_ABS = 1e10
"""A LiDAR value of magnitude >= this is a no-data sentinel (heights and intensities are far smaller)."""
X_ENV = "BENCH_DFC2018_X"
DEEP_SEARCH_DEPTH = 7
"""Folders below a dataset folder searched for the official tree (it nests 5 deep)."""


@dataclasses.dataclass(frozen=True)
class LidarRaster:
    filename: str
    folder: str
    what: str


RASTERS = {
    "dsm": LidarRaster("UH17c_GEF051.tif", "DSM_C12", "first-return DSM"),
    "dem_3msr": LidarRaster("UH17_GEG051.tif", "DEM_C123_3msr", "bare-earth DEM from ground returns of all channels"),
    "dem_tli": LidarRaster("UH17_GEG05.tif", "DEM_C123_TLI", "bare-earth DEM, voids under structures filled"),
    "dem_b": LidarRaster("UH17_GEM051.tif", "DEM+B_C123", "hybrid ground + building DEM"),
    "intensity_1550": LidarRaster("UH17_GI1F051.tif", "Intensity_C1", "intensity, 1550 nm"),
    "intensity_1064": LidarRaster("UH17_GI2F051.tif", "Intensity_C2", "intensity, 1064 nm"),
    "intensity_532": LidarRaster("UH17_GI3F051.tif", "Intensity_C3", "intensity, 532 nm"),
}
"""The contest's LiDAR GeoTIFFs (``Lidar GeoTiff Rasters/<folder>/<file>``), 2404 x 8344 at 0.5 m."""
NDSM = {"ndsm": "dem_tli", "ndsm_3msr": "dem_3msr", "ndsm_b": "dem_b"}
"""NDSM choices: DSM_C12 minus this DEM."""
X_CHOICES = {**{t: f"{r.folder} ({r.filename}): {r.what}" for t, r in RASTERS.items()},
             **{t: f"NDSM = DSM_C12 - {RASTERS[dem].folder}" for t, dem in NDSM.items()}}
DEFAULT_X = ("ndsm",)
"""CoMiX: NDSM = DSM - DEM (which DEM is not stated; DEM_C123_TLI, the void-filled bare earth, is the declared choice)."""

CLASSES = (
    "Healthy grass", "Stressed grass", "Artificial turf", "Evergreen trees", "Deciduous trees", "Bare earth",
    "Water", "Residential buildings", "Non-residential buildings", "Roads", "Sidewalks", "Crosswalks",
    "Major thoroughfares", "Highways", "Railways", "Paved parking lots", "Unpaved parking lots", "Cars", "Trains",
    "Stadium seats",
)
PALETTE = (
    (50, 205, 50), (173, 255, 47), (0, 128, 128), (0, 100, 0), (34, 139, 34), (139, 69, 19), (0, 0, 255),
    (255, 228, 196), (205, 92, 92), (128, 128, 128), (220, 220, 220), (255, 255, 255), (255, 140, 0),
    (255, 0, 0), (128, 0, 128), (105, 105, 105), (184, 134, 11), (255, 20, 147), (148, 0, 211), (255, 215, 0),
)
TRAIN_COUNTS = (39196, 130008, 2736, 54322, 20172, 18064, 1064, 158995, 894769, 183283, 136035, 6059, 185438,
                39438, 27748, 45932, 587, 26289, 21479, 27296)
TEST_COUNTS = (20000, 20000, 20000, 20000, 20000, 20000, 1628, 20000, 20000, 20000, 20000, 5345, 20000, 20000,
               11232, 20000, 3524, 20000, 20000, 20000)
OFFICIAL = OfficialCounts(
    train=TRAIN_COUNTS, test=TEST_COUNTS,
    source="the contest's GT_TR (training tiles) and Test_Labels.tif (other tiles) = CoMiX Table III; official layout",
)
FACTS = {
    "official": PublishedFacts(source="CoMiX Table III (= the contest's GT_TR / Test_Labels.tif)", shape=(2404, 8344),
                               train=TRAIN_COUNTS, test=TEST_COUNTS),
    "ouc": PublishedFacts(source="the contest's GT_TR (CoMiX Table III, train column)", shape=(1202, 4768),
                          labelled=TRAIN_COUNTS),
}
OFFICIAL_SHA256 = {
    GT_TR: "025b3813a0a52855567debf4b1e294937fd9b1ff17e00b9acd9e794ef29696d0",
    HSI_PIX: "6f29fd1863ceb0cf4ae3b162ffc48e11ce02bad46780531a99ac2b29164b38e2",
    RASTERS["dem_b"].filename: "521b04abe70ef1452cdd74ee46b30efa4cc093e707a365bbdd6ad54f6317779a",
}
OUC_SHA256 = {
    "houston_hsi.mat": "35a4a9a2bad193740274c6388f18284fc586a2ef5bde579368796fbeec2a58ea",
    "houston_lidar.mat": "a55fa2d99684078dd0d8039b2ca1349190d86766426a25e8dff7fbd5df036d9b",
    "houston_gt.mat": "93f268e576fcf149fab8cb71b4a79691b420e9a3f369f0cbc73e2029639f6286",
    "houston_index.mat": "2d513db197f105b6b82e7039909878862fbe48750a93184017f22ab8f288d0b3",
}
OBTAIN = (
    f"the University of Houston, on request: {UH_URL} (email your name, contact and affiliation and agree to cite "
    "the dataset and acknowledge the IEEE GRSS IADF and the UH Hyperspectral Image Analysis Lab; no redistribution). "
    f"The phase-2 archive (phase2.zip, {PHASE2_ZIP}) unpacks to 2018IEEE_Contest/Phase2/...; put it and "
    "TestingGT/Test_Labels.tif in a folder named dfc2018. The OUC repackaging (houston_*.mat, a different protocol) "
    f"is on Google Drive: {OUC_DRIVE}"
)
CITATION = (
    "Y. Xu, B. Du, L. Zhang, D. Cerra, M. Pato, E. Carmona, S. Prasad, N. Yokoya, R. Haensch, B. Le Saux, "
    "Advanced multi-sensor optical remote sensing for urban land use and land cover classification: outcome of the "
    "2018 IEEE GRSS Data Fusion Contest, IEEE JSTARS 12(6):1709-1724, 2019, doi:10.1109/JSTARS.2019.2911113. "
    "Acknowledge the IEEE GRSS IADF and the Hyperspectral Image Analysis Lab at the University of Houston."
)
FIX = f"copy it again from the contest's distribution ({UH_URL})"


# ----------------------------------------------------------------------------- settings and layouts


def x_choice(env: Mapping[str, str]) -> tuple[str, ...]:
    """The X rasters ``BENCH_DFC2018_X`` asks for (comma-separated tokens of ``X_CHOICES``), else ``DEFAULT_X``."""
    text = (env.get(X_ENV) or "").strip()
    if not text:
        return DEFAULT_X
    tokens = tuple(t.strip().lower() for t in text.split(",") if t.strip())
    unknown = [t for t in tokens if t not in X_CHOICES]
    if not tokens or unknown or len(set(tokens)) != len(tokens):
        raise DatasetError(
            f"{X_ENV}={text!r}: expected distinct comma-separated rasters among {', '.join(X_CHOICES)} "
            f"(e.g. {X_ENV}=ndsm,intensity_1550,intensity_1064,intensity_532); "
            + (f"unknown: {', '.join(unknown)}" if unknown else "repeated or empty")
        )
    return tokens


def x_rasters(tokens: Sequence[str]) -> list[str]:
    """The raster tokens the X tokens read, in ``RASTERS`` order."""
    needed = set()
    for t in tokens:
        needed.update(("dsm", NDSM[t]) if t in NDSM else (t,))
    return [t for t in RASTERS if t in needed]


def describe_x(tokens: Sequence[str]) -> str:
    return "; ".join(f"{t} = {X_CHOICES[t]}" for t in tokens)


def official_layout(tokens: Sequence[str] = DEFAULT_X) -> Layout:
    """The contest's tree with the LiDAR rasters the X choice needs."""
    tokens = tuple(tokens)
    rasters = [RASTERS[t].filename for t in x_rasters(tokens)]
    name = "official" if tokens == DEFAULT_X else "official+x-" + "-".join(tokens)
    return Layout(
        name=name,
        required=(HSI_PIX, HSI_HDR, GT_TR, GT_TEST, *rasters),
        description=(f"the contest's phase-2 tree (FullHSIDataset/, Lidar GeoTiff Rasters/, TrainingGT/) and "
                     f"TestingGT/{GT_TEST}; X = {', '.join(tokens)}"),
        read=lambda paths: ("official", tokens),
        sha256={n: s for n, s in OFFICIAL_SHA256.items() if n in (HSI_PIX, GT_TR, *rasters)},
    )


OUC_LAYOUT = Layout(
    name="ouc",
    required=("houston_hsi.mat", "houston_lidar.mat", "houston_gt.mat", "houston_index.mat"),
    description=("OUC repackaging (houston2018-ouc; training box only, 1202 x 4768, split inside it): a different "
                 "protocol from the official one"),
    read=lambda paths: ("ouc", ()),
    keys={"houston_hsi.mat": ("houston_hsi",), "houston_lidar.mat": ("houston_lidar",),
          "houston_gt.mat": ("houston_gt",), "houston_index.mat": ("houston_train", "houston_test", "houston_all")},
    sha256=OUC_SHA256,
)


def layouts_for(env: Mapping[str, str]) -> tuple[Layout, ...]:
    return (official_layout(x_choice(env)), OUC_LAYOUT)
