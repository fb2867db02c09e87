"""Bad input gets a DatasetError naming the file, what was found and what was expected."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from bench_core import DatasetError
from bench_core.data import save_mat
from tests.unit.data.conftest import NO_VERIFY, real_loader

FETCH = "`bench datasets fetch augsburg`"
OUC_ZIP = "https://github.com/songyz2019/rs-fusion-datasets-dist/releases/download/v1.0.0/augsburg-ouc.zip"


@pytest.fixture
def augsburg(make_dataset) -> tuple[Path, Path]:
    """(data_dir, folder) of fake Augsburg files in the OUC layout."""
    data_dir, _ = make_dataset("augsburg", "ouc")
    return data_dir, data_dir / "augsburg"


def _load(data_dir: Path, context_for, env: dict | None = None, dataset: str = "augsburg"):
    return real_loader(dataset).load(context_for(data_dir), env=NO_VERIFY if env is None else env)


def _var(path: Path, key: str) -> np.ndarray:
    return scipy.io.loadmat(str(path))[key]


def test_truncated_file(augsburg, context_for) -> None:
    data_dir, folder = augsburg
    path = folder / "augsburg_hsi.mat"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DatasetError) as err:
        _load(data_dir, context_for)
    text = str(err.value)
    assert f"{path}: cannot read as a MATLAB v5 .mat file" in text
    assert "truncated" in text and FETCH in text


def test_corrupt_file(augsburg, context_for) -> None:
    data_dir, folder = augsburg
    path = folder / "augsburg_gt.mat"
    path.write_bytes(b"\x00" * 4096)
    with pytest.raises(DatasetError, match=rf"{path}: no MATLAB v5/v7.3 header .*expected a \.mat file"):
        _load(data_dir, context_for)


def test_wrong_shape_between_modalities(augsburg, context_for) -> None:
    data_dir, folder = augsburg
    sar = _var(folder / "augsburg_sar.mat", "augsburg_sar")
    save_mat(folder / "augsburg_sar.mat", {"augsburg_sar": sar[:-2]})
    with pytest.raises(DatasetError) as err:
        _load(data_dir, context_for)
    text = str(err.value)
    assert "augsburg_sar.mat (variable 'augsburg_sar'): sar raster is 18 x 24 pixels" in text
    assert "augsburg_gt.mat (variable 'augsburg_gt') is 20 x 24" in text
    assert "one co-registered grid" in text


def test_wrong_band_count(augsburg, context_for) -> None:
    data_dir, folder = augsburg
    hsi = _var(folder / "augsburg_hsi.mat", "augsburg_hsi")
    save_mat(folder / "augsburg_hsi.mat", {"augsburg_hsi": hsi[..., :144]})
    with pytest.raises(DatasetError, match=r"augsburg_hsi\.mat \(variable 'augsburg_hsi'\): hsi raster has 144 "
                                           r"band\(s\); expected 180 for 'augsburg'"):
        _load(data_dir, context_for)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(augsburg, context_for, bad: float) -> None:
    data_dir, folder = augsburg
    sar = _var(folder / "augsburg_sar.mat", "augsburg_sar").astype(np.float64)
    sar[3, 5, 2] = bad
    sar[7, 1, 2] = bad
    save_mat(folder / "augsburg_sar.mat", {"augsburg_sar": sar})
    with pytest.raises(DatasetError) as err:
        _load(data_dir, context_for)
    text = str(err.value)
    assert "augsburg_sar.mat (variable 'augsburg_sar'): sar band 2 has 2 NaN/inf value(s) (first at row 3, col 5)" \
        in text
    assert "expected finite values" in text and FETCH in text


def test_labels_out_of_range(augsburg, context_for) -> None:
    data_dir, folder = augsburg
    gt = _var(folder / "augsburg_gt.mat", "augsburg_gt")
    gt[0, 0] = 9
    save_mat(folder / "augsburg_gt.mat", {"augsburg_gt": gt})
    with pytest.raises(DatasetError) as err:
        _load(data_dir, context_for)
    text = str(err.value)
    assert "augsburg_gt.mat (variable 'augsburg_gt'): labels range 0..9; expected 0..7 (0 = unlabelled, 1..7 = " \
           "the classes of 'augsburg')" in text


def test_negative_and_fractional_labels(make_dataset, context_for) -> None:
    data_dir, _ = make_dataset("augsburg", "hong")
    folder = data_dir / "augsburg"
    train = _var(folder / "TrainImage.mat", "TrainImage")
    frac = train.copy()
    frac[0, 0] = 2.5
    save_mat(folder / "TrainImage.mat", {"TrainImage": frac})
    with pytest.raises(DatasetError, match=r"TrainImage\.mat \(variable 'TrainImage'\): 1 label value\(s\) are not "
                                           r"integers \(e\.g\. 2\.5\)"):
        _load(data_dir, context_for)
    neg = train.copy()
    neg[neg == 0] = -1
    save_mat(folder / "TrainImage.mat", {"TrainImage": neg})
    with pytest.raises(DatasetError, match=r"TrainImage\.mat \(variable 'TrainImage'\): labels range -1\.\.\d+; "
                                           r"expected 0\.\.7"):
        _load(data_dir, context_for)


def test_overlapping_train_and_test_maps(make_dataset, context_for) -> None:
    data_dir, _ = make_dataset("berlin", "hong")
    folder = data_dir / "berlin"
    train = _var(folder / "TrainImage.mat", "TrainImage")
    test = _var(folder / "TestImage.mat", "TestImage")
    test[train > 0] = train[train > 0]
    save_mat(folder / "TestImage.mat", {"TestImage": test})
    n = int((train > 0).sum())
    with pytest.raises(DatasetError, match=rf"TrainImage\.mat \(variable 'TrainImage'\) and TestImage\.mat \(variable "
                                           rf"'TestImage'\): {n} pixel\(s\) are labelled in both"):
        _load(data_dir, context_for, dataset="berlin")


def test_index_outside_the_scene(augsburg, context_for) -> None:
    data_dir, folder = augsburg
    index = scipy.io.loadmat(str(folder / "augsburg_index.mat"))
    train = index["augsburg_train"].copy()
    train[0] = (20, 3)  # row 20 of a 20-row scene
    save_mat(folder / "augsburg_index.mat", {"augsburg_train": train, "augsburg_test": index["augsburg_test"]})
    with pytest.raises(DatasetError, match=r"augsburg_index\.mat \(variable 'augsburg_train'\): 1 \(row, col\) pair\(s\) "
                                           r"outside the 20 x 24 scene \(e\.g\. \(20, 3\)\)"):
        _load(data_dir, context_for)


def test_unknown_layout(tmp_path: Path, context_for) -> None:
    folder = tmp_path / "data" / "augsburg"
    folder.mkdir(parents=True)
    save_mat(folder / "Augsburg_HSI_SAR.mat", {"hsi": np.zeros((2, 2, 2))})
    with pytest.raises(DatasetError) as err:
        _load(tmp_path / "data", context_for)
    text = str(err.value)
    assert f"{folder} (--data-dir): unknown layout: holds Augsburg_HSI_SAR.mat, none of the known file sets" in text
    assert "hong: data_HS_LR.mat, data_SAR_HR.mat, TrainImage.mat, TestImage.mat" in text
    assert "ouc: augsburg_hsi.mat, augsburg_sar.mat, augsburg_gt.mat, augsburg_index.mat" in text
    assert f"{FETCH} (downloads from {OUC_ZIP} into the cache)" in text


def test_hand_download_only_dataset_says_so(tmp_path: Path, context_for) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError) as err:
        _load(tmp_path / "data", context_for, dataset="augsburg-dsm")
    text = str(err.value)
    assert "hong-dsm: data_HS_LR.mat, data_SAR_HR.mat, data_DSM.mat, TrainImage.mat, TestImage.mat" in text
    assert "Fix: download the files by hand from https://drive.google.com/" in text
    assert "`bench datasets fetch augsburg-dsm` cannot" in text


def test_missing_dataset_never_half_loads(make_dataset, context_for) -> None:
    data_dir, _ = make_dataset("augsburg", "ouc")
    (data_dir / "augsburg" / "augsburg_index.mat").unlink()
    with pytest.raises(DatasetError, match=r"incomplete 'ouc' file set: .* lacks augsburg_index\.mat"):
        _load(data_dir, context_for)


def test_checksum_mismatch_names_file_expected_actual_and_fix(augsburg, context_for) -> None:
    data_dir, folder = augsburg
    loader = real_loader("augsburg")
    with pytest.raises(DatasetError) as err:
        loader.load(context_for(data_dir), env={})
    text = str(err.value)
    published = loader.layouts[1].sha256["augsburg_hsi.mat"]
    from bench_core.data import sha256_file

    actual = sha256_file(folder / "augsburg_hsi.mat")
    assert f"{folder / 'augsburg_hsi.mat'}: sha256 {actual}, expected {published}" in text
    assert FETCH in text and "BENCH_VERIFY_CHECKSUMS=0" in text
    scene = loader.load(context_for(data_dir), env=NO_VERIFY)
    assert scene.metadata["sha256_mismatch"]["augsburg_hsi.mat"] == {"expected": published, "actual": actual}
    # turning verification back on refuses the cached scene too (no re-hashing needed)
    with pytest.raises(DatasetError, match="checksum mismatch"):
        loader.load(context_for(data_dir), env={})


def test_matching_checksums_pass_without_a_mismatch_note(make_dataset, context_for, monkeypatch) -> None:
    data_dir, sha = make_dataset("trento", "mirror")
    loader = real_loader("trento")
    layouts = (dataclasses.replace(loader.layouts[0], sha256=sha), *loader.layouts[1:])
    monkeypatch.setattr(loader, "layouts", layouts)
    scene = loader.load(context_for(data_dir), env={})
    assert "sha256_mismatch" not in scene.metadata
    assert scene.metadata["sha256"] == sha
