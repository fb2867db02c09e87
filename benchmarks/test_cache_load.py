"""Loading a cached Augsburg-sized scene (332 x 485, HSI 180 + SAR 4). Target: < 0.5 s.

Fake Augsburg files of the real size (OUC layout) are converted once (the first load:
read, check, normalise, write the cache); the benchmark then times the loads that follow,
which stat the sources and memory-map the cached arrays.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from bench_core import DatasetContext
from bench_plugins.datasets.hong2021 import make_loader
from benchmarks.conftest import best_of
from tests.data.augsburg.make_fake import make_fake

ENV = {"BENCH_VERIFY_CHECKSUMS": "0"}  # fake files: not the published bytes


@pytest.mark.benchmark(group="dataset-cache")
def test_cached_augsburg_load(benchmark, record, tmp_path: Path) -> None:
    make_fake(tmp_path / "data" / "augsburg", layout="ouc", shape=(332, 485))
    context = DatasetContext(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    loader = make_loader("augsburg")

    start = time.perf_counter()
    first = loader.load(context, env=ENV)
    first_s = time.perf_counter() - start
    assert first.shape == (332, 485) and first.bands == {"hsi": 180, "sar": 4}

    def cached() -> None:
        scene = loader.load(context, env=ENV)
        float(np.asarray(scene.modalities["hsi"])[0, 0, 0])  # touch the mapped data

    cached_s = best_of(cached, repeats=10)
    benchmark.extra_info.update({"first_load_s": first_s, "cached_load_s": cached_s})
    benchmark.pedantic(cached, rounds=5, iterations=1)
    record("cache_load", {
        "scene": "fake Augsburg, OUC layout, 332 x 485, hsi 180 (uint16) + sar 4 (float64)",
        "first_load_s": first_s, "cached_load_s": cached_s, "target": "cached < 0.5 s",
    })
    print(f"\naugsburg-sized scene: first load {first_s:.2f} s, cached load {cached_s * 1000:.1f} ms")
