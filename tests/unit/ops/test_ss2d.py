"""SS2D: cross scan/merge, the grouped directional scan, the SS2D v2 block and Cross-SS2D."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench_core.errors import ConfigError
from bench_core.ops import (
    SS2D,
    CrossSS2D,
    DirectionalSSM,
    ScanInputError,
    cross_merge,
    cross_merge_1d,
    cross_scan,
    cross_scan_1d,
    directional_scan,
    selective_scan_sequential,
)
from bench_core.timing import flops_per_sample

H, W = 3, 5  # not square, so row- and column-major orders differ in length too


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- cross scan / merge


def test_cross_scan_orders() -> None:
    x = torch.arange(H * W, dtype=torch.float32).reshape(1, 1, H, W)
    xs = cross_scan(x)
    assert xs.shape == (1, 4, 1, H * W)
    row_major = [float(x[0, 0, i, j]) for i in range(H) for j in range(W)]
    col_major = [float(x[0, 0, i, j]) for j in range(W) for i in range(H)]
    assert xs[0, 0, 0].tolist() == row_major
    assert xs[0, 1, 0].tolist() == col_major
    assert xs[0, 2, 0].tolist() == row_major[::-1]
    assert xs[0, 3, 0].tolist() == col_major[::-1]


def test_cross_merge_of_all_ones_is_four() -> None:
    ones = cross_scan(torch.ones(2, 3, H, W))
    merged = cross_merge(ones, H, W)
    assert merged.shape == (2, 3, H * W)
    assert torch.equal(merged, torch.full((2, 3, H * W), 4.0))


def test_cross_merge_undoes_cross_scan_times_four() -> None:
    x = _randn(2, 3, H, W)
    assert torch.allclose(cross_merge(cross_scan(x), H, W), 4 * x.flatten(2))
    # the 5-d form (b, 4, D, H, W) is accepted too
    assert torch.allclose(cross_merge(cross_scan(x).reshape(2, 4, 3, H, W), H, W), 4 * x.flatten(2))


def test_cross_merge_is_the_adjoint_of_cross_scan() -> None:
    """<scan(x), y> == <x, merge(y)> for every y: the merge puts each value back where it came from."""
    x, y = _randn(2, 3, H, W, seed=1), _randn(2, 4, 3, H * W, seed=2)
    lhs = (cross_scan(x) * y).sum()
    rhs = (x.flatten(2) * cross_merge(y, H, W)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-5)


def test_cross_scan_1d_round_trip() -> None:
    x = _randn(2, 3, 7)
    xs = cross_scan_1d(x)
    assert torch.equal(xs[:, 0], x) and torch.equal(xs[:, 1], x.flip(-1))
    assert torch.allclose(cross_merge_1d(xs), 2 * x)


@pytest.mark.parametrize(
    ("fn", "arg", "match"),
    [
        (cross_scan, torch.zeros(2, 3, 4), r"cross_scan: x has shape \(2, 3, 4\)"),
        (lambda y: cross_merge(y, H, W), torch.zeros(2, 4, 3, H * W + 1), r"H\*W = 3\*5 = 15"),
        (cross_scan_1d, torch.zeros(2, 3), r"expected \(batch, D, L\)"),
        (cross_merge_1d, torch.zeros(2, 3, 3, 4), r"expected \(batch, 2, D, L\)"),
    ],
)
def test_scan_layout_errors(fn: object, arg: torch.Tensor, match: str) -> None:
    with pytest.raises(ScanInputError, match=match):
        fn(arg)  # type: ignore[operator]


# --------------------------------------------------------------------------- directional scan


def test_directional_scan_equals_one_scan_per_direction() -> None:
    b, k, d, n, length = 2, 3, 4, 5, 6
    xs, dts = _randn(b, k, d, length, seed=3), _randn(b, k, d, length, seed=4)
    As = -torch.rand(k * d, n, generator=torch.Generator().manual_seed(5)) - 0.1
    Bs, Cs = _randn(b, k, n, length, seed=6), _randn(b, k, n, length, seed=7)
    Ds, bias = _randn(k * d, seed=8), _randn(k * d, seed=9)
    ys = directional_scan(xs, dts, As, Bs, Cs, Ds, bias)
    assert ys.shape == xs.shape
    for j in range(k):
        rows = slice(j * d, (j + 1) * d)
        expected = selective_scan_sequential(xs[:, j], dts[:, j], As[rows], Bs[:, j], Cs[:, j], Ds[rows],
                                             None, bias[rows], delta_softplus=True)
        assert torch.allclose(ys[:, j], expected, rtol=1e-5, atol=1e-6), f"direction {j}"
    # the flat (b, K*D, L) layout gives the same numbers in that layout
    flat = directional_scan(xs.reshape(b, k * d, length), dts.reshape(b, k * d, length), As, Bs, Cs, Ds, bias)
    assert torch.equal(flat, ys.reshape(b, k * d, length))


def test_directional_scan_checks_direction_count_and_a() -> None:
    with pytest.raises(ScanInputError, match=r"K = 2 \(Bs.shape\[1\]\)"):
        directional_scan(torch.zeros(1, 4, 3, 5), torch.zeros(1, 4, 3, 5), torch.zeros(12, 2),
                         torch.zeros(1, 2, 2, 5), torch.zeros(1, 2, 2, 5), None, None)
    with pytest.raises(ScanInputError, match=r"As has shape \(7, 2\).*K\*D = 6"):
        directional_scan(torch.zeros(1, 2, 3, 5), torch.zeros(1, 2, 3, 5), torch.zeros(7, 2),
                         torch.zeros(1, 2, 2, 5), torch.zeros(1, 2, 2, 5), None, None)


# --------------------------------------------------------------------------- SS2D


def test_ss2d_shapes_and_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    block = SS2D(16, d_state=4)
    x = _randn(2, H, W, 16, seed=10)
    out = block(x)
    assert out.shape == x.shape
    (out * _randn(*out.shape, seed=11)).sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


def test_ss2d_initialisation_follows_vmamba() -> None:
    torch.manual_seed(0)
    block = SS2D(40, d_state=6, ssm_ratio=1.5)  # d_inner 60, dt_rank ceil(40/16) = 3
    ssm = block.ssm
    assert (block.d_inner, block.dt_rank) == (60, 3)
    assert ssm.x_proj_weight.shape == (4, 3 + 2 * 6, 60)
    assert ssm.dt_projs_weight.shape == (4, 60, 3) and ssm.dt_projs_bias.shape == (4, 60)
    assert torch.allclose(ssm.A_logs, torch.log(torch.arange(1.0, 7.0)).expand(4 * 60, 6))
    assert torch.equal(ssm.Ds, torch.ones(4 * 60))
    assert ssm.dt_projs_weight.abs().max() <= 3**-0.5
    assert ssm.x_proj_weight.abs().max() <= 60**-0.5
    dt = F.softplus(ssm.dt_projs_bias)
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert dt.log().std() > 0.5  # log-uniform over two decades, not a constant
    assert getattr(ssm.A_logs, "_no_weight_decay", False) is True
    assert getattr(ssm.Ds, "_no_weight_decay", False) is True
    assert not hasattr(ssm.x_proj_weight, "_no_weight_decay")
    assert block.in_proj.bias is None and block.out_proj.bias is None and block.conv2d.bias is not None


def test_ss2d_backends_agree() -> None:
    torch.manual_seed(1)
    fast = SS2D(8, d_state=4, backend="pure_torch_fast")
    slow = SS2D(8, d_state=4, backend="pure_torch_sequential")
    slow.load_state_dict(fast.state_dict())
    x = _randn(2, H, W, 8, seed=12)
    assert torch.allclose(fast(x), slow(x), rtol=1e-5, atol=1e-6)


def test_gate_activation_is_configurable() -> None:
    torch.manual_seed(2)
    silu = SS2D(8, d_state=4, gate_act="silu")
    gelu = SS2D(8, d_state=4, gate_act="gelu")
    gelu.load_state_dict(silu.state_dict())
    x = _randn(1, H, W, 8, seed=13)
    xs, z = gelu.encode(x)
    ys = gelu.ssm(xs)
    merged = cross_merge(ys, H, W).transpose(1, 2).reshape(1, H, W, gelu.d_inner)
    expected = gelu.out_proj(gelu.out_norm(merged) * F.gelu(z))
    assert torch.allclose(gelu(x), expected, atol=1e-6)
    assert not torch.allclose(silu(x), gelu(x), atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gate_act": "relu"}, "gate_act='relu'"),
        ({"d_conv": 2}, "d_conv=2"),
        ({"dt_rank": 0}, "dt_rank=0"),
        ({"backend": "triton"}, "backend='triton'"),
    ],
)
def test_ss2d_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SS2D(8, **kwargs)


def test_ss2d_rejects_channel_first_input() -> None:
    with pytest.raises(ScanInputError, match=r"expected channel-last \(batch, H, W, 8\)"):
        SS2D(8, d_state=4)(torch.zeros(1, 8, H, W))


def test_directional_ssm_dt_rank_is_required_and_positive() -> None:
    with pytest.raises(ConfigError, match="dt_rank=0"):
        DirectionalSSM(8, 0)


# --------------------------------------------------------------------------- Cross-SS2D


def test_cross_ss2d_with_identical_streams_equals_ss2d() -> None:
    torch.manual_seed(3)
    plain = SS2D(8, d_state=4)
    cross = CrossSS2D(8, d_state=4)
    missing, unexpected = cross.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("ssm_guide.") for key in missing)
    cross.ssm_guide.load_state_dict(cross.ssm.state_dict())
    x = _randn(2, H, W, 8, seed=14)
    out_x, out_g = cross(x, x.clone())
    assert out_x.shape == out_g.shape == x.shape
    assert torch.allclose(out_x, plain(x), atol=1e-6)
    assert torch.allclose(out_g, out_x, atol=1e-6)


def test_cross_ss2d_mixes_the_streams() -> None:
    torch.manual_seed(4)
    cross = CrossSS2D(8, d_state=4)
    x = _randn(1, H, W, 8, seed=15)
    out_a, _ = cross(x, _randn(1, H, W, 8, seed=16))
    out_b, _ = cross(x, _randn(1, H, W, 8, seed=17))
    assert not torch.allclose(out_a, out_b, atol=1e-4)  # the guide's B reaches stream x
    with pytest.raises(ScanInputError, match="guide has shape"):
        cross(x, torch.zeros(1, H, W + 1, 8))


def test_cross_ss2d_forward_x_is_stream_x_of_forward_without_the_guides_scan() -> None:
    torch.manual_seed(6)
    cross = CrossSS2D(8, d_state=4)
    x, g = _randn(2, H, W, 8, seed=20), _randn(2, H, W, 8, seed=21)
    assert torch.equal(cross.forward_x(x, g), cross(x, g)[0])
    with FlopCounterMode(display=False) as counter:
        cross.forward_x(x, g)
    scans = counter.get_flop_counts()["Global"][torch.ops.bench.selective_scan]
    with FlopCounterMode(display=False) as counter:
        cross(x, g)
    assert 2 * scans == counter.get_flop_counts()["Global"][torch.ops.bench.selective_scan]
    with pytest.raises(ScanInputError, match="guide has shape"):
        cross.forward_x(x, torch.zeros(2, H, W + 1, 8))


# --------------------------------------------------------------------------- FLOPs


def _ss2d_flops(batch: int, d_model: int, d_inner: int, d_state: int, dt_rank: int, length: int) -> int:
    """Matmul/conv FLOPs (2 per multiply-add) of one SS2D forward, plus the scan formula."""
    k = 4
    macs = (
        length * d_model * 2 * d_inner  # in_proj
        + length * d_inner * 9  # depthwise 3x3 conv
        + k * length * d_inner * (dt_rank + 2 * d_state)  # x_proj, per direction
        + k * length * dt_rank * d_inner  # dt_proj, per direction
        + length * d_inner * d_model  # out_proj
    )
    scan = 9 * length * k * d_inner * d_state + length * k * d_inner  # with D, without z
    return batch * (2 * macs + scan)


def test_flop_counter_sees_the_scan_inside_ss2d() -> None:
    block = SS2D(16, d_state=4)
    x = _randn(2, H, W, 16)
    with FlopCounterMode(display=False) as counter:
        block(x)
    scan = counter.get_flop_counts()["Global"][torch.ops.bench.selective_scan]
    assert scan == 2 * (9 * H * W * 4 * 32 * 4 + H * W * 4 * 32)
    assert counter.get_total_flops() == _ss2d_flops(2, 16, 32, 4, 1, H * W)


class _OnHsi(nn.Module):
    """The harness calls models with a dict of modalities."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.block(inputs["hsi"])


