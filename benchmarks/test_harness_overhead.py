"""Harness overhead: the Trainer vs a bare hand-written PyTorch loop, side by side.

Both train `two-branch-cnn` (fast profile architecture) for the same number of optimizer
steps with the same batch size, optimizer and patches of the synthetic scene. The bare loop
indexes pre-extracted patch tensors; the Trainer gathers patches from the strided scene view
each step, as in a real run. Target: ratio (Trainer / bare) <= 1.05.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench_core import DatasetContext, load_plugins
from bench_core.sampling import PatchSampler
from bench_core.training import Trainer, TrainData
from benchmarks.conftest import paired_best_of

EPOCHS, STEPS, BATCH = 3, 40, 64


def _setup():
    host = load_plugins()
    spec = host.methods.get("two-branch-cnn")
    scene = host.datasets.get("synthetic").load(DatasetContext())
    overrides = {"train": {"epochs": EPOCHS, "steps_per_epoch": STEPS, "batch_size": BATCH,
                           "scheduler": "none", "optimizer": "adam", "grad_clip": None}}
    config = spec.resolve("fast", overrides)
    labels = np.asarray(scene.labels).ravel()
    train = np.flatnonzero(labels > 0)  # plenty of pixels: every batch is full
    inputs = scene.inputs_for(spec.modalities)
    info = scene.info(spec.modalities, patch_size=spec.effective_patch_size(config.train))
    data = TrainData(inputs=inputs, train_index=train, train_targets=labels[train] - 1,
                     val_index=train[:0], val_targets=train[:0], num_classes=scene.num_classes)
    return spec, config, info, data


def run_harness(spec, config, info, data) -> None:
    trainer = Trainer(device="cpu", seed=0)
    model = trainer.build(spec, config, info)
    trainer.fit(spec, model, config, data)


def run_bare(spec, config, info, data, patches, targets) -> None:
    torch.manual_seed(0)
    model = spec.build(config.model, info)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    gen = torch.Generator().manual_seed(0)
    n = targets.shape[0]
    for _ in range(EPOCHS):
        order = torch.randperm(n, generator=gen)
        for step in range(STEPS):
            idx = order[step * BATCH:(step + 1) * BATCH]
            batch = {k: v[idx] for k, v in patches.items()}
            loss = F.cross_entropy(model(batch), targets[idx], ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


@pytest.mark.benchmark(group="harness-overhead")
def test_trainer_overhead_vs_bare_loop(benchmark, record) -> None:
    spec, config, info, data = _setup()
    sampler = PatchSampler(data.inputs, info.patch_size)
    patches = sampler.patches(data.train_index)  # pre-extracted once for the bare loop
    targets = torch.as_tensor(data.train_targets)

    bare, harness = paired_best_of(
        lambda: run_bare(spec, config, info, data, patches, targets),
        lambda: run_harness(spec, config, info, data),
        repeats=7,
    )
    ratio = harness / bare
    benchmark.extra_info.update({"bare_s": bare, "harness_s": harness, "ratio": ratio})
    benchmark.pedantic(run_harness, args=(spec, config, info, data), rounds=3, iterations=1)
    record("harness_overhead", {
        "steps": EPOCHS * STEPS, "batch_size": BATCH, "patch_size": info.patch_size,
        "bare_loop_s": bare, "trainer_s": harness, "ratio_trainer_over_bare": ratio, "target": "<= 1.05",
    })
    print(f"\nharness overhead: trainer {harness:.3f} s vs bare {bare:.3f} s -> ratio {ratio:.3f}")
