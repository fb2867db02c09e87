"""BDGF stage "pretrain": the merged volume, adaptive modality masks, speckle, and the DDPM loop.

BDGF (Liu et al., Eqs. 5-10, Alg. 1) pretrains SpectralDiff's 3D U-Net
(:class:`bench_core.ops.ddpm3d.SimpleUnet3D`) on ``[x ; hsi]`` merged along the spectral axis,
with two changes to the DDPM forward process:

* **Masks** (Eq. 7): the HSI part is multiplied by a sample mask (the whole spectral part of a
  sample) and a structure mask (each 1x1x1 voxel), both dropping with probability
  ``p = tanh(epoch / ddpm_epochs)``; X rows and zero padding are never masked.
* **Speckle** (Eqs. 5, 8): SAR rows get no additive noise but the product of the step's Gamma
  speckle factors, ``x_t = sqrt(abar_t) * prod_i n_i * x0``, ``n_i ~ Gamma(L, 1/L)``.

The network regresses the *effective* noise ``eps_eff = (x_t - sqrt(abar_t) x0_masked) /
sqrt(1 - abar_t)`` (equal to eps on Gaussian-noised rows), L1 (seed-methods.md 5a).

Conventions (documented choices, seed-methods.md 5a/5e):

* Timesteps are :class:`LinearBetaSchedule` indices 0..T-1; index ``t`` is the paper's step
  ``t + 1``, so it carries ``t + 1`` speckle factors (index 0 = one factor).
* Volume rows: ``[0, x_rows)`` X, ``[x_rows, x_rows + hsi_rows)`` HSI, the rest zero padding.
  Padding rows are noised like HSI rows (``0 + sqrt(1 - abar_t) eps``), as
  :func:`~bench_core.ops.ddpm3d.extract_features` noises the whole cube at feature time.
* All randomness is drawn from the ``generator`` argument on the generator's device and moved to
  the data's device, so a seeded CPU generator gives the same draws for any device.

torch is imported at module level: import this module lazily from the plugin entry point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench_core import ConfigError
from bench_core.ops import (
    DDPMInputError,
    LinearBetaSchedule,
    SimpleUnet3D,
    light_split,
)

__all__ = [
    "MASK_MODES",
    "SAR_TARGETS",
    "X_SPECKLE_MODES",
    "PretrainReport",
    "Volume",
    "band_ranges",
    "build_volume",
    "build_volume_batch",
    "draw_masks",
    "mask_probability",
    "noisy_volume",
    "pretrain_ddpm",
    "pretrain_loss",
    "speckle_log_product",
    "volume_depth",
]

MASK_MODES = ("both", "sample", "structure", "none")
SAR_TARGETS = ("effective", "none")
X_SPECKLE_MODES = ("speckle", "gaussian")
_DEPTH_MULTIPLE = 8  # three halvings in SimpleUnet3D

Range = tuple[Any, Any]


# --------------------------------------------------------------------------- validation


def _choice(key: str, value: Any, options: Sequence[str], hint: str) -> str:
    if not isinstance(value, str) or value not in options:
        raise ConfigError(
            f"bdgf model.{key} = {value!r}: expected one of {list(options)} ({hint})"
        )
    return value


def _positive_int(key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"bdgf {key} = {value!r}: expected an int >= {minimum}")
    return int(value)


def _positive_float(key: str, value: Any, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"bdgf {key} = {value!r}: expected a positive number ({hint})")
    return float(value)


def _check_mask_mode(mode: Any) -> str:
    return _choice("mask", mode, MASK_MODES, 'Table II exp. 10 is "none"; the paper uses "both"')


def _check_sar_target(target: Any) -> str:
    return _choice("sar_target", target, SAR_TARGETS, '"none" puts no loss on X rows')


def _check_x_speckle(mode: Any) -> str:
    return _choice(
        "x_speckle", mode, X_SPECKLE_MODES, '"speckle" for SAR, "gaussian" for LiDAR or other non-SAR X'
    )


def _check_looks(looks: Any) -> float:
    return _positive_float("model.speckle_looks", looks, "equivalent number of SAR looks L, 4 by default")


# --------------------------------------------------------------------------- volume


@dataclass(frozen=True, eq=False)
class Volume:
    """The merged ``[x ; hsi]`` cube for the DDPM: (S, H, W) float32 + which depth rows are what.

    Rows ``[0, x_rows)`` are X (Eq. 8 puts SAR first), the next ``hsi_rows`` are HSI bands and
    the remaining rows are zero padding up to the U-Net depth. ``eq=False``: comparing tensors
    field by field has no single truth value, so volumes compare (and hash) by identity.
    """

    cube: torch.Tensor
    x_rows: int
    hsi_rows: int

    def __post_init__(self) -> None:
        if not isinstance(self.cube, torch.Tensor) or self.cube.dim() != 3:
            got = tuple(self.cube.shape) if hasattr(self.cube, "shape") else type(self.cube).__name__
            raise DDPMInputError(f"Volume: cube has shape {got}; expected a (S, H, W) tensor")
        if self.x_rows < 0 or self.hsi_rows < 1 or self.x_rows + self.hsi_rows > self.depth:
            raise DDPMInputError(
                f"Volume: x_rows={self.x_rows}, hsi_rows={self.hsi_rows} do not fit depth {self.depth}"
            )

    @property
    def depth(self) -> int:
        """S, the U-Net's spectral depth."""
        return int(self.cube.shape[0])

    @property
    def pad_rows(self) -> int:
        """Zero rows at the end."""
        return self.depth - self.x_rows - self.hsi_rows

    @property
    def x_slice(self) -> slice:
        return slice(0, self.x_rows)

    @property
    def spectral_slice(self) -> slice:
        """The HSI rows (the only ones the masks touch)."""
        return slice(self.x_rows, self.x_rows + self.hsi_rows)

    @property
    def padding_slice(self) -> slice:
        return slice(self.x_rows + self.hsi_rows, self.depth)


