"""DCNv4 (deformable convolution v4) in pure PyTorch, with the DCNv4 package's CUDA kernel when present.

One entry point, :func:`dcnv4_core`, with the positional arguments and the semantics of the
package's ``DCNv4Function.apply`` (OpenGVLab/DCNv4, ``DCNv4_op``; PyPI ``DCNv4`` 1.0.0.post2)::

    dcnv4_core(value, offset_mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
               dilation_h, dilation_w, group, group_channels, offset_scale,
               im2col_step=256, remove_center=0, *, backend="auto", chunk_points=None)
        -> (N, H_out, W_out, G*D)

* ``value`` (N, H, W, G*D), channels last, group ``g`` owns channels ``g*D:(g+1)*D``.
* ``offset_mask`` (N, H_out, W_out, P) with P a multiple of 8 and P >= 3*G*Kp, where
  Kp = kernel_h*kernel_w - remove_center (:func:`dcnv4_offset_dim` gives the package's
  P = ceil(3*G*Kp/8)*8). Group g reads ``offset_mask[..., g*3*Kp:(g+1)*3*Kp]``: first Kp
  interleaved (dx, dy) pairs (x = width first), then Kp modulation scalars. Entries past
  3*G*Kp are padding and ignored.
* Sampling points in the kernel's order: width index ``i`` outer, height index ``j`` inner;
  with ``remove_center`` the point ``(i, j) == (kernel_w // 2, kernel_h // 2)`` is skipped and
  the following points move up one slot.
* Location of point (i, j) for output pixel (oh, ow), pixel centres at integers, with
  ``c_w = (dilation_w*(kernel_w-1)) // 2`` (an integer shift, as in the kernel)::

      x = ow*stride_w - pad_w + c_w + (i*dilation_w - c_w + dx) * offset_scale
      y = oh*stride_h - pad_h + c_h + (j*dilation_h - c_h + dy) * offset_scale

* Bilinear interpolation; corners outside the image contribute zero, so a point with
  ``x <= -1``, ``y <= -1``, ``x >= W`` or ``y >= H`` contributes nothing.
* ``out[n, oh, ow, g*D:(g+1)*D] = sum_k mask_k * bilinear(value[n, :, :, g], y_k, x_k)``. The masks
  are used **raw**: no softmax, no sigmoid (the package's softmax flag is False from Python).
* Output H_out = (H + 2*pad_h - (dilation_h*(kernel_h-1) + 1)) // stride_h + 1, same for W.

Backends (:data:`DCN_BACKENDS`):

* ``"pure_torch"``: one ``grid_sample`` per chunk of points (bilinear, zero padding,
  ``align_corners=False`` at ``g = (2x + 1)/W - 1`` is exactly the kernel's rule above), run
  as the custom op ``torch.ops.bench.dcnv4`` so that
  :class:`~torch.utils.flop_counter.FlopCounterMode` counts it
  (``10 * N * H_out * W_out * G * D * Kp``, :func:`dcnv4_flops`) and with a hand-written
  backward that recomputes ``grid_sample`` chunk by chunk: working memory of the order of the
  inputs plus one chunk of points (``chunk_points``, default ~64 MiB of samples), where plain
  autograd keeps all Kp sampled maps (411 MB for one 7x7 layer at C = 128, 64x64, batch 4;
  peak 385 vs 1298 MiB there, benchmarks/test_dcnv4.py). Arithmetic in float32 (float64 when an input is float64, for gradcheck);
  output in ``value``'s dtype. Not twice differentiable (:func:`dcnv4_core_autograd` is).
* ``"cuda_kernel"``: the package's ``DCNv4Function``; only for CUDA tensors, and only for
  what its kernel supports (:func:`kernel_unsupported_reason`: 8 or 9 sampling points, i.e.
  3x3 kernels; D % 16 == 0; float32/float16; H_out, W_out == H, W). The package is
  imported on first use, never when this module is imported, and a failing import (on a
  GPU-less machine ``import DCNv4`` raises) only makes the kernel unavailable.
* ``"auto"``: the kernel for CUDA tensors when it imports and supports the call, else
  ``pure_torch``; inside a dispatch mode (FlopCounterMode) always ``pure_torch``, whose
  FLOPs the mode can count.

Runs record the backend as the tag ``bench.dcn_backend``: :func:`dcn_backend` resolves it for
a module tree (every :class:`DCNv4` in it) and a device.

Install the kernel on a GPU machine with ``pip install --no-build-isolation DCNv4`` (compiles
its CUDA extension, minutes per architecture; its setup.py refuses to run without CUDA).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import register_flop_formula

from bench_core.errors import BenchError, ConfigError

__all__ = [
    "DCN_BACKENDS",
    "DCNGeometry",
    "DCNInputError",
    "DCNv4",
    "dcn_backend",
    "dcnv4_core",
    "dcnv4_core_autograd",
    "dcnv4_flop_formula",
    "dcnv4_flops",
    "dcnv4_kernel_available",
    "dcnv4_offset_dim",
    "default_dcn_backend",
    "kernel_unsupported_reason",
]

DCN_BACKENDS = ("auto", "cuda_kernel", "pure_torch")

# Elements of one (N*G, D, chunk points, H_out*W_out) sampled tensor of the pure-torch path:
# 16M floats = 64 MiB in float32 (8 of the 49 points of a 7x7 layer at C = 128, 64x64, batch 4).
# Bounds the working memory of forward and backward alike. Smaller chunks mean more, smaller
# elementwise passes, each of which pays the thread pool's wake-up latency: on a loaded 2-core
# machine a forward pass in 2-point chunks took 2.6 s, in one 49-point chunk 1.1 s.
_CHUNK_ELEMENTS = 1 << 24

# What the package's kernel instantiates (its launch switch knows K = 8 and K = 9 only,
# OpenGVLab/DCNv4 issues #33, #90) and what its module asserts (D % 16 == 0). bfloat16 is left
# out: the forward runs, but dcnv4_cuda.cu's backward asks a bfloat16 gradient buffer for a
# float pointer (only float16 buffers are widened), which fails.
_KERNEL_POINTS = (8, 9)
_KERNEL_DTYPES = (torch.float32, torch.float16)
_KERNEL_CHANNEL_MULTIPLE = 16


class DCNInputError(BenchError, ValueError):
    """Tensors given to a DCNv4 op or module do not have the expected shapes, devices or dtypes."""


# --------------------------------------------------------------------------- geometry


def _int_arg(name: str, value: Any, minimum: int) -> int:
    """An int >= ``minimum`` (bools refused: ``kernel_h=True`` is a bug, not a size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"dcnv4: {name}={value!r}; expected an int >= {minimum}")
    return int(value)


