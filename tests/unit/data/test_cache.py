"""The scene cache: memory-mapped reloads, invalidation by content, atomic writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bench_core.data.cache as cache_module
from bench_core import Scene
from bench_core.data import SceneCache, sha256_file
from tests.conftest import REPO


def _scene(seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, (9, 11))
    return Scene(
        name="tiny",
        modalities={"hsi": rng.random((5, 9, 11), dtype=np.float32), "sar": rng.random((2, 9, 11), dtype=np.float32)},
        labels=labels,
        class_names=("a", "b", "c"),
        official_train=np.where(labels == 1, 1, 0),
        official_test=np.where(labels > 1, labels, 0),
        palette=((1, 2, 3), (4, 5, 6), (7, 8, 9)),
        metadata={"normalisation": "minmax: test", "sha256": {"src.mat": "abc"}, "nested": {"t": (1, 2)}},
    )


@pytest.fixture
def source(tmp_path: Path) -> dict[str, Path]:
    path = tmp_path / "src.mat"
    path.write_bytes(b"source bytes v1")
    return {"src.mat": path}


def _store(folder: Path, scene: Scene, source: dict[str, Path], version: str = "1") -> SceneCache:
    cache = SceneCache(folder, version=version)
    cache.store(scene, source, {n: sha256_file(p) for n, p in source.items()})
    return cache


def test_roundtrip_is_memory_mapped_and_complete(tmp_path: Path, source: dict[str, Path]) -> None:
    scene = _scene()
    cache = _store(tmp_path / "c" / "tiny" / "x-minmax", scene, source)
    hit = cache.load(source)
    assert hit is not None
    got = hit.scene
    for name in ("hsi", "sar"):
        np.testing.assert_array_equal(got.modalities[name], scene.modalities[name])
        assert got.modalities[name].dtype == np.float32
    np.testing.assert_array_equal(got.labels, scene.labels)
    np.testing.assert_array_equal(got.official_train, scene.official_train)
    np.testing.assert_array_equal(got.official_test, scene.official_test)
    assert got.class_names == scene.class_names and got.palette == scene.palette
    assert got.metadata["nested"] == {"t": [1, 2]}
    assert hit.sha256 == {"src.mat": sha256_file(source["src.mat"])}
    files = sorted(p.name for p in cache.folder.iterdir())
    assert files == ["labels.npy", "manifest.json", "modality-hsi.npy", "modality-sar.npy",
                     "official_test.npy", "official_train.npy"]
    assert isinstance(np.load(cache.folder / "modality-hsi.npy", mmap_mode="r"), np.memmap)


def test_unchanged_sources_are_not_hashed_again(tmp_path: Path, source: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _store(tmp_path / "c", _scene(), source)

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"hashed {path} although size and mtime are unchanged")

    monkeypatch.setattr(cache_module, "sha256_file", no_hashing)
    assert cache.load(source) is not None


def test_touched_but_identical_source_keeps_the_cache(tmp_path: Path, source: dict[str, Path]) -> None:
    cache = _store(tmp_path / "c", _scene(), source)
    st = source["src.mat"].stat()
    os.utime(source["src.mat"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache.load(source) is not None
    manifest = json.loads((cache.folder / "manifest.json").read_text())
    assert manifest["sources"][0]["mtime_ns"] == st.st_mtime_ns + 10**9  # refreshed: no re-hash next time


def test_changed_source_invalidates(tmp_path: Path, source: dict[str, Path]) -> None:
    cache = _store(tmp_path / "c", _scene(), source)
    st = source["src.mat"].stat()
    source["src.mat"].write_bytes(b"source bytes v2")  # same size, new content
    os.utime(source["src.mat"], ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime...
    assert cache.load(source) is not None  # ...size+mtime say unchanged: the documented fast path
    os.utime(source["src.mat"], ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert cache.load(source) is None  # mtime moved: re-hashed, content differs -> stale


def test_other_sources_or_loader_version_invalidate(tmp_path: Path, source: dict[str, Path]) -> None:
    folder = tmp_path / "c"
    _store(folder, _scene(), source, version="1")
    assert SceneCache(folder, version="2").load(source) is None
    other = tmp_path / "other.mat"
    other.write_bytes(b"x")
    assert SceneCache(folder, version="1").load({**source, "other.mat": other}) is None


def test_damaged_cache_array_is_ignored(tmp_path: Path, source: dict[str, Path]) -> None:
    cache = _store(tmp_path / "c", _scene(), source)
    (cache.folder / "modality-hsi.npy").write_bytes(b"\x93NUMPY garbage")
    assert cache.load(source) is None
    cache.store(_scene(), source, {"src.mat": sha256_file(source["src.mat"])})  # rebuild replaces it
    assert cache.load(source) is not None


def test_exception_mid_write_leaves_nothing_visible(tmp_path: Path, source: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c" / "tiny" / "x-minmax"
    calls: list[Path] = []
    real_write = cache_module._write_array

    def failing_write(path: Path, array: np.ndarray) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        real_write(path, array)

    monkeypatch.setattr(cache_module, "_write_array", failing_write)
    cache = SceneCache(folder, version="1")
    with pytest.raises(OSError, match="disk full"):
        cache.store(_scene(), source, {"src.mat": sha256_file(source["src.mat"])})
    assert len(calls) == 2
    assert not folder.exists()
    assert list(folder.parent.iterdir()) == []  # the temporary folder is gone too
    assert cache.load(source) is None


def test_exception_while_replacing_keeps_the_old_complete_cache(tmp_path: Path, source: dict[str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    old = _scene(0)
    _store(folder, old, source)
    monkeypatch.setattr(cache_module, "_write_json", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError, match="boom"):
        SceneCache(folder, "1").store(_scene(1), source, {"src.mat": sha256_file(source["src.mat"])})
    monkeypatch.undo()
    hit = SceneCache(folder, "1").load(source)
    assert hit is not None
    np.testing.assert_array_equal(hit.scene.modalities["hsi"], old.modalities["hsi"])


_KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
import numpy as np
import bench_core.data.cache as cache_module
from tests.unit.data.test_cache import _scene

real_write = cache_module._write_array
count = []
def write_then_die(path, array):
    real_write(path, array)
    count.append(path)
    if len(count) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: as a crash or kill -9
cache_module._write_array = write_then_die
folder, src = Path(sys.argv[1]), Path(sys.argv[2])
cache_module.SceneCache(folder, "1").store(_scene(), {"src.mat": src}, {"src.mat": "0" * 64})
"""


def test_process_killed_mid_write_leaves_no_partial_cache(tmp_path: Path, source: dict[str, Path]) -> None:
    folder = tmp_path / "c" / "tiny" / "x-minmax"
    result = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, str(folder), str(source["src.mat"])],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == -9, result.stderr
    leftovers = list(folder.parent.iterdir())
    assert not folder.exists()
    assert [p.name.startswith(".tmp-x-minmax-") for p in leftovers] == [True]  # only the dead temp folder
    cache = SceneCache(folder, "1")
    assert cache.load(source) is None
    cache.store(_scene(), source, {"src.mat": sha256_file(source["src.mat"])})
    assert cache.load(source) is not None
    assert sorted(p.name for p in folder.parent.iterdir()) == ["x-minmax"]  # the dead writer's temp is cleaned
