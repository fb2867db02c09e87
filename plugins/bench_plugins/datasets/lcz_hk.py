"""LCZ HK: Local Climate Zones of Hong Kong, Sentinel-2 MSI 10 bands + Sentinel-1 SAR 4 bands (BDGF, MDL-RS).

Registers ``lcz-hk`` (13 classes, 529 x 528 pixels at 100 m, 8,846 labelled pixels; BDGF
Table I). The files come from the MDL-RS authors' LCZ bundle (Baidu, see ``OBTAIN``), whose
file names and variable keys are not published, so the layout is configurable:

* ``mdl-rs`` (default): ``HK_MS.mat``, ``HK_SAR.mat``, ``HK_GT.mat``; the key of each is the
  file's only variable (or the one named like the file).
* any other names/keys through ``BENCH_LCZ_HK_MSI``, ``BENCH_LCZ_HK_SAR``, ``BENCH_LCZ_HK_GT``
  (``FILE`` or ``FILE:KEY``). Arrays may be (rows, cols, bands) or (bands, rows, cols).

Labels: the ground truth uses the LCZ codes of the 2017 GRSS Data Fusion Contest (1-10 =
LCZ 1-10, 11-17 = LCZ A-G). A declared table maps BDGF's 13 classes to their codes
(``CODES``: 1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 17; LCZ 7, 9, E and F do not occur in
Hong Kong's labels); ``BENCH_LCZ_HK_CODES`` replaces it (13 comma-separated codes in class
order, e.g. ``1,2,...,13`` for a map already coded 1..13). A code outside the table is a
difference from the published facts, like a wrong per-class count.

The MSI is the scene's primary spectral modality, registered as ``hsi`` because every
method's spectral branch reads ``hsi`` (BDGF feeds the MSI to its HSI branch); the card and
the metadata say so. There is no official split: BDGF's protocol is ``per-class:50``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench_core import DatasetError, DatasetSpec, hookimpl
from bench_core.data import (
    Layout,
    Raster,
    RawScene,
    label_map,
    list_variables,
    read_mat,
)
from bench_plugins.datasets._verified import EXTRA_KEY, PublishedFacts, VerifiedDataset

__all__ = ["CLASSES", "CODES", "FACTS", "LczSettings", "bench_register_datasets", "make_loader", "settings_from"]

LOADER_VERSION = "1"
NAME = "lcz-hk"
MDL_RS = "https://github.com/danfenghong/IEEE_TGRS_MDL-RS"
BAIDU = "https://pan.baidu.com/s/1dYkaUm4JTjOWdtx79RsB6w"
BANDS = {"hsi": 10, "sar": 4}
CLASSES = (
    "Compact high-rise", "Compact mid-rise", "Compact low-rise", "Open high-rise", "Open mid-rise",
    "Open low-rise", "Large low-rise", "Heavy industry", "Dense trees", "Scattered trees", "Bush and scrub",
    "Low plants", "Water",
)
CODES = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 17)
"""LCZ code (GRSS DFC 2017 numbering) of each of BDGF's 13 classes, in class order."""
LCZ_NAMES = {
    1: "LCZ 1 compact high-rise", 2: "LCZ 2 compact mid-rise", 3: "LCZ 3 compact low-rise",
    4: "LCZ 4 open high-rise", 5: "LCZ 5 open mid-rise", 6: "LCZ 6 open low-rise", 7: "LCZ 7 lightweight low-rise",
    8: "LCZ 8 large low-rise", 9: "LCZ 9 sparsely built", 10: "LCZ 10 heavy industry", 11: "LCZ A dense trees",
    12: "LCZ B scattered trees", 13: "LCZ C bush and scrub", 14: "LCZ D low plants", 15: "LCZ E bare rock or paved",
    16: "LCZ F bare soil or sand", 17: "LCZ G water",
}
PALETTE = (
    (140, 0, 0), (209, 0, 0), (255, 0, 0), (191, 77, 0), (255, 102, 0), (255, 153, 85), (188, 188, 188),
    (85, 85, 85), (0, 106, 0), (0, 170, 0), (100, 133, 37), (185, 219, 121), (106, 106, 255),
)
FACTS = PublishedFacts(
    source="BDGF, Table I (529 x 528 at 100 m; 8,846 labelled pixels)",
    shape=(529, 528),
    labelled=(631, 179, 326, 673, 126, 120, 137, 219, 1616, 540, 691, 985, 2603),
)
ENV_MSI, ENV_SAR, ENV_GT, ENV_CODES = "BENCH_LCZ_HK_MSI", "BENCH_LCZ_HK_SAR", "BENCH_LCZ_HK_GT", "BENCH_LCZ_HK_CODES"
DEFAULT_FILES = {"hsi": "HK_MS.mat", "sar": "HK_SAR.mat", "labels": "HK_GT.mat"}
SETTINGS = {
    ENV_MSI: f"FILE or FILE:KEY of the Sentinel-2 MSI, 10 bands (default {DEFAULT_FILES['hsi']}, its only variable)",
    ENV_SAR: f"FILE or FILE:KEY of the Sentinel-1 SAR, 4 bands (default {DEFAULT_FILES['sar']})",
    ENV_GT: f"FILE or FILE:KEY of the label map (default {DEFAULT_FILES['labels']})",
    ENV_CODES: "13 comma-separated label codes of the classes in order (default "
               f"{','.join(map(str, CODES))}, the DFC 2017 LCZ codes)",
}
OBTAIN = (
    f"the MDL-RS authors' LCZ bundle (Hong et al., TGRS 2021; {MDL_RS}): Baidu {BAIDU}, access code gkli "
    "(no Google Drive mirror, no checksum). Put the Hong Kong files in a folder named lcz-hk; name them "
    f"{', '.join(DEFAULT_FILES.values())} or point {ENV_MSI}/{ENV_SAR}/{ENV_GT} at them"
)
FIX = f"copy the file again from the MDL-RS bundle ({BAIDU}, code gkli)"
CITATION = (
    "D. Hong, L. Gao, N. Yokoya, J. Yao, J. Chanussot, Q. Du, B. Zhang, More diverse means better: multimodal deep "
    "learning meets remote-sensing imagery classification, IEEE TGRS 59(5):4340-4354, 2021, "
    "doi:10.1109/TGRS.2020.3016820; N. Yokoya et al., Open data for global multimodal land use classification: "
    "outcome of the 2017 IEEE GRSS Data Fusion Contest, IEEE JSTARS 11(5):1363-1377, 2018"
)


