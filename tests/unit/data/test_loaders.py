"""The real-dataset loaders on fake files of every layout (v5 and v7.3), checked against the files.

Expected values are read from the fake files with scipy / PIL directly, not through the
loaders, so a wrong axis order, label offset or split would show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from bench_core import DatasetContext
from bench_core.data import describe_normalisation
from bench_plugins.datasets import muufl
from tests.unit.data.conftest import NO_VERIFY, real_loader

H13 = "2013_IEEE_GRSS_DF_Contest"


def _mat(folder: Path, file: str, key: str) -> np.ndarray:
    return np.asarray(scipy.io.loadmat(str(folder / file))[key])


def _from_index(gt: np.ndarray, coords: np.ndarray) -> np.ndarray:
    out = np.zeros_like(gt)
    out[coords[:, 0], coords[:, 1]] = gt[coords[:, 0], coords[:, 1]]
    return out


def _hong(f: Path, name: str) -> dict[str, np.ndarray]:
    train, test = _mat(f, "TrainImage.mat", "TrainImage"), _mat(f, "TestImage.mat", "TestImage")
    return {"labels": train + test, "train": train, "test": test, "hsi": _mat(f, "data_HS_LR.mat", "data_HS_LR")}


def _ouc(f: Path, name: str) -> dict[str, np.ndarray]:
    gt = _mat(f, f"{name}_gt.mat", f"{name}_gt").astype(np.int64)
    index = scipy.io.loadmat(str(f / f"{name}_index.mat"))
    return {"labels": gt, "train": _from_index(gt, index[f"{name}_train"]),
            "test": _from_index(gt, index[f"{name}_test"]), "hsi": _mat(f, f"{name}_hsi.mat", f"{name}_hsi")}


def _mmr(f: Path, name: str) -> dict[str, np.ndarray]:
    train, test = _mat(f, "TRLabel.mat", "TRLabel"), _mat(f, "TSLabel.mat", "TSLabel")
    return {"labels": train + test, "train": train, "test": test, "hsi": _mat(f, "HSI.mat", "HSI")}


def _dfc(f: Path, name: str) -> dict[str, np.ndarray]:
    import tifffile

    train = np.array(Image.open(f / f"{H13}_Samples_TR.tif"))
    test = np.array(Image.open(f / f"{H13}_Samples_VA.tif"))
    return {"labels": train + test, "train": train, "test": test, "hsi": tifffile.imread(f / f"{H13}_CASI.tif")}


def _gatorsense(f: Path, name: str) -> dict[str, np.ndarray]:
    hsi = scipy.io.loadmat(str(f / muufl.FILE), simplify_cells=True)["hsi"]
    labels = np.maximum(hsi["sceneLabels"]["labels"], 0).astype(np.int64)
    return {"labels": labels, "hsi": hsi["Data"]}


def _m3amba_muufl(f: Path, name: str) -> dict[str, np.ndarray]:
    maps = scipy.io.loadmat(str(f / "train_test_gt.mat"))
    train, test = maps["trainlabels"], maps["testlabels"]
    return {"labels": train + test, "train": train, "test": test, "hsi": _mat(f, "hsi.mat", "HSI")}


def _mirror(f: Path, name: str) -> dict[str, np.ndarray]:
    out = {"labels": _mat(f, "allgrd.mat", "mask_test").T, "hsi": _mat(f, "Italy_hsi.mat", "data").transpose(1, 0, 2)}
    if (f / "TRLabel.mat").exists():
        out["train"], out["test"] = _mat(f, "TRLabel.mat", "TRLabel"), _mat(f, "TSLabel.mat", "TSLabel")
    return out


def _trento_ouc(f: Path, name: str) -> dict[str, np.ndarray]:
    return _ouc(f, "trento")


EXPECTED: dict[tuple[str, str], Callable[[Path, str], dict[str, np.ndarray]]] = {
    ("augsburg", "hong"): _hong, ("augsburg", "ouc"): _ouc,
    ("berlin", "hong"): _hong, ("berlin", "ouc"): _ouc,
    ("houston2013", "dfc2013"): _dfc, ("houston2013", "mmr"): _mmr, ("houston2013", "m3amba"): _mmr,
    ("muufl", "gatorsense"): _gatorsense, ("muufl", "m3amba"): _m3amba_muufl,
    ("trento", "mirror"): _mirror, ("trento", "mirror-split"): _mirror, ("trento", "mmr"): _mmr,
    ("trento", "ouc"): _trento_ouc,
}
BANDS = {
    "augsburg": {"hsi": 180, "sar": 4}, "berlin": {"hsi": 244, "sar": 4}, "houston2013": {"hsi": 144, "lidar": 1},
    "muufl": {"hsi": 64, "lidar": 2}, "trento": {"hsi": 63, "lidar": 1},
}


def _minmax(cube_hwc: np.ndarray) -> np.ndarray:
    cube = np.moveaxis(cube_hwc.astype(np.float64), -1, 0)
    lo, hi = cube.min(axis=(1, 2), keepdims=True), cube.max(axis=(1, 2), keepdims=True)
    return (cube - lo) / (hi - lo)


@pytest.mark.parametrize(("dataset", "layout"), sorted(EXPECTED))
def test_loader_reads_every_layout(dataset: str, layout: str, make_dataset, context_for) -> None:
    data_dir, sha = make_dataset(dataset, layout)
    scene = real_loader(dataset).load(context_for(data_dir), env=NO_VERIFY)
    expected = EXPECTED[(dataset, layout)](data_dir / dataset, dataset)

    assert scene.name == dataset
    assert scene.bands == BANDS[dataset]
    assert scene.metadata["layout"] == layout.replace("-split", "")
    used = set(sha) - ({"data_DSM.mat"} if dataset == "augsburg" else set())  # `augsburg` has no DSM
    assert scene.metadata["sha256"] == {n: sha[n] for n in used}  # hashed when the cache was made
    assert scene.metadata["normalisation"] == describe_normalisation("minmax", tuple(BANDS[dataset]))
    np.testing.assert_array_equal(scene.labels, expected["labels"])
    if "train" in expected:
        np.testing.assert_array_equal(scene.official_train, expected["train"])
        np.testing.assert_array_equal(scene.official_test, expected["test"])
    np.testing.assert_allclose(scene.modalities["hsi"], _minmax(expected["hsi"]), atol=1e-6)
    for cube in scene.modalities.values():
        assert cube.dtype == np.float32 and cube.min() == 0.0 and cube.max() == pytest.approx(1.0)
    assert len(scene.palette) == scene.num_classes


@pytest.mark.parametrize(("dataset", "layout"), [("berlin", "hong"), ("augsburg", "ouc"), ("muufl", "gatorsense"),
                                                 ("trento", "mirror"), ("houston2013", "mmr")])
def test_v73_files_give_the_same_scene_as_v5(dataset: str, layout: str, make_dataset, context_for) -> None:
    v5 = real_loader(dataset).load(context_for(make_dataset(dataset, layout, "5")[0], cache=False), env=NO_VERIFY)
    v73 = real_loader(dataset).load(context_for(make_dataset(dataset, layout, "7.3")[0], cache=False), env=NO_VERIFY)
    np.testing.assert_array_equal(v73.labels, v5.labels)
    for name in v5.modalities:
        np.testing.assert_array_equal(v73.modalities[name], v5.modalities[name])
    if v5.official_train is not None:
        np.testing.assert_array_equal(v73.official_train, v5.official_train)


def test_augsburg_dsm_needs_hongs_bundle_and_has_three_modalities(make_dataset, context_for) -> None:
    data_dir, _ = make_dataset("augsburg", "hong")
    scene = real_loader("augsburg-dsm").load(context_for(data_dir), env=NO_VERIFY)
    assert scene.bands == {"hsi": 180, "sar": 4, "dsm": 1}
    assert scene.aux_modalities == ("sar", "dsm")
    dsm = _mat(data_dir / "augsburg", "data_DSM.mat", "data_DSM")
    np.testing.assert_allclose(scene.modalities["dsm"][0], (dsm - dsm.min()) / (dsm.max() - dsm.min()), atol=1e-6)


def test_second_load_comes_from_the_cache(make_dataset, context_for, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, _ = make_dataset("augsburg", "ouc")
    loader = real_loader("augsburg")
    first = loader.load(context_for(data_dir), env=NO_VERIFY)

    def must_not_read(paths):
        raise AssertionError("source files were read again although the cache is valid")

    monkeypatch.setattr(loader, "layouts", tuple(dataclasses.replace(lay, read=must_not_read) for lay in loader.layouts))
    second = loader.load(context_for(data_dir), env=NO_VERIFY)
    np.testing.assert_array_equal(second.modalities["hsi"], first.modalities["hsi"])
    assert second.metadata["sha256"] == first.metadata["sha256"]


def test_zscore_is_cached_apart_and_recorded(make_dataset, context_for, tmp_path: Path) -> None:
    data_dir, _ = make_dataset("berlin", "ouc")
    loader = real_loader("berlin")
    mm = loader.load(context_for(data_dir), env=NO_VERIFY)
    zs = loader.load(context_for(data_dir), env={**NO_VERIFY, "BENCH_NORMALISATION": "zscore"})
    assert zs.metadata["normalisation"].startswith("zscore:")
    assert abs(float(np.asarray(zs.modalities["hsi"]).mean())) < 1e-4 and mm.modalities["hsi"].min() == 0.0
    assert sorted(p.name for p in (tmp_path / "cache" / "scenes" / "berlin").iterdir()) == ["ouc-minmax", "ouc-zscore"]


def test_edited_source_file_rebuilds_the_scene(make_dataset, context_for) -> None:
    data_dir, _ = make_dataset("augsburg", "hong")
    loader = real_loader("augsburg")
    before = loader.load(context_for(data_dir), env=NO_VERIFY)
    folder = data_dir / "augsburg"
    test = _mat(folder, "TestImage.mat", "TestImage")
    test[test == 1] = 0  # drop class 1 from the test map
    scipy.io.savemat(str(folder / "TestImage.mat"), {"TestImage": test})
    after = loader.load(context_for(data_dir), env=NO_VERIFY)
    assert int((after.official_test == 1).sum()) == 0 < int((before.official_test == 1).sum())
    assert after.metadata["sha256"]["TestImage.mat"] != before.metadata["sha256"]["TestImage.mat"]


def test_muufl_split_is_five_percent_per_class_fixed_by_seed(make_dataset, context_for) -> None:
    data_dir, _ = make_dataset("muufl", "gatorsense")
    scene = real_loader("muufl").load(context_for(data_dir), env=NO_VERIFY)
    labels = np.asarray(scene.labels)
    for cls in range(1, scene.num_classes + 1):
        n = int((labels == cls).sum())
        assert int((scene.official_train == cls).sum()) == int(np.floor(0.05 * n + 0.5))
        assert int((scene.official_test == cls).sum()) == n - int(np.floor(0.05 * n + 0.5))
    again = real_loader("muufl").load(context_for(make_dataset("muufl", "gatorsense", seed=0)[0], cache=False),
                                      env=NO_VERIFY)
    np.testing.assert_array_equal(again.official_train, scene.official_train)
    # the literature's counts follow from the rule on the real class sizes
    real_sizes = (23246, 4270, 6882, 1826, 6687, 466, 2233, 6240, 1385, 183, 269)
    assert tuple(int(np.floor(0.05 * n + 0.5)) for n in real_sizes) == muufl.OFFICIAL.train
    assert sum(real_sizes) - sum(muufl.OFFICIAL.train) == muufl.OFFICIAL.test_total


def test_muufl_class_names_come_from_the_file(make_dataset, context_for, tmp_path: Path) -> None:
    from tests.data.muufl.make_fake import MATERIALS, make_fake

    swapped = list(MATERIALS)
    swapped[6], swapped[7] = swapped[7], swapped[6]  # the tech report's swap of 7 and 8
    make_fake(tmp_path / "swapped" / "muufl", materials=tuple(swapped))
    scene = real_loader("muufl").load(context_for(tmp_path / "swapped", cache=False), env=NO_VERIFY)
    assert scene.class_names[6:8] == ("Buildings", "Building shadow")
    assert scene.metadata["class_names_source"] == "hsi.sceneLabels.Materials_Type"


def test_trento_real_mirror_files(shared_data: Path, tmp_path: Path) -> None:
    """The real Italy_lidar.mat and allgrd.mat (166 x 600) with a fake Italy_hsi.mat of the same layout."""
    from bench_core.data import save_mat

    folder = tmp_path / "data" / "trento"
    folder.mkdir(parents=True)
    for name in ("Italy_lidar.mat", "allgrd.mat"):
        (folder / name).write_bytes((shared_data / "trento-mirror" / name).read_bytes())
    gt = scipy.io.loadmat(str(folder / "allgrd.mat"))["mask_test"]
    hsi = (gt[..., None] * np.arange(1, 64, dtype=np.float32)[None, None, :]).astype(np.float32)
    save_mat(folder / "Italy_hsi.mat", {"data": hsi})
    loader = real_loader("trento")
    scene = loader.load(DatasetContext(data_dir=tmp_path / "data"), env=NO_VERIFY)

    assert scene.shape == (600, 166)
    assert int((scene.labels > 0).sum()) == 30_214
    assert np.bincount(np.asarray(scene.labels).ravel())[1:].tolist() == [4034, 2903, 479, 9123, 10501, 3174]
    np.testing.assert_array_equal(scene.labels, gt.T)
    assert scene.bands == {"hsi": 63, "lidar": 1}
    lidar = scipy.io.loadmat(str(folder / "Italy_lidar.mat"))["data"]
    band0 = lidar[..., 0].T.astype(np.float64)
    np.testing.assert_allclose(scene.modalities["lidar"][0], (band0 - band0.min()) / (band0.max() - band0.min()),
                               atol=1e-6)
    assert scene.metadata["orientation"] == "transposed from 166 x 600 (as stored) to 600 x 166 (literature)"
    assert "kept band 0" in scene.metadata["lidar_bands"] and "dropped band 1" in scene.metadata["lidar_bands"]
    assert scene.official_train is None and "not in this distribution" in scene.metadata["official_split"]
    # the two real files match the published checksums; only the fake HSI is reported
    assert set(scene.metadata["sha256_mismatch"]) == {"Italy_hsi.mat"}
    for name in ("Italy_lidar.mat", "allgrd.mat"):
        assert scene.metadata["sha256"][name] == loader.layouts[0].sha256[name]


def test_houston_official_maps_from_the_real_label_rasters(shared_data: Path, tmp_path: Path) -> None:
    """The real Samples_TR/VA.tif build the official split (counts of methods.md 1.2).

    A full-size 144-band CASI cube would be ~200 MB, so this loader reads the same
    ``dfc2013`` layout with one HSI band; the label path is the real one.
    """
    import tifffile

    from bench_core.data import RealDataset
    from bench_plugins.datasets import houston2013 as h13

    folder = tmp_path / "data" / "houston2013"
    folder.mkdir(parents=True)
    for name in (h13.TRAIN_TIF, h13.TEST_TIF):
        (folder / name).write_bytes((shared_data / "houston2013-labels" / name).read_bytes())
    grid = np.add.outer(np.arange(349), np.arange(1905)).astype(np.uint16)
    tifffile.imwrite(folder / h13.CASI, grid[..., None], photometric="minisblack", compression="zlib")
    tifffile.imwrite(folder / h13.LIDAR, grid.astype(np.float32), compression="zlib")
    loader = RealDataset(name="houston2013", layouts=h13.LAYOUTS[:1], class_names=h13.CLASSES,
                         bands={"hsi": 1, "lidar": 1}, palette=h13.PALETTE)
    scene = loader.load(DatasetContext(data_dir=tmp_path / "data"), env=NO_VERIFY)

    assert scene.shape == (349, 1905)
    train = np.bincount(np.asarray(scene.labels)[np.asarray(scene.official_train) > 0], minlength=16)[1:]
    test = np.bincount(np.asarray(scene.labels)[np.asarray(scene.official_test) > 0], minlength=16)[1:]
    assert tuple(train) == h13.OFFICIAL.train and int(train.sum()) == 2_832
    assert tuple(test) == h13.OFFICIAL.test and int(test.sum()) == 12_197
    assert int((scene.labels > 0).sum()) == 2_832 + 12_197
    assert set(scene.metadata["sha256_mismatch"]) == {h13.CASI, h13.LIDAR}  # the real rasters verify


def test_published_split_sizes() -> None:
    """The facts the cards carry agree with datasets.md / methods.md."""
    expected = {"augsburg": (761, 77_533), "berlin": (2_820, 461_851), "houston2013": (2_832, 12_197),
                "muufl": (2_683, 51_004), "trento": (819, 29_395)}
    for name, (train, test) in expected.items():
        official = real_loader(name).official
        assert (official.train_total, official.test_total) == (train, test), name
        assert len(official.train) == len(real_loader(name).class_names)
