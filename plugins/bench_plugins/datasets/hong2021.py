"""Augsburg and Berlin, the HSI + SAR(+ DSM) benchmark scenes of Hong et al. (ISPRS J. 2021).

Registers ``augsburg`` (HSI 180 + SAR 4), ``augsburg-dsm`` (HSI 180 + SAR 4 + DSM 1) and
``berlin`` (HSI 244 + SAR 4). Two public distributions are read:

* ``hong``: Hong's own bundle (folders ``HS-SAR-DSM Augsburg``, ``HS-SAR Berlin``):
  ``data_HS_LR.mat``, ``data_SAR_HR.mat``, ``TrainImage.mat``, ``TestImage.mat`` (and
  ``data_DSM.mat`` for Augsburg); the labels are the union of the two disjoint maps.
* ``ouc``: the OUC repackaging (``augsburg-ouc.zip`` / ``berlin-ouc.zip``):
  ``<name>_hsi.mat``, ``<name>_sar.mat``, ``<name>_gt.mat`` and ``<name>_index.mat``
  whose ``<name>_train`` / ``<name>_test`` hold 0-based (row, col) pairs. It has no DSM,
  so ``augsburg-dsm`` needs Hong's bundle.

SAR channels keep the file's order (never reordered). The spec's ``augsburg`` and
``augsburg-dsm`` are separate datasets so that a benchmark's inputs never depend on
which files happen to be on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from bench_core import DataFile, DatasetSpec, hookimpl
from bench_core.data import Layout, OfficialCounts, Raster, RawScene, RealDataset, label_map, maps_from_index
from bench_core.data import read_mat, read_raster

__all__ = ["AUGSBURG_CLASSES", "BERLIN_CLASSES", "bench_register_datasets", "make_loader"]

LOADER_VERSION = "1"
HONG_URL = "https://github.com/danfenghong/ISPRS_S2FL"
HONG_DRIVE = "https://drive.google.com/file/d/1dLJJrNJpQoQeDHybs37iGxmrSU6aP2xv/view"
OUC_MIRROR = "https://github.com/songyz2019/rs-fusion-datasets-dist/releases/download/v1.0.0"
CITATION = (
    "D. Hong, J. Hu, J. Yao, J. Chanussot, X. X. Zhu, Multimodal remote sensing benchmark datasets "
    "for land cover classification with a shared and specific feature learning model, ISPRS Journal "
    "of Photogrammetry and Remote Sensing 178 (2021) 68-80, doi:10.1016/j.isprsjprs.2021.05.011"
)
PAPER = (
    "Multimodal remote sensing benchmark datasets for land cover classification with a shared and "
    "specific feature learning model (Hong et al., ISPRS J. 2021)"
)
LICENCE = "no explicit data licence; free for research, citation of Hong et al. 2021 requested (code GPL-3.0)"

AUGSBURG_CLASSES = ("Forest", "Residential", "Industrial", "Low plants", "Allotment", "Commercial", "Water")
BERLIN_CLASSES = ("Forest", "Residential", "Industrial", "Low plants", "Soil", "Allotment", "Commercial", "Water")
_COLOURS = {
    "Forest": (0, 100, 0), "Residential": (255, 130, 60), "Industrial": (160, 160, 160),
    "Low plants": (170, 230, 90), "Soil": (150, 100, 50), "Allotment": (230, 200, 120),
    "Commercial": (200, 50, 200), "Water": (30, 60, 200),
}

# Published sha256 of the OUC files (rs-fusion-datasets' loaders; see datasets/<name>.toml).
OUC_SHA256 = {
    "augsburg": {
        "augsburg_hsi.mat": "2f13839d7840b32f55e0489d6934776dcfded7f678e23a9d8c2c092573946583",
        "augsburg_sar.mat": "cd1dbfad2346f47e51d105b05e11aaefc872fe487a94bdc2913f4eaee3f8e82b",
        "augsburg_gt.mat": "065df71257f06c075ff3b37327c0fba75cc9146015a0f095a093fd12b9eaacbe",
        "augsburg_index.mat": "8bc57037447cb42dbf3a8478d42d4bc217a53a6a0b349c2d67db8c660bef2f43",
    },
    "berlin": {
        "berlin_hsi.mat": "580f397d9f249b4ec3f02b8cc570d910d765afa9f77b17d8a4f4799edee94b1f",
        "berlin_sar.mat": "a6cf2f86db7f1a02c340e813a7b46f9c6c58e297e1eb9b5fa19ed49244b2b8a7",
        "berlin_gt.mat": "dd9286cd565535857721627878de3cbebffa2dacc625b539474d16cba3a7343e",
        "berlin_index.mat": "1a66ec454ea95bbf5782525d9fcf9a04412a948b7b3aa6919ed324516d42a8b5",
    },
}
OUC_ZIP_SHA256 = {
    "augsburg": "4d853be609eca98a5fb23ccd711bcd0985b7db86a6e89f53f461e1643a7ab6ae",
    "berlin": "5fdd156b0283bddab3cf9916f34d3d6b3a2ceb68e7c38c3f8022292199aafcf8",
}
SAR_NOTE = "4 Sentinel-1 channels in the file's order (not reordered)"


def _fix(name: str) -> str:
    return f"fetch it again with `bench datasets fetch {name}`"


HONG_FIX = f"download Hong's bundle again ({HONG_DRIVE})"


def _hong_reader(name: str, with_dsm: bool) -> Callable[[Mapping[str, Path]], RawScene]:
    def read(paths: Mapping[str, Path]) -> RawScene:
        fix = HONG_FIX  # this bundle is not scriptable: `bench datasets fetch` gets the OUC files
        modalities = {
            "hsi": read_raster(paths, "data_HS_LR.mat", "data_HS_LR", fix),
            "sar": read_raster(paths, "data_SAR_HR.mat", "data_SAR_HR", fix),
        }
        if with_dsm:
            modalities["dsm"] = read_raster(paths, "data_DSM.mat", "data_DSM", fix)
        return RawScene(
            modalities=modalities,
            official_train=read_raster(paths, "TrainImage.mat", "TrainImage", fix),
            official_test=read_raster(paths, "TestImage.mat", "TestImage", fix),
            metadata={"sar_bands": SAR_NOTE, "official_split": "TrainImage.mat / TestImage.mat"},
        )

    return read


def _ouc_reader(name: str) -> Callable[[Mapping[str, Path]], RawScene]:
    def read(paths: Mapping[str, Path]) -> RawScene:
        fix = _fix(name)
        gt = read_raster(paths, f"{name}_gt.mat", f"{name}_gt", fix)
        index_file = f"{name}_index.mat"
        index = read_mat(paths[index_file], [f"{name}_train", f"{name}_test"], fix)
        labels = label_map(gt)
        maps = {
            part: Raster(maps_from_index(labels, Raster(index[f"{name}_{part}"], index_file, f"{name}_{part}")),
                         index_file, f"{name}_{part}")
            for part in ("train", "test")
        }
        return RawScene(
            modalities={
                "hsi": read_raster(paths, f"{name}_hsi.mat", f"{name}_hsi", fix),
                "sar": read_raster(paths, f"{name}_sar.mat", f"{name}_sar", fix),
            },
            labels=gt,
            official_train=maps["train"],
            official_test=maps["test"],
            metadata={"sar_bands": SAR_NOTE, "official_split": f"{index_file} ({name}_train / {name}_test)"},
        )

    return read


def hong_layout(name: str, with_dsm: bool) -> Layout:
    """Hong's bundle: ``data_HS_LR.mat`` & co. (no published checksums)."""
    dsm = ("data_DSM.mat",) if with_dsm else ()
    folder = "HS-SAR-DSM Augsburg" if name == "augsburg" else "HS-SAR Berlin"
    return Layout(
        name="hong-dsm" if with_dsm else "hong",
        required=("data_HS_LR.mat", "data_SAR_HR.mat", *dsm, "TrainImage.mat", "TestImage.mat"),
        description=f"Hong et al. 2021 bundle, folder '{folder}' ({HONG_DRIVE}); no published sha256",
        read=_hong_reader(name, with_dsm),
        keys={
            "data_HS_LR.mat": ("data_HS_LR",), "data_SAR_HR.mat": ("data_SAR_HR",),
            "data_DSM.mat": ("data_DSM",), "TrainImage.mat": ("TrainImage",), "TestImage.mat": ("TestImage",),
        },
    )


