"""Shared neural-network ops for method plugins.

The selective scan and SS2D pieces (S2Mamba, M3amba), the CLIP ViT image encoder (M3amba),
DCNv4 and efficient paired attention (CoMiX), SpectralDiff's 3D U-Net DDPM (BDGF). Importing this package imports torch and
registers the custom ops ``torch.ops.bench.selective_scan`` and ``torch.ops.bench.dcnv4``
with their FLOP formulas; it never imports mamba-ssm or the DCNv4 package (that happens on
the first call with CUDA tensors). See :mod:`bench_core.ops.selective_scan`,
:mod:`bench_core.ops.ss2d`, :mod:`bench_core.ops.flops`, :mod:`bench_core.ops.clip_vit`,
:mod:`bench_core.ops.dcnv4`, :mod:`bench_core.ops.epa` and :mod:`bench_core.ops.ddpm3d`.
"""

from __future__ import annotations

from bench_core.ops.clip_vit import (
    ACTIVATIONS,
    VisionTransformer,
    file_sha256,
    load_clip_visual,
    normalize_clip,
    parse_clip_arch,
    random_clip_visual,
    resize_bicubic,
)
from bench_core.ops.dcnv4 import (
    DCN_BACKENDS,
    DCNInputError,
    DCNv4,
    dcn_backend,
    dcnv4_core,
    dcnv4_kernel_available,
    dcnv4_offset_dim,
    default_dcn_backend,
)
from bench_core.ops.ddpm3d import (
    DDPM_PAPER_CHANNELS,
    DDPMInputError,
    LinearBetaSchedule,
    SimpleUnet3D,
    extract_features,
    feature_channels,
    light_split,
)
from bench_core.ops.epa import EPA, EPA_SCALINGS, EPA_SPATIAL_LAYOUTS, EPAInputError, EPAMaps
from bench_core.ops.flops import selective_scan_flops
from bench_core.ops.layers import Mlp, crop_inputs, trunc_normal_init
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
    "DCN_BACKENDS",
    "EPA",
    "CrossSS2D",
    "DCNInputError",
    "DDPMInputError",
    "LinearBetaSchedule",
    "SimpleUnet3D",
    "DCNv4",
    "EPAInputError",
    "EPAMaps",
    "VisionTransformer",
    "dcn_backend",
    "dcnv4_core",
    "dcnv4_kernel_available",
    "dcnv4_offset_dim",
    "extract_features",
    "light_split",
    "default_dcn_backend",
    "load_clip_visual",
    "random_clip_visual",
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
    "ACTIVATIONS",
    "DDPM_PAPER_CHANNELS",
    "EPA_SCALINGS",
    "EPA_SPATIAL_LAYOUTS",
    "Mlp",
    "crop_inputs",
    "feature_channels",
    "file_sha256",
    "normalize_clip",
    "parse_clip_arch",
    "resize_bicubic",
    "trunc_normal_init",
]
