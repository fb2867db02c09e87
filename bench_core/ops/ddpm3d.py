"""SpectralDiff's 3D U-Net DDPM (the diffusion model of BDGF): network, schedule, tiling, features.

BDGF (Liu et al.) pretrains a DDPM on the merged ``[x ; hsi]`` cube and feeds its decoder
activations to the classifier. Its code is not published, but its 4.30 M parameter DDPM is
exactly SpectralDiff's ``SimpleUnet`` (chenning0115/spectraldiff_diffusion), which this module
rebuilds from the written specification (seed-methods.md 2.4), so that the parameter count
(4,299,633 at the paper widths) and the FLOP evidence of the paper can be checked.

Pieces:

* :class:`SimpleUnet3D` ``(channels=(16, 32, 64, 128), time_dim=32)``: the volume is one
  channel over (S, H, W), S the spectral depth. Time goes through a sinusoidal embedding,
  ``Linear(time_dim, time_dim)`` and ReLU; ``conv0`` lifts 1 -> c0 channels; three down
  blocks each halve S only (kernel (4,5,5), stride (2,1,1), pad (1,2,2); H, W kept); three up
  blocks read ``cat(x, skip)`` and double S with the transposed convolution of the same
  geometry; a 1x1x1 convolution predicts the noise. S must be a multiple of 8 (three halvings
  that the transposed convolutions undo exactly); :func:`pad_bands` pads a cube to that.
* Decoder features: the three ``cat(x, skip)`` tensors before the up blocks, shapes
  (B, 2*c3, S/8, H, W), (B, 2*c2, S/4, H, W), (B, 2*c1, S/2, H, W) — (256, 128, 64 channels at
  paper widths). Flattened channel x depth each is ``2*c0*S`` values per pixel when the widths
  double per level (32*S for the paper U-Net: 8,192 at S = 256); :func:`feature_channels`
  gives the exact number for any widths.
* :class:`LinearBetaSchedule` ``(T=500, 1e-4..0.02)``: DDPM forward process
  ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with timesteps indexed 0..T-1 (SpectralDiff's
  convention; ``abar_0 = 1 - beta_start``), and the L1 noise-prediction loss of SpectralDiff.
* :func:`light_split` / :func:`merge_tiles`: SpectralDiff's "light split", non-overlapping
  tiles over the scene with a zero-filled border, and its inverse for per-pixel maps.
* :func:`extract_features`: noise every tile to timestep t, one forward, stitch one decoder
  layer into a (F, H, W) map (float16 possible, optionally written into a caller's array, e.g.
  a memory map: the BDGF map is 2.6 GB in float16 on Augsburg).

Cost: :class:`~torch.utils.flop_counter.FlopCounterMode` counts 1,802.95 GFLOPs (901.47 GMAC)
for one (1, 1, 256, 64, 64) tile, countable on the meta device without computing anything
(:func:`count_flops`). The paper's 996.43 G is thop's count of the same network, which charges
a transposed convolution per *output* voxel and adds batch norms; :func:`thop_style_macs`
reproduces it analytically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench_core.errors import BenchError, ConfigError

__all__ = [
    "DDPM_PAPER_CHANNELS",
    "DDPMInputError",
    "LinearBetaSchedule",
    "SimpleUnet3D",
    "TilePositions",
    "count_flops",
    "extract_features",
    "feature_channels",
    "light_split",
    "merge_tiles",
    "pad_bands",
    "sinusoidal_embedding",
    "thop_style_macs",
]

DDPM_PAPER_CHANNELS = (16, 32, 64, 128)

# Kernel, stride and padding of the down (Conv3d) and up (ConvTranspose3d) transforms: the
# spectral axis is halved / doubled, the spatial axes keep their size (5x5 with padding 2).
_TRANSFORM_KERNEL = (4, 5, 5)
_TRANSFORM_STRIDE = (2, 1, 1)
_TRANSFORM_PADDING = (1, 2, 2)
# Three halvings of S; the transposed convolutions restore S exactly only if S is a multiple of 8.
_DEPTH_MULTIPLE = 8


class DDPMInputError(BenchError, ValueError):
    """Tensors or arrays given to the 3D U-Net DDPM ops do not have the expected shapes or values."""


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _check_int(name: str, value: Any, minimum: int) -> int:
    """An int >= ``minimum`` (bools refused: ``tile=True`` is a bug, not a size)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"ddpm3d: {name}={value!r}; expected an int >= {minimum}")
    return int(value)


