"""DCNv4: the pure-torch core vs a scalar loop written from the CUDA kernel's rules, properties,
gradients (gradcheck, chunked backward vs plain autograd), FLOPs, the module and backend dispatch."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import bench_core.ops.dcnv4 as dcnv4_module
from bench_core.errors import BenchError, ConfigError
from bench_core.ops.dcnv4 import (
    DCN_BACKENDS,
    DCNInputError,
    DCNv4,
    dcn_backend,
    dcnv4_core,
    dcnv4_core_autograd,
    dcnv4_flops,
    dcnv4_kernel_available,
    dcnv4_offset_dim,
    default_dcn_backend,
)

# --------------------------------------------------------------------------- the oracle


def scalar_loop_dcnv4(
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
) -> torch.Tensor:
    """DCNv4 forward, one output pixel, group and point at a time, as the CUDA kernel computes it.

    Rules (``dcnv4_im2col_cuda.cuh``): integer start ``p0 = ((dil*(k-1)) >> 1) - pad + o*stride``,
    ``p0_ = p0 - ((dil*(k-1)) >> 1) * offset_scale``; loop i over kernel width (outer), j over
    height (inner), skipping (kernel_w/2, kernel_h/2) with remove_center; offsets read as
    consecutive (w, h) pairs, masks after the 2*K offsets; ``loc = p0_ + (i*dil + off) *
    offset_scale``; skipped unless -1 < loc_h < H and -1 < loc_w < W; bilinear with corners
    outside the image dropped; masks used as they are.
    """
    v = value.detach().double().numpy()
    om = offset_mask.detach().double().numpy()
    n_batch, height, width, _ = v.shape
    h_out = (height + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    w_out = (width + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    k = kernel_h * kernel_w - remove_center
    d = group_channels
    out = np.zeros((n_batch, h_out, w_out, group * d))
    for n in range(n_batch):
        for oh in range(h_out):
            for ow in range(w_out):
                p0_w = ((dilation_w * (kernel_w - 1)) >> 1) - pad_w + ow * stride_w
                p0_h = ((dilation_h * (kernel_h - 1)) >> 1) - pad_h + oh * stride_h
                p0_w_ = p0_w - ((dilation_w * (kernel_w - 1)) >> 1) * offset_scale
                p0_h_ = p0_h - ((dilation_h * (kernel_h - 1)) >> 1) * offset_scale
                for g in range(group):
                    params = om[n, oh, ow, g * k * 3 : (g + 1) * k * 3]
                    acc = np.zeros(d)
                    offset_idx, mask_idx = 0, 0
                    for i in range(kernel_w):
                        for j in range(kernel_h):
                            if remove_center and i == kernel_w // 2 and j == kernel_h // 2:
                                continue
                            w_im = p0_w_ + (i * dilation_w + params[offset_idx]) * offset_scale
                            h_im = p0_h_ + (j * dilation_h + params[offset_idx + 1]) * offset_scale
                            attn = params[2 * k + mask_idx]
                            offset_idx += 2
                            mask_idx += 1
                            if not (h_im > -1 and w_im > -1 and h_im < height and w_im < width):
                                continue
                            h_low, w_low = math.floor(h_im), math.floor(w_im)
                            lh, lw = h_im - h_low, w_im - w_low
                            corners = (
                                (h_low, w_low, (1 - lh) * (1 - lw)),
                                (h_low, w_low + 1, (1 - lh) * lw),
                                (h_low + 1, w_low, lh * (1 - lw)),
                                (h_low + 1, w_low + 1, lh * lw),
                            )
                            for y, x, weight in corners:
                                if 0 <= y < height and 0 <= x < width:
                                    acc += attn * weight * v[n, y, x, g * d : (g + 1) * d]
                    out[n, oh, ow, g * d : (g + 1) * d] = acc
    return torch.from_numpy(out)


# --------------------------------------------------------------------------- inputs

# kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group, D, offset_scale, remove_center
GRID = [
    (3, 3, 1, 1, 1, 1, 1, 1, 1, 3, 1.0, 0),
    (3, 3, 2, 2, 1, 1, 1, 1, 2, 2, 0.5, 1),
    (3, 3, 1, 1, 2, 2, 2, 2, 4, 2, 2.0, 0),
    (3, 3, 1, 1, 0, 0, 1, 1, 4, 1, 1.0, 1),
    (7, 7, 1, 1, 3, 3, 1, 1, 1, 2, 1.0, 0),
    (7, 7, 2, 1, 2, 3, 1, 1, 2, 2, 2.0, 1),
    (7, 7, 1, 2, 6, 6, 2, 2, 1, 1, 0.5, 0),
    (3, 5, 1, 2, 1, 2, 2, 1, 2, 2, 1.0, 0),
    (5, 3, 2, 1, 2, 1, 1, 2, 1, 3, 2.0, 1),
    (4, 4, 1, 1, 1, 2, 1, 1, 2, 2, 1.0, 1),  # even kernel: the kernel still drops point (2, 2)
    (1, 1, 1, 1, 0, 0, 1, 1, 2, 2, 1.5, 0),
    # odd dilation*(k-1) with offset_scale != 1: only here does the integer centre shift matter
    (4, 2, 1, 2, 2, 1, 1, 1, 2, 2, 0.5, 1),
    (2, 3, 1, 1, 0, 1, 3, 1, 1, 2, 2.0, 0),
]
HEIGHT, WIDTH = 6, 7  # H != W


def _make(
    case: tuple[Any, ...],
    *,
    seed: int = 0,
    batch: int = 2,
    size: tuple[int, int] = (HEIGHT, WIDTH),
    offset_std: float = 2.5,
    extra_pad: int = 0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, tuple[Any, ...]]:
    """value, offset_mask (offsets that leave the image, negative unnormalised masks) and args."""
    kh, kw, sh, sw, ph, pw, dh, dw, g, d, scale, rc = case
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    ho = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    wo = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    k = kh * kw - rc
    p = dcnv4_offset_dim(g, kh, kw, rc) + extra_pad
    value = torch.randn(batch, h, w, g * d, generator=gen, dtype=dtype)
    offset_mask = torch.randn(batch, ho, wo, p, generator=gen, dtype=dtype) * offset_std
    core = offset_mask[..., : 3 * g * k].view(batch, ho, wo, g, 3 * k)
    core[..., 2 * k :] = torch.randn(batch, ho, wo, g, k, generator=gen, dtype=dtype) * 1.5
    offset_mask[..., 3 * g * k :] = 1e6  # padding: must be ignored
    args = (kh, kw, sh, sw, ph, pw, dh, dw, g, d, scale)
    return value, offset_mask, args


def _reference(value: torch.Tensor, offset_mask: torch.Tensor, args: tuple[Any, ...], rc: int) -> torch.Tensor:
    return scalar_loop_dcnv4(value, offset_mask, *args, rc)


# --------------------------------------------------------------------------- 4g.1 equivalence


@pytest.mark.parametrize("case", GRID, ids=lambda c: "k{}x{}-s{}{}-p{}{}-d{}{}-g{}-D{}-os{}-rc{}".format(*c))
def test_core_equals_scalar_loop_of_the_kernel(case: tuple[Any, ...]) -> None:
    rc = case[-1]
    value, offset_mask, args = _make(case, seed=hash(case) % 1000)
    expected = _reference(value, offset_mask, args, rc)
    assert expected.abs().max() > 0.5  # the oracle samples real values, not only the zero border
    found = dcnv4_core(value, offset_mask, *args, 256, rc)
    assert found.shape == expected.shape and found.dtype == torch.float64
    torch.testing.assert_close(found, expected, atol=1e-12, rtol=0)
    for chunk in (1, 4):
        torch.testing.assert_close(dcnv4_core(value, offset_mask, *args, 256, rc, chunk_points=chunk),
                                   expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(dcnv4_core_autograd(value, offset_mask, *args, 256, rc), expected,
                               atol=1e-12, rtol=0)


def test_integer_and_half_integer_locations_at_the_borders() -> None:
    """Points landing exactly on -1, 0, H-1, H-0.5, H (and beyond) follow the kernel's cut-offs."""
    case = (3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0)
    value, offset_mask, args = _make(case, seed=3, extra_pad=8)
    k = 9
    core = offset_mask[..., : 3 * 2 * k].view(*offset_mask.shape[:3], 2, 3 * k)
    choices = torch.tensor([-8.0, -7.0, -6.5, -1.0, -0.5, 0.0, 0.5, 1.0, 5.0, 5.5, 6.0, 6.5, 7.0])
    gen = torch.Generator().manual_seed(4)
    picks = choices[torch.randint(len(choices), core[..., : 2 * k].shape, generator=gen)]
    core[..., : 2 * k] = picks.to(core.dtype)
    expected = _reference(value, offset_mask, args, 0)
    torch.testing.assert_close(dcnv4_core(value, offset_mask, *args), expected, atol=1e-12, rtol=0)


