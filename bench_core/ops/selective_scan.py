"""Mamba's selective scan in pure PyTorch (two implementations) with an optional CUDA kernel.

One entry point, :func:`selective_scan`, with exactly the arguments and semantics of
mamba-ssm's ``selective_scan_ref`` (``mamba_ssm/ops/selective_scan_interface.py``)::

    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, return_last_state=False, *, backend="auto")

* ``u``, ``delta``, ``z``: (batch, D, L); ``A``: (D, N), real; ``D``, ``delta_bias``: (D,).
* ``B`` and ``C`` each take one of three forms: constant (D, N); input-dependent
  (batch, N, L); grouped (batch, G, N, L), where channel ``d`` uses group ``d // (D // G)``.
* Computation: ``delta += delta_bias``, then softplus if asked; with state ``h`` (batch, D, N)
  starting at zero, per step ``h = exp(delta_t * A) * h + delta_t * B_t * u_t`` and
  ``y_t = sum_n C_t * h``; then ``out = y + D * u`` and, with ``z``, ``out *= silu(z)``.
* Arithmetic runs in float32 (float64 when an input is float64, so gradcheck can be used);
  ``out`` has ``u``'s dtype, the last state (batch, D, N) the compute dtype.
* Returns ``out``, or ``(out, last_state)`` when ``return_last_state`` is true.

Backends (:data:`SCAN_BACKENDS`), chosen by ``backend`` or, for ``"auto"``, by
:func:`scan_backend`:

* ``"cuda_kernel"``: mamba-ssm's ``selective_scan_fn``; ``"auto"`` picks it for CUDA tensors
  when ``mamba_ssm`` imports (``pip install 'rs-fusion-bench[cuda]'``). mamba-ssm is
  imported only then, never when this module is imported.
* ``"pure_torch_fast"``: :func:`selective_scan_fast`, the CPU default. Exact (the same
  recurrence, no log-space or cumulative-product tricks, so no overflow for large
  ``delta * A``), in time-major chunks that stay in cache, with a hand-written backward
  that recomputes the states chunk by chunk instead of storing an autograd graph per step.
  It runs as the custom op ``torch.ops.bench.selective_scan`` so that
  :class:`~torch.utils.flop_counter.FlopCounterMode` counts it (formula in
  :mod:`bench_core.ops.flops`). Not twice differentiable.
* ``"pure_torch_sequential"``: :func:`selective_scan_sequential`, the readable oracle the
  tests compare against: a Python loop over L with autograd through every step.

Runs record the backend they used as the MLflow tag ``bench.scan_backend``; the runner asks
:func:`scan_backend` (or :func:`default_scan_backend` with only a device at hand).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from bench_core.errors import ConfigError, ScanInputError
from bench_core.ops.flops import scan_flop_formula

__all__ = [
    "SCAN_BACKENDS",
    "ScanInputError",
    "default_scan_backend",
    "mamba_ssm_available",
    "scan_backend",
    "selective_scan",
    "selective_scan_fast",
    "selective_scan_sequential",
]

SCAN_BACKENDS = ("auto", "cuda_kernel", "pure_torch_fast", "pure_torch_sequential")

# Elements of one (chunk, batch, D, N) working tensor of the fast path: 1M floats = 4 MiB,
# small enough to stay in the L2/L3 caches of a laptop or server CPU.
_CHUNK_ELEMENTS = 1 << 20


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Dims:
    batch: int
    dim: int
    length: int
    d_state: int


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _check_bc(name: str, t: torch.Tensor, dims: _Dims) -> None:
    """B and C: constant (D, N), input-dependent (batch, N, L) or grouped (batch, G, N, L)."""
    b, d, n, length = dims.batch, dims.dim, dims.d_state, dims.length
    shape = _shape(t)
    ok = (
        shape == (d, n)
        or shape == (b, n, length)
        or (len(shape) == 4 and shape[0] == b and shape[2:] == (n, length)
            and shape[1] >= 1 and d % shape[1] == 0)
    )
    if not ok:
        raise ScanInputError(
            f"selective_scan: {name} has shape {shape}; expected constant (D, N) = ({d}, {n}), "
            f"input-dependent (batch, N, L) = ({b}, {n}, {length}) or grouped (batch, G, N, L) = "
            f"({b}, G, {n}, {length}) with G dividing D = {d}; reshape {name} to one of these"
        )


def _validate(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> _Dims:
    """Check every shape against ``u`` (batch, D, L) and ``A`` (D, N); return the sizes."""
    if not isinstance(u, torch.Tensor) or u.ndim != 3 or u.shape[2] < 1:
        got = _shape(u) if isinstance(u, torch.Tensor) else type(u).__name__
        raise ScanInputError(
            f"selective_scan: u has shape {got}; expected (batch, D, L) with L >= 1; "
            f"pass the sequence as a 3-d tensor, channels before positions"
        )
    if A.ndim != 2 or A.shape[0] != u.shape[1]:
        raise ScanInputError(
            f"selective_scan: A has shape {_shape(A)}; expected (D, N) with D = {u.shape[1]} "
            f"(u's channels); give one row of N state coefficients per channel"
        )
    if A.is_complex():
        raise ScanInputError(
            "selective_scan: A is complex; expected a real (D, N) tensor: the harness scan "
            "supports real A only (use mamba-ssm's selective_scan_ref for complex A)"
        )
    dims = _Dims(int(u.shape[0]), int(u.shape[1]), int(u.shape[2]), int(A.shape[1]))
    for name, t in (("delta", delta), ("z", z)):
        if t is not None and _shape(t) != _shape(u):
            raise ScanInputError(
                f"selective_scan: {name} has shape {_shape(t)}; expected u's shape {_shape(u)} "
                f"(batch, D, L); compute {name} per channel and position"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and _shape(t) != (dims.dim,):
            raise ScanInputError(
                f"selective_scan: {name} has shape {_shape(t)}; expected ({dims.dim},), one value "
                f"per channel of u; flatten it or pass None"
            )
    _check_bc("B", B, dims)
    _check_bc("C", C, dims)
    devices = {t.device for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if len(devices) > 1:
        raise ScanInputError(
            f"selective_scan: inputs are on several devices {sorted(map(str, devices))}; expected "
            f"one device; move them with .to(u.device)"
        )
    return dims


def _compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float32 arithmetic, float64 when any input is float64 (so gradcheck works)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _effective_delta(
    delta: torch.Tensor, delta_bias: torch.Tensor | None, softplus: bool, dtype: torch.dtype
) -> torch.Tensor:
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    return F.softplus(delta) if softplus else delta


# --------------------------------------------------------------------------- sequential oracle


def selective_scan_sequential(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The reference recurrence, one Python step per position (the oracle of the tests).

    Same arguments and result as :func:`selective_scan`. Differentiable through ordinary
    autograd. The per-step tensors are unbound once before the loop: slicing inside the loop
    would make backward allocate a full-size gradient per step.
    """
    dims = _validate(u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    u_c = u.to(dtype)
    dt = _effective_delta(delta, delta_bias, delta_softplus, dtype)
    a_bar = torch.exp(dt.unsqueeze(-1) * A.to(dtype)[:, None, :])  # (batch, D, L, N)
    du = (dt * u_c).unsqueeze(-1)  # (batch, D, L, 1)

    def per_channel(t: torch.Tensor) -> torch.Tensor:
        """(batch, D, L, N) for input-dependent B/C (broadcast (D, 1, N) for constant ones)."""
        t = t.to(dtype)
        if t.ndim == 2:
            return t[:, None, :]
        if t.ndim == 3:
            return t.transpose(1, 2).unsqueeze(1)  # (batch, 1, L, N)
        repeats = dims.dim // t.shape[1]
        return t.repeat_interleave(repeats, dim=1).transpose(2, 3)  # (batch, D, L, N)

    b_full = per_channel(B)
    c_full = per_channel(C)
    x_in = du * b_full  # (batch, D, L, N)
    c_steps = c_full.unbind(2) if C.ndim > 2 else None
    h = u_c.new_zeros(dims.batch, dims.dim, dims.d_state)
    ys = []
    for t, (a_t, x_t) in enumerate(zip(a_bar.unbind(2), x_in.unbind(2))):
        h = a_t * h + x_t
        c_t = c_steps[t] if c_steps is not None else c_full[:, 0, :]
        ys.append((h * c_t).sum(-1))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u_c
    if z is not None:
        y = y * F.silu(z.to(dtype))
    out = y.to(u.dtype)
    return (out, h) if return_last_state else out


# --------------------------------------------------------------------------- fast path


@dataclass
class _TimeMajor:
    """Scan inputs in the fast path's layout: time first, then (batch, G, N, D/G).

    The innermost axis is the channel within a group (long and contiguous, so elementwise
    kernels vectorise) and each step is one contiguous block, so the recurrence touches
    memory in order.
    """

    groups: int
    dt: torch.Tensor  # (L, batch, G, 1, Dg)
    du: torch.Tensor  # (L, batch, G, 1, Dg)
    A: torch.Tensor  # (G, N, Dg)
    B: torch.Tensor  # (L, batch, G, N) input-dependent, or (G, N, Dg) constant
    C: torch.Tensor  # same forms as B
    b_const: bool
    c_const: bool


def _group_count(t: torch.Tensor) -> int:
    return int(t.shape[1]) if t.ndim == 4 else 1


def _to_time_major(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, D, L) -> contiguous (L, batch, G, 1, D/G)."""
    batch, dim, length = x.shape
    # a 2-d transpose copies about twice as fast as the equivalent 3-d permute
    flat = x.reshape(batch * dim, length).t().contiguous()
    return flat.view(length, batch, groups, 1, dim // groups)


def _from_time_major(x: torch.Tensor) -> torch.Tensor:
    """(L, batch, G, 1, D/G) -> contiguous (batch, D, L)."""
    length, batch = x.shape[:2]
    flat = x.reshape(length, -1).t().contiguous()
    return flat.view(batch, -1, length)


def _const_to_groups(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(D, N) -> (G, N, D/G)."""
    dim, n = t.shape
    return t.reshape(groups, dim // groups, n).transpose(1, 2).contiguous()


def _groups_to_const(t: torch.Tensor) -> torch.Tensor:
    """(G, N, D/G) -> (D, N)."""
    groups, n, dg = t.shape
    return t.transpose(1, 2).reshape(groups * dg, n)


def _varying_to_time_major(t: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, N, L) or (batch, G', N, L) -> contiguous (L, batch, G, N)."""
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.shape[1] != groups:  # B and C grouped differently: spread each onto the finer grid
        t = t.repeat_interleave(groups // t.shape[1], dim=1)
    return t.permute(3, 0, 1, 2).contiguous()


def _prepare(
    u: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> _TimeMajor:
    dtype = dt.dtype
    groups = math.lcm(_group_count(B), _group_count(C))
    b_const, c_const = B.ndim == 2, C.ndim == 2
    return _TimeMajor(
        groups=groups,
        dt=_to_time_major(dt, groups),
        du=_to_time_major(dt * u, groups),
        A=_const_to_groups(A.to(dtype), groups),
        B=_const_to_groups(B.to(dtype), groups) if b_const else _varying_to_time_major(B.to(dtype), groups),
        C=_const_to_groups(C.to(dtype), groups) if c_const else _varying_to_time_major(C.to(dtype), groups),
        b_const=b_const,
        c_const=c_const,
    )


def _chunk_size(p: _TimeMajor, requested: int) -> int:
    length, batch, groups, _, dg = p.dt.shape
    if requested > 0:
        return min(requested, length)
    per_step = batch * groups * dg * p.A.shape[1]
    return max(1, min(length, _CHUNK_ELEMENTS // max(per_step, 1)))


def _chunk_states(
    p: _TimeMajor, t0: int, t1: int, h0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decay factors and states of steps t0..t1-1: both (T, batch, G, N, Dg)."""
    a_bar = torch.mul(p.dt[t0:t1], p.A).exp_()  # exp in place: one allocation, one pass fewer
    b_t = p.B if p.b_const else p.B[t0:t1].unsqueeze(-1)
    states = p.du[t0:t1] * b_t
    a_steps, h_steps = a_bar.unbind(0), states.unbind(0)
    if h0 is not None:
        h_steps[0].addcmul_(a_steps[0], h0)
    for i in range(1, t1 - t0):  # the recurrence, in place: h_i += a_i * h_{i-1}
        h_steps[i].addcmul_(a_steps[i], h_steps[i - 1])
    return a_bar, states


def _readout(p: _TimeMajor, states: torch.Tensor, t0: int, t1: int, out: torch.Tensor) -> None:
    """y = sum_n C * h for steps t0..t1-1, written into ``out`` (T, batch, G, 1, Dg)."""
    if p.c_const:
        torch.sum(states * p.C, dim=-2, keepdim=True, out=out)
    else:
        torch.matmul(p.C[t0:t1].unsqueeze(-2), states, out=out)


def _scan_forward(
    p: _TimeMajor, chunk: int, *, need_y: bool = True, keep_starts: bool = False
) -> tuple[torch.Tensor | None, torch.Tensor, list[torch.Tensor | None]]:
    """Run the recurrence chunk by chunk.

    Returns y (L, batch, G, 1, Dg) or None, the last state (batch, G, N, Dg), and (with
    ``keep_starts``) the state before each chunk, which backward uses to recompute it.
    """
    length = p.dt.shape[0]
    y = p.dt.new_empty(p.dt.shape) if need_y else None
    h: torch.Tensor | None = None
    starts: list[torch.Tensor | None] = []
    for t0 in range(0, length, chunk):
        t1 = min(length, t0 + chunk)
        if keep_starts:
            starts.append(h)
        _, states = _chunk_states(p, t0, t1, h)
        if y is not None:
            _readout(p, states, t0, t1, y[t0:t1])
        h = states[-1].clone()  # a view would keep the whole chunk alive
    assert h is not None  # length >= 1 was validated
    return y, h, starts


@dataclass
class _ScanGrads:
    du: torch.Tensor  # (L, batch, G, 1, Dg)
    dt: torch.Tensor  # (L, batch, G, 1, Dg), the part that flows through exp(dt*A)
    A: torch.Tensor  # (G, N, Dg)
    B: torch.Tensor  # like _TimeMajor.B
    C: torch.Tensor  # like _TimeMajor.C


def _scan_backward(
    p: _TimeMajor,
    gy: torch.Tensor,
    g_last: torch.Tensor | None,
    chunk: int,
    starts: list[torch.Tensor | None],
) -> _ScanGrads:
    """Gradients of the recurrence, walking the chunks backwards.

    With a_t = exp(dt_t A), x_t = du_t B_t, h_t = a_t h_{t-1} + x_t and y_t = C_t . h_t, the
    adjoint lam_t = dL/dh_t obeys lam_t = C_t gy_t + a_{t+1} lam_{t+1} (plus g_last at the
    end). Then dL/dx_t = lam_t, dL/da_t = lam_t h_{t-1}, which give du, B, dt and A.
    The states of a chunk are recomputed from ``starts``, the state before each chunk.
    """
    length = p.dt.shape[0]
    g_du = torch.empty_like(p.du)
    g_dt = torch.empty_like(p.dt)
    g_a = torch.zeros_like(p.A)
    g_b = torch.zeros_like(p.B) if p.b_const else torch.empty_like(p.B)
    g_c = torch.zeros_like(p.C) if p.c_const else torch.empty_like(p.C)
    carry = g_last  # dL/dh at the last step of the current chunk, from later steps
    chunk_starts = list(range(0, length, chunk))
    for index in reversed(range(len(chunk_starts))):
        t0 = chunk_starts[index]
        t1 = min(length, t0 + chunk)
        h0 = starts[index]
        a_bar, states = _chunk_states(p, t0, t1, h0)
        gy_c = gy[t0:t1]
        c_t = p.C if p.c_const else p.C[t0:t1].unsqueeze(-1)
        lam = c_t * gy_c  # (T, batch, G, N, Dg)
        if carry is not None:
            lam[-1].add_(carry)
        lam_steps, a_steps = lam.unbind(0), a_bar.unbind(0)
        for i in range(t1 - t0 - 2, -1, -1):
            lam_steps[i].addcmul_(a_steps[i + 1], lam_steps[i + 1])
        carry = a_steps[0] * lam_steps[0]
        du_c = p.du[t0:t1]
        if p.c_const:
            g_c.add_((states * gy_c).sum(dim=(0, 1)))
        else:
            g_c[t0:t1] = torch.matmul(states, gy_c.transpose(-1, -2)).squeeze(-1)
        if p.b_const:
            g_b.add_((lam * du_c).sum(dim=(0, 1)))
            torch.sum(lam * p.B, dim=-2, keepdim=True, out=g_du[t0:t1])
        else:
            b_c = p.B[t0:t1]
            g_b[t0:t1] = torch.matmul(lam, du_c.transpose(-1, -2)).squeeze(-1)
            torch.matmul(b_c.unsqueeze(-2), lam, out=g_du[t0:t1])
        # dL/d(dt A) = lam_t * a_t * h_{t-1}, built in lam's storage (lam is not needed again)
        m = lam.mul_(a_bar)
        if t1 - t0 > 1:
            m[1:].mul_(states[:-1])
        if h0 is None:
            m[0].zero_()
        else:
            m[0].mul_(h0)
        torch.sum(m * p.A, dim=-2, keepdim=True, out=g_dt[t0:t1])
        g_a.add_(m.mul_(p.dt[t0:t1]).sum(dim=(0, 1)))
    return _ScanGrads(du=g_du, dt=g_dt, A=g_a, B=g_b, C=g_c)


def _bc_grad_to_input(g: torch.Tensor, like: torch.Tensor, const: bool, groups: int) -> torch.Tensor:
    """Bring a B/C gradient from the time-major layout back to the caller's shape."""
    if const:
        return _groups_to_const(g).to(like.dtype)
    length, batch, _, n = g.shape
    own = _group_count(like)
    g = g.reshape(length, batch, own, groups // own, n).sum(dim=3)  # undo the spreading
    g = g.permute(1, 2, 3, 0)  # (batch, G', N, L)
    if like.ndim == 3:
        g = g.squeeze(1)
    return g.contiguous().to(like.dtype)


def _ungated_output(y5: torch.Tensor | None, D: torch.Tensor | None, u_c: torch.Tensor) -> torch.Tensor:
    """The scan's readout (b, D, L) plus the skip term ``D * u``: the output before the z gate."""
    assert y5 is not None
    y = _from_time_major(y5)
    if D is not None:
        y = y.addcmul_(D.to(u_c.dtype)[:, None], u_c)
    return y


def _fast_backward(
    saved: tuple[torch.Tensor | None, ...],
    delta_softplus: bool,
    chunk_size: int,
    g_out: torch.Tensor | None,
    g_last: torch.Tensor | None,
) -> tuple[torch.Tensor | None, ...]:
    u, delta, A, B, C, D, z, delta_bias = saved
    assert u is not None and delta is not None and A is not None and B is not None and C is not None
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    u_c = u.to(dtype)
    with torch.enable_grad():  # the softplus derivative comes from autograd, exactly as F computes it
        delta_in = delta.detach().to(dtype).requires_grad_(True)
        dt_graph = _effective_delta(delta_in, delta_bias.detach() if delta_bias is not None else None,
                                    delta_softplus, dtype)
    dt = dt_graph.detach()
    p = _prepare(u_c, dt, A, B, C)
    chunk = _chunk_size(p, chunk_size)
    batch, dim, length = u.shape
    if g_out is None:
        g_out = torch.zeros_like(u_c)
    g_out = g_out.to(dtype)
    g_z = None
    y5, _, starts = _scan_forward(p, chunk, need_y=z is not None, keep_starts=True)
    if z is not None:
        y = _ungated_output(y5, D, u_c)
        z_c = z.to(dtype)
        sig = torch.sigmoid(z_c)
        g_z = g_out * y * sig * (1 + z_c * (1 - sig))
        g_y = g_out * (z_c * sig)
    else:
        g_y = g_out
    g_d = (g_y * u_c).sum(dim=(0, 2)) if D is not None else None
    g_last5 = None
    if g_last is not None:
        g_last5 = g_last.to(dtype).reshape(batch, p.groups, dim // p.groups, -1).transpose(-1, -2)
    grads = _scan_backward(p, _to_time_major(g_y, p.groups), g_last5, chunk, starts)
    g_du = _from_time_major(grads.du)
    g_u = g_du * dt
    if D is not None:
        g_u = g_u.addcmul_(g_y, D.to(dtype)[:, None].expand_as(g_y))
    g_dt = g_du.mul_(u_c).add_(_from_time_major(grads.dt))
    (g_delta,) = torch.autograd.grad(dt_graph, delta_in, g_dt)
    g_bias = g_delta.sum(dim=(0, 2)) if delta_bias is not None else None
    return (
        g_u.to(u.dtype),
        g_delta.to(delta.dtype),
        _groups_to_const(grads.A).to(A.dtype),
        _bc_grad_to_input(grads.B, B, p.b_const, p.groups),
        _bc_grad_to_input(grads.C, C, p.c_const, p.groups),
        g_d.to(D.dtype) if D is not None and g_d is not None else None,
        g_z.to(z.dtype) if z is not None and g_z is not None else None,
        g_bias.to(delta_bias.dtype) if delta_bias is not None and g_bias is not None else None,
    )


# The fast path as a custom op: opaque to autograd (our backward) and visible to FlopCounterMode.
@torch.library.custom_op(
    "bench::selective_scan",
    mutates_args=(),
    schema="(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
    "Tensor? delta_bias, bool delta_softplus, int chunk_size) -> (Tensor, Tensor)",
)
def _selective_scan_op(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    u_c = u.to(dtype)
    dt = _effective_delta(delta, delta_bias, delta_softplus, dtype)
    p = _prepare(u_c, dt, A, B, C)
    y5, last, _ = _scan_forward(p, _chunk_size(p, chunk_size))
    y = _ungated_output(y5, D, u_c)
    if z is not None:
        y = y.mul_(F.silu(z.to(dtype)))
    batch, dim = u.shape[:2]
    last_state = last.transpose(-1, -2).reshape(batch, dim, -1).contiguous()
    return y.to(u.dtype), last_state


@_selective_scan_op.register_fake
def _selective_scan_fake(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    return torch.empty_like(u), u.new_empty((u.shape[0], u.shape[1], A.shape[1]), dtype=dtype)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size = inputs
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
    ctx.delta_softplus = delta_softplus
    ctx.chunk_size = chunk_size


def _backward(ctx: Any, g_out: torch.Tensor | None, g_last: torch.Tensor | None) -> tuple[Any, ...]:
    grads = _fast_backward(ctx.saved_tensors, ctx.delta_softplus, ctx.chunk_size, g_out, g_last)
    return (*grads, None, None)


_selective_scan_op.register_autograd(_backward, setup_context=_setup_context)
register_flop_formula(torch.ops.bench.selective_scan)(scan_flop_formula)


def selective_scan_fast(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The chunked, exact pure-PyTorch scan (custom op ``torch.ops.bench.selective_scan``).

    Same arguments and result as :func:`selective_scan`. ``chunk_size`` (steps per chunk)
    defaults to as many as keep one working tensor near 4 MiB; it changes speed, never the
    result. The backward recomputes the states (one more forward pass) rather than storing
    them, and is not itself differentiable.
    """
    _validate(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ConfigError(
            f"selective_scan_fast: chunk_size={chunk_size!r}; expected a positive int (steps per "
            f"chunk) or None for the cache-sized default"
        )
    out, last = torch.ops.bench.selective_scan(
        u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), int(chunk_size or 0)
    )
    return (out, last) if return_last_state else out


# --------------------------------------------------------------------------- CUDA kernel


@functools.cache
def _mamba_scan_fn() -> Callable[..., Any] | None:
    """mamba-ssm's CUDA ``selective_scan_fn``, or None when it cannot be imported.

    Cached so that a broken installation is tried once per process, not once per scan.
    """
    if importlib.util.find_spec("mamba_ssm") is None:
        return None
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # noqa: BLE001 - a broken optional extra must not break the CPU path
        return None
    return selective_scan_fn


def mamba_ssm_available() -> bool:
    """Whether mamba-ssm's CUDA selective scan can be imported (it needs a CUDA build)."""
    return _mamba_scan_fn() is not None


def _in_dispatch_mode() -> bool:
    """True inside a TorchDispatchMode such as FlopCounterMode, which cannot see CUDA extensions."""
    from torch.utils import _python_dispatch

    check = getattr(_python_dispatch, "is_in_torch_dispatch_mode", None)
    return bool(check()) if callable(check) else False


def _check_backend(backend: str) -> None:
    if backend not in SCAN_BACKENDS:
        raise ConfigError(
            f"selective_scan: backend={backend!r}; expected one of {', '.join(SCAN_BACKENDS)}"
        )


def default_scan_backend(device: torch.device | str) -> str:
    """The backend ``"auto"`` picks for tensors on ``device`` (for the ``bench.scan_backend`` tag)."""
    if torch.device(device).type == "cuda" and mamba_ssm_available():
        return "cuda_kernel"
    return "pure_torch_fast"


def scan_backend(tensor: torch.Tensor, backend: str = "auto") -> str:
    """The backend a scan on ``tensor`` runs with: ``"cuda_kernel"``, ``"pure_torch_fast"``
    or ``"pure_torch_sequential"``.

    ``backend="auto"`` resolves by device (:func:`default_scan_backend`); any other value is
    checked and returned. The runner records the result as the run tag ``bench.scan_backend``.
    """
    _check_backend(backend)
    if backend != "auto":
        return backend
    return default_scan_backend(tensor.device)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with mamba-ssm's ``selective_scan_ref`` semantics (module docstring).

    ``backend``: ``"auto"`` (mamba-ssm's kernel for CUDA tensors when installed, else the
    fast pure-PyTorch path), ``"cuda_kernel"``, ``"pure_torch_fast"`` or
    ``"pure_torch_sequential"``. Inside a dispatch mode (e.g. FlopCounterMode) ``"auto"``
    uses the pure-PyTorch custom op, whose FLOPs the mode can count.
    """
    chosen = scan_backend(u, backend)
    if chosen == "cuda_kernel" and backend == "auto" and _in_dispatch_mode():
        chosen = "pure_torch_fast"
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if chosen == "pure_torch_sequential":
        return selective_scan_sequential(*args)
    if chosen == "pure_torch_fast":
        return selective_scan_fast(*args)
    _validate(u, delta, A, B, C, D, z, delta_bias)
    if u.device.type != "cuda":
        raise ConfigError(
            f"selective_scan: backend='cuda_kernel' needs CUDA tensors, got u on {u.device}; "
            f"move the model to a CUDA device or use backend='auto'"
        )
    kernel = _mamba_scan_fn()
    if kernel is None:
        raise ConfigError(
            "selective_scan: backend='cuda_kernel' but mamba_ssm cannot be imported; install it "
            "with pip install 'rs-fusion-bench[cuda]' (needs a CUDA toolchain) or use backend='auto'"
        )
    return kernel(*args)
