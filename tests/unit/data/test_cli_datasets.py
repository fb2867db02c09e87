"""`bench datasets list` and `bench datasets info NAME`: the card and file status without files, counts with them."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from bench_core import load_plugins
from bench_core.cli import main
from bench_core.data import card_for
from tests.conftest import subprocess_env


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


def _bench(bench_exe: str, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """``bench ARGS`` in a subprocess, as a user types it (rich sizes its tables from COLUMNS)."""
    return subprocess.run([bench_exe, *args], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(COLUMNS=str(columns)))


@pytest.mark.slow
def test_info_without_files_prints_the_card_and_where_to_get_them(tmp_path: Path, bench_exe: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _bench(bench_exe, "datasets", "info", "augsburg", "--data-dir", str(empty))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    spec = load_plugins().datasets.get("augsburg")
    card = card_for(spec)
    assert ("augsburg (plugin hong2021): 332 x 485 pixels;  modalities: hsi (180 bands), sar (4 bands);  "
            "7 classes") in out
    for key in ("licence", "citation", "url", "description"):  # in full: `list` shortens the licence
        assert f"  {key}: {card[key]}" in out
    assert "  official split: 761 train / 77533 test" in out
    for row in card["classes"]:
        assert re.search(rf"│\s+{row['label']} │ {row['name']}\s+│\s+{row['official_train']} │", out), row
    file = spec.files[0]
    assert f"  download: {file.name}  sha256 {file.sha256}  from {file.urls[0]}" in out
    for name in ("data_HS_LR.mat", "TestImage.mat", "augsburg_hsi.mat", "augsburg_index.mat"):
        assert re.search(rf"{re.escape(name)}\s+missing", out), name
    assert "found:" not in out
    assert f"    {empty} (--data-dir)\n" in out
    assert f"    {tmp_path / 'bench-home' / 'cache'} (cache): does not exist" in out
    assert (f"  fix: run `bench datasets fetch augsburg --data-dir {empty}` (downloads augsburg-ouc.zip into "
            f"{empty / 'augsburg'})") in out


def test_info_with_a_partial_file_set_says_which_files_were_found(make_dataset, bench_exe: str) -> None:
    data_dir, _ = make_dataset("augsburg", "hong")
    (data_dir / "augsburg" / "TestImage.mat").unlink()
    done = _bench(bench_exe, "datasets", "info", "augsburg", "--data-dir", str(data_dir), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["loaded"] is False and "no complete set of its files was found" in data["reason"]
    hong = {f["name"]: f["path"] for f in data["files"] if f["layout"] == "hong"}
    folder = data_dir / "augsburg"
    assert hong == {"data_HS_LR.mat": str(folder / "data_HS_LR.mat"),
                    "data_SAR_HR.mat": str(folder / "data_SAR_HR.mat"),
                    "TrainImage.mat": str(folder / "TrainImage.mat"), "TestImage.mat": None}
    assert data["card"]["licence"] == load_plugins().datasets.get("augsburg").licence
    assert data["searched"][0] == {"path": str(data_dir), "origin": "--data-dir", "exists": True}
    assert data["fix"].startswith(f"run `bench datasets fetch augsburg --data-dir {data_dir}`")


@pytest.mark.slow
def test_info_with_the_fake_files_loads_them(make_dataset, bench_exe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, _ = make_dataset("augsburg", "hong")
    monkeypatch.setenv("BENCH_VERIFY_CHECKSUMS", "0")
    done = _bench(bench_exe, "datasets", "info", "augsburg", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    shape = scipy.io.loadmat(str(data_dir / "augsburg" / "TrainImage.mat"))["TrainImage"].shape
    assert f"augsburg  {shape[0]} x {shape[1]} pixels;  bands: hsi 180, sar 4" in done.stdout
    assert "layout: hong" in done.stdout and "missing" not in done.stdout


def test_info_of_a_dataset_without_public_download_says_how_to_get_it(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "info", "dfc2018", "--data-dir", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fix"].startswith("no public download (`bench datasets fetch dfc2018` cannot get it): obtain the "
                                  "files from https://machinelearning.ee.uh.edu/")
    assert "obtain" in data["card"] and all(f["path"] is None for f in data["files"])


def test_info_with_files_that_fail_to_load_is_still_an_error(make_dataset,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _ = make_dataset("augsburg", "ouc")  # fake files: their sha256 is not the published one
    assert main(["datasets", "info", "augsburg", "--data-dir", str(data_dir)]) == 2
    out = capsys.readouterr()
    assert "checksum mismatch" in out.err and "# dataset card of 'augsburg'" in out.out


def test_list_is_one_line_per_dataset(bench_exe: str) -> None:
    names = load_plugins().datasets.names()
    done = _bench(bench_exe, "datasets", "list", columns=120)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == list(names)
    assert all(len(line) <= 120 for line in done.stdout.splitlines())
    augsburg = next(row for row in rows if row.startswith("│ augsburg "))
    assert "no explicit data licence …" in augsburg  # the licence, its conditions left to `info`
