"""M3amba: CLIP-driven Mamba for multimodal remote-sensing classification (Cao et al., 2025).

Dense method (32 x 32 crops, patch size 1), written from the paper and the facts of the
public network code (kaka-Cao/M3amba ``net/net_vmamba_v4.py``, ``test.py``) on
:mod:`bench_core.ops`:

* **Feature adaptation.** Per modality a trainable Conv2d(C -> 3, 1x1) (the "reducer"),
  bicubic resize to the ViT's input size, the frozen CLIP image encoder (512-d), then
  Linear(512 -> s*s) -> (B, 1, s, s) -> Conv2d(1 -> C, 1x1): one guidance map per modality.
* **Embeddings.** Four patch embeddings Conv2d(C -> dim, 1x1) + LayerNorm (HSI, X and the two
  guidance maps); ``z0`` = sum of the two guidance embeddings.
* **Three branches** of ``depth`` blocks in lock-step: ``x = CrossBlock_hsi(x, z)``,
  ``y = CrossBlock_x(y, z)``, ``z = FusionBlock(x + y)``. A cross block is a VMamba block around
  :class:`~bench_core.ops.CrossSS2D` (stream x scanned with A = (A_x + A_g) / 2 and the guide's B);
  the guide stream's own output is discarded by the reference, so by default it is not computed
  (``guide_stream = "skip"``: identical outputs). A fusion block is a VMamba v2 VSS block.
* **Heads.** LayerNorm -> Conv2d(dim -> K, 1x1) per branch; inference uses the fusion head.
* **Loss** (Eqs. 14-15): ``lambda_sup * sum of the three heads' masked CE + lambda_unsup *
  mean over pixels of (2 - cos(head_hsi, head_fusion) - cos(head_x, head_fusion))``.

CLIP weights cannot ship with the harness, so ``model.guidance`` says what guides the fusion:
``"clip"`` (user-supplied checkpoint, :mod:`bench_core.ops.clip_vit`), ``"clip-random"`` (a seeded
random frozen ViT: a STAND-IN with CLIP's cost and no semantics) or ``"concat"`` (the paper's
ablation (A), registered as ``m3amba-concat``). Runs say which through ``bench_tags``.

This package registers the methods without importing torch; the network is in :mod:`.model`,
which ``build`` imports.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from bench_core import ConfigError, MethodSpec, SceneInfo, hookimpl, model_options, option, suggest_optimizer

if TYPE_CHECKING:
    import optuna

    from bench_plugins.methods.m3amba.model import M3amba

NAME = "m3amba"
CONCAT_NAME = "m3amba-concat"
Guidance = Literal["clip", "clip-random", "concat"]
ClipVariant = Literal["code", "paper"]
GuideStream = Literal["skip", "compute"]
UnsupPixels = Literal["all", "labelled"]
GUIDE_STREAMS: tuple[str, ...] = get_args(GuideStream)
STAND_IN_TAG = "clip-random (STAND-IN: no pretrained CLIP weights)"
CONCAT_TAG = "concat (paper ablation A: no CLIP)"
IGNORE = -1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MISSING_WEIGHTS = (
    "M3amba needs CLIP ViT weights: --set model.clip_weights=/path/ViT-B-32.pt (OpenAI or "
    "open_clip checkpoint), or run m3amba-concat (the paper's ablation (A) without CLIP); "
    "model.guidance=clip-random runs a random frozen ViT as a declared stand-in"
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class M3ambaOptions:
    """``model.*`` of M3amba (defaults = the reference network and our documented choices)."""

    dim: int = option(384, ge=1)
    depth: int = option(9, ge=1)
    d_state: int = option(16, ge=1)
    ssm_ratio: float = option(2.0, gt=0)
    dt_rank: int | Literal["auto"] = option("auto", ge=1, hint="auto: ceil(dim/16)")
    d_conv: int = option(3, ge=1, hint="an odd kernel size, 3")
    mlp_ratio: float = option(4.0, gt=0)
    drop_path: float = option(0.1, ge=0, lt=1)
    guidance: Guidance = "clip"
    clip_weights: str | None = option(None, hint="a file path")
    clip_sha256: str | None = None
    clip_arch: str | Mapping[str, Any] = "ViT-B-32"
    clip_variant: ClipVariant = "code"
    clip_act: str = "quickgelu"  # choices: bench_core.ops.ACTIVATIONS, see from_mapping
    clip_normalize: bool = False
    clip_backprop: bool = True
    adapter_ratio: float = option(0.25, gt=0, le=1)
    guide_stream: GuideStream = "skip"
    lambda_sup: float = option(1.0, ge=0)
    lambda_unsup: float = option(0.5, ge=0)
    unsup_pixels: UnsupPixels = "all"
    unsup_stop_grad: bool = False
    checkpoint_blocks: bool = False

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> M3ambaOptions:
        """Options from ``model.*``; ConfigError naming the first bad key."""
        # CLIP's activation list and architecture parser live with the ViT (imports torch).
        from bench_core.ops import ACTIVATIONS, parse_clip_arch

        options = model_options(cls, config, method=NAME, choices={"clip_act": ACTIVATIONS})
        if options.d_conv % 2 == 0:
            raise ConfigError(f"{NAME} model.d_conv = {options.d_conv}: expected an odd kernel size (3)")
        if options.clip_sha256 is not None and not _SHA256_RE.match(options.clip_sha256.lower()):
            raise ConfigError(f"{NAME} model.clip_sha256 = {options.clip_sha256!r}: expected 64 hex digits or null")
        if options.guidance != "clip" and options.clip_weights is not None:
            raise ConfigError(
                f"{NAME} model.clip_weights is set but model.guidance = {options.guidance!r}; use "
                f"model.guidance=clip to load the weights"
            )
        if options.guidance == "clip-random":
            parse_clip_arch(options.clip_arch)
        return options

    @property
    def uses_clip(self) -> bool:
        return self.guidance != "concat"

    @property
    def resolved_dt_rank(self) -> int:
        return math.ceil(self.dim / 16) if self.dt_rank == "auto" else int(self.dt_rank)


def build(config: Mapping[str, Any], info: SceneInfo) -> M3amba:
    """M3amba for ``info``'s bands, classes and crop side (``info.patch_size``)."""
    from bench_plugins.methods.m3amba.model import M3amba, clip_encoder

    options = M3ambaOptions.from_mapping(config)
    missing = [k for k in ("hsi", "x") if k not in info.bands]
    if missing:
        raise ConfigError(f"{NAME}: the scene gives {sorted(info.bands)}; M3amba needs 'hsi' and 'x' ({missing} missing)")
    crop = int(info.patch_size)
    clip, sha256 = clip_encoder(options, info)
    return M3amba(options, int(info.bands["hsi"]), int(info.bands["x"]), info.num_classes, crop, clip, sha256)