def dcnv4_offset_dim(group: int, kernel_h: int, kernel_w: int, remove_center: int | bool = 0) -> int:
    """The package's ``offset_mask`` width: ``ceil(3*G*Kp / 8) * 8`` with Kp = kh*kw - remove_center.

    Padded to a multiple of 8 because the kernel reads it with vector loads; the padding
    entries are ignored.
    """
    points = kernel_h * kernel_w - int(bool(remove_center))
    return int(math.ceil(3 * group * points / 8) * 8)


@dataclass(frozen=True)
class DCNGeometry:
    """The non-tensor arguments of :func:`dcnv4_core`, validated once."""

    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dilation_h: int
    dilation_w: int
    group: int
    group_channels: int
    offset_scale: float
    remove_center: int

    @classmethod
    def of(
        cls,
        kernel_h: int,
        kernel_w: int,
        stride_h: int,
        stride_w: int,
        pad_h: int,
        pad_w: int,
        dilation_h: int,
        dilation_w: int,
        group: int,
        group_channels: int,
        offset_scale: float,
        remove_center: int | bool = 0,
    ) -> DCNGeometry:
        """Check every argument (the message names it) and build the geometry."""
        if isinstance(remove_center, bool):
            remove_center = int(remove_center)
        if remove_center not in (0, 1) or isinstance(remove_center, float):
            raise ConfigError(f"dcnv4: remove_center={remove_center!r}; expected 0 or 1 (or a bool)")
        if (isinstance(offset_scale, bool) or not isinstance(offset_scale, (int, float))
                or not math.isfinite(offset_scale)):
            raise ConfigError(f"dcnv4: offset_scale={offset_scale!r}; expected a finite float")
        geometry = cls(
            kernel_h=_int_arg("kernel_h", kernel_h, 1),
            kernel_w=_int_arg("kernel_w", kernel_w, 1),
            stride_h=_int_arg("stride_h", stride_h, 1),
            stride_w=_int_arg("stride_w", stride_w, 1),
            pad_h=_int_arg("pad_h", pad_h, 0),
            pad_w=_int_arg("pad_w", pad_w, 0),
            dilation_h=_int_arg("dilation_h", dilation_h, 1),
            dilation_w=_int_arg("dilation_w", dilation_w, 1),
            group=_int_arg("group", group, 1),
            group_channels=_int_arg("group_channels", group_channels, 1),
            offset_scale=float(offset_scale),
            remove_center=int(remove_center),
        )
        if geometry.points < 1:
            raise ConfigError(
                f"dcnv4: a {kernel_h}x{kernel_w} kernel with remove_center=1 has no sampling point left; "
                f"use a larger kernel or remove_center=0"
            )
        return geometry

    @property
    def points(self) -> int:
        """Kp, the sampling points per group and output pixel."""
        return self.kernel_h * self.kernel_w - self.remove_center

    @property
    def channels(self) -> int:
        return self.group * self.group_channels

    @property
    def padded_offset_dim(self) -> int:
        return dcnv4_offset_dim(self.group, self.kernel_h, self.kernel_w, self.remove_center)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(H_out, W_out) of a convolution with this kernel, stride, padding and dilation."""
        ho = (height + 2 * self.pad_h - (self.dilation_h * (self.kernel_h - 1) + 1)) // self.stride_h + 1
        wo = (width + 2 * self.pad_w - (self.dilation_w * (self.kernel_w - 1) + 1)) // self.stride_w + 1
        return ho, wo

    def taps(self) -> list[tuple[int, int]]:
        """Kernel indices (i along width, j along height) of the points, in the kernel's order."""
        centre = (self.kernel_w // 2, self.kernel_h // 2)
        return [
            (i, j)
            for i in range(self.kernel_w)
            for j in range(self.kernel_h)
            if not (self.remove_center and (i, j) == centre)
        ]


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _validate_tensors(value: torch.Tensor, offset_mask: torch.Tensor, geo: DCNGeometry) -> tuple[int, int]:
    """Check ``value`` and ``offset_mask`` against the geometry; return (H_out, W_out)."""
    for name, t in (("value", value), ("offset_mask", offset_mask)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            got = _shape(t) if isinstance(t, torch.Tensor) else type(t).__name__
            layout = "(N, H, W, group*group_channels)" if name == "value" else "(N, H_out, W_out, P)"
            raise DCNInputError(f"dcnv4: {name} has shape {got}; expected a 4-d channels-last tensor {layout}")
        if not t.dtype.is_floating_point:
            raise DCNInputError(f"dcnv4: {name} has dtype {t.dtype}; expected a floating-point tensor")
    n, h, w, c = _shape(value)
    if c != geo.channels:
        raise DCNInputError(
            f"dcnv4: value has {c} channels (shape {_shape(value)}); expected group*group_channels = "
            f"{geo.group}*{geo.group_channels} = {geo.channels}"
        )
    ho, wo = geo.output_size(h, w)
    if ho < 1 or wo < 1:
        raise DCNInputError(
            f"dcnv4: value is {h}x{w}, too small for a {geo.kernel_h}x{geo.kernel_w} kernel with dilation "
            f"({geo.dilation_h}, {geo.dilation_w}) and padding ({geo.pad_h}, {geo.pad_w}): output {ho}x{wo}"
        )
    needed = 3 * geo.group * geo.points
    shape = _shape(offset_mask)
    if shape[:3] != (n, ho, wo) or shape[3] < needed or shape[3] % 8:
        raise DCNInputError(
            f"dcnv4: offset_mask has shape {shape}; expected (N, H_out, W_out, P) = ({n}, {ho}, {wo}, P) "
            f"with P a multiple of 8 and P >= 3*group*Kp = {needed} (the package's P = "
            f"{geo.padded_offset_dim}; dcnv4_offset_dim gives it)"
        )
    if value.device != offset_mask.device:
        raise DCNInputError(
            f"dcnv4: value is on {value.device} but offset_mask on {offset_mask.device}; expected one "
            f"device; move them with .to(value.device)"
        )
    return ho, wo


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float32 arithmetic, float64 when any input is float64 (so gradcheck works)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _chunk_points(geo: DCNGeometry, n: int, ho: int, wo: int, requested: int) -> int:
    if requested > 0:
        return min(requested, geo.points)
    per_point = n * geo.channels * ho * wo
    return max(1, min(geo.points, _CHUNK_ELEMENTS // max(per_point, 1)))


# --------------------------------------------------------------------------- pure-torch path


@dataclass
class _Sampling:
    """The pure-torch path's working layout, one image per (sample, group).

    ``value`` (N*G, D, H, W); ``grid`` (N*G, Kp, H_out, W_out, 2): every point's location in
    ``grid_sample``'s normalised (x, y) coordinates (the size of the offsets, Kp*2 numbers
    per pixel and group, so computing it once costs what the offsets already cost, and saves
    two passes per chunk); ``masks`` (N*G, Kp, H_out*W_out); ``scale`` (2,): normalised
    units per unit of offset.
    """

    value: torch.Tensor
    grid: torch.Tensor
    masks: torch.Tensor
    scale: torch.Tensor
    out_hw: tuple[int, int]

    def chunk_grid(self, p0: int, p1: int) -> torch.Tensor:
        """Sampling grid of points p0..p1-1 as one image per (sample, group): (N*G, (p1-p0)*H_out, W_out, 2)."""
        ho, wo = self.out_hw
        return self.grid[:, p0:p1].reshape(self.grid.shape[0], (p1 - p0) * ho, wo, 2)


def _base_grid(geo: DCNGeometry, h: int, w: int, ho: int, wo: int, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """Zero-offset locations of every point, normalised: (Kp, H_out, W_out, 2).

    Built in float64 from the integer rule of the kernel (``c = (dilation*(k-1)) // 2``), then
    mapped to ``grid_sample``'s ``align_corners=False`` coordinates ``(2*x + 1)/W - 1``.
    """
    c_w = (geo.dilation_w * (geo.kernel_w - 1)) // 2
    c_h = (geo.dilation_h * (geo.kernel_h - 1)) // 2
    f64 = torch.float64
    ox = torch.arange(wo, dtype=f64, device=device) * geo.stride_w - geo.pad_w + c_w  # (W_out,)
    oy = torch.arange(ho, dtype=f64, device=device) * geo.stride_h - geo.pad_h + c_h  # (H_out,)
    taps = torch.tensor(geo.taps(), dtype=f64, device=device)  # (Kp, 2): (i, j)
    tx = (taps[:, 0] * geo.dilation_w - c_w) * geo.offset_scale  # (Kp,)
    ty = (taps[:, 1] * geo.dilation_h - c_h) * geo.offset_scale
    x = ox[None, None, :] + tx[:, None, None]  # (Kp, 1, W_out)
    y = oy[None, :, None] + ty[:, None, None]  # (Kp, H_out, 1)
    gx = ((2 * x + 1) / w - 1).expand(-1, ho, -1)
    gy = ((2 * y + 1) / h - 1).expand(-1, -1, wo)
    return torch.stack((gx, gy), dim=-1).to(dtype)


def _value_image(value: torch.Tensor, geo: DCNGeometry, dtype: torch.dtype) -> torch.Tensor:
    """(N, H, W, G*D) -> contiguous (N*G, D, H, W): one grid_sample image per (sample, group)."""
    n, h, w, _ = value.shape
    v = value.to(dtype).reshape(n, h, w, geo.group, geo.group_channels)
    return v.permute(0, 3, 4, 1, 2).reshape(n * geo.group, geo.group_channels, h, w).contiguous()


def _offset_mask_views(t: torch.Tensor, geo: DCNGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of an (N, H_out, W_out, P) tensor: offsets (N, G, Kp, H_out, W_out, 2), masks (N, G, Kp, H_out, W_out)."""
    g, kp = geo.group, geo.points
    per_group = t[..., : 3 * g * kp].unflatten(-1, (g, 3 * kp))
    offsets = per_group[..., : 2 * kp].unflatten(-1, (kp, 2)).permute(0, 3, 4, 1, 2, 5)
    masks = per_group[..., 2 * kp :].permute(0, 3, 4, 1, 2)
    return offsets, masks


def _prepare(value: torch.Tensor, offset_mask: torch.Tensor, geo: DCNGeometry, ho: int, wo: int) -> _Sampling:
    n, h, w, _ = value.shape
    ng, kp = n * geo.group, geo.points
    dtype = _compute_dtype(value, offset_mask)
    offsets, masks = _offset_mask_views(offset_mask.to(dtype), geo)
    scale = torch.tensor([2 * geo.offset_scale / w, 2 * geo.offset_scale / h], dtype=dtype, device=value.device)
    grid = torch.addcmul(_base_grid(geo, h, w, ho, wo, dtype, value.device), offsets, scale)
    return _Sampling(
        value=_value_image(value, geo, dtype),
        grid=grid.reshape(ng, kp, ho, wo, 2),
        masks=masks.reshape(ng, kp, ho * wo),
        scale=scale,
        out_hw=(ho, wo),
    )


def _sample(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear samples with zeros outside: exactly the kernel's corner rule (module docstring)."""
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _to_channels_last(y: torch.Tensor, n: int, geo: DCNGeometry, ho: int, wo: int) -> torch.Tensor:
    """(N*G, D, H_out*W_out) -> (N, H_out, W_out, G*D)."""
    y = y.reshape(n, geo.group, geo.group_channels, ho, wo).permute(0, 3, 4, 1, 2)
    return y.reshape(n, ho, wo, geo.channels)


def _dcnv4_torch(value: torch.Tensor, offset_mask: torch.Tensor, geo: DCNGeometry, chunk_points: int) -> torch.Tensor:
    """The pure-torch forward, chunk of points by chunk of points.

    Written with ordinary differentiable ops: under grad it is the plain-autograd version
    (:func:`dcnv4_core_autograd`); the custom op runs it under no_grad and multiplies in place.
    """
    n, h, w, _ = value.shape
    ho, wo = geo.output_size(h, w)
    s = _prepare(value, offset_mask, geo, ho, wo)
    ng, d = s.value.shape[:2]
    chunk = _chunk_points(geo, n, ho, wo, chunk_points)
    track = torch.is_grad_enabled() and (value.requires_grad or offset_mask.requires_grad)
    out: torch.Tensor | None = None
    for p0 in range(0, geo.points, chunk):
        p1 = min(geo.points, p0 + chunk)
        sampled = _sample(s.value, s.chunk_grid(p0, p1)).view(ng, d, p1 - p0, ho * wo)
        mask = s.masks[:, None, p0:p1]
        weighted = sampled * mask if track else sampled.mul_(mask)
        part = weighted.sum(dim=2)  # (N*G, D, H_out*W_out)
        out = part if out is None else (out + part if track else out.add_(part))
    assert out is not None  # points >= 1 is validated
    return _to_channels_last(out, n, geo, ho, wo).to(value.dtype)


def _dcnv4_backward(
    value: torch.Tensor,
    offset_mask: torch.Tensor,
    grad_out: torch.Tensor,
    geo: DCNGeometry,
    chunk_points: int,
    need_value: bool,
    need_offset_mask: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of the pure-torch forward, recomputing ``grid_sample`` chunk by chunk.

    Per chunk: sampled = grid_sample(value, grid); d mask = sum_D(grad_out * sampled);
    d sampled = grad_out * mask, pushed through grid_sample's own backward to value and grid;
    d offset = d grid * (2*offset_scale / W, 2*offset_scale / H), written straight into the
    (N, H_out, W_out, P) layout. Only one chunk of sampled values and their gradient is
    alive at a time, in one buffer.
    """
    n, h, w, _ = value.shape
    ho, wo = geo.output_size(h, w)
    s = _prepare(value.detach(), offset_mask.detach(), geo, ho, wo)
    ng, d = s.value.shape[:2]
    g, kp = geo.group, geo.points
    chunk = _chunk_points(geo, n, ho, wo, chunk_points)
    dtype = s.value.dtype
    go = grad_out.to(dtype).reshape(n, ho, wo, g, d).permute(0, 3, 4, 1, 2).reshape(ng, d, 1, ho * wo)
    image = s.value.requires_grad_(need_value)  # a fresh copy, safe to make a leaf of
    g_image = torch.zeros_like(s.value) if need_value else None
    g_offset_mask = torch.zeros(offset_mask.shape, dtype=dtype, device=offset_mask.device) if need_offset_mask else None
    # write-through views of g_offset_mask: offsets (N, G, Kp, H_out, W_out, 2), masks (N, G, Kp, H_out, W_out)
    g_views = _offset_mask_views(g_offset_mask, geo) if g_offset_mask is not None else None
    for p0 in range(0, kp, chunk):
        p1 = min(kp, p0 + chunk)
        grid = s.chunk_grid(p0, p1).detach().requires_grad_(need_offset_mask)
        with torch.enable_grad():
            sampled = _sample(image, grid)
        # One buffer per chunk: grid_sample's backward reads its input and grid, never its
        # output, so the sampled values' storage is reused for the mask gradient's product
        # and then for the gradient of the samples.
        buffer = sampled.detach().view(ng, d, p1 - p0, ho * wo)
        if g_views is not None:
            g_views[1][:, :, p0:p1] = buffer.mul_(go).sum(dim=1).view(n, g, p1 - p0, ho, wo)
        torch.mul(go, s.masks[:, None, p0:p1], out=buffer)
        wrt = [t for t, need in ((image, need_value), (grid, need_offset_mask)) if need]
        grads = torch.autograd.grad(sampled, wrt, buffer.view(sampled.shape))
        if g_image is not None:
            g_image.add_(grads[0])
        if g_views is not None:
            g_views[0][:, :, p0:p1] = grads[-1].view(n, g, p1 - p0, ho, wo, 2) * s.scale
    g_value = None
    if g_image is not None:
        g_value = g_image.view(n, g, d, h, w).permute(0, 3, 4, 1, 2).reshape(value.shape).to(value.dtype)
    if g_offset_mask is not None:
        g_offset_mask = g_offset_mask.to(offset_mask.dtype)
    return g_value, g_offset_mask


_OP_SCHEMA = (
    "(Tensor value, Tensor offset_mask, int kernel_h, int kernel_w, int stride_h, int stride_w, "
    "int pad_h, int pad_w, int dilation_h, int dilation_w, int group, int group_channels, "
    "float offset_scale, int remove_center, int chunk_points) -> Tensor"
)


# The pure-torch path as a custom op: opaque to autograd (our chunked backward) and visible to
# FlopCounterMode, which counts no grid_sample arithmetic on its own.
@torch.library.custom_op("bench::dcnv4", mutates_args=(), schema=_OP_SCHEMA)
def _dcnv4_op(
    value: torch.Tensor,
    offset_mask: torch.Tensor,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    group: int,
    group_channels: int,
    offset_scale: float,
    remove_center: int,
    chunk_points: int,
) -> torch.Tensor:
    geo = DCNGeometry(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                      group, group_channels, offset_scale, remove_center)
    with torch.no_grad():
        return _dcnv4_torch(value, offset_mask, geo, chunk_points)


@_dcnv4_op.register_fake
def _dcnv4_fake(
    value: torch.Tensor,
    offset_mask: torch.Tensor,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    group: int,
    group_channels: int,
    offset_scale: float,
    remove_center: int,
    chunk_points: int,
) -> torch.Tensor:
    n = value.shape[0]
    return value.new_empty((n, offset_mask.shape[1], offset_mask.shape[2], group * group_channels))


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    value, offset_mask, *scalars = inputs
    ctx.save_for_backward(value, offset_mask)
    ctx.geometry = DCNGeometry(*scalars[:12])
    ctx.chunk_points = scalars[12]


def _backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
    value, offset_mask = ctx.saved_tensors
    g_value, g_offset_mask = _dcnv4_backward(
        value, offset_mask, grad_out, ctx.geometry, ctx.chunk_points,
        bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]),
    )
    return (g_value, g_offset_mask) + (None,) * 13


_dcnv4_op.register_autograd(_backward, setup_context=_setup_context)


# --------------------------------------------------------------------------- FLOPs


def dcnv4_flops(batch: int, height_out: int, width_out: int, group: int, group_channels: int, points: int) -> int:
    """FLOPs of one DCNv4 core call (harness convention: 1 multiply-add = 2 FLOPs).

    Per (output pixel, channel, point): 4 multiply-adds for the bilinear interpolation and
    one for the mask, so ``10 * N * H_out * W_out * G * D * Kp`` (InternImage's fvcore rule
    counts the same 5 multiply-adds as 5 "FLOPs").
    """
    return 10 * batch * height_out * width_out * group * group_channels * points


def dcnv4_flop_formula(
    value_shape: Sequence[int],
    offset_mask_shape: Sequence[int],
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    group: int,
    group_channels: int,
    offset_scale: float,
    remove_center: int,
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """FlopCounterMode formula for ``bench::dcnv4`` (tensor arguments arrive as shapes)."""
    n, ho, wo = (int(s) for s in offset_mask_shape[:3])
    return dcnv4_flops(n, ho, wo, group, group_channels, kernel_h * kernel_w - int(remove_center))


register_flop_formula(torch.ops.bench.dcnv4)(dcnv4_flop_formula)


# --------------------------------------------------------------------------- CUDA kernel


@functools.cache
def _dcnv4_function() -> Any | None:
    """The package's ``DCNv4Function`` (an autograd Function), or None when it cannot be imported.

    Any exception counts as "not available": on a GPU-less machine ``import DCNv4`` raises
    (its flash-attention module queries the device at import). Cached, so a broken install
    is tried once per process, not once per layer call.
    """
    try:
        if importlib.util.find_spec("DCNv4") is None:
            return None
        from DCNv4.functions import DCNv4Function
    except Exception:  # noqa: BLE001 - a broken optional extra must not break the CPU path
        return None
    return DCNv4Function


def dcnv4_kernel_available() -> bool:
    """Whether the DCNv4 package's CUDA kernel can be imported (it needs a CUDA build)."""
    return _dcnv4_function() is not None


def _static_kernel_reason(geo: DCNGeometry, same_size: bool, dtype: torch.dtype) -> str | None:
    """Why the package's kernel cannot run this geometry (None when it can); no tensors needed."""
    if geo.points not in _KERNEL_POINTS:
        return (f"the DCNv4 kernel only instantiates 8 or 9 sampling points (3x3 kernels); this call has "
                f"{geo.points} ({geo.kernel_h}x{geo.kernel_w}, remove_center={geo.remove_center})")
    if geo.group_channels % _KERNEL_CHANNEL_MULTIPLE:
        return (f"the DCNv4 kernel needs group_channels % {_KERNEL_CHANNEL_MULTIPLE} == 0; got "
                f"group_channels={geo.group_channels}")
    if dtype not in _KERNEL_DTYPES:
        return f"the DCNv4 kernel is used for float32 and float16 (its bfloat16 backward fails); got {dtype}"
    if not same_size:
        return ("the DCNv4 kernel's launch configuration assumes H_out, W_out == H, W (stride 1, 'same' "
                "padding); other shapes can fail its block assertion (OpenGVLab/DCNv4 #5, #25)")
    return None


def kernel_unsupported_reason(value: torch.Tensor, offset_mask: torch.Tensor, geometry: DCNGeometry,
                              im2col_step: int = 256) -> str | None:
    """Why the package's kernel cannot run this call, or None when it can.

    Checked before calling it, because the kernel reports some unsupported shapes by a C
    assertion that aborts the process instead of raising.
    """
    if value.device.type != "cuda":
        return f"the DCNv4 kernel needs CUDA tensors; value is on {value.device}"
    n, h, w, _ = value.shape
    reason = _static_kernel_reason(geometry, geometry.output_size(h, w) == (h, w), value.dtype)
    if reason is not None:
        return reason
    step = min(n, im2col_step)
    if n % step:
        return f"the DCNv4 kernel needs the batch ({n}) to be a multiple of min(batch, im2col_step={im2col_step})"
    return None


def _in_dispatch_mode() -> bool:
    """True inside a TorchDispatchMode such as FlopCounterMode, which cannot see CUDA extensions."""
    from torch.utils import _python_dispatch

    check = getattr(_python_dispatch, "is_in_torch_dispatch_mode", None)
    return bool(check()) if callable(check) else False


def _check_backend(backend: str) -> str:
    if backend not in DCN_BACKENDS:
        raise ConfigError(f"dcnv4: backend={backend!r}; expected one of {', '.join(DCN_BACKENDS)}")
    return backend


def default_dcn_backend(device: torch.device | str) -> str:
    """What ``"auto"`` picks for kernel-supported layers on ``device``: ``cuda_kernel`` or ``pure_torch``."""
    if torch.device(device).type == "cuda" and dcnv4_kernel_available():
        return "cuda_kernel"
    return "pure_torch"


# --------------------------------------------------------------------------- entry points


def _positive_chunk(chunk_points: int | None) -> int:
    if chunk_points is None:
        return 0
    if isinstance(chunk_points, bool) or not isinstance(chunk_points, int) or chunk_points < 1:
        raise ConfigError(
            f"dcnv4: chunk_points={chunk_points!r}; expected a positive int (sampling points per chunk) "
            f"or None for the memory-bounded default"
        )
    return chunk_points


def dcnv4_core(
    value: torch.Tensor,
    offset_mask: torch.Tensor,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    group: int,
    group_channels: int,
    offset_scale: float,
    im2col_step: int = 256,
    remove_center: int | bool = 0,
    *,
    backend: str = "auto",
    chunk_points: int | None = None,
) -> torch.Tensor:
    """DCNv4 with the package's ``DCNv4Function.apply`` arguments and semantics (module docstring).

    ``im2col_step`` is the kernel's batch chunk (ignored by the pure-torch path, which needs
    none). ``backend``: ``"auto"``, ``"cuda_kernel"`` or ``"pure_torch"``. ``chunk_points``
    (pure torch): sampling points per ``grid_sample`` call, default as many as keep one
    sampled chunk near 64 MiB; it changes memory and speed, never the result.
    Returns (N, H_out, W_out, group*group_channels) in ``value``'s dtype.
    """
    _check_backend(backend)
    geo = DCNGeometry.of(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                         group, group_channels, offset_scale, remove_center)
    step = _int_arg("im2col_step", im2col_step, 1)
    chunk = _positive_chunk(chunk_points)
    _validate_tensors(value, offset_mask, geo)
    use_kernel = False
    if backend == "cuda_kernel":
        reason = kernel_unsupported_reason(value, offset_mask, geo, step)
        if reason is not None:
            raise ConfigError(f"dcnv4: backend='cuda_kernel' cannot run this call: {reason}; use backend='auto' "
                              f"(falls back to pure_torch) or backend='pure_torch'")
        if _dcnv4_function() is None:
            raise ConfigError(
                "dcnv4: backend='cuda_kernel' but the DCNv4 package cannot be imported; install it on a GPU "
                "machine with pip install --no-build-isolation DCNv4 (compiles CUDA code) or use backend='auto'"
            )
        use_kernel = True
    elif backend == "auto" and value.device.type == "cuda" and not _in_dispatch_mode():
        use_kernel = kernel_unsupported_reason(value, offset_mask, geo, step) is None and dcnv4_kernel_available()
    if use_kernel:
        function = _dcnv4_function()
        return function.apply(  # type: ignore[union-attr]
            value.contiguous(), offset_mask.to(value.dtype).contiguous(), geo.kernel_h, geo.kernel_w,
            geo.stride_h, geo.stride_w, geo.pad_h, geo.pad_w, geo.dilation_h, geo.dilation_w, geo.group,
            geo.group_channels, geo.offset_scale, step, geo.remove_center,
        )
    return torch.ops.bench.dcnv4(
        value, offset_mask, geo.kernel_h, geo.kernel_w, geo.stride_h, geo.stride_w, geo.pad_h, geo.pad_w,
        geo.dilation_h, geo.dilation_w, geo.group, geo.group_channels, geo.offset_scale, geo.remove_center,
        chunk,
    )


def dcnv4_core_autograd(
    value: torch.Tensor,
    offset_mask: torch.Tensor,
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    group: int,
    group_channels: int,
    offset_scale: float,
    im2col_step: int = 256,
    remove_center: int | bool = 0,
    *,
    chunk_points: int | None = None,
) -> torch.Tensor:
    """The same grid_sample computation as the ``pure_torch`` backend, differentiated by plain autograd.

    For tests, benchmarks and double backward: autograd keeps every sampled chunk, so its
    memory grows with Kp (the custom op's backward does not). Invisible to FlopCounterMode.
    """
    geo = DCNGeometry.of(kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                         group, group_channels, offset_scale, remove_center)
    _int_arg("im2col_step", im2col_step, 1)
    _validate_tensors(value, offset_mask, geo)
    return _dcnv4_torch(value, offset_mask, geo, _positive_chunk(chunk_points) or geo.points)


# --------------------------------------------------------------------------- module


class DCNv4(nn.Module):
    """The DCNv4 layer with the package's parameter names and shapes (upstream checkpoints map 1:1).

    ``value_proj`` Linear(C, C); optional ``offset_mask_dw`` depthwise Conv2d(C, C, dw_kernel_size)
    applied to the input (CoMiX: 3x3, "a 3x3 DWConv followed by a linear projection");
    ``offset_mask`` Linear(C, P) with P = :func:`dcnv4_offset_dim`, **zero-initialised** (so at
    init every mask is 0 and the layer outputs ``output_proj``'s bias); ``output_proj``
    Linear(C, C); value/output projections Xavier-uniform with zero bias. With
    ``center_feature_scale``: ``center_feature_scale_proj_weight`` (G, C) and
    ``..._bias`` (G,), both zero, blending the DCN output with the projected value per group.

    Input tokens (N, L, C) row-major over ``shape=(H, W)`` (default: a square L); output
    (N, L, C). Differences from upstream: ``pad=None`` (default) means "same" padding
    ``dilation*(kernel_size-1)//2`` (upstream defaults to 1, right only for 3x3), and only
    shape-preserving settings are accepted (upstream reshapes the output to L tokens, so
    anything else fails there too). ``C/group`` must be a multiple of 16, as upstream asserts,
    so every CPU configuration also runs on the CUDA kernel.
    """

    def __init__(
        self,
        channels: int = 64,
        kernel_size: int = 3,
        stride: int = 1,
        pad: int | None = None,
        dilation: int = 1,
        group: int = 4,
        offset_scale: float = 1.0,
        dw_kernel_size: int | None = None,
        center_feature_scale: bool = False,
        remove_center: bool = False,
        output_bias: bool = True,
        without_pointwise: bool = False,
        *,
        backend: str = "auto",
        chunk_points: int | None = None,
    ) -> None:
        super().__init__()
        channels = _int_arg("channels", channels, 1)
        group = _int_arg("group", group, 1)
        if channels % group:
            raise ConfigError(f"DCNv4: channels={channels} is not divisible by group={group}")
        if (channels // group) % _KERNEL_CHANNEL_MULTIPLE:
            raise ConfigError(
                f"DCNv4: channels/group = {channels}/{group} = {channels // group}; expected a multiple of "
                f"{_KERNEL_CHANNEL_MULTIPLE} (the package asserts it; choose group = channels // 16)"
            )
        dilation = _int_arg("dilation", dilation, 1)
        kernel_size = _int_arg("kernel_size", kernel_size, 1)
        if pad is None:
            pad = dilation * (kernel_size - 1) // 2
        self.geometry = DCNGeometry.of(kernel_size, kernel_size, stride, stride, pad, pad, dilation, dilation,
                                       group, channels // group, offset_scale, int(bool(remove_center)))
        probe = 4 * kernel_size * dilation + 1
        if self.geometry.output_size(probe, probe) != (probe, probe):
            raise ConfigError(
                f"DCNv4: kernel_size={kernel_size}, stride={stride}, pad={pad}, dilation={dilation} change the "
                f"map size; the layer maps L tokens to L tokens, so use stride 1 and pad = dilation*(kernel_size-1)/2 "
                f"(an even kernel_size*dilation span has no such padding)"
            )
        if dw_kernel_size is not None and (_int_arg("dw_kernel_size", dw_kernel_size, 1) % 2 == 0):
            raise ConfigError(f"DCNv4: dw_kernel_size={dw_kernel_size}; expected an odd size (it keeps the map size)")
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.pad = pad
        self.dilation = dilation
        self.group = group
        self.group_channels = channels // group
        self.offset_scale = float(offset_scale)
        self.dw_kernel_size = dw_kernel_size
        self.center_feature_scale = bool(center_feature_scale)
        self.remove_center = int(bool(remove_center))
        self.without_pointwise = bool(without_pointwise)
        self.backend = _check_backend(backend)
        self.chunk_points = chunk_points if chunk_points is None else _positive_chunk(chunk_points)
        self.K = group * self.geometry.points  # upstream's name: sampling points of all groups
        if dw_kernel_size is not None:
            self.offset_mask_dw = nn.Conv2d(channels, channels, dw_kernel_size, stride=1,
                                            padding=(dw_kernel_size - 1) // 2, groups=channels)
        self.offset_mask = nn.Linear(channels, self.geometry.padded_offset_dim)
        if not self.without_pointwise:
            self.value_proj = nn.Linear(channels, channels)
            self.output_proj = nn.Linear(channels, channels, bias=output_bias)
        if self.center_feature_scale:
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros(group, channels))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Upstream's initialisation: zero offsets/masks, Xavier-uniform projections, zero biases."""
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)
        if not self.without_pointwise:
            nn.init.xavier_uniform_(self.value_proj.weight)
            nn.init.zeros_(self.value_proj.bias)
            nn.init.xavier_uniform_(self.output_proj.weight)
            if self.output_proj.bias is not None:
                nn.init.zeros_(self.output_proj.bias)
        if self.center_feature_scale:
            nn.init.zeros_(self.center_feature_scale_proj_weight)
            nn.init.zeros_(self.center_feature_scale_proj_bias)

    def _hw(self, length: int, shape: Sequence[int] | None) -> tuple[int, int]:
        if shape is None:
            side = math.isqrt(length)
            if side * side != length:
                raise DCNInputError(
                    f"DCNv4: input has L = {length} tokens, not a square; pass shape=(H, W) with H*W = {length}"
                )
            return side, side
        h, w = (int(s) for s in shape)
        if h * w != length:
            raise DCNInputError(f"DCNv4: shape={tuple(shape)} gives H*W = {h * w}; expected L = {length} tokens")
        return h, w

    def forward(self, input: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
        """(N, L, C) tokens, row-major over ``shape`` = (H, W) -> (N, L, C)."""
        if input.ndim != 3 or input.shape[-1] != self.channels:
            raise DCNInputError(
                f"DCNv4: input has shape {_shape(input)}; expected tokens (N, L, C) with C = {self.channels}"
            )
        n, length, c = input.shape
        h, w = self._hw(length, shape)
        x = input if self.without_pointwise else self.value_proj(input)
        x = x.reshape(n, h, w, c)
        grid_in = input.reshape(n, h, w, c)
        if self.dw_kernel_size is not None:
            grid_in = self.offset_mask_dw(grid_in.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        offset_mask = self.offset_mask(grid_in)  # (N, H, W, P)
        geo = self.geometry
        y = dcnv4_core(
            x, offset_mask, geo.kernel_h, geo.kernel_w, geo.stride_h, geo.stride_w, geo.pad_h, geo.pad_w,
            geo.dilation_h, geo.dilation_w, geo.group, geo.group_channels, geo.offset_scale, 256,
            geo.remove_center, backend=self.backend, chunk_points=self.chunk_points,
        )
        if self.center_feature_scale:
            blend = torch.sigmoid(F.linear(y, self.center_feature_scale_proj_weight,
                                           self.center_feature_scale_proj_bias))  # (N, H, W, G)
            blend = blend.repeat_interleave(self.group_channels, dim=-1)
            y = y * (1 - blend) + x * blend
        y = y.reshape(n, length, c)
        return y if self.without_pointwise else self.output_proj(y)

    def resolved_backend(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
        """The backend this layer runs with on ``device``: ``cuda_kernel`` or ``pure_torch``.

        For ``"auto"``: the kernel when the device is CUDA, the package imports and its kernel
        supports this layer (3x3; a 7x7 layer runs pure torch even on a GPU).
        """
        if self.backend != "auto":
            return self.backend
        if default_dcn_backend(device) == "cuda_kernel" and _static_kernel_reason(self.geometry, True, dtype) is None:
            return "cuda_kernel"
        return "pure_torch"

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, pad={self.pad}, "
                f"dilation={self.dilation}, group={self.group}, offset_scale={self.offset_scale}, "
                f"remove_center={self.remove_center}, backend={self.backend!r}")


def dcn_backend(model: nn.Module, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str | None:
    """The DCN backend(s) of every :class:`DCNv4` in ``model`` on ``device`` (the ``bench.dcn_backend`` tag).

    ``"cuda_kernel"`` or ``"pure_torch"`` when all layers agree, ``"cuda_kernel+pure_torch"``
    when they differ (e.g. CoMiX on a GPU: 3x3 layers on the kernel, 7x7 layers in pure torch),
    None when the model has no DCNv4 layer.
    """
    found = {m.resolved_backend(device, dtype) for m in model.modules() if isinstance(m, DCNv4)}
    return "+".join(sorted(found)) if found else None

