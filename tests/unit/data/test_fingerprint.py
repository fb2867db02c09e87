"""The data fingerprint of a real dataset: the files that would be loaded, not the spec's checksums.

The cell key's data part (``bench_core.runner.dataset_fingerprint``) is the digest of
:meth:`RealDataset.fingerprint`: the sha256 of the files found for the given folders, the
layout, the loader version and the normalisation, never the folder itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bench_core import DatasetContext, DatasetError, DatasetSpec
from bench_core.data import SceneCache, sha256_file
from bench_core.data import cache as cache_module
from bench_core.pipeline import check_declared_shape, load_scene
from bench_core.plugins import load_plugins
from bench_core.runner import MISSING_DATA, dataset_fingerprint
from tests.data import fakes
from tests.data.trento import make_fake as trento_fake
from tests.unit.data.conftest import NO_VERIFY, real_loader

Maker = Callable[..., tuple[Path, dict[str, str]]]


def test_same_files_anywhere_give_one_digest_other_files_another(make_dataset: Maker, tmp_path: Path) -> None:
    loader = real_loader("trento")
    first, sha = make_dataset("trento", "mirror", seed=0)
    copy = tmp_path / "elsewhere"
    shutil.copytree(first, copy)
    other, _ = make_dataset("trento", "mirror", seed=1)
    a = loader.fingerprint(DatasetContext(data_dir=first))
    assert dict(a.sha256) == sha and a.layout == "mirror" and a.normalisation == "minmax"
    assert a.folder == first / "trento"
    assert loader.fingerprint(DatasetContext(data_dir=copy)).digest == a.digest  # path-independent
    assert loader.fingerprint(DatasetContext(data_dir=other)).digest != a.digest
    assert loader.fingerprint(DatasetContext(data_dir=first), normalisation="zscore").digest != a.digest


def test_zero_byte_files_are_another_fingerprint_and_missing_files_raise(make_dataset: Maker, tmp_path: Path) -> None:
    loader = real_loader("trento")
    data_dir, _ = make_dataset("trento", "mirror")
    empty_files = tmp_path / "zero" / "trento"
    empty_files.mkdir(parents=True)
    for name in ("Italy_hsi.mat", "Italy_lidar.mat", "allgrd.mat"):
        (empty_files / name).write_bytes(b"")
    zero = loader.fingerprint(DatasetContext(data_dir=tmp_path / "zero"))
    assert zero.digest != loader.fingerprint(DatasetContext(data_dir=data_dir)).digest
    assert zero.sha256["allgrd.mat"] == fakes.sha256(empty_files / "allgrd.mat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="dataset 'trento': no complete set of its files was found"):
        loader.fingerprint(DatasetContext(data_dir=tmp_path / "empty"))


def test_fingerprint_reads_the_cache_record_and_matches_the_loaded_scene(
    make_dataset: Maker, context_for: Callable[[Path], DatasetContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = real_loader("trento")
    data_dir, sha = make_dataset("trento", "mirror")
    context = context_for(data_dir)
    scene = loader.load(context, env=NO_VERIFY)
    used = loader.fingerprint_of(scene)
    assert used is not None and dict(used.sha256) == sha

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed although the cache verified it")

    monkeypatch.setattr(cache_module, "sha256_file", no_hashing)
    monkeypatch.setattr(cache_module, "_HASHED", {})
    assert loader.fingerprint(context).digest == used.digest


def test_a_cache_made_from_files_elsewhere_is_checked_again(tmp_path: Path) -> None:
    """Size and mtime alone do not vouch for a file at another path: it is hashed and compared."""
    import numpy as np

    from bench_core.scene import Scene

    src = tmp_path / "a" / "src.mat"
    src.parent.mkdir()
    src.write_bytes(b"one")
    scene = Scene(name="toy", modalities={"hsi": np.zeros((1, 2, 2), np.float32)},
                  labels=np.ones((2, 2), np.int64), class_names=("c",))
    cache = SceneCache(tmp_path / "cache", "1")
    cache.store(scene, {"src.mat": src}, {"src.mat": sha256_file(src)})
    moved = tmp_path / "b" / "src.mat"
    moved.parent.mkdir()
    shutil.copy2(src, moved)  # same size and mtime, another path
    assert cache.recorded_sha256({"src.mat": moved}) == {}
    assert cache.recorded_sha256({"src.mat": src}) == {"src.mat": sha256_file(src)}
    moved.write_bytes(b"two")  # same size, other content
    import os

    st = src.stat()
    os.utime(moved, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.load({"src.mat": moved}) is None  # stale: not the file the cache was made from
    assert cache.load({"src.mat": src}) is not None


def test_runner_fingerprint_follows_the_data_dir_and_keeps_synthetic_keyed_by_version(
    make_dataset: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home"))
    host = load_plugins(only=["trento", "synthetic"])
    spec = host.datasets.get("trento")
    a, _ = make_dataset("trento", "mirror", seed=0)
    b, _ = make_dataset("trento", "mirror", seed=1)
    (tmp_path / "empty").mkdir()
    fa, fb = dataset_fingerprint(host, spec, a), dataset_fingerprint(host, spec, b)
    assert fa != fb and MISSING_DATA not in (fa, fb)
    assert fa == real_loader("trento").fingerprint(DatasetContext(data_dir=a)).digest
    assert dataset_fingerprint(host, spec, tmp_path / "empty") == MISSING_DATA
    synthetic = host.datasets.get("synthetic")
    info = host.plugins[host.datasets.plugin_of("synthetic")]
    import hashlib

    expected = hashlib.sha256(f"{info.distribution}=={info.version}".encode()).hexdigest()[:16]
    assert dataset_fingerprint(host, synthetic, a) == dataset_fingerprint(host, synthetic) == expected


def test_a_scene_of_another_shape_than_declared_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BENCH_VERIFY_CHECKSUMS", "0")
    trento_fake.make_fake(tmp_path / "data" / "trento", seed=0, layout="mirror", shape=(48, 24))
    spec = load_plugins(only=["trento"]).datasets.get("trento")
    with pytest.raises(DatasetError) as info:
        load_scene(spec, tmp_path / "data")
    text = str(info.value)
    assert "dataset 'trento'" in text and "is 48 x 24 pixels" in text and "expected 600 x 166" in text
    assert str(tmp_path / "data" / "trento") in text
    undeclared = DatasetSpec(name="free", load=spec.load, modalities=spec.modalities, class_names=spec.class_names)
    check_declared_shape(undeclared, spec.load(DatasetContext(data_dir=tmp_path / "data")))  # no shape: accepted
