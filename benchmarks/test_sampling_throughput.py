"""Patch sampling throughput vs the model's forward throughput, side by side.

Sampling a batch of patches must be far cheaper than using it. Target: sampling >= 10x
the forward throughput of `two-branch-cnn` (samples/s), on the synthetic scene and on the
Augsburg-shaped preset.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench_core import DatasetContext, load_plugins
from bench_core.sampling import PatchSampler
from benchmarks.conftest import paired_best_of

BATCH = 256


@pytest.mark.benchmark(group="sampling")
@pytest.mark.parametrize("dataset", ["synthetic", "synthetic-augsburg"])
def test_sampling_vs_forward(benchmark, record, dataset: str) -> None:
    host = load_plugins()
    spec = host.methods.get("two-branch-cnn")
    config = spec.resolve("paper")
    scene = host.datasets.get(dataset).load(DatasetContext())
    patch = spec.effective_patch_size(config.train)
    inputs = scene.inputs_for(spec.modalities)
    info = scene.info(spec.modalities, patch_size=patch)
    sampler = PatchSampler(inputs, patch)
    rng = np.random.default_rng(0)
    index = rng.choice(np.flatnonzero(np.asarray(scene.labels).ravel() > 0), BATCH, replace=False)
    torch.manual_seed(0)
    model = spec.build(config.model, info).eval()
    batch = sampler.patches(index)

    def forward() -> None:
        with torch.inference_mode():
            model(batch)

    sample_s, forward_s = paired_best_of(lambda: sampler.patches(index), forward, repeats=10)
    ratio = forward_s / sample_s  # = sampling throughput / forward throughput
    benchmark.extra_info.update({"sampling_s": sample_s, "forward_s": forward_s, "ratio": ratio})
    benchmark(sampler.patches, index)
    record(f"sampling_vs_forward_{dataset}", {
        "batch": BATCH, "patch_size": patch, "bands": info.bands,
        "sampling_samples_per_s": BATCH / sample_s, "forward_samples_per_s": BATCH / forward_s,
        "ratio_sampling_over_forward": ratio, "target": ">= 10",
    })
    print(f"\n{dataset}: sampling {BATCH / sample_s:,.0f}/s vs forward {BATCH / forward_s:,.0f}/s -> {ratio:.1f}x")