def ouc_layout(name: str) -> Layout:
    """The OUC repackaging: ``<name>_hsi.mat``, ``_sar``, ``_gt``, ``_index`` (0-based row/col)."""
    files = tuple(f"{name}_{part}.mat" for part in ("hsi", "sar", "gt", "index"))
    return Layout(
        name="ouc",
        required=files,
        description=f"OUC repackaging ({name}-ouc.zip, mirrored at {OUC_MIRROR}); no DSM",
        read=_ouc_reader(name),
        keys={
            f"{name}_hsi.mat": (f"{name}_hsi",), f"{name}_sar.mat": (f"{name}_sar",),
            f"{name}_gt.mat": (f"{name}_gt",), f"{name}_index.mat": (f"{name}_train", f"{name}_test", f"{name}_all"),
        },
        sha256=OUC_SHA256[name],
    )


def make_loader(name: str) -> RealDataset:
    """The loader of ``augsburg``, ``augsburg-dsm`` or ``berlin``."""
    if name == "augsburg":
        layouts = (hong_layout("augsburg", False), ouc_layout("augsburg"))
        bands, classes = {"hsi": 180, "sar": 4}, AUGSBURG_CLASSES
    elif name == "augsburg-dsm":
        layouts = (hong_layout("augsburg", True),)
        bands, classes = {"hsi": 180, "sar": 4, "dsm": 1}, AUGSBURG_CLASSES
    elif name == "berlin":
        layouts = (hong_layout("berlin", False), ouc_layout("berlin"))
        bands, classes = {"hsi": 244, "sar": 4}, BERLIN_CLASSES
    else:
        raise ValueError(f"make_loader: unknown dataset {name!r}; expected augsburg, augsburg-dsm or berlin")
    city = name.split("-")[0]
    if city == "augsburg":
        official = OfficialCounts(
            train=(146, 264, 21, 248, 52, 7, 23), test_total=77_533,
            source="Hong et al. 2021 TrainImage/TestImage (= OUC augsburg_index.mat train/test)",
        )
        notes = ["30 m GSD; 332 x 485 pixels; HySpex HSI, Sentinel-1 SAR, DSM",
                 "not MDAS (Hu et al. 2023), a different Augsburg product"]
    else:
        official = OfficialCounts(
            train=(443, 423, 499, 376, 331, 280, 298, 170), test_total=461_851,
            source="Hong et al. 2021 TrainImage/TestImage (= OUC berlin_index.mat train/test)",
        )
        notes = ["HSI is the EnMAP-simulated Berlin-Urban-Gradient scene (Okujeni et al. 2016, GFZ), "
                 "native 797 x 220 at 30 m, nearest-upsampled to the 1723 x 476 SAR grid (13.89 m)"]
    return RealDataset(
        name=name,
        layouts=layouts,
        class_names=classes,
        bands=bands,
        palette=[_COLOURS[c] for c in classes],
        aliases=(city, f"HS-SAR-DSM {city.title()}", f"HS-SAR {city.title()}", f"HS-SAR-DSM_{city.title()}",
                 f"HS-SAR_{city.title()}"),
        url=HONG_URL,
        download_url=HONG_DRIVE if name == "augsburg-dsm" else f"{OUC_MIRROR}/{city}-ouc.zip",
        fetchable=name != "augsburg-dsm",
        version=LOADER_VERSION,
        official=official,
        notes=notes,
    )


