"""Patch sampling from a large derived input (BDGF's 8,192-channel diffusion features).

Candidates, each in its own process so that its peak RSS is its own:

* ``memmap_fp16`` — the stage-cache layout: a float16 (H, W, C) ``.npy`` opened memory-mapped
  and passed as its (C, H, W) view; patches gathered from the source by index arithmetic.
* ``padded_fp32`` — the previous way (and still the way for small inputs): the map in memory
  as float32 (C, H, W) plus a padded channel-last float32 copy to gather from.

Same map size class (8,192 x 96 x 96), same 64-patch batches of 9 x 9. Reported: patches/s,
the ratio, and peak RSS above the process's baseline after imports.
"""

from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import pytest

from benchmarks.conftest import RESULTS  # noqa: F401 - results folder used by `record`

CHANNELS, SIDE, PATCH, BATCH, BATCHES = 8192, 96, 9, 64, 20


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _candidate(kind: str, folder: str, out: multiprocessing.Queue) -> None:
    import numpy as np
    import torch

    import bench_core.sampling as sampling

    torch.set_num_threads(1)
    baseline = _peak_rss_bytes()
    path = Path(folder) / "dif.npy"
    if kind == "memmap_fp16":
        inputs = {"dif": np.moveaxis(np.load(path, mmap_mode="r"), -1, 0)}
    else:
        sampling.PAD_COPY_BYTES = 2**40  # force the padded copy, as before large inputs were supported
        inputs = {"dif": np.ascontiguousarray(np.moveaxis(np.load(path), -1, 0), dtype=np.float32)}
    sampler = sampling.PatchSampler(inputs, PATCH)
    assert ("dif" in sampler.sources) == (kind == "memmap_fp16")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, SIDE * SIDE, BATCH) for _ in range(BATCHES)]
    sampler.patches(batches[0])  # warm-up
    start = time.perf_counter()
    for index in batches:
        sampler.patches(index)
    seconds = time.perf_counter() - start
    out.put({"patches_per_s": BATCH * BATCHES / seconds, "peak_rss_above_baseline_bytes": _peak_rss_bytes() - baseline})


def _measure(kind: str, folder: str) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = context.Queue()
    process = context.Process(target=_candidate, args=(kind, folder, queue))
    process.start()
    result = queue.get(timeout=600)
    process.join()
    return result


@pytest.mark.benchmark(group="large-inputs")
def test_memmap_fp16_vs_padded_fp32(benchmark, record) -> None:
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        values = np.lib.format.open_memmap(Path(folder) / "dif.npy", mode="w+", dtype=np.float16,
                                           shape=(SIDE, SIDE, CHANNELS))
        values[:] = np.random.default_rng(0).standard_normal((SIDE, SIDE, CHANNELS), dtype=np.float32)
        values.flush()
        del values
        memmap = _measure("memmap_fp16", folder)
        padded = _measure("padded_fp32", folder)
        benchmark.pedantic(lambda: None, rounds=1)
    ratio = memmap["patches_per_s"] / padded["patches_per_s"]
    payload = {
        "map": f"{CHANNELS} x {SIDE} x {SIDE}", "patch": PATCH, "batch": BATCH, "batches": BATCHES,
        "memmap_fp16": memmap, "padded_fp32": padded,
        "throughput_ratio_memmap_over_padded": ratio,
        "rss_ratio_memmap_over_padded": memmap["peak_rss_above_baseline_bytes"] / padded["peak_rss_above_baseline_bytes"],
    }
    record("large_input_sampling_memmap_vs_padded", payload)
    print(f"\nmemmap fp16 {memmap['patches_per_s']:,.0f} patches/s, peak +{memmap['peak_rss_above_baseline_bytes'] / 2**20:,.0f} MiB; "
          f"padded fp32 {padded['patches_per_s']:,.0f} patches/s, peak +{padded['peak_rss_above_baseline_bytes'] / 2**20:,.0f} MiB")