def volume_depth(rule: int | str, bands: int) -> int:
    """U-Net depth S for ``bands`` merged rows (C_x + C_h).

    ``"pow2"``: the next power of two >= bands and >= 8 (reproduces the paper's S = 256 for
    Augsburg and Berlin). ``"mult8"``: the next multiple of 8 (the least padding the U-Net
    allows; any scene). An int: that depth, which must be a multiple of 8 and >= bands.
    """
    bands = _positive_int("merged band count", bands)
    if rule == "pow2":
        return max(_DEPTH_MULTIPLE, 1 << (bands - 1).bit_length())
    if rule == "mult8":
        return max(_DEPTH_MULTIPLE, -(-bands // _DEPTH_MULTIPLE) * _DEPTH_MULTIPLE)
    if isinstance(rule, bool) or not isinstance(rule, (int, np.integer)):
        raise ConfigError(
            f'bdgf model.ddpm_depth = {rule!r}: expected "pow2", "mult8" or an int (a multiple of 8 >= {bands})'
        )
    if rule < bands or rule % _DEPTH_MULTIPLE:
        raise ConfigError(
            f"bdgf model.ddpm_depth = {rule}: expected a multiple of 8 that is >= the {bands} merged "
            f'bands (X + HSI); use {max(_DEPTH_MULTIPLE, -(-bands // 8) * 8)} or "pow2"'
        )
    return int(rule)


def band_ranges(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (min, max) over the scene, float64 (C,) each: the normalisation of every patch."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise DDPMInputError(f"band_ranges: array has shape {arr.shape}; expected (C, H, W)")
    flat = arr.reshape(arr.shape[0], -1).astype(np.float64, copy=False)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise DDPMInputError("band_ranges: the scene has non-finite values; clean or fill them first")
    return lo, hi


def _affine(rng: Range, bands: int, name: str, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """float32 (scale, shift) with ``v * scale + shift`` in [-1, 1] (signed) or [0, 1]; 0 for constant bands."""
    lo, hi = (np.asarray(r, dtype=np.float64).reshape(-1) for r in rng)
    if lo.shape != (bands,) or hi.shape != (bands,):
        raise DDPMInputError(
            f"build_volume: {name}_range has shapes {lo.shape}, {hi.shape}; expected ({bands},) each "
            f"(band_ranges of the scene's {name})"
        )
    width = hi - lo
    ok = width > 0
    scale = np.where(ok, (2.0 if signed else 1.0) / np.where(ok, width, 1.0), 0.0)
    shift = np.where(ok, -lo * scale - (1.0 if signed else 0.0), 0.0)
    return scale.astype(np.float32), shift.astype(np.float32)


def _check_depth(depth: Any, bands: int) -> int:
    depth = _positive_int("model.ddpm_depth", depth)
    if depth < bands or depth % _DEPTH_MULTIPLE:
        raise ConfigError(
            f"bdgf model.ddpm_depth = {depth}: expected a multiple of 8 >= the {bands} merged bands "
            f"(see volume_depth)"
        )
    return depth


def build_volume(hsi: np.ndarray, x: np.ndarray, depth: int, hsi_range: Range, x_range: Range) -> Volume:
    """The scene's ``[x ; hsi ; 0]`` volume: HSI per band to [-1, 1] (SpectralDiff), X to [0, 1].

    X stays non-negative so that multiplicative speckle is a meaningful perturbation; a
    constant band maps to 0. ``*_range`` are :func:`band_ranges` of the scene.
    """
    hsi, x = np.asarray(hsi), np.asarray(x)
    if hsi.ndim != 3 or x.ndim != 3 or hsi.shape[1:] != x.shape[1:]:
        raise DDPMInputError(
            f"build_volume: hsi {hsi.shape} and x {x.shape}; expected (C_h, H, W) and (C_x, H, W)"
        )
    c_h, c_x = int(hsi.shape[0]), int(x.shape[0])
    depth = _check_depth(depth, c_h + c_x)
    hs, hb = _affine(hsi_range, c_h, "hsi", signed=True)
    xs, xb = _affine(x_range, c_x, "x", signed=False)
    cube = np.zeros((depth,) + hsi.shape[1:], dtype=np.float32)
    cube[:c_x] = x.astype(np.float32) * xs[:, None, None] + xb[:, None, None]
    cube[c_x:c_x + c_h] = hsi.astype(np.float32) * hs[:, None, None] + hb[:, None, None]
    return Volume(cube=torch.from_numpy(cube), x_rows=c_x, hsi_rows=c_h)


def build_volume_batch(
    hsi: torch.Tensor, x: torch.Tensor, depth: int, hsi_range: Range, x_range: Range
) -> torch.Tensor:
    """:func:`build_volume` for patches (B, C, p, p) -> (B, 1, S, p, p) on the patches' device.

    Same float32 arithmetic as :func:`build_volume`, so a patch cut from the scene volume and
    a volume built from the patch agree (the network's on-the-fly ``dif`` path relies on it).
    """
    if hsi.dim() != 4 or x.dim() != 4 or hsi.shape[0] != x.shape[0] or hsi.shape[2:] != x.shape[2:]:
        raise DDPMInputError(
            f"build_volume_batch: hsi {tuple(hsi.shape)} and x {tuple(x.shape)}; expected (B, C_h, p, p) "
            f"and (B, C_x, p, p)"
        )
    c_h, c_x = int(hsi.shape[1]), int(x.shape[1])
    depth = _check_depth(depth, c_h + c_x)
    dev = hsi.device

    def norm(v: torch.Tensor, coef: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
        scale, shift = (torch.from_numpy(c).to(dev)[None, :, None, None] for c in coef)
        return v.to(torch.float32) * scale + shift

    parts = [norm(x, _affine(x_range, c_x, "x", signed=False)),
             norm(hsi, _affine(hsi_range, c_h, "hsi", signed=True))]
    pad = depth - c_h - c_x
    if pad:
        parts.append(hsi.new_zeros((hsi.shape[0], pad) + tuple(hsi.shape[2:]), dtype=torch.float32))
    return torch.cat(parts, dim=1).unsqueeze(1)


# --------------------------------------------------------------------------- masks


def mask_probability(progress: float | torch.Tensor) -> float | torch.Tensor:
    """Eq. 7's drop probability ``tanh(progress)``, progress = epoch / ddpm_epochs in [0, 1] (p <= 0.76)."""
    if isinstance(progress, torch.Tensor):
        if progress.numel() and (progress.min() < 0 or progress.max() > 1):
            raise ConfigError("bdgf mask_probability: progress outside [0, 1]; expected epoch / ddpm_epochs")
        return torch.tanh(progress)
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0.0 <= progress <= 1.0:
        raise ConfigError(f"bdgf mask_probability: progress = {progress!r}; expected epoch / ddpm_epochs in [0, 1]")
    return math.tanh(float(progress))


def draw_masks(
    batch: int,
    hsi_rows: int,
    depth: int,
    height: int,
    width: int,
    p: float,
    mode: str,
    generator: torch.Generator,
    *,
    x_rows: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Keep mask (B, 1, S, H, W) float: 0 where an HSI voxel is dropped, 1 elsewhere.

    Sample mask: the whole HSI part of a sample dropped with probability ``p``; structure mask:
    each HSI voxel dropped with probability ``p``; ``"both"``: their product (drop rate
    ``1 - (1-p)^2``). X rows ``[0, x_rows)`` and padding rows always keep 1. The same random
    numbers are drawn for every mode, so a mask ablation sees the same t / noise draws.
    """
    mode = _check_mask_mode(mode)
    batch, hsi_rows, depth = (_positive_int(k, v) for k, v in (("batch", batch), ("hsi_rows", hsi_rows), ("depth", depth)))
    height, width = _positive_int("height", height), _positive_int("width", width)
    x_rows = _positive_int("x_rows", x_rows, 0)
    if x_rows + hsi_rows > depth:
        raise DDPMInputError(f"draw_masks: x_rows={x_rows} + hsi_rows={hsi_rows} > depth={depth}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"bdgf draw_masks: p = {p!r}; expected a drop probability in [0, 1]")
    gdev = generator.device
    u_sample = torch.rand((batch, 1, 1, 1, 1), generator=generator, device=gdev)
    u_voxel = torch.rand((batch, 1, hsi_rows, height, width), generator=generator, device=gdev)
    keep_hsi = torch.ones((batch, 1, hsi_rows, height, width), device=gdev)
    if mode in ("both", "sample"):
        keep_hsi = keep_hsi * (u_sample >= p)  # P(keep) = 1 - p for U ~ U[0, 1)
    if mode in ("both", "structure"):
        keep_hsi = keep_hsi * (u_voxel >= p)
    keep = torch.ones((batch, 1, depth, height, width), device=gdev)
    keep[:, :, x_rows:x_rows + hsi_rows] = keep_hsi
    return keep.to(device) if device is not None else keep


# --------------------------------------------------------------------------- speckle


def _log_standard_gamma(shape_a: float, size: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """log of Gamma(a, 1) draws by Marsaglia-Tsang, all uniforms/normals from ``generator``.

    torch's gamma sampler takes no generator; this one is deterministic under it. Vectorised
    rejection: the few rejected entries are redrawn until none is left. For a < 1 it uses
    ``Gamma(a) = Gamma(a + 1) * U^(1/a)``.
    """
    gdev = generator.device
    boost = shape_a < 1.0
    a = shape_a + 1.0 if boost else shape_a
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    n = math.prod(size)
    out = torch.empty(n, dtype=torch.float32, device=gdev)
    pending = torch.arange(n, device=gdev)
    while pending.numel():
        m = pending.numel()
        z = torch.randn(m, generator=generator, device=gdev)
        u = torch.rand(m, generator=generator, device=gdev)
        v = (1.0 + c * z) ** 3
        log_v = torch.log(v.clamp_min(1e-30))
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * log_v)
        out[pending[ok]] = math.log(d) + log_v[ok]
        pending = pending[~ok]
    if boost:
        u = torch.rand(n, generator=generator, device=gdev)
        out = out + torch.log1p(-u) / shape_a  # 1 - U in (0, 1]: finite
    return out.reshape(size)


def speckle_log_product(
    t: torch.Tensor,
    looks: float,
    shape: Sequence[int],
    generator: torch.Generator,
    exact_max: int = 16,
) -> torch.Tensor:
    """log of ``prod_{i<=t} n_i``, ``n_i ~ Gamma(L, 1/L)`` (mean 1, var 1/L), shape (B, *shape).

    ``t`` (B,) is the number of speckle factors of each sample (callers with schedule indices
    pass index + 1; 0 gives the empty product, log 0). ``t <= exact_max``: exact sum of t
    log-Gamma draws; larger t: the normal approximation ``N(t (psi(L) - ln L), t psi1(L))``,
    which matches the mean and variance of the log (not E[prod] = 1: the lognormal's mean is
    ``exp(t (psi(L) - ln L + psi1(L)/2))``, 1.0119^t at L = 4). Drawn on the generator's device.
    """
    looks = _check_looks(looks)
    exact_max = _positive_int("exact_max", exact_max, 0)
    t = torch.as_tensor(t)
    if t.dim() != 1 or t.is_floating_point() or (t.numel() and int(t.min()) < 0):
        raise DDPMInputError(f"speckle_log_product: t has shape {tuple(t.shape)}, dtype {t.dtype}; expected (B,) ints >= 0")
    shape = tuple(int(s) for s in shape)
    gdev = generator.device
    t = t.to(gdev)
    out = torch.zeros((t.shape[0],) + shape, dtype=torch.float32, device=gdev)
    lt = torch.tensor(looks, dtype=torch.float64)
    mean1 = float(torch.special.digamma(lt)) - math.log(looks)
    var1 = float(torch.special.polygamma(1, lt))
    exact = torch.nonzero((t > 0) & (t <= exact_max)).flatten()
    approx = torch.nonzero(t > exact_max).flatten()
    if exact.numel():
        k = t[exact]
        kmax = int(k.max())
        logs = _log_standard_gamma(looks, (exact.numel(), kmax) + shape, generator) - math.log(looks)
        used = torch.arange(kmax, device=gdev)[None, :] < k[:, None]  # first k_b factors of sample b
        used = used.reshape(used.shape + (1,) * len(shape))
        out[exact] = (logs * used).sum(dim=1)
    if approx.numel():
        k = t[approx].to(torch.float32).reshape((-1,) + (1,) * len(shape))
        z = torch.randn((approx.numel(),) + shape, generator=generator, device=gdev)
        out[approx] = k * mean1 + torch.sqrt(k * var1) * z
    return out


# --------------------------------------------------------------------------- forward process


def _check_rows(x0: torch.Tensor, x_rows: int, hsi_rows: int, what: str) -> None:
    if not isinstance(x0, torch.Tensor) or x0.dim() != 5 or x0.shape[1] != 1:
        raise DDPMInputError(f"{what}: x0 has shape {tuple(getattr(x0, 'shape', ()))}; expected (B, 1, S, H, W)")
    if x_rows < 0 or hsi_rows < 1 or x_rows + hsi_rows > x0.shape[2]:
        raise DDPMInputError(f"{what}: x_rows={x_rows}, hsi_rows={hsi_rows} do not fit depth {x0.shape[2]}")


def noisy_volume(
    x0: torch.Tensor,
    t: torch.Tensor,
    schedule: LinearBetaSchedule,
    keep: torch.Tensor,
    x_rows: int,
    hsi_rows: int,
    looks: float,
    generator: torch.Generator,
    *,
    x_speckle: str = "speckle",
    eps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BDGF's forward process (Eq. 8 / Alg. 1) -> ``(x_t, eps_eff, x0_masked)``.

    HSI rows: ``sqrt(abar_t) keep x0 + sqrt(1 - abar_t) eps``; padding rows the same (zeros +
    noise, as at feature time). X rows with ``x_speckle="speckle"``: ``sqrt(abar_t) prod x0``
    with ``t + 1`` Gamma factors and no additive noise; with ``"gaussian"`` (LiDAR etc.) like
    HSI rows, never masked. ``eps_eff = (x_t - sqrt(abar_t) x0_masked) / sqrt(1 - abar_t)`` is
    computed in closed form: exactly ``eps`` on Gaussian rows, ``sqrt(abar_t) x0 (prod - 1) /
    sqrt(1 - abar_t)`` on speckle rows. ``eps`` (drawn from ``generator`` if None) is for tests.
    """
    x_speckle = _check_x_speckle(x_speckle)
    looks = _check_looks(looks)
    _check_rows(x0, x_rows, hsi_rows, "noisy_volume")
    if keep.shape != x0.shape:
        raise DDPMInputError(f"noisy_volume: keep has shape {tuple(keep.shape)}; expected x0's {tuple(x0.shape)}")
    if eps is None:
        eps = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype)
    eps = eps.to(x0.device, x0.dtype)
    x0_masked = x0 * keep.to(x0.device, x0.dtype)
    x_t = schedule.q_sample(x0_masked, t, eps)  # validates t
    eps_eff = eps
    if x_speckle == "speckle" and x_rows:
        t_idx = torch.as_tensor(t).expand(x0.shape[0]).to("cpu", torch.long)
        view = (-1, 1, 1, 1, 1)
        sa = schedule.sqrt_alphas_cumprod[t_idx].to(x0.device, x0.dtype).reshape(view)
        sb = schedule.sqrt_one_minus_alphas_cumprod[t_idx].to(x0.device, x0.dtype).reshape(view)
        log_prod = speckle_log_product(t_idx + 1, looks, (1, x_rows) + tuple(x0.shape[3:]), generator)
        log_prod = log_prod.to(x0.device, x0.dtype)
        x_sar = x0_masked[:, :, :x_rows]
        x_t = torch.cat((sa * torch.exp(log_prod) * x_sar, x_t[:, :, x_rows:]), dim=2)
        eps_eff = torch.cat((sa * x_sar * torch.expm1(log_prod) / sb, eps[:, :, x_rows:]), dim=2)
    return x_t, eps_eff, x0_masked


def pretrain_loss(
    model: SimpleUnet3D,
    x0: torch.Tensor,
    t: torch.Tensor,
    schedule: LinearBetaSchedule,
    keep: torch.Tensor,
    x_rows: int,
    hsi_rows: int,
    looks: float,
    sar_target: str,
    generator: torch.Generator,
    *,
    x_speckle: str = "speckle",
) -> torch.Tensor:
    """L1 between ``model(x_t, t)`` and ``eps_eff``: whole volume (``"effective"``) or rows >= x_rows (``"none"``)."""
    sar_target = _check_sar_target(sar_target)
    x_t, eps_eff, _ = noisy_volume(x0, t, schedule, keep, x_rows, hsi_rows, looks, generator, x_speckle=x_speckle)
    pred = model(x_t, torch.as_tensor(t).to(x0.device))
    if sar_target == "none":
        return F.l1_loss(pred[:, :, x_rows:], eps_eff[:, :, x_rows:])
    return F.l1_loss(pred, eps_eff)


# --------------------------------------------------------------------------- training


@dataclass
class PretrainReport:
    """What the DDPM stage did: optimiser steps, epochs and the mean loss of each epoch."""

    steps: int
    epochs: int
    final_loss: float
    losses: list[float] = field(default_factory=list)


def pretrain_ddpm(
    model: SimpleUnet3D,
    volume: Volume,
    *,
    epochs: int,
    batch: int,
    lr: float,
    tile: int,
    schedule: LinearBetaSchedule,
    looks: float,
    mask: str,
    sar_target: str,
    generator: torch.Generator,
    device: torch.device,
    x_speckle: str = "speckle",
) -> PretrainReport:
    """SpectralDiff's recipe with BDGF's masks and speckle; needs the scene volume only, no labels.

    Non-overlapping ``tile`` x ``tile`` tiles (zero-filled border) via :func:`light_split`,
    Adam(lr) over the parameters that require grad; per epoch the tiles are shuffled with
    ``generator`` and cut into batches of ``batch`` (the last may be smaller); per step
    t ~ U{0..T-1}, masks with ``p = tanh(epoch / epochs)``, noise and speckle, L1, one step.
    The model is moved to ``device``, trained in train mode and returned in eval mode;
    ``requires_grad`` is left as it is (the caller freezes). Same generator state -> same
    weights (on CPU; GPU convolutions may add their own nondeterminism).
    """
    mask = _check_mask_mode(mask)
    sar_target = _check_sar_target(sar_target)
    x_speckle = _check_x_speckle(x_speckle)
    looks = _check_looks(looks)
    epochs = _positive_int("model.ddpm_epochs", epochs)
    batch = _positive_int("model.ddpm_batch", batch)
    tile = _positive_int("model.ddpm_tile", tile)
    lr = _positive_float("model.ddpm_lr", lr, "Adam learning rate, 1e-4 in SpectralDiff")
    if not isinstance(volume, Volume):
        raise DDPMInputError(f"pretrain_ddpm: volume is a {type(volume).__name__}; expected a Volume (build_volume)")
    if volume.depth % _DEPTH_MULTIPLE:
        raise DDPMInputError(f"pretrain_ddpm: volume depth {volume.depth}; expected a multiple of 8 (volume_depth)")

    device = torch.device(device)
    model.to(device)
    tiles, _ = light_split(volume.cube.to(torch.float32), tile)
    tiles = tiles.to(device)
    n_tiles = int(tiles.shape[0])
    params = [q for q in model.parameters() if q.requires_grad]
    if not params:
        raise DDPMInputError("pretrain_ddpm: the model has no parameter with requires_grad; unfreeze it first")
    optimizer = torch.optim.Adam(params, lr=lr)
    gdev = generator.device
    losses: list[float] = []
    steps = 0
    model.train()
    try:
        for epoch in range(epochs):
            p = float(mask_probability(epoch / epochs))
            order = torch.randperm(n_tiles, generator=generator, device=gdev).to(device)
            total = torch.zeros((), device=device)
            n_steps = 0
            for start in range(0, n_tiles, batch):
                x0 = tiles[order[start:start + batch]]
                b = int(x0.shape[0])
                t = torch.randint(0, schedule.T, (b,), generator=generator, device=gdev)
                keep = draw_masks(b, volume.hsi_rows, volume.depth, tile, tile, p, mask, generator,
                                  x_rows=volume.x_rows, device=device)
                loss = pretrain_loss(model, x0, t.to(device), schedule, keep, volume.x_rows, volume.hsi_rows,
                                     looks, sar_target, generator, x_speckle=x_speckle)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total = total + loss.detach()
                n_steps += 1
            steps += n_steps
            losses.append(float(total) / n_steps)
    finally:
        model.eval()
    return PretrainReport(steps=steps, epochs=epochs, final_loss=losses[-1], losses=losses)
