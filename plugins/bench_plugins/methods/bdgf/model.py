"""BDGF's module (the frozen DDPM and the training network) and its "pretrain" stage; imports torch.

Imported by the package's ``build`` and ``pretrain``, never at registration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from bench_core.ops import (
    LinearBetaSchedule,
    SimpleUnet3D,
    extract_features,
    feature_channels,
)
from bench_plugins.methods.bdgf import STAGE_VERSION, BDGFOptions
from bench_plugins.methods.bdgf.diffusion import (
    band_ranges,
    build_volume,
    build_volume_batch,
    pretrain_ddpm,
    volume_depth,
)
from bench_plugins.methods.bdgf.network import BDGFNet

if TYPE_CHECKING:
    from bench_core import StageContext


# --------------------------------------------------------------------------- the module


class BDGF(nn.Module):
    """The frozen DDPM (trained by the stage) and the training network.

    ``forward({"hsi", "x"[, "dif"]})`` returns the network's mapping (``"logits"`` = the fused
    head). The DDPM is always in eval mode outside the stage and its parameters do not train
    with the network (``requires_grad=False``); the state dict holds both.
    """

    def __init__(self, options: BDGFOptions, hsi_bands: int, x_bands: int, num_classes: int, patch: int,
                 x_noise: str) -> None:
        super().__init__()
        self.options = options
        self.hsi_bands, self.x_bands = hsi_bands, x_bands
        self.depth = volume_depth(options.ddpm_depth, hsi_bands + x_bands)
        self.dif_channels = feature_channels(options.ddpm_channels, self.depth, options.dif_layer)
        self.x_noise = x_noise
        self.schedule = LinearBetaSchedule(options.ddpm_T, *options.ddpm_beta)
        self.ddpm = SimpleUnet3D(options.ddpm_channels, options.ddpm_time_dim)
        self.ddpm.requires_grad_(False)
        self.net = BDGFNet(hsi_bands, x_bands, self.dif_channels, num_classes, patch, options.net_options())
        # Per-band ranges of the scene for the volume's normalisation (set by the stage).
        self.register_buffer("hsi_lo", torch.zeros(hsi_bands))
        self.register_buffer("hsi_hi", torch.ones(hsi_bands))
        self.register_buffer("x_lo", torch.zeros(x_bands))
        self.register_buffer("x_hi", torch.ones(x_bands))
        self.feature_seed = 0
        self.ddpm_state = "untrained"  # -> "trained" | "reused" once the stage ran
        self.ddpm_steps = 0
        self.dif_cache = "none"  # -> "hit" | "miss"
        self._temperatures: list[float] = []

    def train(self, mode: bool = True) -> BDGF:
        super().train(mode)
        self.ddpm.eval()  # batch-norm statistics of the DDPM are frozen outside the stage
        return self

    @torch.no_grad()
    def features_on_the_fly(self, hsi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, F, p, p) diffusion features of patches, each patch taken as one light-split tile.

        Same steps as the stage's extraction (volume, noise to ``dif_timestep`` with a field
        drawn from ``feature_seed``, one DDPM forward, decoder layer ``dif_layer`` flattened
        channel x depth), so for a scene that is one tile it gives the cached map exactly.
        Inside a larger scene the DDPM's receptive field (13 pixels at layer 0) reaches past a
        9 x 9 patch, so the two paths differ there: use the cache (``dif_source = "cache"``).
        """
        volume = build_volume_batch(hsi, x, self.depth, (self.hsi_lo, self.hsi_hi), (self.x_lo, self.x_hi))
        generator = torch.Generator().manual_seed(self.feature_seed)
        noise = torch.randn(volume.shape, generator=generator).to(volume)
        t = torch.full((volume.shape[0],), self.options.dif_timestep, device=volume.device, dtype=torch.long)
        noisy = self.schedule.q_sample(volume, t, noise)
        features = self.ddpm.decoder_features(noisy, t, layers=(self.options.dif_layer,))[0]
        return features.flatten(1, 2)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        hsi, x = inputs["hsi"], inputs["x"]
        dif = inputs.get("dif")
        if dif is None or self.options.dif_source == "on-the-fly":
            dif = self.features_on_the_fly(hsi, x)
        return self.net(hsi, x, dif.to(hsi.dtype))

    def loss(self, output: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        value = self.net.loss(output, targets)
        if self.training and self.net.last_temperature is not None:
            self._temperatures.append(float(self.net.last_temperature))
        return value

    def epoch_metrics(self) -> dict[str, float]:
        """Mean mutual-learning temperature over the epoch's steps (a collapse towards 0 shows here)."""
        if not self._temperatures:
            return {}
        mean = float(np.mean(self._temperatures))
        self._temperatures.clear()
        return {"temperature_mean": mean}

    def bench_tags(self) -> dict[str, str]:
        """Run tags (``bench.method.<key>``): where the features came from and how the DDPM was made."""
        tags = {
            "ddpm": self.ddpm_state,
            "ddpm_steps": str(self.ddpm_steps),
            "ddpm_epochs": str(self.options.ddpm_epochs),
            "dif_cache": self.dif_cache,
            "dif_source": self.options.dif_source,
            "mask": self.options.mask,
            "x_noise": self.x_noise,
            "temperature": self.options.temperature,
        }
        return tags


# --------------------------------------------------------------------------- the stage


def _seeds(generator: torch.Generator) -> tuple[int, int]:
    """Independent seeds for DDPM training and feature noise, drawn whether or not the cache hits."""
    drawn = torch.randint(0, 2**62, (2,), generator=generator)
    return int(drawn[0]), int(drawn[1])


def pretrain_stage(context: StageContext) -> None:
    """Stage "pretrain" (:func:`bench_plugins.methods.bdgf.pretrain`): train (or reuse) the DDPM,
    extract (or reuse) ``dif``, add it as a derived input.

    Reads only ``context.data.inputs`` (never training pixels or labels), so the cache key is
    the DDPM settings, the stage seed and the fingerprint of the inputs.
    """
    model: BDGF = context.model
    options = model.options
    inputs = context.data.inputs
    hsi, x = np.asarray(inputs["hsi"]), np.asarray(inputs["x"])
    hsi_range, x_range = band_ranges(hsi), band_ranges(x)
    with torch.no_grad():
        for name, value in zip(("hsi_lo", "hsi_hi", "x_lo", "x_hi"), (*hsi_range, *x_range), strict=True):
            getattr(model, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))
    volume = build_volume(hsi, x, model.depth, hsi_range, x_range)
    ddpm_seed, feature_seed = _seeds(context.generator)
    model.feature_seed = feature_seed
    parts = {"version": STAGE_VERSION, **options.ddpm_settings(), "x_noise": model.x_noise, "seed": context.seed}
    cache = context.cache

    entry = cache.entry("ddpm", parts) if cache is not None else None
    found = entry.open() if entry is not None else None
    if found is not None:
        model.ddpm.load_state_dict(torch.load(found / "ddpm.pt", map_location=context.device, weights_only=True))
        model.ddpm_state, model.ddpm_steps = "reused", json.loads((found / "report.json").read_text())["steps"]
    else:
        model.ddpm.requires_grad_(True)
        try:
            report = pretrain_ddpm(
                model.ddpm, volume, epochs=options.ddpm_epochs, batch=options.ddpm_batch, lr=options.ddpm_lr,
                tile=options.ddpm_tile, schedule=model.schedule, looks=options.speckle_looks, mask=options.mask,
                sar_target=options.sar_target, generator=torch.Generator().manual_seed(ddpm_seed),
                device=context.device, x_speckle=model.x_noise,
            )
        finally:
            model.ddpm.requires_grad_(False)
        model.ddpm_state, model.ddpm_steps = "trained", report.steps
        if entry is not None:
            with entry.write() as folder:
                torch.save(model.ddpm.state_dict(), folder / "ddpm.pt")
                (folder / "report.json").write_text(json.dumps({"steps": report.steps, "losses": report.losses}))
    model.ddpm.eval()

    dtype = np.dtype(options.dif_dtype)
    shape = (volume.cube.shape[1], volume.cube.shape[2], model.dif_channels)  # channel-last: a pixel is one run

    def extract(out: np.ndarray) -> None:
        extract_features(
            model.ddpm, volume.cube, options.dif_timestep, schedule=model.schedule, layer=options.dif_layer,
            tile=options.ddpm_tile, batch=options.ddpm_batch, generator=torch.Generator().manual_seed(feature_seed),
            out=np.moveaxis(out, -1, 0),
        )

    features_entry = None
    if cache is not None:
        features_entry = cache.entry("features", {**parts, "dif_timestep": options.dif_timestep,
                                                  "dif_layer": options.dif_layer, "dif_dtype": options.dif_dtype})
    found = features_entry.open() if features_entry is not None else None
    if features_entry is None:
        features = np.empty(shape, dtype=dtype)
        extract(features)
        model.dif_cache = "none"
    else:
        if found is None:
            with features_entry.write() as folder:
                mapped = np.lib.format.open_memmap(folder / "dif.npy", mode="w+", dtype=dtype, shape=shape)
                extract(mapped)
                mapped.flush()
                del mapped
        features = np.load(features_entry.path / "dif.npy", mmap_mode="r")
        model.dif_cache = "miss" if found is None else "hit"
    context.add_input("dif", np.moveaxis(features, -1, 0))