# --------------------------------------------------------------------------- network


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style timestep embedding (B,) -> (B, dim): ``[sin(t w_k), cos(t w_k)]``.

    Frequencies ``w_k = 10000^(-k / (dim/2 - 1))``, k = 0..dim/2-1, so the first is 1 and the
    last 1/10000 (the DDPM convention SpectralDiff uses).
    """
    half = dim // 2
    scale = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -scale)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


class _Block(nn.Module):
    """One U-Net level: two 3x3x3 convs (ReLU then BN), a time bias, then the S-resampling transform.

    The order conv -> ReLU -> BN (not BN -> ReLU) and the place of the time bias
    ``ReLU(Linear(t))`` (between the two convolutions) do not change the parameter count; they
    follow SpectralDiff so that the activations (BDGF's features) are those of its network.
    """

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, *, up: bool) -> None:
        super().__init__()
        self.up = up
        self.time_mlp = nn.Linear(time_dim, out_ch)
        # An up block reads cat(x, skip): twice the channels of its level.
        self.conv1 = nn.Conv3d(2 * in_ch if up else in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv3d(out_ch, out_ch, 3, padding=1)
        self.bnorm1 = nn.BatchNorm3d(out_ch)
        self.bnorm2 = nn.BatchNorm3d(out_ch)
        conv = nn.ConvTranspose3d if up else nn.Conv3d
        self.transform = conv(out_ch, out_ch, _TRANSFORM_KERNEL, _TRANSFORM_STRIDE, _TRANSFORM_PADDING)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.bnorm1(self.relu(self.conv1(x)))
        h = h + self.relu(self.time_mlp(t_emb))[:, :, None, None, None]
        h = self.bnorm2(self.relu(self.conv2(h)))
        return self.transform(h)


class SimpleUnet3D(nn.Module):
    """SpectralDiff's 3D U-Net noise predictor on (B, 1, S, H, W) volumes, S % 8 == 0.

    ``channels`` are the widths of ``conv0`` and the three down levels (c0, c1, c2, c3); the up
    path mirrors them. 4,299,633 parameters at (16, 32, 64, 128), time_dim 32 (BDGF's 4.30 M);
    (4, 8, 16, 32) -> 272,325; (8, 16, 32, 64) -> 1,079,177.

    ``forward(x, t)`` returns the predicted noise (same shape as ``x``);
    ``forward(x, t, features=True)`` the three decoder features (see :meth:`decoder_features`).
    ``t`` is a (B,) tensor of timesteps (ints or floats) or one number for the whole batch.
    """

    def __init__(self, channels: Sequence[int] = DDPM_PAPER_CHANNELS, time_dim: int = 32) -> None:
        super().__init__()
        if isinstance(channels, (str, bytes)) or len(channels) != 4:
            raise ConfigError(
                f"SimpleUnet3D: channels={channels!r}; expected four widths (c0, c1, c2, c3), "
                f"e.g. {DDPM_PAPER_CHANNELS}"
            )
        widths = tuple(_check_int(f"channels[{i}]", c, 1) for i, c in enumerate(channels))
        time_dim = _check_int("time_dim", time_dim, 4)
        if time_dim % 2:
            raise ConfigError(f"SimpleUnet3D: time_dim={time_dim}; expected an even int >= 4 (sin and cos halves)")
        self.channels = widths
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.ReLU())
        self.conv0 = nn.Conv3d(1, widths[0], 3, padding=1)
        self.downs = nn.ModuleList(
            _Block(widths[i], widths[i + 1], time_dim, up=False) for i in range(3)
        )
        rev = widths[::-1]
        self.ups = nn.ModuleList(_Block(rev[i], rev[i + 1], time_dim, up=True) for i in range(3))
        self.output = nn.Conv3d(widths[0], 1, 1)

    # -- helpers

    def _check_input(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Validate ``x`` and return ``t`` as a (B,) tensor on ``x``'s device."""
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] != 1:
            got = _shape(x) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DDPMInputError(f"SimpleUnet3D: x has shape {got}; expected (B, 1, S, H, W)")
        depth = int(x.shape[2])
        if depth % _DEPTH_MULTIPLE or depth == 0:
            raise DDPMInputError(
                f"SimpleUnet3D: spectral depth S={depth} (x shape {_shape(x)}); expected a positive "
                f"multiple of {_DEPTH_MULTIPLE} (three halvings); pad the bands with pad_bands()"
            )
        batch = int(x.shape[0])
        t_tensor = torch.as_tensor(t, device=x.device)
        if t_tensor.dim() == 0:
            t_tensor = t_tensor.expand(batch)
        if t_tensor.shape != (batch,):
            raise DDPMInputError(
                f"SimpleUnet3D: t has shape {_shape(t_tensor)}; expected ({batch},) or a scalar for a batch of {batch}"
            )
        return t_tensor

    def _encode(self, x: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        t_vec = self._check_input(x, t)
        t_emb = self.time_mlp(sinusoidal_embedding(t_vec, self.time_dim).to(x.dtype))
        h = self.conv0(x)
        skips = []
        for down in self.downs:
            h = down(h, t_emb)
            skips.append(h)
        return h, t_emb, skips

    # -- public

    def decoder_features(
        self, x: torch.Tensor, t: torch.Tensor | float, layers: Sequence[int] = (0, 1, 2)
    ) -> list[torch.Tensor]:
        """The ``cat(x, skip)`` inputs of the up blocks named in ``layers`` (0 = deepest).

        Layer k has shape (B, 2*c_{3-k}, S/2^{3-k}, H, W): (256, S/8), (128, S/4), (64, S/2) at
        paper widths. Only the up blocks needed for the deepest requested layer run (the last
        up block and the output conv never do), which matters for extraction cost.
        """
        wanted = list(layers)
        if not wanted or any(isinstance(k, bool) or k not in (0, 1, 2) for k in wanted):
            raise DDPMInputError(f"SimpleUnet3D.decoder_features: layers={layers!r}; expected a non-empty list of 0, 1, 2")
        h, t_emb, skips = self._encode(x, t)
        feats: dict[int, torch.Tensor] = {}
        for k in range(max(wanted) + 1):
            cat = torch.cat((h, skips[-1 - k]), dim=1)
            feats[k] = cat
            if k < max(wanted):
                h = self.ups[k](cat, t_emb)
        return [feats[k] for k in wanted]

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | float, features: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """Predicted noise (B, 1, S, H, W), or with ``features=True`` the three decoder features."""
        if features:
            return self.decoder_features(x, t)
        h, t_emb, skips = self._encode(x, t)
        for up in self.ups:
            h = up(torch.cat((h, skips.pop()), dim=1), t_emb)
        return self.output(h)


def feature_channels(channels: Sequence[int], depth: int, layer: int = 0) -> int:
    """Values per pixel of decoder layer ``layer`` flattened channel x depth: ``2*c_{3-k} * S/2^{3-k}``.

    Equals ``2*c0*S`` for every layer when the widths double per level (32*S = 8,192 for the
    paper U-Net at S = 256).
    """
    if layer not in (0, 1, 2) or isinstance(layer, bool):
        raise ConfigError(f"ddpm3d: layer={layer!r}; expected 0, 1 or 2")
    level = 3 - layer
    return 2 * int(channels[level]) * (int(depth) >> level)


# --------------------------------------------------------------------------- schedule


class LinearBetaSchedule:
    """DDPM forward process with betas linear from ``beta_start`` to ``beta_end`` over T steps.

    Timesteps are indices 0..T-1 (``betas[t]``, ``alphas_cumprod[t] = prod_{s<=t} (1 - betas[s])``).
    Tables are float64 on the CPU; :meth:`q_sample` gathers and casts them to the data's
    device and dtype, so one schedule serves every device.
    """

    def __init__(self, T: int = 500, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        self.T = _check_int("T", T, 1)
        for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ConfigError(f"LinearBetaSchedule: {name}={value!r}; expected a float in (0, 1)")
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.betas = torch.linspace(self.beta_start, self.beta_end, self.T, dtype=torch.float64)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()

    def _gather(self, table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``table[t]`` shaped (B, 1, ..., 1) to broadcast over ``like`` (B, ...)."""
        idx = t.detach().to("cpu", torch.long)
        values = table[idx].to(device=like.device, dtype=like.dtype)
        return values.reshape((-1,) + (1,) * (like.dim() - 1))

    def _check_t(self, t: torch.Tensor | int, batch: int) -> torch.Tensor:
        t_tensor = torch.as_tensor(t)
        if t_tensor.dim() == 0:
            t_tensor = t_tensor.expand(batch)
        if t_tensor.shape != (batch,) or t_tensor.is_floating_point():
            raise DDPMInputError(
                f"LinearBetaSchedule: t has shape {_shape(t_tensor)} and dtype {t_tensor.dtype}; "
                f"expected integer timesteps of shape ({batch},) or one int"
            )
        lo, hi = int(t_tensor.min()), int(t_tensor.max())
        if lo < 0 or hi >= self.T:
            raise DDPMInputError(f"LinearBetaSchedule: timesteps span [{lo}, {hi}]; expected 0..{self.T - 1}")
        return t_tensor

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise`` per sample (t of shape (B,) or an int)."""
        if noise.shape != x0.shape:
            raise DDPMInputError(f"q_sample: noise has shape {_shape(noise)}; expected x0's shape {_shape(x0)}")
        t_tensor = self._check_t(t, int(x0.shape[0]))
        return (self._gather(self.sqrt_alphas_cumprod, t_tensor, x0) * x0
                + self._gather(self.sqrt_one_minus_alphas_cumprod, t_tensor, x0) * noise)

    def training_loss(
        self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """SpectralDiff's objective: ``L1(eps, model(x_t, t))``, t ~ U{0..T-1} and eps ~ N(0, I).

        Both are drawn from ``generator`` on the generator's device and then moved, so a seeded
        CPU generator gives the same batch on any device.
        """
        batch = int(x0.shape[0])
        t = torch.randint(0, self.T, (batch,), generator=generator, device=generator.device)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype)
        t, noise = t.to(x0.device), noise.to(x0.device)
        x_t = self.q_sample(x0, t, noise)
        return F.l1_loss(model(x_t, t), noise)


# --------------------------------------------------------------------------- tiles


def pad_bands(cube: torch.Tensor | np.ndarray, multiple: int = _DEPTH_MULTIPLE) -> torch.Tensor | np.ndarray:
    """Zero-pad the band axis (axis 0 of (S, H, W)) up to a multiple of ``multiple`` (Pavia 103 -> 104).

    Returns the input itself when nothing is missing; keeps the array type (numpy or torch).
    """
    multiple = _check_int("multiple", multiple, 1)
    if cube.ndim != 3:
        raise DDPMInputError(f"pad_bands: cube has shape {_shape(cube)}; expected (S, H, W)")
    missing = (-int(cube.shape[0])) % multiple
    if missing == 0:
        return cube
    if isinstance(cube, np.ndarray):
        return np.pad(cube, ((0, missing), (0, 0), (0, 0)))
    return F.pad(cube, (0, 0, 0, 0, 0, missing))


@dataclass(frozen=True)
class TilePositions:
    """Where :func:`light_split`'s tiles lie: tile n covers rows ``rows[n]:rows[n]+tile`` (clipped)."""

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    tile: int
    height: int
    width: int

    @property
    def grid(self) -> tuple[int, int]:
        """(tiles down, tiles across): ceil(H/tile) x ceil(W/tile)."""
        return -(-self.height // self.tile), -(-self.width // self.tile)

    def __len__(self) -> int:
        return len(self.rows)


def light_split(cube: torch.Tensor, tile: int = 64) -> tuple[torch.Tensor, TilePositions]:
    """SpectralDiff's "light split": (S, H, W) -> non-overlapping tiles (N, 1, S, tile, tile), row-major.

    The scene is zero-filled to ceil(H/tile)*tile x ceil(W/tile)*tile (Augsburg 332x485 at 64:
    6 x 8 = 48 tiles). The tiles are a copy of the padded scene.
    """
    tile = _check_int("tile", tile, 1)
    if not isinstance(cube, torch.Tensor) or cube.dim() != 3:
        got = _shape(cube) if hasattr(cube, "shape") else type(cube).__name__
        raise DDPMInputError(f"light_split: cube has shape {got}; expected a (S, H, W) tensor")
    depth, height, width = _shape(cube)
    positions = _positions(height, width, tile)
    gh, gw = positions.grid
    padded = F.pad(cube, (0, gw * tile - width, 0, gh * tile - height))
    tiles = (padded.reshape(depth, gh, tile, gw, tile)
             .permute(1, 3, 0, 2, 4)
             .reshape(gh * gw, 1, depth, tile, tile))
    return tiles, positions


def _positions(height: int, width: int, tile: int) -> TilePositions:
    if height < 1 or width < 1:
        raise DDPMInputError(f"light_split: scene is {height}x{width}; expected H, W >= 1")
    gh, gw = -(-height // tile), -(-width // tile)
    rows = tuple(r * tile for r in range(gh) for _ in range(gw))
    cols = tuple(c * tile for _ in range(gh) for c in range(gw))
    return TilePositions(rows=rows, cols=cols, tile=tile, height=height, width=width)


def _write_tile(out: Any, feats: torch.Tensor, r0: int, c0: int, positions: TilePositions) -> None:
    """Copy one (C, tile, tile) tile into ``out[:, r0:, c0:]``, cropping the zero-filled border."""
    h = min(positions.tile, positions.height - r0)
    w = min(positions.tile, positions.width - c0)
    block = feats[:, :h, :w]
    if isinstance(out, np.ndarray):
        out[:, r0:r0 + h, c0:c0 + w] = block.detach().cpu().numpy().astype(out.dtype, copy=False)
    else:
        out[:, r0:r0 + h, c0:c0 + w] = block.to(device=out.device, dtype=out.dtype)


def merge_tiles(tile_maps: torch.Tensor, positions: TilePositions, out: Any = None) -> Any:
    """Inverse of :func:`light_split` for per-pixel maps: (N, C, tile, tile) -> (C, H, W).

    Written into ``out`` (a tensor or numpy array, e.g. a memory map, of shape (C, H, W)) when
    given, else into a new tensor of ``tile_maps``' dtype. The zero-filled border is cropped.
    """
    n, c, th, tw = _shape(tile_maps) if tile_maps.dim() == 4 else (None, None, None, None)
    if n != len(positions) or th != positions.tile or tw != positions.tile:
        raise DDPMInputError(
            f"merge_tiles: tile_maps has shape {_shape(tile_maps)}; expected ({len(positions)}, C, "
            f"{positions.tile}, {positions.tile}) for these positions"
        )
    want = (c, positions.height, positions.width)
    if out is None:
        out = tile_maps.new_empty(want)
    elif _shape(out) != want:
        raise DDPMInputError(f"merge_tiles: out has shape {_shape(out)}; expected {want}")
    for i in range(n):
        _write_tile(out, tile_maps[i], positions.rows[i], positions.cols[i], positions)
    return out


# --------------------------------------------------------------------------- features


def extract_features(
    model: SimpleUnet3D,
    cube: torch.Tensor,
    t: int,
    *,
    schedule: LinearBetaSchedule | None = None,
    layer: int = 0,
    tile: int = 64,
    batch: int = 20,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    out: Any = None,
) -> Any:
    """Per-pixel diffusion features (F, H, W) of a (S, H, W) cube, S % 8 == 0 (see :func:`pad_bands`).

    SpectralDiff's extraction: light-split the scene, noise each tile to timestep ``t`` with
    ``schedule`` (default ``LinearBetaSchedule()``), run the model once in eval mode (batch-norm
    running statistics; the previous mode is restored) and take decoder layer ``layer``
    flattened channel x depth (index ``c * D + d``), F = :func:`feature_channels`.

    The noise is one (S, H', W') field over the zero-filled scene drawn from ``generator``
    (a fresh default one when None) before tiling, so the result does not depend on ``batch``
    and a pixel's noise depends only on the seed, the cube's shape and its position.
    Tiles go through the model ``batch`` at a time on the model's device; the map is written
    in ``dtype`` (float16 halves the cache), or into ``out`` (tensor or numpy array, e.g. a
    memory map, of shape (F, H, W)) when given.
    """
    schedule = schedule or LinearBetaSchedule()
    batch = _check_int("batch", batch, 1)
    tiles, positions = light_split(cube, tile)
    depth = int(cube.shape[0])
    if depth % _DEPTH_MULTIPLE or depth == 0:
        raise DDPMInputError(
            f"extract_features: cube has {depth} bands; expected a multiple of {_DEPTH_MULTIPLE}; use pad_bands()"
        )
    n_feat = feature_channels(model.channels, depth, layer)
    want = (n_feat, positions.height, positions.width)
    if out is None:
        out = torch.empty(want, dtype=dtype)
    elif _shape(out) != want:
        raise DDPMInputError(f"extract_features: out has shape {_shape(out)}; expected {want}")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    gh, gw = positions.grid
    noise_field, _ = light_split(torch.randn(
        (depth, gh * positions.tile, gw * positions.tile), generator=generator,
        device=gen_device, dtype=torch.float32,
    ), positions.tile)
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, tiles.shape[0], batch):
                x0 = tiles[start:start + batch].to(device=param.device, dtype=param.dtype)
                eps = noise_field[start:start + batch].to(device=param.device, dtype=param.dtype)
                x_t = schedule.q_sample(x0, t, eps)
                feats = model.decoder_features(x_t, torch.full((x0.shape[0],), int(t), device=param.device),
                                               layers=(layer,))[0]
                feats = feats.flatten(1, 2)  # (b, C*D, tile, tile), index c*D + d
                for j in range(feats.shape[0]):
                    i = start + j
                    _write_tile(out, feats[j], positions.rows[i], positions.cols[i], positions)
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- cost


def count_flops(model: SimpleUnet3D, shape: Sequence[int] = (1, 1, 256, 64, 64), t: int = 0) -> int:
    """FlopCounterMode FLOPs (2 per MAC) of one forward of ``model`` on an input of ``shape``.

    Counted on the meta device (the model is rebuilt there from its widths), so even the paper
    tile (1,802.95 GFLOPs, 6 s on two CPU cores) costs nothing to count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        meta = SimpleUnet3D(model.channels, model.time_dim)
    x = torch.empty(tuple(shape), device="meta")
    with FlopCounterMode(display=False) as counter:
        meta(x, torch.full((int(shape[0]),), t, device="meta"))
    return int(counter.get_total_flops())


def thop_style_macs(model: SimpleUnet3D, shape: Sequence[int] = (1, 1, 256, 64, 64)) -> int:
    """thop's count (``profile``) of one forward, computed from shapes: 996.43 G at the paper tile.

    thop charges every convolution ``output numel * in_channels * kernel volume`` — for a
    transposed convolution that is per *output* voxel, where FlopCounterMode counts per input
    voxel (+93.95 G here); an affine batch norm ``4 * numel``; a linear layer
    ``in_features * output numel``; ReLU and biases nothing. Shapes come from forward hooks on a
    meta-device copy, so nothing is computed.
    """
    with torch.device("meta"):
        meta = SimpleUnet3D(model.channels, model.time_dim)
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            kernel = math.prod(module.kernel_size)
            total += output.numel() * (module.in_channels // module.groups) * kernel
        elif isinstance(module, nn.BatchNorm3d):
            total += (4 if module.affine else 2) * inputs[0].numel()
        elif isinstance(module, nn.Linear):
            total += module.in_features * output.numel()

    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        meta.eval()
        meta(torch.empty(tuple(shape), device="meta"), torch.zeros(int(shape[0]), device="meta"))
    finally:
        for h in handles:
            h.remove()
    return int(total)
