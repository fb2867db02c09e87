"""dfc2018, yellow-river and lcz-hk on fake files of every layout: read, verified, configured, refused.

Expected values are read from the fake files directly (numpy, tifffile, scipy), not through
the loaders. The fakes are scaled down, so their shapes and counts differ from the published
facts: they load with BENCH_VERIFY_CHECKSUMS=0 (the differences recorded), and the checks
themselves are tested with loaders given the fakes' own facts.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tifffile
from bench_plugins.datasets import dfc2018, lcz_hk, yellow_river
from bench_plugins.datasets._verified import MISMATCH_KEY, PublishedFacts

from bench_core import DatasetContext, DatasetError, Scene
from bench_core.cli import main
from bench_core.data import card_for, save_mat
from bench_core.runner import data_params
from tests.data.dfc2018 import make_fake as dfc_fake
from tests.data.lcz_hk import make_fake as lcz_fake
from tests.data.yellow_river import make_fake as yre_fake
from tests.unit.data.conftest import NO_VERIFY


Context = Callable[..., DatasetContext]


def _minmax(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    values = values.astype(np.float64)
    valid = np.ones(values.shape, bool) if valid is None else valid
    lo, hi = values[valid].min(), values[valid].max()
    return np.where(valid, (values - lo) / (hi - lo), 0.0)


def _counts(label_map: np.ndarray, k: int) -> tuple[int, ...]:
    return tuple(np.bincount(np.asarray(label_map).ravel(), minlength=k + 1)[1:k + 1].tolist())


def _no_sha(loader: dfc2018.Dfc2018Dataset) -> dfc2018.Dfc2018Dataset:
    """The loader without published sha256 (fake files), so that verification stays on."""
    configure = loader.configure
    loader.configure = lambda env: tuple(dataclasses.replace(lay, sha256={}) for lay in configure(env))
    return loader


@pytest.fixture
def dfc_official(tmp_path: Path) -> tuple[Path, Path]:
    """(data_dir, dataset folder) of the fake contest tree."""
    dfc_fake.make_fake(tmp_path / "data" / "dfc2018", layout="official")
    return tmp_path / "data", tmp_path / "data" / "dfc2018"


def _tree(folder: Path, name: str) -> Path:
    return folder / dfc_fake.TREE[name] / name


# ----------------------------------------------------------------------------- dfc2018: official tree


def test_dfc2018_official_tree_builds_the_comix_scene(dfc_official, context_for: Context) -> None:
    data_dir, folder = dfc_official
    scene = dfc2018.make_loader().load(context_for(data_dir), env=NO_VERIFY)
    h, w = dfc_fake.SHAPE
    tile = w // 7
    assert scene.shape == (h, w) and scene.bands == {"hsi": 48, "lidar": 1}
    assert scene.modalities["hsi"].dtype == np.float16 and scene.modalities["lidar"].dtype == np.float32
    # GT_TR sits on the training tiles (1, 1)-(1, 4); Test_Labels covers the rest of the grid
    gt_tr = tifffile.imread(_tree(folder, dfc2018.GT_TR))
    test = tifffile.imread(_tree(folder, dfc2018.GT_TEST))
    expected_train = np.zeros((h, w), np.int64)
    expected_train[h // 2:, tile:5 * tile] = gt_tr
    np.testing.assert_array_equal(scene.official_train, expected_train)
    np.testing.assert_array_equal(scene.official_test, test)
    np.testing.assert_array_equal(scene.labels, np.where(expected_train > 0, expected_train, test))
    # HSI: the first 48 of 50 ENVI channels (BIL behind a 512-byte header), min-max per band, nearest x2
    raw = np.fromfile(_tree(folder, dfc2018.HSI_PIX), dtype="<u2", offset=512).reshape(h // 2, 50, w // 2)
    for b in (0, 23, 47):
        expected = np.kron(_minmax(raw[:, b]), np.ones((2, 2)))
        np.testing.assert_allclose(scene.modalities["hsi"][b].astype(np.float64), expected, atol=2.5e-4)
    # X: NDSM = DSM_C12 - DEM_C123_TLI with the no-data sentinels masked before normalising
    dsm = tifffile.imread(_tree(folder, dfc2018.RASTERS["dsm"].filename)).astype(np.float64)
    dem = tifffile.imread(_tree(folder, dfc2018.RASTERS["dem_tli"].filename)).astype(np.float64)
    valid = (np.abs(dsm) < 1e10) & (np.abs(dem) < 1e10)
    assert (~valid).sum() >= 1
    np.testing.assert_allclose(scene.modalities["lidar"][0], _minmax(dsm - dem, valid), atol=1e-6)
    meta = scene.metadata
    assert meta["layout"] == "official" and meta["lidar_bands"].startswith("X = ndsm (1 band(s))")
    assert f"dsm: {int((np.abs(dsm) >= 1e10).sum())} pixel(s)" in meta["nodata"]
    assert "49 and 50 are not spectral" in meta["hsi_bands"] and "float16" in meta["storage"]
    assert meta["run_params"] == {"x": "ndsm", "hsi_storage": "float16",
                                  "verified": f"no ({len(meta[MISMATCH_KEY])} difference(s), BENCH_VERIFY_CHECKSUMS=0)"}
    assert "scene shape (rows x cols) expected 2404 x 8344, found 24 x 56" in meta[MISMATCH_KEY]
    assert data_params(scene)["data.layout"] == "official" and data_params(scene)["data.x"] == "ndsm"


def test_dfc2018_second_load_is_memory_mapped_from_the_cache(dfc_official, context_for: Context,
                                                             tmp_path: Path) -> None:
    data_dir, _ = dfc_official
    loader = dfc2018.make_loader()
    first = loader.load(context_for(data_dir), env=NO_VERIFY)
    folder = tmp_path / "cache" / "scenes" / "dfc2018"
    assert sorted(p.name for p in folder.iterdir()) == ["official-minmax"]  # the build folder is gone
    assert np.load(folder / "official-minmax" / "modality-hsi.npy", mmap_mode="r").dtype == np.float16
    second = loader.load(context_for(data_dir), env=NO_VERIFY)
    np.testing.assert_array_equal(second.modalities["hsi"], first.modalities["hsi"])
    used = loader.fingerprint_of(second)
    assert used is not None and used.digest == loader.fingerprint(context_for(data_dir), env=NO_VERIFY).digest


def test_dfc2018_without_a_cache_folder(dfc_official, context_for: Context) -> None:
    data_dir, _ = dfc_official
    scene = dfc2018.make_loader().load(context_for(data_dir, cache=False), env=NO_VERIFY)
    assert float(np.asarray(scene.modalities["hsi"], dtype=np.float32).max()) == 1.0  # maps valid after cleanup


def test_dfc2018_x_is_a_declared_overridable_choice(dfc_official, context_for: Context, tmp_path: Path) -> None:
    data_dir, folder = dfc_official
    loader = dfc2018.make_loader()
    env = {**NO_VERIFY, dfc2018.X_ENV: "ndsm, intensity_1550"}
    scene = loader.load(context_for(data_dir), env=env)
    assert scene.metadata["layout"] == "official+x-ndsm-intensity_1550" and scene.bands["lidar"] == 2
    intensity = tifffile.imread(_tree(folder, dfc2018.RASTERS["intensity_1550"].filename)).astype(np.float64)
    assert intensity[0, 0] == np.float32(1e38)  # an untagged sentinel: masked, not the band maximum
    np.testing.assert_allclose(scene.modalities["lidar"][1], _minmax(intensity, intensity < 1e10), atol=1e-6)
    assert data_params(scene)["data.x"] == "ndsm,intensity_1550"
    default = loader.fingerprint(context_for(data_dir), env=NO_VERIFY)
    chosen = loader.fingerprint(context_for(data_dir), env=env)
    assert chosen.layout == "official+x-ndsm-intensity_1550" and chosen.digest != default.digest
    assert dfc2018.RASTERS["intensity_1550"].filename in chosen.sha256
    assert dfc2018.RASTERS["intensity_1550"].filename not in default.sha256
    assert (tmp_path / "cache" / "scenes" / "dfc2018" / "official+x-ndsm-intensity_1550-minmax").is_dir()
    with pytest.raises(DatasetError, match=r"BENCH_DFC2018_X='ndsm,lidar': expected distinct comma-separated .*"
                                           r"unknown: lidar"):
        loader.load(context_for(data_dir), env={**NO_VERIFY, dfc2018.X_ENV: "ndsm,lidar"})


def test_dfc2018_official_counts_are_verified(dfc_official, context_for: Context, tmp_path: Path) -> None:
    data_dir, folder = dfc_official
    train = tifffile.imread(_tree(folder, dfc2018.GT_TR))
    test = tifffile.imread(_tree(folder, dfc2018.GT_TEST))
    facts = PublishedFacts(source="the fake's own counts", shape=dfc_fake.SHAPE, train=_counts(train, 20),
                           test=_counts(test, 20))
    scene = _no_sha(dfc2018.make_loader({"official": facts})).load(context_for(data_dir), env={})
    assert scene.metadata["verification"].startswith("matches the fake's own counts: shape 24 x 56 and 20 per-class")
    assert scene.metadata["run_params"]["verified"] == "yes" and MISMATCH_KEY not in scene.metadata

    wrong = dataclasses.replace(facts, train=(*facts.train[:6], facts.train[6] + 1, *facts.train[7:]))
    loader = _no_sha(dfc2018.make_loader({"official": wrong}))
    context = DatasetContext(data_dir=data_dir, cache_dir=tmp_path / "other-cache")
    with pytest.raises(DatasetError) as err:
        loader.load(context, env={})
    text = str(err.value)
    assert (f"class 7 'Water': official train pixels expected {facts.train[6] + 1}, found {facts.train[6]}"
            in text)
    assert "dataset 'dfc2018' (official layout): the files in" in text and "BENCH_VERIFY_CHECKSUMS=0" in text
    assert not list((tmp_path / "other-cache" / "scenes" / "dfc2018").glob("*/manifest.json"))  # nothing cached
    loaded = loader.load(context, env=NO_VERIFY)  # the switch: loaded, the difference recorded
    assert loaded.metadata[MISMATCH_KEY] == [text.splitlines()[1].strip()]
    with pytest.raises(DatasetError, match="class 7 'Water'"):  # the cached scene is refused again
        loader.load(context, env={})


def test_dfc2018_published_counts_are_comix_table_iii() -> None:
    official = dfc2018.make_loader().official
    assert official is not None and (official.train_total, official.test_total) == (2_018_910, 341_729)
    assert dfc2018.TEST_COUNTS.count(20_000) == 16
    assert dfc2018.FACTS["ouc"].labelled == dfc2018.TRAIN_COUNTS and dfc2018.FACTS["ouc"].shape == (1202, 4768)


@pytest.mark.parametrize(("what", "match"), [
    ("gt_tr", r"2018_IEEE_GRSS_DFC_GT_TR\.tif: 12 x 30 pixels; expected 12 x 32, the training tiles \(1, 1\)-\(1, 4\)"),
    ("hsi_grid", r"20170218_UH_CASI_S4_NAD83\.pix: HSI of 12 x 27 pixels at 1 m; expected 12 x 28, half the 24 x 56"),
    ("truncated", r"20170218_UH_CASI_S4_NAD83\.pix: \d+ bytes; expected at least \d+ .*truncated"),
    ("overlap", r"Test_Labels\.tif: \d+ pixel\(s\) are labelled in both; expected the test labels outside"),
    ("range", r"Test_Labels\.tif: labels range 0\.\.25; expected 0\.\.20"),
    ("raster", r"UH17c_GEF051\.tif: 24 x 50 pixels; expected 24 x 56, the 0\.5 m grid of Test_Labels\.tif"),
])
def test_dfc2018_bad_files_name_the_file_and_what_was_expected(dfc_official, context_for: Context, what: str,
                                                               match: str) -> None:
    data_dir, folder = dfc_official
    hdr = _tree(folder, dfc2018.HSI_HDR)
    if what == "gt_tr":
        dfc_fake.write_tif(_tree(folder, dfc2018.GT_TR), np.zeros((12, 30), np.uint8))
    elif what == "hsi_grid":
        hdr.write_text(hdr.read_text().replace("samples = 28", "samples = 27"))
    elif what == "truncated":
        pix = _tree(folder, dfc2018.HSI_PIX)
        pix.write_bytes(pix.read_bytes()[:4000])
    elif what == "overlap":
        test = tifffile.imread(_tree(folder, dfc2018.GT_TEST))
        test[20, 10] = 3
        dfc_fake.write_tif(_tree(folder, dfc2018.GT_TEST), test)
    elif what == "range":
        test = tifffile.imread(_tree(folder, dfc2018.GT_TEST))
        test[0, 0] = 25
        dfc_fake.write_tif(_tree(folder, dfc2018.GT_TEST), test)
    else:
        dfc_fake.write_tif(_tree(folder, dfc2018.RASTERS["dsm"].filename), np.zeros((24, 50), np.float32))
    with pytest.raises(DatasetError, match=match):
        dfc2018.make_loader().load(context_for(data_dir), env=NO_VERIFY)


def test_dfc2018_missing_files_say_where_to_get_them(tmp_path: Path, context_for: Context) -> None:
    sha = dfc_fake.make_fake(tmp_path / "data" / "dfc2018", layout="official", rasters=("dsm",))
    assert dfc2018.RASTERS["dem_tli"].filename not in sha
    with pytest.raises(DatasetError) as err:
        dfc2018.make_loader().load(context_for(tmp_path / "data"), env=NO_VERIFY)
    text = str(err.value)
    assert "incomplete 'official' file set" in text and "lacks UH17_GEG05.tif" in text
    assert "Where to get them: the University of Houston, on request" in text
    assert "BENCH_DFC2018_X: comma-separated X rasters" in text
    scene = dfc2018.make_loader().load(context_for(tmp_path / "data"), env={**NO_VERIFY, dfc2018.X_ENV: "dsm"})
    assert scene.metadata["layout"] == "official+x-dsm"


# ----------------------------------------------------------------------------- dfc2018: OUC


def test_dfc2018_ouc_layout_v5_and_v73_read_alike(tmp_path: Path, context_for: Context) -> None:
    scenes = {}
    for version in ("5", "7.3"):
        folder = tmp_path / f"v{version}" / "dfc2018"
        dfc_fake.make_fake(folder, layout="ouc", mat_version=version)
        scenes[version] = dfc2018.make_loader().load(context_for(folder.parent, cache=False), env=NO_VERIFY)
    scene = scenes["7.3"]
    folder = tmp_path / "v5" / "dfc2018"
    gt = scipy.io.loadmat(str(folder / "houston_gt.mat"))["houston_gt"].astype(np.int64)
    index = scipy.io.loadmat(str(folder / "houston_index.mat"))
    train = np.zeros_like(gt)
    train[index["houston_train"][:, 0], index["houston_train"][:, 1]] = gt[index["houston_train"][:, 0],
                                                                             index["houston_train"][:, 1]]
    hsi = scipy.io.loadmat(str(folder / "houston_hsi.mat"))["houston_hsi"]
    assert scene.metadata["layout"] == "ouc" and scene.bands == {"hsi": 48, "lidar": 1}
    np.testing.assert_array_equal(scene.labels, gt)
    np.testing.assert_array_equal(scene.official_train, train)
    np.testing.assert_array_equal(scene.official_test, np.where(train > 0, 0, gt))
    np.testing.assert_allclose(scene.modalities["hsi"][5].astype(np.float64), _minmax(hsi[..., 5]), atol=2.5e-4)
    for name in scene.modalities:
        np.testing.assert_array_equal(scenes["5"].modalities[name], scene.modalities[name])
    assert "not the contest's protocol" in scene.metadata["official_split"]
    assert scene.metadata["ouc_split_counts"]["train"] == list(_counts(train, 20))
    assert "scene shape (rows x cols) expected 1202 x 4768, found 24 x 56" in scene.metadata[MISMATCH_KEY]
    assert data_params(scene) == {"data.layout": "ouc", "data.x": "houston_lidar", "data.hsi_storage": "float16",
                                  "data.verified": scene.metadata["run_params"]["verified"]}


# ----------------------------------------------------------------------------- yellow-river


@pytest.fixture
def yre(tmp_path: Path) -> tuple[Path, Path]:
    yre_fake.make_fake(tmp_path / "data" / "yellow-river")
    return tmp_path / "data", tmp_path / "data" / "yellow-river"


def _yre_facts(folder: Path) -> PublishedFacts:
    train = scipy.io.loadmat(str(folder / "mask_train.mat"))["mask_train"]
    test = scipy.io.loadmat(str(folder / "mask_test.mat"))["mask_test"]
    return PublishedFacts(source="the fake's own totals", shape=train.shape, labelled=_counts(train + test, 5))


def test_yellow_river_reads_the_hhk_layout(yre, context_for: Context) -> None:
    data_dir, folder = yre
    scene = yellow_river.make_loader(_yre_facts(folder)).load(context_for(data_dir), env={})
    train = scipy.io.loadmat(str(folder / "mask_train.mat"))["mask_train"]
    test = scipy.io.loadmat(str(folder / "mask_test.mat"))["mask_test"]
    hsi = scipy.io.loadmat(str(folder / "data_hsi.mat"))["data"]
    sar = scipy.io.loadmat(str(folder / "data_sar.mat"))["data"]
    assert scene.bands == {"hsi": 166, "sar": 3} and scene.class_names == yellow_river.CLASSES
    np.testing.assert_array_equal(scene.labels, train + test)
    np.testing.assert_array_equal(scene.official_train, train)
    np.testing.assert_allclose(scene.modalities["hsi"][100], _minmax(hsi[..., 100]), atol=1e-6)
    np.testing.assert_allclose(scene.modalities["sar"][2], _minmax(sar[..., 2]), atol=1e-6)
    assert scene.metadata["verification"].startswith("matches the fake's own totals: shape 20 x 24 and 5 per-class")
    assert data_params(scene) == {"data.layout": "hhk", "data.verified": "yes"}


def test_yellow_river_totals_are_bdgfs_and_a_difference_names_the_class(yre, context_for: Context) -> None:
    assert sum(yellow_river.FACTS.labelled) == 233_478 and yellow_river.FACTS.shape == (960, 1170)
    data_dir, folder = yre
    with pytest.raises(DatasetError) as err:
        yellow_river.make_loader().load(context_for(data_dir), env={})  # BDGF's facts vs a 20 x 24 fake
    text = str(err.value)
    found = _yre_facts(folder).labelled
    assert "dataset 'yellow-river' (hhk layout): the files in" in text and "differ from BDGF, Table I" in text
    assert "scene shape (rows x cols) expected 960 x 1170, found 20 x 24" in text
    assert f"class 1 'Spartina alterniflora': labelled pixels expected 39784, found {found[0]}" in text
    assert f"class 5 'Mudflat': labelled pixels expected 24592, found {found[4]}" in text
    scene = yellow_river.make_loader().load(context_for(data_dir), env=NO_VERIFY)
    assert len(scene.metadata[MISMATCH_KEY]) == 6 and scene.metadata["verification"].startswith("DIFFERS")


def test_yellow_river_exact_totals_pass(tmp_path: Path, context_for: Context) -> None:
    counts = (40, 118, 35, 16, 25)
    yre_fake.make_fake(tmp_path / "data" / "yellow-river", shape=(16, 20), counts=counts, hsi_dtype="uint16")
    facts = dataclasses.replace(yellow_river.FACTS, shape=(16, 20), labelled=counts)
    scene = yellow_river.make_loader(facts).load(context_for(tmp_path / "data"), env={})
    assert _counts(scene.labels, 5) == counts


@pytest.mark.parametrize(("what", "match"), [
    ("key", r"data_hsi\.mat: variable\(s\) \['data'\] not found; the file holds \['hsi'\]"),
    ("bands", r"data_sar\.mat \(variable 'data'\): sar raster has 2 band\(s\); expected 3 for 'yellow-river'"),
    ("shape", r"data_sar\.mat \(variable 'data'\): sar raster is 18 x 24 pixels"),
    ("nan", r"data_hsi\.mat \(variable 'data'\): hsi band 7 has 1 NaN/inf value\(s\) \(first at row 2, col 3\)"),
])
def test_yellow_river_bad_files(yre, context_for: Context, what: str, match: str) -> None:
    data_dir, folder = yre
    hsi = scipy.io.loadmat(str(folder / "data_hsi.mat"))["data"]
    sar = scipy.io.loadmat(str(folder / "data_sar.mat"))["data"]
    if what == "key":
        save_mat(folder / "data_hsi.mat", {"hsi": hsi})
    elif what == "bands":
        save_mat(folder / "data_sar.mat", {"data": sar[..., :2]})
    elif what == "shape":
        save_mat(folder / "data_sar.mat", {"data": sar[:18]})
    else:
        hsi[2, 3, 7] = np.nan
        save_mat(folder / "data_hsi.mat", {"data": hsi})
    with pytest.raises(DatasetError, match=match):
        yellow_river.make_loader().load(context_for(data_dir), env=NO_VERIFY)


# ----------------------------------------------------------------------------- lcz-hk


def test_lcz_hk_default_layout_remaps_the_lcz_codes(tmp_path: Path, context_for: Context) -> None:
    lcz_fake.make_fake(tmp_path / "data" / "lcz-hk")
    folder = tmp_path / "data" / "lcz-hk"
    codes = scipy.io.loadmat(str(folder / "HK_GT.mat"))["HK_GT"]
    assert set(np.unique(codes)) <= {0, *lcz_hk.CODES} and 17 in codes  # water is LCZ G = 17
    scene = lcz_hk.make_loader().load(context_for(tmp_path / "data"), env=NO_VERIFY)
    lookup = np.zeros(18, np.int64)
    lookup[list(lcz_hk.CODES)] = np.arange(1, 14)
    np.testing.assert_array_equal(scene.labels, lookup[codes])
    msi = scipy.io.loadmat(str(folder / "HK_MS.mat"))["data"]
    np.testing.assert_allclose(scene.modalities["hsi"][9], _minmax(msi[..., 9]), atol=1e-6)
    assert scene.bands == {"hsi": 10, "sar": 4} and scene.metadata["layout"] == "mdl-rs"
    assert "Sentinel-2 MSI" in scene.metadata["hsi_is"]
    assert scene.metadata["labels"].startswith("HK_GT.mat 'HK_GT': LCZ codes 1,2,3,4,5,6,8,10,11,12,13,14,17")
    assert scene.official_train is None


def test_lcz_hk_names_keys_orientation_and_codes_are_configurable(tmp_path: Path, context_for: Context) -> None:
    lcz_fake.make_fake(tmp_path / "a" / "lcz-hk", layout="mdl-rs")
    lcz_fake.make_fake(tmp_path / "b" / "lcz-hk", layout="custom")
    loader = lcz_hk.make_loader()
    default = loader.load(context_for(tmp_path / "a"), env=NO_VERIFY)
    with pytest.raises(DatasetError, match=r"incomplete|no complete set"):
        loader.load(context_for(tmp_path / "b"), env=NO_VERIFY)  # other names: not found without the settings
    custom = loader.load(context_for(tmp_path / "b"), env={**NO_VERIFY, **lcz_fake.CUSTOM_ENV})
    assert custom.metadata["layout"].startswith("mdl-rs+cfg-")
    np.testing.assert_array_equal(custom.labels, default.labels)
    for name in ("hsi", "sar"):
        np.testing.assert_array_equal(custom.modalities[name], default.modalities[name])  # bands-first, read right
    assert "codes 1,2,3,4,5,6,7,8,9,10,11,12,13" in custom.metadata["configuration"]
    assert data_params(custom)["data.layout"] == custom.metadata["layout"]
    a = loader.fingerprint(context_for(tmp_path / "b"), env={**NO_VERIFY, **lcz_fake.CUSTOM_ENV})
    b = loader.fingerprint(context_for(tmp_path / "b"), env={**NO_VERIFY, **lcz_fake.CUSTOM_ENV,
                                                             "BENCH_LCZ_HK_CODES": "13,2,3,4,5,6,7,8,9,10,11,12,1"})
    assert a.layout != b.layout and a.digest != b.digest  # another code table: another cell key


def test_lcz_hk_bad_settings_and_ambiguous_files(tmp_path: Path, context_for: Context) -> None:
    lcz_fake.make_fake(tmp_path / "data" / "lcz-hk", layout="custom")
    loader = lcz_hk.make_loader()
    with pytest.raises(DatasetError, match=r"BENCH_LCZ_HK_CODES='1,2,3': expected 13 distinct positive label codes"):
        loader.load(context_for(tmp_path / "data"), env={**lcz_fake.CUSTOM_ENV, "BENCH_LCZ_HK_CODES": "1,2,3"})
    env = {**NO_VERIFY, **lcz_fake.CUSTOM_ENV, "BENCH_LCZ_HK_MSI": "lcz_hk_msi.mat"}
    with pytest.raises(DatasetError, match=r"lcz_hk_msi\.mat: holds the variables \['msi', 'wavelengths'\]; expected "
                                           r"one variable .* Name the one to read with BENCH_LCZ_HK_MSI=lcz_hk_msi\.mat:KEY"):
        loader.load(context_for(tmp_path / "data"), env=env)


def test_lcz_hk_a_code_outside_the_table_is_a_difference(tmp_path: Path, context_for: Context) -> None:
    folder = tmp_path / "data" / "lcz-hk"
    lcz_fake.make_fake(folder)
    codes = scipy.io.loadmat(str(folder / "HK_GT.mat"))["HK_GT"]
    codes[:2, :3] = 7  # LCZ 7 does not occur in BDGF's Hong Kong classes
    save_mat(folder / "HK_GT.mat", {"HK_GT": codes})
    with pytest.raises(DatasetError, match=r"label code 7 \(LCZ 7 lightweight low-rise\) is not in the code table: "
                                           r"6 pixels \(set BENCH_LCZ_HK_CODES"):
        lcz_hk.make_loader().load(context_for(tmp_path / "data"), env={})
    scene = lcz_hk.make_loader().load(context_for(tmp_path / "data"), env=NO_VERIFY)
    assert not np.asarray(scene.labels)[:2, :3].any()  # unlabelled, and recorded
    assert any(p.startswith("label code 7") for p in scene.metadata[MISMATCH_KEY])


@pytest.mark.slow
def test_lcz_hk_real_shape_and_bdgf_totals_load_verified(tmp_path: Path, context_for: Context) -> None:
    assert sum(lcz_hk.FACTS.labelled) == 8_846 and lcz_hk.FACTS.shape == (529, 528)
    lcz_fake.make_fake(tmp_path / "data" / "lcz-hk", shape=(529, 528), counts=lcz_hk.FACTS.labelled)
    scene = lcz_hk.make_loader().load(context_for(tmp_path / "data", cache=False), env={})
    assert scene.shape == (529, 528) and _counts(scene.labels, 13) == lcz_hk.FACTS.labelled
    assert scene.metadata["run_params"]["verified"] == "yes"


# ----------------------------------------------------------------------------- cards and the CLI


@pytest.mark.parametrize(("name", "total"), [("yellow-river", 233_478), ("lcz-hk", 8_846)])
def test_cards_carry_bdgfs_per_class_totals(name: str, total: int) -> None:
    from bench_core.plugins import load_plugins

    card = card_for(load_plugins().datasets.get(name))
    assert sum(c["labelled"] for c in card["classes"]) == total
    assert card["verified_at_load"][0]["checks"].endswith(f"(total {total})")
    assert card["obtain"] and card["files"] == []


def test_dfc2018_card_says_which_protocol_each_layout_is() -> None:
    from bench_core.plugins import load_plugins

    card = card_for(load_plugins().datasets.get("dfc2018"))
    assert card["official_split"]["train"] == 2_018_910 and card["official_split"]["test"] == 341_729
    assert [lay["name"] for lay in card["layouts"]] == ["official", "ouc"]
    assert "a different protocol" in card["layouts"][1]["description"]
    assert any("DIFFERENT protocol" in n for n in card["notes"]) and "BENCH_DFC2018_X" in card["settings"]


@pytest.mark.parametrize("name", ["dfc2018", "yellow-river", "lcz-hk"])
def test_info_without_the_files_prints_the_card_and_where_to_get_them(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench_core.plugins import load_plugins

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["datasets", "info", name, "--data-dir", str(tmp_path / "empty")]) == 0
    out = capsys.readouterr().out
    card = card_for(load_plugins().datasets.get(name))
    assert f"  obtain: {card['obtain']}" in out and f"  licence: {card['licence']}" in out
    assert f"  fix: no public download (`bench datasets fetch {name}` cannot get it)" in out
    for setting, meaning in card.get("settings", {}).items():
        assert f"  setting {setting}: {meaning}" in out
    for layout in card["layouts"]:
        for f in layout["files"]:
            assert re.search(rf"{layout['name']}\s+{re.escape(f['name'])}\s+missing", out), (layout["name"], f)
    assert main(["datasets", "info", name, "--data-dir", str(tmp_path / "empty"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["card"] == card and data["loaded"] is False
    assert f"dataset {name!r}: no complete set of its files was found" in data["reason"]
    assert "Where to get them: " in data["reason"]


def test_info_with_fake_files_shows_the_verification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    yre_fake.make_fake(tmp_path / "data" / "yellow-river")
    monkeypatch.setenv("BENCH_VERIFY_CHECKSUMS", "0")
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["datasets", "info", "yellow-river", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "yellow-river  20 x 24 pixels;  bands: hsi 166, sar 3" in out
    assert "verification: DIFFERS from BDGF, Table I (960 x 1170 at 30 m; 233,478 labelled pixels) in 6 place(s)" in out


def test_scene_takes_float16_modalities_but_not_float64() -> None:
    labels = np.ones((3, 4), np.int64)
    scene = Scene("s", {"hsi": np.zeros((2, 3, 4), np.float16)}, labels, ("a",))
    assert scene.modalities["hsi"].dtype == np.float16
    with pytest.raises(DatasetError, match="dtype float64; expected float32 \\(or float16"):
        Scene("s", {"hsi": np.zeros((2, 3, 4))}, labels, ("a",))
