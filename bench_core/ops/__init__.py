"""Shared neural-network ops for method plugins: the selective scan and SS2D pieces.

Importing this package imports torch and registers the custom op
``torch.ops.bench.selective_scan`` with its FLOP formula; it never imports mamba-ssm
(that happens on the first scan of CUDA tensors). See :mod:`bench_core.ops.selective_scan`,
:mod:`bench_core.ops.ss2d` and :mod:`bench_core.ops.flops`.
"""

from __future__ import annotations

from bench_core.ops.flops import selective_scan_flops
from bench_core.ops.selective_scan import (
    SCAN_BACKENDS,
    ScanInputError,
    default_scan_backend,
    mamba_ssm_available,
    scan_backend,
    selective_scan,
    selective_scan_fast,
    selective_scan_sequential,
)
from bench_core.ops.ss2d import (
    SS2D,
    CrossSS2D,
    DirectionalSSM,
    cross_merge,
    cross_merge_1d,
    cross_scan,
    cross_scan_1d,
    directional_scan,
)

__all__ = [
    "CrossSS2D",
    "DirectionalSSM",
    "SCAN_BACKENDS",
    "SS2D",
    "ScanInputError",
    "cross_merge",
    "cross_merge_1d",
    "cross_scan",
    "cross_scan_1d",
    "default_scan_backend",
    "directional_scan",
    "mamba_ssm_available",
    "scan_backend",
    "selective_scan",
    "selective_scan_fast",
    "selective_scan_flops",
    "selective_scan_sequential",
]
