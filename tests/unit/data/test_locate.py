"""Finding dataset files: search order, folder names, partial sets and the error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_core import DatasetContext, DatasetError
from bench_core.data import Layout, locate, search_roots

LAYOUTS = (
    Layout(name="hong", required=("data_HS_LR.mat", "TrainImage.mat", "TestImage.mat"), optional=("data_DSM.mat",)),
    Layout(name="ouc", required=("augsburg_hsi.mat", "augsburg_gt.mat")),
)
URL = "https://example.org/augsburg"


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def _find(context: DatasetContext, env: dict | None = None):
    return locate("augsburg", LAYOUTS, context, aliases=("HS-SAR-DSM Augsburg",), url=URL, env=env or {})


def test_data_dir_then_env_then_cache(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _touch(tmp_path / name / "augsburg", "augsburg_hsi.mat", "augsburg_gt.mat")
    ctx = DatasetContext(data_dir=tmp_path / "a", cache_dir=tmp_path / "c")
    env = {"BENCH_DATA_DIR": str(tmp_path / "b")}
    assert _find(ctx, env).root.origin == "--data-dir"
    assert _find(DatasetContext(cache_dir=tmp_path / "c"), env).root.origin == "BENCH_DATA_DIR"
    found = _find(DatasetContext(cache_dir=tmp_path / "c"))
    assert found.root.origin == "cache"
    assert found.paths["augsburg_hsi.mat"] == tmp_path / "c" / "augsburg" / "augsburg_hsi.mat"


def test_root_itself_alias_folders_any_case_and_split_subfolders(tmp_path: Path) -> None:
    _touch(tmp_path / "flat", "augsburg_hsi.mat", "augsburg_gt.mat")
    assert _find(DatasetContext(data_dir=tmp_path / "flat")).layout.name == "ouc"
    # Hong's folder name; the DSM optional file is picked up; files spread over sub-folders
    root = tmp_path / "bundle"
    _touch(root / "HS-SAR-DSM Augsburg", "data_HS_LR.mat", "data_DSM.mat")
    _touch(root / "HS-SAR-DSM Augsburg" / "labels", "TrainImage.mat", "TestImage.mat")
    found = _find(DatasetContext(data_dir=root))
    assert found.layout.name == "hong"
    assert set(found.paths) == {"data_HS_LR.mat", "TrainImage.mat", "TestImage.mat", "data_DSM.mat"}
    assert found.folder == root / "HS-SAR-DSM Augsburg"
    _touch(tmp_path / "upper" / "AUGSBURG-ouc" / "Augsburg", "augsburg_hsi.mat", "augsburg_gt.mat")
    assert _find(DatasetContext(data_dir=tmp_path / "upper")).layout.name == "ouc"


def test_layout_order_is_the_preference(tmp_path: Path) -> None:
    _touch(tmp_path / "augsburg", "augsburg_hsi.mat", "augsburg_gt.mat", "data_HS_LR.mat", "TrainImage.mat",
           "TestImage.mat")
    assert _find(DatasetContext(data_dir=tmp_path)).layout.name == "hong"


def test_another_datasets_folder_is_not_searched(tmp_path: Path) -> None:
    _touch(tmp_path / "HS-SAR Berlin", "data_HS_LR.mat", "TrainImage.mat", "TestImage.mat")
    with pytest.raises(DatasetError):
        _find(DatasetContext(data_dir=tmp_path))


def test_cache_scenes_folder_is_never_taken_for_source_files(tmp_path: Path) -> None:
    _touch(tmp_path / "cache" / "scenes" / "augsburg" / "ouc-minmax", "augsburg_hsi.mat", "augsburg_gt.mat")
    with pytest.raises(DatasetError):
        _find(DatasetContext(cache_dir=tmp_path / "cache"))


def test_missing_dataset_message(tmp_path: Path) -> None:
    ctx = DatasetContext(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError) as err:
        _find(ctx, {"BENCH_DATA_DIR": str(tmp_path / "nowhere")})
    text = str(err.value)
    assert "dataset 'augsburg': no complete set of its files was found" in text
    assert "hong: data_HS_LR.mat, TrainImage.mat, TestImage.mat (optional: data_DSM.mat)" in text
    assert "ouc: augsburg_hsi.mat, augsburg_gt.mat" in text
    assert f"{tmp_path / 'data'} (--data-dir)" in text
    assert f"{tmp_path / 'nowhere'} (BENCH_DATA_DIR): does not exist" in text
    assert f"{tmp_path / 'cache'} (cache)" in text
    assert "'HS-SAR-DSM Augsburg'" in text
    assert "`bench datasets fetch augsburg`" in text and URL in text


def test_partial_set_is_reported_and_not_used(tmp_path: Path) -> None:
    _touch(tmp_path / "augsburg", "augsburg_hsi.mat")
    with pytest.raises(DatasetError) as err:
        _find(DatasetContext(data_dir=tmp_path))
    text = str(err.value)
    assert f"{tmp_path / 'augsburg'} (--data-dir): incomplete 'ouc' file set: has augsburg_hsi.mat but lacks " \
           "augsburg_gt.mat (not loaded: a partial dataset is never used)" in text


def test_unknown_layout_names_the_folder_and_its_files(tmp_path: Path) -> None:
    _touch(tmp_path / "Augsburg", "augsburg.tif", "labels.mat", "readme.md")
    with pytest.raises(DatasetError) as err:
        _find(DatasetContext(data_dir=tmp_path))
    text = str(err.value)
    assert f"{tmp_path / 'Augsburg'} (--data-dir): unknown layout: holds augsburg.tif, labels.mat, none of " \
           "the known file sets" in text


def test_unknown_layout_in_a_data_dir_pointing_at_the_files(tmp_path: Path) -> None:
    _touch(tmp_path, "my_hsi.mat", "my_gt.mat")
    with pytest.raises(DatasetError, match=r"unknown layout: holds my_gt\.mat, my_hsi\.mat"):
        _find(DatasetContext(data_dir=tmp_path))


def test_unpacked_archive_hint(tmp_path: Path) -> None:
    _touch(tmp_path / "augsburg", "augsburg-ouc.zip")
    with pytest.raises(DatasetError, match=r"unpack the archive\(s\) augsburg-ouc\.zip here"):
        _find(DatasetContext(data_dir=tmp_path))


def test_no_folder_at_all(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Searched no folder: no --data-dir, no BENCH_DATA_DIR"):
        _find(DatasetContext())


def test_search_roots_deduplicates(tmp_path: Path) -> None:
    roots = search_roots(DatasetContext(data_dir=tmp_path), env={"BENCH_DATA_DIR": str(tmp_path)})
    assert [r.origin for r in roots] == ["--data-dir"]


def test_survey_reports_each_file_found_or_missing_in_search_order(tmp_path: Path) -> None:
    from bench_core.data.locate import survey

    _touch(tmp_path / "a" / "HS-SAR-DSM Augsburg", "data_HS_LR.mat", "data_DSM.mat")
    _touch(tmp_path / "c" / "augsburg" / "nested", "data_HS_LR.mat", "augsburg_gt.mat")
    _touch(tmp_path / "c" / "scenes" / "augsburg", "TrainImage.mat")  # converted scenes: never searched
    ctx = DatasetContext(data_dir=tmp_path / "a", cache_dir=tmp_path / "c")
    result = survey("augsburg", LAYOUTS, ctx, aliases=("HS-SAR-DSM Augsburg",),
                    env={"BENCH_DATA_DIR": str(tmp_path / "gone")})
    assert [(r.origin, r.path) for r in result.roots] == [
        ("--data-dir", tmp_path / "a"), ("BENCH_DATA_DIR", tmp_path / "gone"), ("cache", tmp_path / "c"),
    ]
    assert result.found["hong"] == {  # the first folder in search order wins
        "data_HS_LR.mat": tmp_path / "a" / "HS-SAR-DSM Augsburg" / "data_HS_LR.mat",
        "data_DSM.mat": tmp_path / "a" / "HS-SAR-DSM Augsburg" / "data_DSM.mat",
    }
    assert result.found["ouc"] == {"augsburg_gt.mat": tmp_path / "c" / "augsburg" / "nested" / "augsburg_gt.mat"}
    assert tmp_path / "gone" not in result.folders and tmp_path / "c" / "augsburg" in result.folders
    with pytest.raises(DatasetError, match="no complete set"):  # what locate makes of the same folders
        _find(ctx)
