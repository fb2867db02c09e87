"""MATLAB v5 / v7.3 reading: same arrays from both, v7.3's reversed axes undone, clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from bench_core import DatasetError
from bench_core.data import list_variables, mat_version, read_mat, save_mat


@pytest.fixture
def variables() -> dict:
    rng = np.random.default_rng(7)
    return {
        "cube": rng.random((5, 7, 3)),
        "labels": rng.integers(0, 9, (5, 7)).astype(np.uint8),
        "index": np.array([[0, 1], [2, 3], [4, 5]], dtype=np.int64),
        "hsi": {"Data": rng.random((5, 7, 4)).astype(np.float32), "Lidar": [{"z": rng.random((5, 7, 2))}],
                "names": ["Trees", "Mostly grass"], "title": "campus 1"},
    }


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_roundtrip_keeps_matlab_axis_order(tmp_path: Path, variables: dict, version: str) -> None:
    path = tmp_path / "v.mat"
    save_mat(path, variables, version)
    assert mat_version(path) == version
    out = read_mat(path)
    np.testing.assert_array_equal(out["cube"], variables["cube"])
    np.testing.assert_array_equal(out["labels"], variables["labels"])
    assert out["labels"].dtype == np.uint8
    np.testing.assert_array_equal(out["index"], variables["index"])
    hsi = out["hsi"]
    np.testing.assert_array_equal(hsi["Data"], variables["hsi"]["Data"])
    assert hsi["Data"].dtype == np.float32
    np.testing.assert_array_equal(hsi["Lidar"]["z"], variables["hsi"]["Lidar"][0]["z"])  # 1x1 cell squeezed
    assert hsi["names"] == ["Trees", "Mostly grass"]
    assert hsi["title"] == "campus 1"
    assert sorted(list_variables(path)) == sorted(variables)


def test_v73_is_hdf5_with_matlab_header_and_reversed_axes(tmp_path: Path) -> None:
    path = tmp_path / "v73.mat"
    cube = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    save_mat(path, {"data": cube}, "7.3")
    head = path.read_bytes()[:128]
    assert head.startswith(b"MATLAB 7.3 MAT-file")
    assert head[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as f:  # what MATLAB writes: column-major, so h5py sees (bands, cols, rows)
        assert f["data"].shape == (4, 3, 2)
        assert f["data"].attrs["MATLAB_class"] == b"double"
        np.testing.assert_array_equal(f["data"][()], cube.T)
    np.testing.assert_array_equal(read_mat(path, ["data"])["data"], cube)
    with pytest.raises(NotImplementedError):  # scipy cannot: the reason h5py is needed
        scipy.io.loadmat(str(path))


def test_reads_a_real_v5_file_from_the_trento_mirror(shared_data: Path) -> None:
    out = read_mat(shared_data / "trento-mirror" / "allgrd.mat", ["mask_test"])
    assert out["mask_test"].shape == (166, 600)
    assert out["mask_test"].dtype == np.uint8
    assert int((out["mask_test"] > 0).sum()) == 30_214


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_truncated_file_names_the_file_and_the_fix(tmp_path: Path, version: str) -> None:
    path = tmp_path / "data_HS_LR.mat"
    rng = np.random.default_rng(0)
    save_mat(path, {"data_HS_LR": rng.random((30, 30, 20))}, version)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as err:
        read_mat(path, ["data_HS_LR"], fix="run `bench datasets fetch augsburg`")
    text = str(err.value)
    assert str(path) in text
    assert f"MATLAB v{version}" in text and "truncated" in text
    assert "bench datasets fetch augsburg" in text


def test_short_file_is_reported_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "TrainImage.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(DatasetError, match=r"only 19 bytes.*truncated"):
        mat_version(path)


def test_not_a_mat_file(tmp_path: Path) -> None:
    path = tmp_path / "TestImage.mat"
    path.write_bytes(b"<html>404 Not Found</html>" + b" " * 200)
    with pytest.raises(DatasetError) as err:
        read_mat(path, ["TestImage"])
    assert str(path) in str(err.value) and "no MATLAB v5/v7.3 header" in str(err.value)


def test_corrupt_compressed_payload(tmp_path: Path) -> None:
    path = tmp_path / "gt.mat"
    save_mat(path, {"gt": np.arange(400, dtype=np.float64).reshape(20, 20)}, "5")
    data = bytearray(path.read_bytes())
    data[200:260] = b"\xff" * 60  # damage the zlib stream, keep the length
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"gt\.mat: cannot read as a MATLAB v5 \.mat file"):
        read_mat(path, ["gt"])


@pytest.mark.parametrize("version", ["5", "7.3"])
def test_missing_variable_lists_what_the_file_holds(tmp_path: Path, version: str) -> None:
    path = tmp_path / "augsburg_index.mat"
    save_mat(path, {"augsburg_train": np.zeros((2, 2)), "other": np.ones(3)}, version)
    with pytest.raises(DatasetError) as err:
        read_mat(path, ["augsburg_train", "augsburg_test"])
    text = str(err.value)
    assert "['augsburg_test'] not found" in text
    assert "augsburg_train" in text and "other" in text


def test_same_variables_give_the_same_bytes(tmp_path: Path, variables: dict) -> None:
    for version in ("5", "7.3"):
        save_mat(tmp_path / "a.mat", variables, version)
        save_mat(tmp_path / "b.mat", variables, version)
        assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
