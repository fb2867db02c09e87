"""Selective scan: the fast pure-PyTorch path vs the sequential reference, side by side.

Shapes of a Mamba/VMamba layer: batch 64, d_inner 128, d_state 16, input-dependent B and C,
D skip, z gate, delta bias and softplus; L = 121 (an 11x11 patch) and L = 1024 (a 32x32
crop). Forward under inference_mode at both lengths; forward + backward at L = 121 only
(the sequential reference's L = 1024 backward peaks near 24 GB). Target: fast path >= 5x
the sequential reference at L = 1024 forward. On a CUDA machine with mamba-ssm, also our
path vs mamba-ssm's kernel (skipped elsewhere).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

from bench_core.ops import mamba_ssm_available, selective_scan, selective_scan_fast, selective_scan_sequential
from benchmarks.conftest import best_of

BATCH, DIM, STATE = 64, 128, 16


def _inputs(length: int, device: str = "cpu", requires_grad: bool = False) -> list[torch.Tensor]:
    """u, delta, A, B, C, D, z, delta_bias with Mamba's initial scales (A = -(1..N))."""
    gen = torch.Generator().manual_seed(0)
    shape = (BATCH, DIM, length)
    tensors = [
        torch.randn(*shape, generator=gen),
        torch.randn(*shape, generator=gen),
        -torch.arange(1, STATE + 1, dtype=torch.float32).repeat(DIM, 1),
        torch.randn(BATCH, STATE, length, generator=gen),
        torch.randn(BATCH, STATE, length, generator=gen),
        torch.ones(DIM),
        torch.randn(*shape, generator=gen),
        torch.full((DIM,), -4.0),  # softplus(randn - 4): dt around 0.002..0.2, as at init
    ]
    return [t.to(device).requires_grad_(requires_grad) for t in tensors]


def _forward(fn: Callable[..., Any], args: list[torch.Tensor], **kwargs: Any) -> torch.Tensor:
    with torch.inference_mode():
        return fn(*args, delta_softplus=True, **kwargs)


def _forward_backward(fn: Callable[..., Any], args: list[torch.Tensor]) -> None:
    out = fn(*args, delta_softplus=True)
    out.sum().backward()
    for t in args:
        t.grad = None


def _load() -> list[float]:
    """1/5/15-minute load averages: other processes on the machine skew every timing."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.benchmark(group="selective-scan")
@pytest.mark.parametrize("length", [121, 1024])
def test_scan_forward_fast_vs_sequential(benchmark, record, length: int) -> None:
    args = _inputs(length)
    error = _relative_error(_forward(selective_scan_fast, args), _forward(selective_scan_sequential, args))
    sequential = best_of(lambda: _forward(selective_scan_sequential, args), repeats=3)
    fast = best_of(lambda: _forward(selective_scan_fast, args), repeats=5)
    ratio = sequential / fast
    benchmark.extra_info.update({"sequential_s": sequential, "fast_s": fast, "ratio": ratio})
    benchmark.pedantic(_forward, args=(selective_scan_fast, args), rounds=3, iterations=1)
    record(f"selective_scan_forward_L{length}", {
        "batch": BATCH, "d_inner": DIM, "d_state": STATE, "length": length, "pass": "forward",
        "sequential_s": sequential, "fast_s": fast, "ratio_sequential_over_fast": ratio,
        "max_relative_error": error, "target": ">= 5 at L = 1024" if length == 1024 else "none",
        "load_average_after": _load(),
    })
    print(f"\nscan forward L={length}: sequential {sequential:.3f} s vs fast {fast:.3f} s -> {ratio:.1f}x "
          f"(max rel. error {error:.1e})")


@pytest.mark.benchmark(group="selective-scan")
def test_scan_forward_backward_fast_vs_sequential(benchmark, record) -> None:
    length = 121
    args = _inputs(length, requires_grad=True)
    sequential = best_of(lambda: _forward_backward(selective_scan_sequential, args), repeats=3)
    fast = best_of(lambda: _forward_backward(selective_scan_fast, args), repeats=3)
    ratio = sequential / fast
    benchmark.extra_info.update({"sequential_s": sequential, "fast_s": fast, "ratio": ratio})
    benchmark.pedantic(_forward_backward, args=(selective_scan_fast, args), rounds=3, iterations=1)
    record(f"selective_scan_forward_backward_L{length}", {
        "batch": BATCH, "d_inner": DIM, "d_state": STATE, "length": length, "pass": "forward+backward",
        "sequential_s": sequential, "fast_s": fast, "ratio_sequential_over_fast": ratio, "target": "none",
        "load_average_after": _load(),
    })
    print(f"\nscan forward+backward L={length}: sequential {sequential:.3f} s vs fast {fast:.3f} s "
          f"-> {ratio:.1f}x")


@pytest.mark.benchmark(group="selective-scan")
@pytest.mark.skipif(
    not (torch.cuda.is_available() and mamba_ssm_available()),
    reason="needs a CUDA device and mamba-ssm with its CUDA extension (pip install '.[cuda]')",
)
@pytest.mark.parametrize("length", [121, 1024])
def test_scan_cuda_kernel_vs_fast_path(benchmark, record, length: int) -> None:
    args = _inputs(length, device="cuda")

    def timed(backend: str) -> Callable[[], None]:
        def run() -> None:
            _forward(selective_scan, args, backend=backend)
            torch.cuda.synchronize()  # kernels run asynchronously
        return run

    error = _relative_error(_forward(selective_scan, args, backend="cuda_kernel"),
                            _forward(selective_scan, args, backend="pure_torch_fast"))
    ours = best_of(timed("pure_torch_fast"), repeats=5)
    kernel = best_of(timed("cuda_kernel"), repeats=20)
    ratio = ours / kernel
    benchmark.extra_info.update({"pure_torch_fast_s": ours, "cuda_kernel_s": kernel, "ratio": ratio})
    benchmark.pedantic(timed("cuda_kernel"), rounds=5, iterations=1)
    record(f"selective_scan_cuda_L{length}", {
        "batch": BATCH, "d_inner": DIM, "d_state": STATE, "length": length, "pass": "forward",
        "device": torch.cuda.get_device_name(), "pure_torch_fast_s": ours, "cuda_kernel_s": kernel,
        "ratio_fast_over_kernel": ratio, "max_relative_error": error, "target": "none",
    })
    print(f"\nscan forward L={length} on CUDA: ours {ours:.4f} s vs mamba-ssm {kernel:.4f} s -> {ratio:.1f}x")
