"""`bench datasets info NAME` on fake files: shape, bands and per-class official counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io

from bench_core.cli import main


@pytest.mark.parametrize("dataset", ["augsburg", "berlin"])
def test_info_json_counts_match_the_files(dataset: str, make_dataset, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _ = make_dataset(dataset, "hong")
    monkeypatch.setenv("BENCH_VERIFY_CHECKSUMS", "0")
    assert main(["datasets", "info", dataset, "--data-dir", str(data_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    folder = data_dir / dataset
    train = scipy.io.loadmat(str(folder / "TrainImage.mat"))["TrainImage"].astype(int)
    test = scipy.io.loadmat(str(folder / "TestImage.mat"))["TestImage"].astype(int)
    k = len(data["classes"])
    assert data["shape"] == list(train.shape)
    assert data["bands"] == ({"hsi": 180, "sar": 4} if dataset == "augsburg" else {"hsi": 244, "sar": 4})
    assert [c["train"] for c in data["classes"]] == np.bincount(train.ravel(), minlength=k + 1)[1:].tolist()
    assert [c["test"] for c in data["classes"]] == np.bincount(test.ravel(), minlength=k + 1)[1:].tolist()
    assert data["totals"]["train"] == int((train > 0).sum())
    assert data["metadata"]["layout"] == "hong"
    assert set(data["sha256"]) == {"data_HS_LR.mat", "data_SAR_HR.mat", "TrainImage.mat", "TestImage.mat"}


def test_info_table_shows_classes_and_facts(make_dataset, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _ = make_dataset("trento", "mirror")
    monkeypatch.setenv("BENCH_VERIFY_CHECKSUMS", "0")
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["datasets", "info", "trento", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "trento  40 x 14 pixels;  bands: hsi 63, lidar 1" in out
    assert "orientation: transposed from 14 x 40 (as stored) to 40 x 14 (literature)" in out
    assert "no official train/test maps" in out
    for name in ("Apple trees", "Vineyard", "Roads"):
        assert name in out


def test_info_on_a_missing_dataset_fails_with_the_fix(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["datasets", "info", "houston2013", "--data-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "dataset 'houston2013': no complete set of its files was found" in err
    assert "`bench datasets fetch houston2013`" in err
