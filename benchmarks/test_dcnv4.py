"""DCNv4 pure-torch path: the custom op (chunked hand-written backward) vs plain autograd, side by side.

Shape of CoMiX's stage-3/4 X-branch layer at the paper's crop after one downsampling: 7x7 kernel,
C = 128 in G = 8 groups (D = 16), 64x64 map, batch 4, float32, offsets of a trained layer's
scale (a few pixels), raw masks. Both candidates compute the same grid_sample formulation;
the plain-autograd graph keeps every sampled point (N*G*D*H*W*Kp floats = 411 MB here), the
custom op one chunk of points at a time.

Time: best of alternating forward+backward passes (``paired_best_of``). Peak memory: each
candidate runs one forward+backward in a fresh Python process (Linux only), which resets its
peak-RSS mark (``/proc/self/clear_refs``) once the inputs exist; we report how far the peak
resident set size (``VmHWM``) rose above the RSS just before the pass. torch's CPU allocator
returns large blocks to the OS, so the high-water mark is the pass's real peak; tracemalloc
cannot see torch's allocations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch

from bench_core.ops.dcnv4 import dcnv4_core, dcnv4_core_autograd, dcnv4_offset_dim
from benchmarks.conftest import paired_best_of

BATCH, SIZE, CHANNELS, GROUP, KERNEL = 4, 64, 128, 8, 7
DIM = CHANNELS // GROUP
ARGS = (KERNEL, KERNEL, 1, 1, KERNEL // 2, KERNEL // 2, 1, 1, GROUP, DIM, 1.0)

# Run in a fresh interpreter: build the inputs, reset the peak-RSS mark, run one forward+backward,
# read the mark. (ru_maxrss would not do: Linux carries it over from the parent across exec.)
_MEMORY_SCRIPT = """
import json, sys
from benchmarks.test_dcnv4 import _inputs, _forward_backward, CANDIDATES

def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field + " missing from /proc/self/status")

value, offset_mask, grad_out = _inputs()
_forward_backward(CANDIDATES[sys.argv[1]], *_inputs(size=8))  # thread pools and kernels initialised
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
before = status_kib("VmRSS")
_forward_backward(CANDIDATES[sys.argv[1]], value, offset_mask, grad_out)
print(json.dumps({"rss_before_kib": before, "peak_kib": status_kib("VmHWM")}))
"""


def _inputs(size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    value = torch.randn(BATCH, size, size, CHANNELS, generator=gen)
    offset_mask = torch.randn(BATCH, size, size, dcnv4_offset_dim(GROUP, KERNEL, KERNEL), generator=gen)
    kp = KERNEL * KERNEL
    core = offset_mask[..., : 3 * GROUP * kp].view(BATCH, size, size, GROUP, 3 * kp)
    core[..., : 2 * kp].mul_(2.0)  # offsets of a few pixels
    core[..., 2 * kp :].mul_(1.0 / kp)  # masks of a sum-to-about-one scale, signs mixed
    grad_out = torch.randn(BATCH, size, size, CHANNELS, generator=gen)
    return value.requires_grad_(True), offset_mask.requires_grad_(True), grad_out


def _custom_op(value: torch.Tensor, offset_mask: torch.Tensor) -> torch.Tensor:
    return dcnv4_core(value, offset_mask, *ARGS, backend="pure_torch")


def _plain_autograd(value: torch.Tensor, offset_mask: torch.Tensor) -> torch.Tensor:
    return dcnv4_core_autograd(value, offset_mask, *ARGS)


CANDIDATES: dict[str, Any] = {"custom_op": _custom_op, "plain_autograd": _plain_autograd}


def _forward_backward(fn: Any, value: torch.Tensor, offset_mask: torch.Tensor,
                      grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    out = fn(value, offset_mask)
    grads = torch.autograd.grad(out, (value, offset_mask), grad_out)
    return (out.detach(), *grads)


def _peak_memory_mib(candidate: str) -> dict[str, float]:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, candidate], cwd=repo, env=env,
                          capture_output=True, text=True, check=True, timeout=600)
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "peak_rise_mib": (raw["peak_kib"] - raw["rss_before_kib"]) / 1024,
        "peak_rss_mib": raw["peak_kib"] / 1024,
        "rss_before_mib": raw["rss_before_kib"] / 1024,
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.benchmark(group="dcnv4")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc (Linux)")
def test_dcnv4_custom_op_vs_plain_autograd(benchmark, record) -> None:
    value, offset_mask, grad_out = _inputs()
    ours = _forward_backward(_custom_op, value, offset_mask, grad_out)
    plain = _forward_backward(_plain_autograd, value, offset_mask, grad_out)
    errors = {name: _relative_error(a, b) for name, a, b in zip(("out", "value", "offset_mask"), ours, plain)}
    del ours, plain
    custom_s, plain_s = paired_best_of(
        lambda: _forward_backward(_custom_op, value, offset_mask, grad_out),
        lambda: _forward_backward(_plain_autograd, value, offset_mask, grad_out),
        repeats=3,
    )
    memory = {name: _peak_memory_mib(name) for name in CANDIDATES}
    kp = KERNEL * KERNEL
    sampled_mib = BATCH * CHANNELS * SIZE * SIZE * kp * 4 / 2**20
    ratio = plain_s / custom_s
    memory_ratio = memory["plain_autograd"]["peak_rise_mib"] / memory["custom_op"]["peak_rise_mib"]
    benchmark.extra_info.update({"custom_op_s": custom_s, "plain_autograd_s": plain_s, "ratio": ratio,
                                 "memory_ratio": memory_ratio})
    benchmark.pedantic(_forward_backward, args=(_custom_op, value, offset_mask, grad_out), rounds=1, iterations=1)
    record("dcnv4_forward_backward_7x7", {
        "batch": BATCH, "size": SIZE, "channels": CHANNELS, "group": GROUP, "kernel": KERNEL,
        "dtype": "float32", "pass": "forward+backward",
        "custom_op_s": custom_s, "plain_autograd_s": plain_s, "ratio_plain_over_custom_op": ratio,
        "memory_method": "VmHWM rise over VmRSS before one forward+backward, fresh process per candidate, "
                         "peak mark reset via /proc/self/clear_refs",
        "custom_op_memory": memory["custom_op"], "plain_autograd_memory": memory["plain_autograd"],
        "memory_ratio_plain_over_custom_op": memory_ratio,
        "sampled_points_tensor_mib": sampled_mib, "max_relative_error": errors,
        "load_average_after": _load(),
    })
    print(f"\ndcnv4 7x7 C={CHANNELS} {SIZE}x{SIZE} batch {BATCH} forward+backward: custom op {custom_s:.2f} s "
          f"vs plain autograd {plain_s:.2f} s -> {ratio:.2f}x; peak memory rise "
          f"{memory['custom_op']['peak_rise_mib']:.0f} MiB vs {memory['plain_autograd']['peak_rise_mib']:.0f} MiB "
          f"-> {memory_ratio:.1f}x (one sampled map of all points: {sampled_mib:.0f} MiB); errors {errors}")