def _ouc_zip(city: str) -> DataFile:
    return DataFile(name=f"{city}-ouc.zip", sha256=OUC_ZIP_SHA256[city], urls=(f"{OUC_MIRROR}/{city}-ouc.zip",))


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``augsburg``, ``augsburg-dsm`` and ``berlin``."""
    for name, shape, files, description in (
        ("augsburg", (332, 485), (_ouc_zip("augsburg"),),
         "Augsburg (Hong et al. 2021): HSI 180 bands + Sentinel-1 SAR 4 bands, 332 x 485, 7 classes, official "
         "split 761 train / 77,533 test pixels."),
        # Hong's bundle is on Google Drive / Baidu only, with no published checksums: no files
        ("augsburg-dsm", (332, 485), (),
         "Augsburg with its DSM (Hong et al. 2021 bundle only): HSI 180 + SAR 4 + DSM 1, 332 x 485, 7 classes. "
         f"Download the bundle by hand: {HONG_DRIVE}"),
        ("berlin", (1723, 476), (_ouc_zip("berlin"),),
         "Berlin (Hong et al. 2021): HSI 244 bands (EnMAP-simulated, upsampled) + Sentinel-1 SAR 4 bands, "
         "1723 x 476, 8 classes, official split 2,820 train / 461,851 test pixels."),
    ):
        register(make_loader(name).spec(shape=shape, files=files, paper=PAPER, licence=LICENCE, citation=CITATION,
                                        description=description))