def _concat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    guidance = config.get("guidance", "concat")
    if guidance != "concat":
        raise ConfigError(
            f"{CONCAT_NAME} model.guidance = {guidance!r}: this method is the paper's ablation (A) "
            f"without CLIP; use the {NAME!r} method for CLIP guidance"
        )
    return {**config, "guidance": "concat"}


def validate_model(config: Mapping[str, Any]) -> M3ambaOptions:
    """``model.*`` checked without building (unknown keys, bad values); the CLIP file is checked in build."""
    return M3ambaOptions.from_mapping(config)


def validate_concat_model(config: Mapping[str, Any]) -> M3ambaOptions:
    """:func:`validate_model` for ``m3amba-concat`` (``guidance="concat"`` enforced)."""
    return M3ambaOptions.from_mapping(_concat_config(config))


def build_concat(config: Mapping[str, Any], info: SceneInfo) -> M3amba:
    """``m3amba-concat``: :func:`build` with ``guidance="concat"`` enforced."""
    return build(_concat_config(config), info)


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    """Optimiser, unsupervised weight and stochastic depth around the paper's values (architecture fixed)."""
    return {
        "train": suggest_optimizer(trial, lr=(3e-5, 3e-4), weight_decay=(1e-4, 1e-2)),
        "model": {
            "lambda_unsup": trial.suggest_float("lambda_unsup", 0.05, 1.0),
            "drop_path": trial.suggest_float("drop_path", 0.0, 0.3),
        },
    }


# --------------------------------------------------------------------------- registration