def test_flops_per_sample_counts_matmuls_and_the_scan() -> None:
    block = SS2D(24, d_state=8, ssm_ratio=1.0)  # dt_rank ceil(24/16) = 2
    flops = flops_per_sample(_OnHsi(block), {"hsi": _randn(1, H, W, 24)})
    assert flops == _ss2d_flops(1, 24, 24, 8, 2, H * W)
    assert math.ceil(24 / 16) == block.dt_rank


def test_cross_ss2d_uses_mean_a_and_the_guides_b() -> None:
    """M3amba's code form: stream x gets A = (A_x + A_g) / 2 and B from the guide stream."""
    torch.manual_seed(5)
    cross = CrossSS2D(8, d_state=4)
    with torch.no_grad():
        cross.ssm_guide.A_logs.add_(torch.rand(cross.ssm_guide.A_logs.shape))  # A_g != A_x
    x, g = _randn(1, H, W, 8, seed=18), _randn(1, H, W, 8, seed=19)
    xs, z_x = cross.encode(x)
    gs, _ = cross.encode(g)
    dts, _, C_x = cross.ssm.project(xs)
    _, B_g, _ = cross.ssm_guide.project(gs)
    A_mean = -(cross.ssm.A_logs.exp() + cross.ssm_guide.A_logs.exp()) / 2
    ys = torch.stack([
        selective_scan_sequential(xs[:, j], dts[:, j], A_mean[j * 16:(j + 1) * 16], B_g[:, j], C_x[:, j],
                                  cross.ssm.Ds[j * 16:(j + 1) * 16], None,
                                  cross.ssm.dt_projs_bias[j], delta_softplus=True)
        for j in range(4)
    ], dim=1)
    expected = cross.decode(ys, z_x)
    assert torch.allclose(cross(x, g)[0], expected, rtol=1e-5, atol=1e-6)
