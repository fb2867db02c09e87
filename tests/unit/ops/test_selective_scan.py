"""The selective scan: fast path vs the sequential oracle, reference properties, FLOPs, dispatch."""

from __future__ import annotations

import importlib.util
import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench_core.errors import BenchError, ConfigError
from bench_core.ops import (
    ScanInputError,
    default_scan_backend,
    mamba_ssm_available,
    scan_backend,
    selective_scan,
    selective_scan_fast,
    selective_scan_flops,
    selective_scan_sequential,
)

BATCH, DIM, STATE, LENGTH = 2, 8, 4, 23
CHUNK = 5  # LENGTH = 4 full chunks + a partial one: carries cross every chunk boundary

# (B form, C form): every form, and B/C in different forms or group counts
FORMS = [
    ("constant", "constant"),
    ("input", "input"),
    ("grouped2", "grouped2"),
    ("input", "constant"),
    ("grouped2", "grouped4"),
]
FLAGS = list(itertools.product([False, True], repeat=5))  # D, z, delta_bias, softplus, last state


def _bc(form: str, gen: torch.Generator, dtype: torch.dtype, length: int = LENGTH) -> torch.Tensor:
    if form == "constant":
        return torch.randn(DIM, STATE, generator=gen, dtype=dtype)
    if form == "input":
        return torch.randn(BATCH, STATE, length, generator=gen, dtype=dtype)
    groups = int(form.removeprefix("grouped"))
    return torch.randn(BATCH, groups, STATE, length, generator=gen, dtype=dtype)


def _inputs(
    seed: int,
    forms: tuple[str, str] = ("input", "input"),
    *,
    with_d: bool = True,
    with_z: bool = True,
    with_bias: bool = True,
    length: int = LENGTH,
    large_delta: bool = False,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor | None]:
    """Leaf tensors requiring grad; A = -exp(A_log) with A_log = log(1..N) + noise, as in Mamba."""
    gen = torch.Generator().manual_seed(seed)
    shape = (BATCH, DIM, length)
    if large_delta:  # softplus(randn + 1): |delta*A| reaches tens per step
        delta = torch.randn(*shape, generator=gen, dtype=dtype) + 1
    else:
        delta = 0.5 * torch.rand(*shape, generator=gen, dtype=dtype)
    a_log = torch.log(torch.arange(1, STATE + 1, dtype=dtype)).repeat(DIM, 1)
    tensors: dict[str, torch.Tensor | None] = {
        "u": torch.randn(*shape, generator=gen, dtype=dtype),
        "delta": delta,
        "A": -torch.exp(a_log + 0.1 * torch.randn(DIM, STATE, generator=gen, dtype=dtype)),
        "B": _bc(forms[0], gen, dtype, length),
        "C": _bc(forms[1], gen, dtype, length),
        "D": torch.randn(DIM, generator=gen, dtype=dtype) if with_d else None,
        "z": torch.randn(*shape, generator=gen, dtype=dtype) if with_z else None,
        "delta_bias": 0.3 * torch.randn(DIM, generator=gen, dtype=dtype) if with_bias else None,
    }
    return {k: (v.requires_grad_(True) if v is not None else None) for k, v in tensors.items()}


def _outputs_and_grads(
    fn: Any, inputs: dict[str, torch.Tensor | None], softplus: bool, last_state: bool, **kwargs: Any
) -> dict[str, torch.Tensor]:
    """Output, last state and the gradients of a fixed random weighting of both."""
    result = fn(*inputs.values(), delta_softplus=softplus, return_last_state=last_state, **kwargs)
    out, last = result if last_state else (result, None)
    gen = torch.Generator().manual_seed(99)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    if last is not None:
        loss = loss + (last * torch.randn(last.shape, generator=gen, dtype=last.dtype)).sum()
    leaves = {k: v for k, v in inputs.items() if v is not None}
    grads = torch.autograd.grad(loss, list(leaves.values()))
    found = {"out": out.detach()}
    if last is not None:
        found["last_state"] = last.detach()
    found.update({f"grad_{k}": g for k, g in zip(leaves, grads)})
    return found