_PAPER_TRAIN: dict[str, Any] = {
    "epochs": 200,
    "batch_size": 8,
    "optimizer": "adamw",
    "lr": 1e-4,
    "weight_decay": 1e-3,
    "scheduler": "none",
    "patch_size": 32,
    "crops_per_epoch": "grid:8",
    "val_every": 10,
    "restore_best": False,
}
_FAST_TRAIN: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 8,
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 1e-3,
    "steps_per_epoch": 8,
    "patch_size": 16,
}
_PAPER_MODEL: dict[str, Any] = {
    "dim": 384, "depth": 9, "d_state": 16, "ssm_ratio": 2.0, "mlp_ratio": 4.0, "drop_path": 0.1,
    "guidance": "clip", "clip_weights": None, "clip_arch": "ViT-B-32", "clip_variant": "code",
    "clip_act": "quickgelu", "clip_normalize": False, "guide_stream": "skip",
    "lambda_sup": 1.0, "lambda_unsup": 0.5, "checkpoint_blocks": False,
}
_FAST_MODEL: dict[str, Any] = {
    "dim": 32, "depth": 2, "d_state": 4, "ssm_ratio": 1.0, "mlp_ratio": 2.0, "drop_path": 0.0,
    "guidance": "clip-random",
    "clip_arch": {"width": 64, "layers": 2, "heads": 2, "patch": 8, "image": 32, "output_dim": 512},
    "lambda_unsup": 0.5,
}
_CLIP_ONLY = ("clip_weights", "clip_arch", "clip_variant", "clip_act", "clip_normalize")

_CHOICES = (
    "Choices where paper and code are silent or disagree (each a model.* or train.* setting): "
    "(1) Cross-SS2D follows the code: continuous A averaged, (A_x + A_g)/2, before discretisation, "
    "the modality's own delta, the guide's B; the paper's Eq. 12 (averaged discretised matrices, "
    "delta_2 B_2) needs another recurrence and is not implemented. "
    "(2) model.clip_variant='code' (default): full encoder, no adapters, the two guidance embeddings "
    "summed; 'paper': trainable modality-specific adapters (Linear-GELU-Linear with residual, "
    "bottleneck width*model.adapter_ratio = 1/4, up-projection zero-initialised) after every "
    "attention block, last encoder layer dropped, the two guidance maps concatenated before one "
    "embedding. "
    "(3) CLIP input as the code: 1x1 conv C->3, bicubic resize (no antialias) to the ViT's input "
    "size, no CLIP mean/std (model.clip_normalize), fp32 (the reference runs CLIP in fp16 on GPU). "
    "(4) CLIP frozen but gradients flow through it so the two reducers train "
    "(model.clip_backprop=false reproduces test.py's no_grad: reducers then stay frozen). "
    "(5) lambda1 = model.lambda_sup = 1.0, lambda2 = model.lambda_unsup = 0.5. "
    "(6) unsupervised cosine per pixel over the class logits, averaged over all crop pixels "
    "(model.unsup_pixels='labelled' for labelled only), no stop-gradient (model.unsup_stop_grad). "
    "(7) scheduler none, last-epoch weights (train.scheduler, train.restore_best). "
    "(8) epoch = every stride-8 32x32 crop window holding a training pixel, as the reference "
    "builds its epoch (train.crops_per_epoch='grid:8'; 2,761 crops on Houston2013). "
    "(9) the guide stream's scan, decode and MLP, whose output the reference discards, are "
    "skipped (model.guide_stream='compute' computes them: same outputs, reference cost). "
    "(10) A_logs and Ds without weight decay (VMamba convention, flagged _no_weight_decay). "
    "Also: the guide stream's dt projections, dt biases and D (79,872 values per cross block) "
    "never receive a gradient in the reference and are frozen here; reference init "
    "(trunc-normal 0.02 Linear weights); the Linear(512 -> 1024) of the code is Linear(512 -> s^2) "
    "for crop side s; model.checkpoint_blocks recomputes each block's activations in backward "
    "(memory for time). "
)