@dataclass(frozen=True)
class LczSettings:
    """Files, keys and the code table of one configuration (``key`` ``""`` = the file's only variable)."""

    files: Mapping[str, tuple[str, str]]
    codes: tuple[int, ...] = CODES

    @property
    def is_default(self) -> bool:
        return self.codes == CODES and all(self.files[m] == (DEFAULT_FILES[m], "") for m in DEFAULT_FILES)

    @property
    def layout_name(self) -> str:
        if self.is_default:
            return "mdl-rs"
        text = repr((sorted(self.files.items()), self.codes))
        return f"mdl-rs+cfg-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def describe(self) -> str:
        files = ", ".join(f"{m}: {f}" + (f" (key {k!r})" if k else "") for m, (f, k) in self.files.items())
        return f"{files}; codes {','.join(map(str, self.codes))}"


def _file_key(env: Mapping[str, str], var: str, default: str) -> tuple[str, str]:
    text = (env.get(var) or "").strip()
    if not text:
        return default, ""
    file, _, key = text.partition(":")
    if not file.strip() or "/" in file or "\\" in file:
        raise DatasetError(
            f"{var}={text!r}: expected FILE or FILE:KEY, a file name (no folder: put the file in the dataset "
            f"folder or --data-dir), e.g. {var}={default}:data"
        )
    return file.strip(), key.strip()


