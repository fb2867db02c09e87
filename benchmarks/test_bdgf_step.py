"""BDGF on the CPU: one DDPM tile forward and one training-network step at the paper's shapes.

* DDPM: SpectralDiff's 3D U-Net at the paper widths (4,299,633 parameters), one (1, 1, 256, 64, 64)
  light-split tile at timestep 100, eval mode, no gradients: what feature extraction costs per
  tile (Augsburg has 48 tiles). A training step (batch 20) costs about three forwards per tile.
* Training network: the ``bdgf`` paper profile on Augsburg shapes (HSI 180, SAR 4, 7 classes,
  F = 8,192 diffusion channels, 9 x 9 patches), batch 64: zero_grad + forward + the mutual-learning
  loss + backward + Adam step, from cached features (the ``dif`` input).

Best of two after one warm-up; torch threads as the environment sets them, recorded with the load
average (a shared machine skews every timing).
"""

from __future__ import annotations

import os

import pytest
import torch

from bench_core import SceneInfo, TrainConfig
from bench_core.ops.ddpm3d import SimpleUnet3D
from bench_core.training import make_optimizer
from benchmarks.conftest import best_of

BATCH = 64


@pytest.mark.benchmark(group="bdgf")
def test_ddpm_tile_forward_and_network_step(benchmark, record) -> None:
    import bench_plugins.methods.bdgf as bdgf

    torch.manual_seed(0)
    ddpm = SimpleUnet3D().eval()
    tile = torch.randn(1, 1, 256, 64, 64)
    t = torch.full((1,), 100)

    def ddpm_forward() -> None:
        with torch.inference_mode():
            ddpm.decoder_features(tile, t, layers=(0,))

    ddpm_s = best_of(ddpm_forward, repeats=2)

    spec = bdgf.method_spec()
    config = spec.resolve("paper")
    info = SceneInfo(dataset="augsburg-shapes", bands={"hsi": 180, "x": 4}, num_classes=7,
                     class_names=tuple(f"c{k}" for k in range(7)), image_shape=(332, 485), patch_size=9,
                     x_modalities=("sar",))
    model = bdgf.build(config.model, info).train()
    optimizer = make_optimizer(model, TrainConfig.from_mapping(spec.profiles["paper"]["train"]), "bdgf")
    gen = torch.Generator().manual_seed(0)
    inputs = {"hsi": torch.rand(BATCH, 180, 9, 9, generator=gen), "x": torch.rand(BATCH, 4, 9, 9, generator=gen),
              "dif": torch.randn(BATCH, model.dif_channels, 9, 9, generator=gen)}
    targets = torch.randint(0, 7, (BATCH,), generator=gen)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(model(inputs), targets).backward()
        optimizer.step()

    step_s = best_of(step, repeats=2)
    benchmark.pedantic(lambda: None, rounds=1)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    record("bdgf_cpu_ddpm_tile_and_net_step", {
        "ddpm_tile": [1, 1, 256, 64, 64], "ddpm_params": sum(p.numel() for p in ddpm.parameters()),
        "ddpm_tile_forward_s": ddpm_s, "augsburg_tiles": 48, "feature_extraction_estimate_s": 48 * ddpm_s,
        "net_params_trainable": trainable, "net_batch": BATCH, "net_step_s": step_s,
        "load_average_1min": os.getloadavg()[0],
    })
    print(f"\nDDPM tile forward {ddpm_s:.2f} s; training-net step (batch {BATCH}) {step_s:.2f} s")