def method_spec(concat: bool = False) -> MethodSpec:
    """``m3amba`` (CLIP guidance; fast profile on the clip-random stand-in) or ``m3amba-concat``."""
    if concat:
        paper_model = {k: v for k, v in _PAPER_MODEL.items() if k not in _CLIP_ONLY}
        fast_model = {k: v for k, v in _FAST_MODEL.items() if k not in _CLIP_ONLY}
        paper_model["guidance"] = fast_model["guidance"] = "concat"
        status = (
            "m3amba-concat is the paper's own ablation (A) (Table I: 'directly concatenating "
            "multi-modal images to replace the output of the feature adaptation stage'; Houston2013 "
            "95.02 / Augsburg 95.65 / MUUFL 96.25 OA vs 97.31 / 98.19 / 97.84 with CLIP): "
            "z0 = Conv2d(C_h + C_x -> 384, 1x1) + LayerNorm of the stacked crops; no CLIP, no reducers, "
            "no guidance maps; it needs no files and is NOT the full M3amba (runs are tagged "
            "bench.method.guidance = 'concat (paper ablation A: no CLIP)'). 69,762,477 parameters on "
            "Houston2013 shapes. Everything else as m3amba. "
        )
    else:
        paper_model, fast_model = dict(_PAPER_MODEL), dict(_FAST_MODEL)
        status = (
            "Guidance (model.guidance): 'clip' loads the user's CLIP checkpoint from "
            "model.clip_weights (OpenAI ViT-B-32.pt / ViT-B-16.pt or open_clip; the code loads "
            "ViT-B/32, the paper says ViT-B/16; sha256 and architecture tagged); the paper profile "
            "refuses to build without it, naming --set model.clip_weights=... and m3amba-concat. "
            "'clip-random' is a STAND-IN: the same frozen ViT with seeded random weights (CLIP's "
            "compute, none of its semantics); the FAST PROFILE USES IT (a 2-layer width-64 ViT), so "
            "fast-profile results are not M3amba's. Runs are tagged bench.method.guidance. "
            "Parameters without CLIP and reducers: 70,814,543 (Houston2013 shapes), 70,835,333 "
            "(Augsburg), 70,749,093 (MUUFL), equal to the reference VSSM; the frozen ViT-B/32 adds "
            "87,849,216 to params_total, the reducers 3*(C_h + C_x) + 6. "
        )
    return MethodSpec(
        name=CONCAT_NAME if concat else NAME,
        build=build_concat if concat else build,
        input_kind="dense",
        modalities=("hsi", "x"),
        patch_size=32,
        profiles={
            "paper": {"train": dict(_PAPER_TRAIN), "model": paper_model},
            "fast": {"train": dict(_FAST_TRAIN), "model": fast_model},
        },
        search_space=search_space,
        validate_model=validate_concat_model if concat else validate_model,
        deterministic=True,
        paper=(
            "Cao, Xie, Zhang, Zhang, Jiang, Lei, Li, 'M3amba: CLIP-driven Mamba Model for "
            "Multi-modal Remote Sensing Classification', IEEE TCSVT 2025 (arXiv:2503.06446)"
        ),
        url="https://github.com/kaka-Cao/M3amba",
        licence="MIT (this implementation, written from the paper and the reference network code)",
        description=(
            status
            + "Dense, 32x32 crops, patch size 1: per-modality 1x1 reducers to 3 channels, frozen "
            "CLIP image encoder, Linear(512 -> s^2) + Conv2d(1 -> C) guidance maps, four 1x1 patch "
            "embeddings (dim 384) + LN, three branches of 9 blocks (cross blocks for HSI and X "
            "guided by z, a VSS fusion block on their sum; d_state 16, ssm_ratio 2, dt_rank 24, "
            "MLP ratio 4, drop path 0.1 linear), three LN + 1x1 conv heads; prediction from the "
            "fusion head. Loss: summed masked CE of the three heads + lambda_unsup * (2 - cos - cos). "
            "Paper: AdamW lr 1e-4, weight decay 1e-3, batch 8, 200 epochs. "
            + _CHOICES
            + "Fast profile (our choice, for CPU runs on small scenes): dim 32, depth 2, d_state 4, "
            "ssm_ratio 1, MLP ratio 2, no drop path, crops 16, batch 8, 10 epochs of 8 steps, AdamW "
            "lr 3e-3 (ssm_ratio 2 with d_state 8 costs about twice the time per step). The learning "
            "rate was chosen on validation OA only (the 20 validation pixels carved from the synthetic "
            "training pixels, seeds 0-1, never the test split): m3amba 90 / 85 % at 3e-3 vs 60 / 85 % "
            "at 1e-3; m3amba-concat 80 / 95 % vs 60 / 75 %. Small, spatially leaky validation sets: "
            "`bench tune` is the way to a better default."
        ),
    )


@hookimpl
def bench_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register ``m3amba`` and ``m3amba-concat`` (the paper's ablation (A), no CLIP)."""
    register(method_spec(concat=False))
    register(method_spec(concat=True))