def _codes(env: Mapping[str, str]) -> tuple[int, ...]:
    text = (env.get(ENV_CODES) or "").strip()
    if not text:
        return CODES
    try:
        codes = tuple(int(v) for v in text.split(","))
    except ValueError:
        codes = ()
    if len(codes) != len(CLASSES) or len(set(codes)) != len(codes) or min(codes, default=0) < 1:
        raise DatasetError(
            f"{ENV_CODES}={text!r}: expected {len(CLASSES)} distinct positive label codes, comma-separated, in the "
            f"order of the classes ({', '.join(CLASSES)}); e.g. {','.join(map(str, CODES))} (DFC 2017 LCZ codes) or "
            f"{','.join(str(i + 1) for i in range(len(CLASSES)))} (a map coded 1..13)"
        )
    return codes


def settings_from(env: Mapping[str, str]) -> LczSettings:
    """The configuration the environment asks for (defaults where a variable is unset)."""
    files = {
        "hsi": _file_key(env, ENV_MSI, DEFAULT_FILES["hsi"]),
        "sar": _file_key(env, ENV_SAR, DEFAULT_FILES["sar"]),
        "labels": _file_key(env, ENV_GT, DEFAULT_FILES["labels"]),
    }
    return LczSettings(files=files, codes=_codes(env))


def _variable(path: Path, file: str, key: str, setting: str) -> Raster:
    """The named variable, or the file's only variable (or the one named like the file)."""
    if not key:
        names = list_variables(path, FIX)
        same = [n for n in names if n.lower() == path.stem.lower()]
        if len(names) == 1:
            key = names[0]
        elif len(same) == 1:
            key = same[0]
        else:
            raise DatasetError(
                f"{path}: holds the variables {names}; expected one variable (or one named {path.stem!r}). Name the "
                f"one to read with {setting}={file}:KEY"
            )
    value = read_mat(path, [key], FIX)[key]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: variable {key!r} is {type(value).__name__}; expected a numeric array; {FIX}")
    return Raster(value, file, key)


def _oriented(raster: Raster, bands: int) -> Raster:
    """(bands, rows, cols) arrays read as such; (rows, cols, bands) is the default."""
    shape = raster.data.shape
    if raster.data.ndim == 3 and shape[0] == bands and shape[-1] != bands:
        return Raster(raster.data, raster.file, raster.key, band_axis=0)
    return raster


def remap_codes(codes_map: np.ndarray, codes: tuple[int, ...]) -> tuple[np.ndarray, dict[int, int]]:
    """Labels 1..13 from LCZ codes (``codes[i]`` -> ``i + 1``); other nonzero codes -> 0, counted."""
    out = np.zeros(codes_map.shape, dtype=np.int64)
    for cls, code in enumerate(codes, start=1):
        out[codes_map == code] = cls
    values, counts = np.unique(codes_map[(codes_map != 0) & (out == 0)], return_counts=True)
    return out, {int(v): int(n) for v, n in zip(values, counts)}