def _assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    """max |actual - expected| <= rtol * max |expected| (relative to the tensor's scale)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = expected.abs().max().item()
    err = (actual.double() - expected.double()).abs().max().item()
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    assert err <= rtol * max(scale, 1e-30), f"{what}: max error {err:.3g} vs scale {scale:.3g}"


def _compare(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], rtol: float = 1e-5) -> None:
    assert found.keys() == expected.keys()
    for key in expected:
        _assert_rel_close(found[key], expected[key], rtol, key)


# --------------------------------------------------------------------------- fast == oracle


@pytest.mark.parametrize("forms", FORMS, ids=["-".join(f) for f in FORMS])
@pytest.mark.parametrize(
    "flags", FLAGS, ids=["".join(n if on else "_" for n, on in zip("DzbsL", f)) for f in FLAGS]
)
def test_fast_path_matches_sequential_values_and_gradients(
    forms: tuple[str, str], flags: tuple[bool, ...]
) -> None:
    with_d, with_z, with_bias, softplus, last_state = flags
    inputs = _inputs(1, forms, with_d=with_d, with_z=with_z, with_bias=with_bias)
    expected = _outputs_and_grads(selective_scan_sequential, inputs, softplus, last_state)
    found = _outputs_and_grads(selective_scan_fast, inputs, softplus, last_state, chunk_size=CHUNK)
    _compare(found, expected)


@pytest.mark.parametrize("forms", FORMS[:3], ids=["-".join(f) for f in FORMS[:3]])
def test_fast_path_is_stable_for_large_delta(forms: tuple[str, str]) -> None:
    inputs = _inputs(2, forms, large_delta=True)
    expected = _outputs_and_grads(selective_scan_sequential, inputs, True, True)
    found = _outputs_and_grads(selective_scan_fast, inputs, True, True, chunk_size=CHUNK)
    delta = F.softplus(inputs["delta"].detach() + inputs["delta_bias"].detach()[:, None])
    decay = (delta.unsqueeze(-1) * inputs["A"].detach().abs()[:, None, :]).sum(dim=2)
    assert decay.max() > 88  # exp(+-88) is outside float32: cumulative-product scans break here
    _compare(found, expected)


@pytest.mark.parametrize("chunk_size", [1, 2, LENGTH, 1000, None])
def test_chunk_size_changes_nothing(chunk_size: int | None) -> None:
    inputs = _inputs(3, ("grouped2", "input"))
    expected = _outputs_and_grads(selective_scan_sequential, inputs, True, True)
    found = _outputs_and_grads(selective_scan_fast, inputs, True, True, chunk_size=chunk_size)
    _compare(found, expected)


@pytest.mark.parametrize("forms", [("grouped2", "grouped4"), ("constant", "input")])
def test_fast_path_gradients_pass_gradcheck_in_float64(forms: tuple[str, str]) -> None:
    """Finite differences check the hand-written backward independently of the oracle."""
    gen = torch.Generator().manual_seed(4)
    b, d, n, length = 1, 4, 3, 6

    def bc(form: str) -> torch.Tensor:
        if form == "constant":
            return torch.randn(d, n, generator=gen, dtype=torch.float64)
        if form == "input":
            return torch.randn(b, n, length, generator=gen, dtype=torch.float64)
        groups = int(form.removeprefix("grouped"))
        return torch.randn(b, groups, n, length, generator=gen, dtype=torch.float64)

    args = [
        torch.randn(b, d, length, generator=gen, dtype=torch.float64),
        torch.randn(b, d, length, generator=gen, dtype=torch.float64),
        -torch.rand(d, n, generator=gen, dtype=torch.float64) - 0.5,
        bc(forms[0]),
        bc(forms[1]),
        torch.randn(d, generator=gen, dtype=torch.float64),
        torch.randn(b, d, length, generator=gen, dtype=torch.float64),
        torch.randn(d, generator=gen, dtype=torch.float64),
    ]
    for t in args:
        t.requires_grad_(True)

    def fn(*xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, last = selective_scan_fast(*xs, delta_softplus=True, return_last_state=True, chunk_size=4)
        return out, last

    assert torch.autograd.gradcheck(fn, tuple(args), eps=1e-6, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- reference properties


@pytest.mark.parametrize("impl", [selective_scan_sequential, selective_scan_fast])
def test_zero_b_gives_exactly_d_times_u(impl: Any) -> None:
    inputs = _inputs(5, ("input", "input"), with_z=False)
    with torch.no_grad():
        inputs["B"].zero_()
        out = impl(*inputs.values(), delta_softplus=True)
        assert torch.equal(out, inputs["D"][:, None] * inputs["u"])


@pytest.mark.parametrize("impl", [selective_scan_sequential, selective_scan_fast])
def test_single_step_closed_form(impl: Any) -> None:
    """L = 1: the state starts at zero, so y = sum_n C_n * delta * B_n * u + D * u."""
    inputs = _inputs(6, ("input", "grouped2"), with_z=False, with_bias=False, length=1)
    u, delta, B, C, D = (inputs[k].detach().double() for k in ("u", "delta", "B", "C", "D"))
    c_per_channel = C.repeat_interleave(DIM // 2, dim=1)[..., 0]  # (batch, D, N)
    expected = (c_per_channel * delta * B[:, None, :, 0] * u).sum(-1, keepdim=True) + D[:, None] * u
    with torch.no_grad():
        out = impl(*inputs.values())
    _assert_rel_close(out, expected, 1e-6, "L=1 output")


def _reverse_recurrence(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                        C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """A scan from the last position to the first, written out directly (float64)."""
    h = torch.zeros(u.shape[0], u.shape[1], A.shape[1], dtype=torch.float64)
    ys = [torch.empty(0)] * u.shape[2]
    for t in reversed(range(u.shape[2])):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * B[:, None, :, t] * u[:, :, t, None]
        ys[t] = (h * C[:, None, :, t]).sum(-1) + D * u[:, :, t]
    return torch.stack(ys, dim=2)


@pytest.mark.parametrize("impl", [selective_scan_sequential, selective_scan_fast])
def test_reverse_scan_is_forward_scan_of_flipped_sequence(impl: Any) -> None:
    inputs = _inputs(7, ("input", "input"), with_z=False, with_bias=False)
    u, delta, A, B, C, D = (inputs[k].detach() for k in ("u", "delta", "A", "B", "C", "D"))
    with torch.no_grad():
        flipped = impl(u.flip(-1), delta.flip(-1), A, B.flip(-1), C.flip(-1), D).flip(-1)
    expected = _reverse_recurrence(*(t.double() for t in (u, delta, A, B, C, D)))
    _assert_rel_close(flipped, expected, 1e-6, "reverse scan")


@pytest.mark.parametrize("impl", [selective_scan_sequential, selective_scan_fast])
def test_grouped_equals_repeated_and_split_ungrouped(impl: Any) -> None:
    groups = 4
    inputs = _inputs(8, (f"grouped{groups}", f"grouped{groups}"))
    args = {k: (v.detach() if v is not None else None) for k, v in inputs.items()}
    with torch.no_grad():
        grouped = impl(**args, delta_softplus=True)
        # G groups == D groups after repeating each group's B/C over its D/G channels
        per_channel = dict(args, B=args["B"].repeat_interleave(DIM // groups, dim=1),
                           C=args["C"].repeat_interleave(DIM // groups, dim=1))
        repeated = impl(**per_channel, delta_softplus=True)
        # == one ungrouped (batch, N, L) call per group of channels
        width = DIM // groups
        parts = []
        for g in range(groups):
            rows = slice(g * width, (g + 1) * width)
            part = {k: args[k][:, rows] for k in ("u", "delta", "z")}
            part.update({k: args[k][rows] for k in ("A", "D", "delta_bias")})
            parts.append(impl(**part, B=args["B"][:, g], C=args["C"][:, g], delta_softplus=True))
        split = torch.cat(parts, dim=1)
    _assert_rel_close(repeated, grouped, 1e-6, "repeated groups")
    _assert_rel_close(split, grouped, 1e-6, "split by group")


def test_output_dtype_follows_u_and_arithmetic_is_float32() -> None:
    inputs = _inputs(9, ("input", "input"))
    args = [v.detach().to(torch.bfloat16) if v is not None else None for v in inputs.values()]
    out, last = selective_scan_fast(*args, delta_softplus=True, return_last_state=True)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    # the same bf16 values computed in float32 by the oracle, rounded once at the end
    ref_out, ref_last = selective_scan_sequential(*[a.float() if a is not None else None for a in args],
                                                  delta_softplus=True, return_last_state=True)
    _assert_rel_close(out.float(), ref_out, 2**-8, "output")  # one bf16 rounding, not 23 steps of it
    _assert_rel_close(last, ref_last, 1e-5, "last state")


def test_float64_inputs_are_computed_in_float64() -> None:
    inputs = _inputs(10, ("grouped2", "constant"), dtype=torch.float64)
    args = [v.detach() if v is not None else None for v in inputs.values()]
    fast = selective_scan_fast(*args, delta_softplus=True, chunk_size=CHUNK)
    seq = selective_scan_sequential(*args, delta_softplus=True)
    assert fast.dtype == torch.float64
    _assert_rel_close(fast, seq, 1e-12, "float64")


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is None, reason="mamba-ssm is not installed")
def test_matches_mamba_ssm_selective_scan_ref() -> None:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_ref
    except ImportError as exc:  # its CUDA extension is missing on CPU-only installs
        pytest.skip(f"mamba_ssm does not import: {exc}")
    inputs = _inputs(11, ("input", "input"))
    expected = _outputs_and_grads(selective_scan_ref, inputs, True, True)
    found = _outputs_and_grads(selective_scan_fast, inputs, True, True, chunk_size=CHUNK)
    _compare(found, expected)


# --------------------------------------------------------------------------- backends


def test_scan_backend_on_cpu() -> None:
    x = torch.zeros(1)
    assert scan_backend(x) == "pure_torch_fast"
    assert default_scan_backend("cpu") == "pure_torch_fast"
    assert scan_backend(x, "pure_torch_sequential") == "pure_torch_sequential"
    assert scan_backend(x, "cuda_kernel") == "cuda_kernel"


@pytest.mark.parametrize("backend", ["auto", "pure_torch_fast", "pure_torch_sequential"])
def test_selective_scan_dispatches_to_the_named_backend(backend: str) -> None:
    inputs = _inputs(12, ("input", "input"))
    args = [v.detach() if v is not None else None for v in inputs.values()]
    with FlopCounterMode(display=False) as counter:
        out = selective_scan(*args, delta_softplus=True, backend=backend)
    expected = selective_scan_sequential(*args, delta_softplus=True)
    _assert_rel_close(out, expected, 1e-5, backend)
    counted = counter.get_flop_counts().get("Global", {}).get(torch.ops.bench.selective_scan, 0)
    custom_op_used = backend != "pure_torch_sequential"
    assert (counted > 0) == custom_op_used


def test_unknown_backend_is_a_config_error() -> None:
    inputs = _inputs(13)
    with pytest.raises(ConfigError, match="backend='triton'.*pure_torch_fast"):
        selective_scan(*inputs.values(), backend="triton")


def test_cuda_kernel_on_cpu_tensors_is_a_config_error() -> None:
    inputs = _inputs(14)
    with pytest.raises(ConfigError, match="cuda_kernel.*CUDA tensors"):
        selective_scan(*inputs.values(), backend="cuda_kernel")


@pytest.mark.skipif(
    not (torch.cuda.is_available() and mamba_ssm_available()),
    reason="needs a CUDA device and mamba-ssm with its CUDA extension (pip install '.[cuda]')",
)
def test_cuda_kernel_matches_fast_path() -> None:
    inputs = _inputs(15, ("grouped2", "grouped2"))
    cuda = {k: (v.detach().cuda().requires_grad_(True) if v is not None else None) for k, v in inputs.items()}
    assert scan_backend(cuda["u"]) == "cuda_kernel"
    expected = _outputs_and_grads(selective_scan_fast, inputs, True, True)
    found = _outputs_and_grads(selective_scan, cuda, True, True, backend="cuda_kernel")
    _compare({k: v.cpu() for k, v in found.items()}, expected, rtol=1e-4)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("B", torch.zeros(BATCH, 3, STATE, LENGTH), r"B has shape \(2, 3, 4, 23\).*G dividing D = 8"),
        ("C", torch.zeros(BATCH, STATE + 1, LENGTH), r"C has shape \(2, 5, 23\)"),
        ("A", torch.zeros(DIM + 1, STATE), r"A has shape \(9, 4\).*D = 8"),
        ("delta", torch.zeros(BATCH, DIM, LENGTH + 1), r"delta has shape .* expected u's shape"),
        ("D", torch.zeros(DIM, 1), r"D has shape \(8, 1\); expected \(8,\)"),
        ("u", torch.zeros(DIM, LENGTH), r"u has shape \(8, 23\); expected \(batch, D, L\)"),
    ],
)
def test_bad_shapes_name_the_argument(name: str, bad: torch.Tensor, match: str) -> None:
    args = {k: (v.detach() if v is not None else None) for k, v in _inputs(16).items()}
    args[name] = bad
    for impl in (selective_scan_fast, selective_scan_sequential):
        with pytest.raises(ScanInputError, match=match) as info:
            impl(**args)
        assert isinstance(info.value, BenchError) and isinstance(info.value, ValueError)


def test_complex_a_is_refused() -> None:
    args = {k: (v.detach() if v is not None else None) for k, v in _inputs(17).items()}
    args["A"] = args["A"].to(torch.complex64)
    with pytest.raises(ScanInputError, match="A is complex"):
        selective_scan(**args)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_bad_chunk_size_is_a_config_error(chunk_size: Any) -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        selective_scan_fast(*_inputs(18).values(), chunk_size=chunk_size)


# --------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize(("with_d", "with_z"), [(False, False), (True, False), (True, True)])
def test_flop_counter_counts_the_scan_formula(with_d: bool, with_z: bool) -> None:
    inputs = _inputs(19, ("grouped2", "constant"), with_d=with_d, with_z=with_z)
    args = [v.detach() if v is not None else None for v in inputs.values()]
    with FlopCounterMode(display=False) as counter:
        selective_scan(*args, delta_softplus=True)
    expected = 9 * BATCH * LENGTH * DIM * STATE + (with_d + with_z) * BATCH * DIM * LENGTH
    assert counter.get_total_flops() == expected
    assert selective_scan_flops(BATCH, DIM, LENGTH, STATE, with_d=with_d, with_z=with_z) == expected


def test_fake_tensors_give_shapes_without_computing() -> None:
    args = [v.detach().to("meta") if v is not None else None for v in _inputs(20).values()]
    out, last = selective_scan_fast(*args, return_last_state=True)
    assert out.device.type == "meta"
    assert out.shape == (BATCH, DIM, LENGTH) and last.shape == (BATCH, DIM, STATE)
