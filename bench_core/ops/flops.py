"""FLOP formulas for the ops in :mod:`bench_core.ops` (harness convention: 1 multiply-add = 2 FLOPs).

:class:`torch.utils.flop_counter.FlopCounterMode` counts matmuls and convolutions but no
elementwise arithmetic, so a selective scan written with elementwise torch ops would
count as zero. The scan therefore runs as the custom op ``torch.ops.bench.selective_scan``
and :mod:`bench_core.ops.selective_scan` registers :func:`scan_flop_formula` for it.

Formula (VMamba's ``flops_selective_scan_fn``, after state-spaces/mamba issue #110), per
batch element ``b``, channel ``d``, step ``l`` and state ``n``::

    flops = 9 * batch * L * D * N          # exp(delta*A), delta*B*u, h = dA*h + dBu, C.h
          + batch * D * L    if D is given  # skip connection D*u
          + batch * D * L    if z is given  # gate y * silu(z)

The skip (a multiply and an add) and the gate (a SiLU and a multiply) count one FLOP per
element, and the delta bias and softplus none, exactly as VMamba counts them, so the
numbers stay comparable with those that VMamba-style papers report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["scan_flop_formula", "selective_scan_flops"]


def selective_scan_flops(
    batch: int, dim: int, seqlen: int, d_state: int, *, with_d: bool = True, with_z: bool = False
) -> int:
    """FLOPs of one selective scan over ``(batch, dim, seqlen)`` with state size ``d_state``.

    ``9*batch*seqlen*dim*d_state``, plus ``batch*dim*seqlen`` for the D skip and again for
    the z gate when they are used (see the module docstring).
    """
    flops = 9 * batch * seqlen * dim * d_state
    if with_d:
        flops += batch * dim * seqlen
    if with_z:
        flops += batch * dim * seqlen
    return flops


def scan_flop_formula(
    u_shape: Sequence[int],
    delta_shape: Sequence[int],
    a_shape: Sequence[int],
    b_shape: Sequence[int],
    c_shape: Sequence[int],
    d_shape: Sequence[int] | None,
    z_shape: Sequence[int] | None,
    *args: Any,
    out_shape: Any = None,
    **kwargs: Any,
) -> int:
    """FlopCounterMode formula for ``bench::selective_scan`` (arguments arrive as shapes)."""
    batch, dim, seqlen = (int(s) for s in u_shape)
    return selective_scan_flops(
        batch, dim, seqlen, int(a_shape[1]), with_d=d_shape is not None, with_z=z_shape is not None
    )
