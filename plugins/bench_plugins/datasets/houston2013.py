"""Houston2013 (2013 IEEE GRSS Data Fusion Contest): HSI 144 bands + LiDAR DSM, 15 classes.

Registers ``houston2013`` (349 x 1905 pixels, 2.5 m). Distributions read:

* ``dfc2013``: the contest's rasters ``2013_IEEE_GRSS_DF_Contest_CASI.tif`` (144 bands)
  and ``..._LiDAR.tif`` (from the official ``2013_DFTC.zip``) with the official label
  rasters ``..._Samples_TR.tif`` (2,832 training pixels) and ``..._Samples_VA.tif``
  (12,197 test pixels) from danfenghong/ISPRS_S2FL;
* ``mmr``: ``HSI.mat`` (``HSI``), ``LiDAR.mat`` (``LiDAR``), ``TRLabel.mat``, ``TSLabel.mat``
  (the MMRS/rs-fusion-datasets ``.mat`` set; ``gt.mat`` optional);
* ``m3amba``: the same with the LiDAR in ``LiDAR_1.mat`` (kaka-Cao/M3amba's crop pipeline).

The UH/GRSS terms forbid redistribution: bring your own files (or fetch them from the
official site); the published sha256 are checked when the cache is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from bench_core import DataFile, DatasetError, DatasetSpec, hookimpl
from bench_core.data import Layout, OfficialCounts, Raster, RawScene, RealDataset, read_raster

__all__ = ["CLASSES", "bench_register_datasets", "make_loader", "read_tif"]

LOADER_VERSION = "1"
NAME = "houston2013"
PREFIX = "2013_IEEE_GRSS_DF_Contest"
CASI, LIDAR = f"{PREFIX}_CASI.tif", f"{PREFIX}_LiDAR.tif"
TRAIN_TIF, TEST_TIF = f"{PREFIX}_Samples_TR.tif", f"{PREFIX}_Samples_VA.tif"
UH_URL = "https://machinelearning.ee.uh.edu/?page_id=459"
UH_ZIP = "https://machinelearning.ee.uh.edu/2egf4tg8hial13gt/2013_DFTC.zip"
S2FL_COMMIT = "dfebaf48b18004cedaf506b97db31ae78f0ae3f2"
S2FL_RAW = f"https://raw.githubusercontent.com/danfenghong/ISPRS_S2FL/{S2FL_COMMIT}"

CLASSES = (
    "Healthy grass", "Stressed grass", "Synthetic grass", "Trees", "Soil", "Water", "Residential",
    "Commercial", "Road", "Highway", "Railway", "Parking Lot 1", "Parking Lot 2", "Tennis Court",
    "Running Track",
)
PALETTE = (
    (0, 205, 0), (127, 255, 0), (46, 139, 87), (0, 139, 0), (160, 82, 45), (0, 255, 255),
    (255, 255, 255), (216, 191, 216), (255, 0, 0), (139, 0, 0), (100, 100, 100), (255, 255, 0),
    (238, 154, 0), (85, 26, 139), (255, 127, 80),
)
OFFICIAL = OfficialCounts(
    train=(198, 190, 192, 188, 186, 182, 196, 191, 193, 191, 181, 192, 184, 181, 187),
    test=(1053, 1064, 505, 1056, 1056, 143, 1072, 1053, 1059, 1036, 1054, 1041, 285, 247, 473),
    source="the contest's training/validation samples, as the label rasters Samples_TR.tif / Samples_VA.tif",
)
DFC_SHA256 = {
    CASI: "1440f38594e8e82cc1944c084fc138ef55a70af54122828e999c4fb438574c14",
    LIDAR: "9f4facce8876ee84642d9cb03536baf0389506de97ddc01b73366fe4521de981",
    TRAIN_TIF: "c943016242f98a4c1e70fb35842562e654425de5364c58ceb5e1186029c193f7",
    TEST_TIF: "9fd0093af69a8f91cc0f3ef7c67dd7f961445223c0a2497bdbed03e7f329a010",
}
MMR_SHA256 = {
    "HSI.mat": "6a0edba3c224df411623ed5774fc34e91929ab341709859b2f56cc38dbb3c6fd",
    "LiDAR.mat": "7aa956e7c371fd29a495f0cb9bb8f572aaa4065fcfeda2b3e854a5cef74b35ad",
    "TRLabel.mat": "96ce863eaf4dc548c3140a480dee33c812d46194ae5ed345fed6e71a3d72b527",
    "TSLabel.mat": "46bd849d556c80ed67b33f23dd288eafa7ac9f97a847390be373b702b0bf5a45",
    "gt.mat": "75ecccc08ac7709e48285bb098fda802da6efd6dc0168cb1c99c6ce09d0b6ae0",
}
CITATION = (
    "C. Debes et al., Hyperspectral and LiDAR data fusion: Outcome of the 2013 GRSS Data Fusion "
    "Contest, IEEE JSTARS 7(6) (2014) 2405-2418, doi:10.1109/JSTARS.2014.2305441. Acknowledge the "
    "Hyperspectral Image Analysis group and NCALM at the University of Houston and the IEEE GRSS IADF TC."
)
FIX = f"fetch it again with `bench datasets fetch {NAME}` or copy it from the official distribution ({UH_URL})"


def read_tif(path: Path, fix: str = FIX) -> np.ndarray:
    """A TIFF as a numpy array (tifffile); unreadable files raise :class:`DatasetError`."""
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except Exception as exc:  # tifffile raises many types for damaged files
        raise DatasetError(
            f"{path}: cannot read as a TIFF image ({type(exc).__name__}: {exc}); expected a complete "
            f"GeoTIFF, the file is probably truncated or corrupt; {fix}"
        ) from exc


def _band_raster(data: np.ndarray, file: str, shape: tuple[int, int]) -> Raster:
    """Pick the band axis of a multi-band TIFF: the axis that is not the (rows, cols) grid."""
    if data.ndim == 3 and data.shape[1:] == shape and data.shape[:2] != shape:
        return Raster(data, file, band_axis=0)
    return Raster(data, file, band_axis=-1)


def _read_dfc(paths: Mapping[str, Path]) -> RawScene:
    train = Raster(read_tif(paths[TRAIN_TIF]), TRAIN_TIF)
    test = Raster(read_tif(paths[TEST_TIF]), TEST_TIF)
    shape = train.spatial_shape
    return RawScene(
        modalities={
            "hsi": _band_raster(read_tif(paths[CASI]), CASI, shape),
            "lidar": _band_raster(read_tif(paths[LIDAR]), LIDAR, shape),
        },
        official_train=train,
        official_test=test,
        metadata={"official_split": f"{TRAIN_TIF} / {TEST_TIF}", "gsd_m": 2.5, "wavelengths_nm": "364-1046"},
    )


def _mat_reader(lidar_file: str) -> Callable[[Mapping[str, Path]], RawScene]:
    def read(paths: Mapping[str, Path]) -> RawScene:
        return RawScene(
            modalities={
                "hsi": read_raster(paths, "HSI.mat", "HSI", FIX),
                "lidar": read_raster(paths, lidar_file, "LiDAR", FIX),
            },
            official_train=read_raster(paths, "TRLabel.mat", "TRLabel", FIX),
            official_test=read_raster(paths, "TSLabel.mat", "TSLabel", FIX),
            metadata={"official_split": "TRLabel.mat / TSLabel.mat", "gsd_m": 2.5},
        )

    return read


LAYOUTS = (
    Layout(
        name="dfc2013",
        required=(CASI, LIDAR, TRAIN_TIF, TEST_TIF),
        description=f"official contest rasters (2013_DFTC.zip, {UH_URL}) + label rasters from "
                    f"danfenghong/ISPRS_S2FL@{S2FL_COMMIT[:7]}",
        read=_read_dfc,
        sha256=DFC_SHA256,
    ),
    Layout(
        name="mmr",
        required=("HSI.mat", "LiDAR.mat", "TRLabel.mat", "TSLabel.mat"),
        optional=("gt.mat",),
        description="MMRS .mat set (likyoo; houston2013-mmr.zip)",
        read=_mat_reader("LiDAR.mat"),
        keys={"HSI.mat": ("HSI",), "LiDAR.mat": ("LiDAR",), "TRLabel.mat": ("TRLabel",),
              "TSLabel.mat": ("TSLabel",), "gt.mat": ("gt",)},
        sha256=MMR_SHA256,
    ),
    Layout(
        name="m3amba",
        required=("HSI.mat", "LiDAR_1.mat", "TRLabel.mat", "TSLabel.mat"),
        description="kaka-Cao/M3amba's .mat set (LiDAR in LiDAR_1.mat); no published sha256",
        read=_mat_reader("LiDAR_1.mat"),
        keys={"HSI.mat": ("HSI",), "LiDAR_1.mat": ("LiDAR",), "TRLabel.mat": ("TRLabel",),
              "TSLabel.mat": ("TSLabel",)},
    ),
)


def make_loader() -> RealDataset:
    """The ``houston2013`` loader."""
    return RealDataset(
        name=NAME,
        layouts=LAYOUTS,
        class_names=CLASSES,
        bands={"hsi": 144, "lidar": 1},
        palette=PALETTE,
        aliases=("houston", "2013_DFTC", "Houston2013", "HS-LiDAR Houston"),
        url=UH_URL,
        version=LOADER_VERSION,
        official=OFFICIAL,
        notes=[
            "349 x 1905 pixels at 2.5 m; CASI HSI 144 bands, 364-1046 nm; LiDAR DSM 1 band",
            "terms of the UH/GRSS: research use with acknowledgement and citation; do not redistribute",
        ],
    )


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``houston2013``."""
    register(make_loader().spec(
        shape=(349, 1905),
        files=(
            DataFile(name="2013_DFTC.zip", sha256="f4d619d5cbcb09d0301038f1b8fe83def6c2d484334b7b8127740a00ecf7e245",
                     urls=(UH_ZIP,)),
            DataFile(name=TRAIN_TIF, sha256=DFC_SHA256[TRAIN_TIF], urls=(f"{S2FL_RAW}/{TRAIN_TIF}",), size=13_660),
            DataFile(name=TEST_TIF, sha256=DFC_SHA256[TEST_TIF], urls=(f"{S2FL_RAW}/{TEST_TIF}",), size=19_098),
        ),
        paper="Hyperspectral and LiDAR data fusion: Outcome of the 2013 GRSS Data Fusion Contest (Debes et al., 2014)",
        licence="UH/IEEE GRSS terms: research use with acknowledgement and citation; no redistribution",
        citation=CITATION,
        description="Houston2013 (GRSS DFC 2013): CASI HSI 144 bands + LiDAR DSM, 349 x 1905 at 2.5 m, "
                    "15 classes, official split 2,832 train / 12,197 test pixels.",
    ))