def test_masks_are_used_raw_no_softmax() -> None:
    case = (3, 3, 1, 1, 1, 1, 1, 1, 2, 2, 1.0, 0)
    value, offset_mask, args = _make(case, seed=5)
    k, g = 9, 2
    scaled = offset_mask.clone()
    masks = scaled[..., : 3 * g * k].view(*scaled.shape[:3], g, 3 * k)[..., 2 * k :]
    masks.mul_(-2.5)
    torch.testing.assert_close(dcnv4_core(value, scaled, *args), -2.5 * dcnv4_core(value, offset_mask, *args),
                               atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- 4g.2 properties


def test_zero_offsets_unit_masks_are_a_depthwise_box_sum() -> None:
    gen = torch.Generator().manual_seed(6)
    n, h, w, c = 2, 5, 7, 3
    value = torch.randn(n, h, w, c, generator=gen, dtype=torch.float64)
    p = dcnv4_offset_dim(1, 3, 3)
    offset_mask = torch.zeros(n, h, w, p, dtype=torch.float64)
    offset_mask[..., 18:27] = 1.0
    found = dcnv4_core(value, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, 1, c, 1.0)
    box = F.conv2d(value.permute(0, 3, 1, 2), torch.ones(c, 1, 3, 3, dtype=torch.float64), padding=1, groups=c)
    torch.testing.assert_close(found, box.permute(0, 2, 3, 1), atol=1e-12, rtol=0)


@pytest.mark.parametrize(("point", "dx", "dy"), [(0, 0, 0), (2, 1, -2), (7, -3, 1), (4, 2, 2)])
def test_integer_offset_on_one_point_is_a_pure_shift(point: int, dx: int, dy: int) -> None:
    gen = torch.Generator().manual_seed(7)
    n, h, w, c = 1, 6, 5, 2
    value = torch.randn(n, h, w, c, generator=gen, dtype=torch.float64)
    offset_mask = torch.zeros(n, h, w, dcnv4_offset_dim(1, 3, 3), dtype=torch.float64)
    offset_mask[..., 2 * point] = dx
    offset_mask[..., 2 * point + 1] = dy
    offset_mask[..., 18 + point] = 1.0
    found = dcnv4_core(value, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, 1, c, 1.0)
    i, j = divmod(point, 3)  # width index outer, height index inner
    shift_x, shift_y = i - 1 + dx, j - 1 + dy
    expected = torch.zeros_like(value)
    for y in range(h):
        for x in range(w):
            if 0 <= y + shift_y < h and 0 <= x + shift_x < w:
                expected[:, y, x] = value[:, y + shift_y, x + shift_x]
    torch.testing.assert_close(found, expected, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- 4g.3 gradients


def _smooth_inputs(case: tuple[Any, ...], seed: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Non-integer offsets (bilinear is not differentiable at integer locations)."""
    value, offset_mask, args = _make(case, seed=seed, batch=1, size=size, offset_std=0.6)
    offset_mask[..., 3 * case[8] * (case[0] * case[1] - case[-1]) :] = 0.0
    return value.requires_grad_(True), offset_mask.requires_grad_(True), args


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [(3, 3, 1, 1, 1, 1, 1, 1, 2, 2, 0.7, 1), (3, 3, 2, 1, 2, 1, 2, 1, 1, 2, 1.3, 0)],
    ids=["3x3-rc", "3x3-stride-dilation"],
)
def test_gradcheck_float64(case: tuple[Any, ...]) -> None:
    value, offset_mask, args = _smooth_inputs(case, seed=8, size=(4, 5))
    rc = case[-1]
    assert torch.autograd.gradcheck(lambda v, o: dcnv4_core(v, o, *args, 256, rc, chunk_points=3),
                                    (value, offset_mask), eps=1e-6, atol=1e-8)


def _outputs_and_grads(fn: Any, value: torch.Tensor, offset_mask: torch.Tensor, grad_out: torch.Tensor,
                       wrt: tuple[bool, bool], *args: Any, **kwargs: Any) -> list[torch.Tensor]:
    v = value.detach().clone().requires_grad_(wrt[0])
    o = offset_mask.detach().clone().requires_grad_(wrt[1])
    out = fn(v, o, *args, **kwargs)
    inputs = [t for t, need in zip((v, o), wrt) if need]
    return [out.detach(), *torch.autograd.grad(out, inputs, grad_out)]


@pytest.mark.parametrize("wrt", [(True, True), (True, False), (False, True)], ids=["both", "value", "offset_mask"])
@pytest.mark.parametrize("chunk", [1, 5, None])
@pytest.mark.parametrize(
    "case", [(7, 7, 1, 1, 3, 3, 1, 1, 2, 3, 1.0, 1), (3, 5, 2, 1, 1, 2, 1, 2, 1, 1, 0.5, 0)], ids=["7x7", "3x5-G1-D1"]
)
def test_chunked_backward_equals_plain_autograd(case: tuple[Any, ...], wrt: tuple[bool, bool],
                                                chunk: int | None) -> None:
    rc = case[-1]
    value, offset_mask, args = _make(case, seed=9, size=(6, 7), offset_std=1.5, extra_pad=8)
    out_shape = dcnv4_core(value, offset_mask, *args, 256, rc).shape
    grad_out = torch.randn(out_shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    found = _outputs_and_grads(dcnv4_core, value, offset_mask, grad_out, wrt, *args, 256, rc, chunk_points=chunk)
    expected = _outputs_and_grads(dcnv4_core_autograd, value, offset_mask, grad_out, wrt, *args, 256, rc)
    assert len(found) == len(expected) == 1 + sum(wrt)
    for f, e in zip(found, expected):
        torch.testing.assert_close(f, e, atol=1e-12, rtol=1e-12)
    if wrt[1]:
        used = 3 * case[8] * (case[0] * case[1] - rc)
        assert found[-1][..., used:].abs().max() == 0  # padding entries get no gradient
        assert found[-1][..., :used].abs().max() > 0


def test_float32_inputs_give_float32_output_and_grads() -> None:
    case = (3, 3, 1, 1, 1, 1, 1, 1, 2, 2, 1.0, 0)
    value, offset_mask, args = _make(case, seed=11, dtype=torch.float32)
    value.requires_grad_(True)
    offset_mask.requires_grad_(True)
    out = dcnv4_core(value, offset_mask, *args)
    out.sum().backward()
    assert out.dtype == value.grad.dtype == offset_mask.grad.dtype == torch.float32
    expected = _reference(value, offset_mask, args, 0)
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-5)


# --------------------------------------------------------------------------- 4g.4 FLOPs


@pytest.mark.parametrize("case", [GRID[1], GRID[5]], ids=["3x3-stride2-rc", "7x7-mixed"])
def test_flop_counter_counts_the_dcn_formula(case: tuple[Any, ...]) -> None:
    value, offset_mask, args = _make(case, seed=12)
    rc = case[-1]
    with FlopCounterMode(display=False) as counter:
        out = dcnv4_core(value, offset_mask, *args, 256, rc)
    n, ho, wo, _ = out.shape
    g, d = case[8], case[9]
    kp = case[0] * case[1] - rc
    expected = 10 * n * ho * wo * g * d * kp
    assert counter.get_total_flops() == expected == dcnv4_flops(n, ho, wo, g, d, kp)
    assert counter.get_flop_counts()["Global"][torch.ops.bench.dcnv4] == expected


def test_module_flops_include_the_dcn_op() -> None:
    layer = DCNv4(32, 3, group=2, dw_kernel_size=3).double()
    x = torch.randn(2, 20, 32, dtype=torch.float64)
    with FlopCounterMode(display=False) as counter:
        layer(x, shape=(4, 5))
    counts = counter.get_flop_counts()["Global"]
    assert counts[torch.ops.bench.dcnv4] == 10 * 2 * 20 * 2 * 16 * 9
    assert counter.get_total_flops() > counts[torch.ops.bench.dcnv4]  # plus the projections


def test_fake_tensors_give_shapes_without_computing() -> None:
    value, offset_mask, args = _make(GRID[1], seed=13)
    out = dcnv4_core(value.to("meta"), offset_mask.to("meta"), *args, 256, 1)
    assert out.device.type == "meta"
    assert tuple(out.shape) == (2, 3, 4, 4)


# --------------------------------------------------------------------------- 4g.5 module


def test_module_parameters_match_upstream_names_shapes_and_init() -> None:
    layer = DCNv4(channels=32, kernel_size=3, group=2, dw_kernel_size=3)
    p = math.ceil(3 * 2 * 9 / 8) * 8
    assert p == 56 and p % 8 == 0 and layer.geometry.padded_offset_dim == p
    assert [(name, tuple(t.shape)) for name, t in layer.named_parameters()] == [
        ("offset_mask_dw.weight", (32, 1, 3, 3)),
        ("offset_mask_dw.bias", (32,)),
        ("offset_mask.weight", (p, 32)),
        ("offset_mask.bias", (p,)),
        ("value_proj.weight", (32, 32)),
        ("value_proj.bias", (32,)),
        ("output_proj.weight", (32, 32)),
        ("output_proj.bias", (32,)),
    ]
    assert layer.offset_mask.weight.abs().max() == 0 and layer.offset_mask.bias.abs().max() == 0
    assert layer.value_proj.bias.abs().max() == 0 and layer.output_proj.bias.abs().max() == 0
    assert layer.K == 2 * 9
    no_dw = DCNv4(channels=16, kernel_size=7, group=1, remove_center=True, output_bias=False)
    assert [name for name, _ in no_dw.named_parameters()] == [
        "offset_mask.weight", "offset_mask.bias", "value_proj.weight", "value_proj.bias", "output_proj.weight",
    ]
    assert no_dw.offset_mask.weight.shape == (dcnv4_offset_dim(1, 7, 7, 1), 16) == (48 * 3, 16)
    scaled = DCNv4(channels=32, group=2, center_feature_scale=True)
    assert scaled.center_feature_scale_proj_weight.shape == (2, 32)
    assert scaled.center_feature_scale_proj_bias.shape == (2,)
    bare = DCNv4(channels=32, group=2, without_pointwise=True)
    assert [name for name, _ in bare.named_parameters()] == ["offset_mask.weight", "offset_mask.bias"]


def test_module_at_init_outputs_the_output_bias() -> None:
    torch.manual_seed(0)
    layer = DCNv4(channels=32, kernel_size=7, group=2, dw_kernel_size=3)
    x = torch.randn(2, 30, 32)
    assert layer(x, shape=(5, 6)).abs().max() == 0  # zero masks: the DCN path is zero
    with torch.no_grad():
        layer.output_proj.bias.fill_(0.25)
    torch.testing.assert_close(layer(x, shape=(5, 6)), torch.full((2, 30, 32), 0.25))


def test_module_equals_its_composition_and_trains_every_parameter() -> None:
    torch.manual_seed(1)
    layer = DCNv4(channels=32, kernel_size=3, group=2, dw_kernel_size=3, offset_scale=1.5,
                  center_feature_scale=True).double()
    with torch.no_grad():
        for t in layer.parameters():
            t.copy_(torch.randn_like(t) * 0.3)
    n, h, w, c = 2, 4, 6, 32
    x = torch.randn(n, h * w, c, dtype=torch.float64)
    out = layer(x, shape=(h, w))
    value = layer.value_proj(x).reshape(n, h, w, c)
    grid_in = layer.offset_mask_dw(x.reshape(n, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    offset_mask = layer.offset_mask(grid_in)
    core = scalar_loop_dcnv4(value, offset_mask, 3, 3, 1, 1, 1, 1, 1, 1, 2, 16, 1.5, 0)
    blend = torch.sigmoid(core @ layer.center_feature_scale_proj_weight.T + layer.center_feature_scale_proj_bias)
    blend = blend[..., :, None].expand(n, h, w, 2, 16).reshape(n, h, w, c)
    mixed = core * (1 - blend) + value * blend
    expected = layer.output_proj(mixed.reshape(n, h * w, c))
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)
    out.square().sum().backward()
    missing = [name for name, t in layer.named_parameters() if t.grad is None or not t.grad.abs().sum() > 0]
    assert not missing


def test_module_square_default_shape_and_bad_inputs() -> None:
    layer = DCNv4(channels=16, group=1)
    assert layer(torch.randn(1, 9, 16)).shape == (1, 9, 16)
    with pytest.raises(DCNInputError, match="L = 10 tokens, not a square"):
        layer(torch.randn(1, 10, 16))
    with pytest.raises(DCNInputError, match=r"shape=\(2, 4\) gives H\*W = 8; expected L = 10"):
        layer(torch.randn(1, 10, 16), shape=(2, 4))
    with pytest.raises(DCNInputError, match=r"expected tokens \(N, L, C\) with C = 16"):
        layer(torch.randn(1, 9, 8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 24, "group": 2}, r"channels/group = 24/2 = 12; expected a multiple of 16"),
        ({"channels": 32, "group": 3}, r"channels=32 is not divisible by group=3"),
        ({"channels": 16, "group": 1, "kernel_size": 4}, "change the map size"),
        ({"channels": 16, "group": 1, "stride": 2}, "change the map size"),
        ({"channels": 16, "group": 1, "dw_kernel_size": 2}, "dw_kernel_size=2"),
        ({"channels": 16, "group": 1, "backend": "triton"}, "backend='triton'"),
    ],
)
def test_module_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DCNv4(**kwargs)


# --------------------------------------------------------------------------- validation


def _good() -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
    value, offset_mask, args = _make(GRID[0], seed=14)
    return value, offset_mask, list(args)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda v, o, a: (v[0], o, a), r"value has shape \(6, 7, 3\); expected a 4-d"),
        (lambda v, o, a: (v[..., :2], o, a), r"value has 2 channels .* group\*group_channels = 1\*3 = 3"),
        (lambda v, o, a: (v, o[..., :16], a), r"offset_mask has shape \(2, 6, 7, 16\).*P >= 3\*group\*Kp = 27"),
        (lambda v, o, a: (v, torch.cat([o, o[..., :3]], -1), a), r"P a multiple of 8"),
        (lambda v, o, a: (v, o[:, :5], a), r"offset_mask has shape \(2, 5, 7, 32\); expected .* \(2, 6, 7, P\)"),
        (lambda v, o, a: (v.int(), o, a), r"value has dtype torch.int32"),
    ],
)
def test_bad_tensors_name_the_argument(change: Any, match: str) -> None:
    value, offset_mask, args = change(*_good())
    with pytest.raises(DCNInputError, match=match) as info:
        dcnv4_core(value, offset_mask, *args)
    assert isinstance(info.value, BenchError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("index", "bad", "match"),
    [(0, 0, "kernel_h=0"), (2, True, "stride_h=True"), (4, -1, "pad_h=-1"), (9, 2.5, "group_channels=2.5"),
     (10, float("nan"), "offset_scale=nan")],
)
def test_bad_scalars_are_config_errors(index: int, bad: Any, match: str) -> None:
    value, offset_mask, args = _good()
    args[index] = bad
    with pytest.raises(ConfigError, match=match):
        dcnv4_core(value, offset_mask, *args)


def test_bad_remove_center_chunk_and_step() -> None:
    value, offset_mask, args = _good()
    with pytest.raises(ConfigError, match="remove_center=2"):
        dcnv4_core(value, offset_mask, *args, 256, 2)
    with pytest.raises(ConfigError, match="im2col_step=0"):
        dcnv4_core(value, offset_mask, *args, 0)
    with pytest.raises(ConfigError, match="chunk_points=0"):
        dcnv4_core(value, offset_mask, *args, chunk_points=0)
    with pytest.raises(ConfigError, match="no sampling point left"):
        dcnv4_core(value, offset_mask, 1, 1, 1, 1, 0, 0, 1, 1, 1, 3, 1.0, 256, 1)


# --------------------------------------------------------------------------- backends


def test_backends_on_cpu() -> None:
    assert DCN_BACKENDS == ("auto", "cuda_kernel", "pure_torch")
    assert default_dcn_backend("cpu") == "pure_torch"
    model = nn.Sequential(DCNv4(16, 3, group=1), DCNv4(16, 7, group=1))
    assert dcn_backend(model, "cpu") == "pure_torch"
    assert dcn_backend(nn.Linear(2, 2), "cpu") is None


@pytest.mark.parametrize("backend", ["auto", "pure_torch"])
def test_cpu_backends_run_the_custom_op(backend: str) -> None:
    value, offset_mask, args = _good()
    with FlopCounterMode(display=False) as counter:
        out = dcnv4_core(value, offset_mask, *args, backend=backend)
    assert counter.get_flop_counts()["Global"][torch.ops.bench.dcnv4] > 0
    torch.testing.assert_close(out, _reference(value, offset_mask, tuple(args), 0), atol=1e-12, rtol=0)


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="backend='triton'; expected one of auto, cuda_kernel, pure_torch"):
        dcnv4_core(*_good()[:2], *_good()[2], backend="triton")


def test_cuda_kernel_on_cpu_tensors_is_a_clear_config_error() -> None:
    value, offset_mask, args = _good()
    with pytest.raises(ConfigError, match="backend='cuda_kernel' cannot run this call: .*needs CUDA tensors"):
        dcnv4_core(value, offset_mask, *args, backend="cuda_kernel")


def test_auto_resolution_per_layer_with_a_kernel_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the package importable, 'auto' puts 3x3 layers on the kernel and 7x7 ones on pure torch."""
    monkeypatch.setattr(dcnv4_module, "_dcnv4_function", lambda: object())
    assert dcnv4_kernel_available() and default_dcn_backend("cuda") == "cuda_kernel"
    small, large = DCNv4(32, 3, group=2), DCNv4(32, 7, group=2)
    assert small.resolved_backend("cuda") == "cuda_kernel"
    assert large.resolved_backend("cuda") == "pure_torch"
    assert small.resolved_backend("cuda", torch.float64) == "pure_torch"
    assert small.resolved_backend("cuda", torch.bfloat16) == "pure_torch"
    assert small.resolved_backend("cuda", torch.float16) == "cuda_kernel"
    assert dcn_backend(nn.Sequential(small, large), "cuda") == "cuda_kernel+pure_torch"
    assert dcn_backend(nn.Sequential(small), "cuda") == "cuda_kernel"
    assert dcn_backend(nn.Sequential(small, large), "cpu") == "pure_torch"
    assert DCNv4(32, 7, group=2, backend="cuda_kernel").resolved_backend("cpu") == "cuda_kernel"
    reason = dcnv4_module._static_kernel_reason(large.geometry, True, torch.float32)
    assert reason is not None and "3x3" in reason and "49" in reason
    # CPU tensors never reach the kernel under 'auto'
    value, offset_mask, args = _good()
    torch.testing.assert_close(dcnv4_core(value, offset_mask, *args),
                               _reference(value, offset_mask, tuple(args), 0), atol=1e-12, rtol=0)


@pytest.fixture
def fake_dcnv4_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A 'DCNv4' package on sys.path whose import behaves as the caller writes it."""

    def install(init_body: str) -> None:
        package = tmp_path / "DCNv4"
        (package / "functions").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "functions" / "__init__.py").write_text(textwrap.dedent(init_body))
        monkeypatch.syspath_prepend(str(tmp_path))

    for name in [m for m in sys.modules if m == "DCNv4" or m.startswith("DCNv4.")]:
        monkeypatch.delitem(sys.modules, name)
    dcnv4_module._dcnv4_function.cache_clear()
    yield install
    for name in [m for m in sys.modules if m == "DCNv4" or m.startswith("DCNv4.")]:
        del sys.modules[name]
    dcnv4_module._dcnv4_function.cache_clear()


def test_failing_package_import_is_caught(fake_dcnv4_package: Any) -> None:
    fake_dcnv4_package('raise RuntimeError("Found no NVIDIA driver on your system")\n')
    assert dcnv4_module._dcnv4_function() is None
    assert not dcnv4_kernel_available()
    assert default_dcn_backend("cuda") == "pure_torch"


def test_importable_package_is_found_lazily(fake_dcnv4_package: Any) -> None:
    fake_dcnv4_package("class DCNv4Function:\n    pass\n")
    assert dcnv4_module._dcnv4_function().__name__ == "DCNv4Function"
    assert "DCNv4.functions" in sys.modules


@pytest.mark.slow
def test_importing_the_op_does_not_import_the_package(tmp_path: Path) -> None:
    """A DCNv4 package that raises at import must not matter until a CUDA call asks for it."""
    package = tmp_path / "DCNv4"
    package.mkdir()
    (package / "__init__.py").write_text('raise RuntimeError("Found no NVIDIA driver on your system")\n')
    code = (
        "import sys; import bench_core.ops.dcnv4 as m; assert 'DCNv4' not in sys.modules; "
        "assert not m.dcnv4_kernel_available(); print(m.default_dcn_backend('cuda'))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure_torch"


@pytest.mark.skipif(
    not (torch.cuda.is_available() and dcnv4_kernel_available()),
    reason="needs a CUDA device and the DCNv4 package with its CUDA extension",
)
def test_cuda_kernel_matches_pure_torch() -> None:
    case = (3, 3, 1, 1, 1, 1, 1, 1, 2, 16, 1.0, 0)
    value, offset_mask, args = _make(case, seed=15, batch=2, size=(16, 16), offset_std=1.0, dtype=torch.float32)
    grad_out = torch.randn(2, 16, 16, 32, generator=torch.Generator().manual_seed(16))
    expected = _outputs_and_grads(dcnv4_core, value, offset_mask, grad_out, (True, True), *args,
                                  backend="pure_torch")
    device = torch.device("cuda")
    found = _outputs_and_grads(dcnv4_core, value.to(device), offset_mask.to(device), grad_out.to(device),
                               (True, True), *args, backend="cuda_kernel")
    torch.testing.assert_close(found[0].cpu(), expected[0], rtol=1e-4, atol=1e-4)
    for f, e in zip(found[1:], expected[1:]):
        torch.testing.assert_close(f.cpu(), e, rtol=1e-3, atol=1e-3)
