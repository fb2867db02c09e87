"""M3amba paper-profile training step on the CPU: time and peak memory, with and without
per-block activation checkpointing (``model.checkpoint_blocks``).

Shape: the paper's network (dim 384, d_state 16, ssm_ratio 2, CLIP as the ViT-B/32-shaped
``clip-random`` stand-in, which has the real encoder's cost), batch 8, 32x32 crops,
Augsburg's bands (HSI 180 + SAR 4, 7 classes). One step = forward, the M3amba loss and
backward. A full-depth (9) step takes minutes on 2 cores and, without checkpointing, about
20 GiB, so each variant is measured at depth 1 and 2 (each depth step adds 3 blocks: two
cross and one fusion) and the cost is extrapolated linearly to depth 9 (CLIP and the heads
are the intercept). Each measurement runs in a fresh process that resets its peak-RSS mark
(``/proc/self/clear_refs``) after building the model and the batch, then reads ``VmHWM``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

_STEP = r"""
import json, sys, time, torch
from bench_core import SceneInfo
from bench_plugins.methods import m3amba

def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])

depth, checkpoint = int(sys.argv[1]), sys.argv[2] == "1"
info = SceneInfo(dataset="augsburg-shape", bands={"hsi": 180, "x": 4}, num_classes=7,
                 class_names=tuple("abcdefg"), image_shape=(332, 485), patch_size=32)
torch.manual_seed(0)
model = m3amba.build({"guidance": "clip-random", "depth": depth, "checkpoint_blocks": checkpoint}, info).train()
gen = torch.Generator().manual_seed(0)
batch = {"hsi": torch.rand(8, 180, 32, 32, generator=gen), "x": torch.rand(8, 4, 32, 32, generator=gen)}
targets = torch.randint(-1, 7, (8, 32, 32), generator=gen)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status_kib("VmRSS")
start = time.perf_counter()
model.loss(model(batch), targets).backward()
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_growth_bytes": (status_kib("VmHWM") - before) * 1024}))
"""

DEPTHS = (1, 2)
PAPER_DEPTH = 9


def _step(depth: int, checkpoint: bool) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _STEP, str(depth), "1" if checkpoint else "0"],
        capture_output=True, text=True, check=True, env=dict(os.environ),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _extrapolate(at: dict[int, float]) -> float:
    slope = at[DEPTHS[1]] - at[DEPTHS[0]]
    return at[DEPTHS[0]] + slope * (PAPER_DEPTH - DEPTHS[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.benchmark(group="m3amba")
def test_paper_profile_step_with_and_without_checkpointing(benchmark, record) -> None:
    results: dict[str, dict] = {}
    for checkpoint in (False, True):
        measured = {d: _step(d, checkpoint) for d in DEPTHS}
        name = "checkpointing" if checkpoint else "no_checkpointing"
        results[name] = {
            "measured": {str(d): m for d, m in measured.items()},
            "depth9_seconds_extrapolated": _extrapolate({d: m["seconds"] for d, m in measured.items()}),
            "depth9_peak_growth_gib_extrapolated": _extrapolate(
                {d: m["peak_growth_bytes"] for d, m in measured.items()}
            ) / 2**30,
        }
    benchmark.extra_info.update(results)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    record("m3amba_paper_step_cpu", {
        "shape": "batch 8, crop 32, HSI 180 + SAR 4, 7 classes (Augsburg), dim 384, ViT-B/32-shaped stand-in",
        "torch_threads": torch.get_num_threads(), **results,
    })