def _reader(settings: LczSettings) -> Callable[[Mapping[str, Path]], RawScene]:
    setting_of = {"hsi": ENV_MSI, "sar": ENV_SAR, "labels": ENV_GT}

    def read(paths: Mapping[str, Path]) -> RawScene:
        rasters = {m: _variable(paths[f], f, k, setting_of[m]) for m, (f, k) in settings.files.items()}
        gt = rasters.pop("labels")
        remapped, unknown = remap_codes(label_map(gt), settings.codes)
        extra = [
            f"label code {code} ({LCZ_NAMES.get(code, 'not an LCZ code')}) is not in the code table: {n} pixels "
            f"(set {ENV_CODES} if the map uses other codes)"
            for code, n in sorted(unknown.items())
        ]
        return RawScene(
            modalities={m: _oriented(r, BANDS[m]) for m, r in rasters.items()},
            labels=Raster(remapped, gt.file, f"{gt.key} (remapped)"),
            metadata={
                "labels": f"{gt.file} '{gt.key}': LCZ codes {','.join(map(str, settings.codes))} -> classes 1..13 "
                          f"(other codes -> unlabelled)",
                "hsi_is": "Sentinel-2 MSI, 10 bands (the scene's primary spectral modality, named 'hsi')",
                "sar_bands": "4 Sentinel-1 channels (PolSAR covariance components) in the file's order",
                "official_split": "none published: BDGF's protocol is per-class:50",
                "configuration": settings.describe(),
                "gsd_m": 100.0,
                EXTRA_KEY: extra,
            },
        )

    return read


def layout_for(settings: LczSettings) -> Layout:
    """The layout of one configuration (its name changes with any non-default setting)."""
    files = tuple(dict.fromkeys(f for f, _ in settings.files.values()))
    return Layout(
        name=settings.layout_name,
        required=files,
        description="MDL-RS LCZ bundle, Hong Kong files" + ("" if settings.is_default else f" ({settings.describe()})")
                    + "; no published sha256",
        read=_reader(settings),
        keys={f: ((k,) if k else ("<the only variable>",)) for f, k in settings.files.values()},
    )


def make_loader(facts: PublishedFacts = FACTS) -> VerifiedDataset:
    """The ``lcz-hk`` loader (``facts``: what the scene is checked against; tests pass others)."""
    default = settings_from({})
    return VerifiedDataset(
        name=NAME,
        layouts=(layout_for(default),),
        configure=lambda env: (layout_for(settings_from(env)),),
        class_names=CLASSES,
        bands=BANDS,
        palette=PALETTE,
        aliases=("lcz_hk", "lczhk", "lcz", "MDL-RS", "MDL_RS", "hong-kong", "hongkong"),
        url=MDL_RS,
        download_url=BAIDU,
        fetchable=False,
        version=LOADER_VERSION,
        facts={"mdl-rs": facts},
        obtain=OBTAIN,
        settings=SETTINGS,
        notes=[
            ("529 x 528 pixels at 100 m (BDGF); Sentinel-2 MSI 10 bands (registered as modality 'hsi', the spectral "
            "input of every method) + Sentinel-1 SAR 4 channels resampled to the same grid; the bundle's images are "
            "already band-wise [0, 1] (MATLAB mat2gray)"),
            ("labels: DFC 2017 LCZ codes remapped to BDGF's 13 classes by the declared table CODES "
            f"({', '.join(f'{c}->{i + 1}' for i, c in enumerate(CODES))}); a code outside the table is reported"),
            "BDGF's text says 8 classes but its Table I lists 13 (used here, with its per-class totals)",
            "no official split: BDGF's protocol is per-class:50, seeded per cell (bench leaderboard --board bdgf-protocol)",
            "not So2Sat LCZ42 (patch-level, global): another dataset",
        ],
    )


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``lcz-hk``."""
    register(make_loader().spec(
        shape=None,  # 529 x 528 is verified by the loader (with the per-class totals)
        files=(),  # Baidu only, no checksum: bring your own files
        paper="LCZ HK (Hong Kong) MSI + SAR scene of MDL-RS, as used by BDGF",
        licence="unknown: no data licence is stated (MDL-RS code GPL-3.0); cite Hong et al. 2021 and the DFC 2017",
        citation=CITATION,
        description="LCZ HK (BDGF): Sentinel-2 MSI 10 bands (as 'hsi') + Sentinel-1 SAR 4 bands, 529 x 528 at "
                    "100 m, 13 local climate zones, 8,846 labelled pixels; BDGF's protocol per-class:50. Files: the "
                    "MDL-RS bundle (Baidu), brought by the user; names and keys configurable.",
    ))
