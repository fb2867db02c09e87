"""BDGF: balanced diffusion-guided fusion of HSI and SAR (Liu et al.).

Patch method (9 x 9 patches). BDGF's code is not published; this is a RECONSTRUCTION. Only its
diffusion model is pinned down exactly: SpectralDiff's 3D U-Net (4,299,633 parameters,
:mod:`bench_core.ops.ddpm3d`). Two phases:

1. **Stage "pretrain"** (no labels; every pixel of the scene, transductive as in the paper):
   the merged ``[x ; hsi]`` volume (zero-padded to depth S) trains the DDPM with adaptive
   modality masking (sample and structure masks whose drop probability grows as
   ``tanh(epoch / ddpm_epochs)``, multiplicative Gamma speckle on SAR rows, Gaussian noise on
   non-SAR X rows), then one noisy forward per 64 x 64 tile gives per-pixel decoder features
   ``dif`` (F = 32 S channels at the paper widths: 8,192). Both the DDPM and the feature map go
   into the stage cache (:mod:`bench_core.stage_cache`), keyed by the DDPM settings, the stage
   seed and the data fingerprint, so other splits, profiles with the same DDPM, and tuning
   trials reuse them. The map is stored float16 and channel-last and handed to the Trainer as
   the derived input ``dif``, memory-mapped (2.6 GB on Augsburg).
2. **Training network** (:mod:`.network`): CNN, Transformer and Mamba branches on
   ``hsi``, ``x`` and ``dif`` patches, group attention, a fused head, and the mutual-learning
   loss with a learned temperature (:mod:`.network`).

Without the derived input (a module called on scene patches only: conformance checks, FLOP
counting of the whole pipeline) ``dif`` is computed on the fly from the patch with the frozen
DDPM, the patch standing for one light-split tile (:meth:`BDGF.features_on_the_fly`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from bench_core import ConfigError, MethodSpec, SceneInfo, Stage, hookimpl, model_options, option, suggest_optimizer
from bench_plugins.methods.bdgf.options import NetOptions

if TYPE_CHECKING:
    import optuna

    from bench_core import StageContext
    from bench_plugins.methods.bdgf.model import BDGF

NAME = "bdgf"
STAGE_VERSION = "1"
"""Part of every stage-cache key: bump it when the stage computes something different."""
Mask = Literal["both", "sample", "structure", "none"]
SarTarget = Literal["effective", "none"]
XNoise = Literal["auto", "speckle", "gaussian"]
DifSource = Literal["cache", "on-the-fly"]
DifDtype = Literal["float16", "float32"]
DDPM_PAPER_CHANNELS = (16, 32, 64, 128)
"""SpectralDiff's U-Net widths: ``bench_core.ops.DDPM_PAPER_CHANNELS``, repeated so that registering
imports no torch (tests/unit/test_bdgf.py checks they agree)."""


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BDGFOptions(NetOptions):
    """``model.*`` of BDGF: the training network's (:class:`NetOptions`), then the diffusion stage's
    and the features' (defaults = the paper profile; see the method description)."""

    # diffusion stage
    ddpm_channels: tuple[int, ...] = option(
        DDPM_PAPER_CHANNELS, ge=1, length=4, hint="the U-Net widths, paper: [16, 32, 64, 128]"
    )
    ddpm_time_dim: int = option(32, ge=1)
    ddpm_depth: int | str = "pow2"  # checked against the band count by diffusion.volume_depth, in build
    ddpm_tile: int = option(64, ge=1)
    ddpm_T: int = option(500, ge=1)
    ddpm_beta: tuple[float, float] = option((1e-4, 0.02), gt=0, lt=1, hint="[start, end] with start < end")
    ddpm_epochs: int = option(30000, ge=1)
    ddpm_batch: int = option(20, ge=1)
    ddpm_lr: float = option(1e-4, gt=0)
    speckle_looks: float = option(4.0, gt=0)
    mask: Mask = "both"
    sar_target: SarTarget = "effective"
    x_noise: XNoise = "auto"
    # features
    dif_timestep: int = option(100, ge=0)
    dif_layer: Literal[0, 1, 2] = option(0, hint="decoder input")
    dif_source: DifSource = "cache"
    dif_dtype: DifDtype = "float16"

    def ddpm_settings(self) -> dict[str, Any]:
        """What the pretrained DDPM depends on (with the stage seed and the data: its cache key)."""
        keys = ("ddpm_channels", "ddpm_time_dim", "ddpm_depth", "ddpm_tile", "ddpm_T", "ddpm_beta", "ddpm_epochs",
                "ddpm_batch", "ddpm_lr", "speckle_looks", "mask", "sar_target")
        values = asdict(self)
        return {k: values[k] for k in keys}


def resolve_options(config: Mapping[str, Any]) -> BDGFOptions:
    """Validate ``model.*``; each error names the key, the value and what is expected."""
    options = model_options(BDGFOptions, config, method=NAME)
    start, end = options.ddpm_beta
    if not start < end:
        raise ConfigError(
            f"{NAME} model.ddpm_beta = {list(options.ddpm_beta)}: expected [start, end] with 0 < start < end < 1"
        )
    if not options.dif_timestep < options.ddpm_T:
        raise ConfigError(
            f"{NAME} model.dif_timestep = {options.dif_timestep!r}: expected an integer in [0, {options.ddpm_T}) "
            f"(model.ddpm_T = {options.ddpm_T})"
        )
    options.validate()  # the network's keys (NetOptions), with the same kind of messages
    return options


# --------------------------------------------------------------------------- the stage


def pretrain(context: StageContext) -> None:
    """Stage "pretrain": train (or reuse) the DDPM, extract (or reuse) ``dif``, add it as a derived input.

    Reads only ``context.data.inputs`` (never training pixels or labels), so the cache key is
    the DDPM settings, the stage seed and the fingerprint of the inputs. The work is
    :func:`.model.pretrain_stage` (imports torch; this wrapper keeps registration torch-free).
    """
    from bench_plugins.methods.bdgf.model import pretrain_stage

    pretrain_stage(context)


# --------------------------------------------------------------------------- build, profiles


def build(config: Mapping[str, Any], info: SceneInfo) -> BDGF:
    """BDGF for ``info``'s HSI and X bands, classes and patch side."""
    from bench_plugins.methods.bdgf.model import BDGF

    options = resolve_options(config)
    missing = [k for k in ("hsi", "x") if k not in info.bands]
    if missing:
        raise ConfigError(f"{NAME}: the scene gives {sorted(info.bands)}; BDGF needs 'hsi' and 'x' ({missing} missing)")
    x_noise = options.x_noise
    if x_noise == "auto":
        # Speckle is SAR's noise model; other X modalities (LiDAR, DSM) get Gaussian noise.
        x_noise = "speckle" if "sar" in info.x_modalities else "gaussian"
    return BDGF(options, int(info.bands["hsi"]), int(info.bands["x"]), info.num_classes, int(info.patch_size), x_noise)


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    """Learning rate and the feature timestep/layer; the DDPM is reused from the cache across trials."""
    return {
        "train": suggest_optimizer(trial, lr=(1e-4, 1e-3)),
        "model": {
            "dif_timestep": trial.suggest_categorical("dif_timestep", [5, 10, 50, 100, 200, 400]),
            "dif_layer": trial.suggest_categorical("dif_layer", [0, 1, 2]),
        },
    }


_PAPER_TRAIN: dict[str, Any] = {
    "epochs": 200, "batch_size": 64, "optimizer": "adam", "lr": 4e-4, "scheduler": "multistep",
    "milestones": [100, 150], "gamma": 0.5, "patch_size": 9,
}
_PAPER_MODEL: dict[str, Any] = {
    "embed_dim": 64, "heads": 8, "hsi_tokens": 4, "x_tokens": 1, "temperature": "learned", "mamba_sequence": "pixels",
    "group_attention": "literal", "ddpm_channels": list(DDPM_PAPER_CHANNELS), "ddpm_depth": "pow2", "ddpm_tile": 64, "ddpm_T": 500,
    "ddpm_beta": [1e-4, 0.02], "ddpm_epochs": 30000, "ddpm_batch": 20, "ddpm_lr": 1e-4, "speckle_looks": 4.0,
    "mask": "both", "sar_target": "effective", "x_noise": "auto", "dif_timestep": 100, "dif_layer": 0,
    "dif_source": "cache", "dif_dtype": "float16",
}
_FAST_TRAIN: dict[str, Any] = {
    "epochs": 12, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "scheduler": "multistep",
    "milestones": [6, 9], "gamma": 0.5, "steps_per_epoch": 8, "patch_size": 9,
}
_FAST_MODEL: dict[str, Any] = {
    **_PAPER_MODEL, "embed_dim": 32, "heads": 4, "ddpm_channels": [2, 4, 8, 16], "ddpm_depth": "mult8",
    "ddpm_tile": 16, "ddpm_epochs": 16, "ddpm_batch": 8, "ddpm_lr": 1e-3, "dif_timestep": 50,
}

_CHOICES = (
    "Reconstruction choices where the paper is silent (each a model.* or train.* setting). "
    "Stage: volume [x ; hsi] (SAR first, Eq. 8) zero-padded to depth S = next power of two >= the bands "
    "(model.ddpm_depth = 'pow2': 256 for Augsburg, Berlin and Houston2013, matching the paper's FLOPs); HSI "
    "per band to [-1, 1], X per band to [0, 1] so that speckle multiplies non-negative values; masks are drop "
    "probabilities p = tanh(epoch / ddpm_epochs) on HSI voxels only, sample mask and per-voxel structure mask "
    "(model.mask = both|sample|structure|none, Table II); SAR rows get multiplicative Gamma speckle with "
    "model.speckle_looks = 4 looks (normal approximation of the log-product beyond 16 steps), non-SAR X "
    "(LiDAR) Gaussian noise (model.x_noise = auto|speckle|gaussian); the DDPM regresses the effective noise "
    "of the whole volume, L1 (model.sar_target = effective|none); SpectralDiff's recipe Adam 1e-4, batch 20, "
    "64 x 64 tiles, T 500, linear betas 1e-4..0.02; model.ddpm_epochs = 30000 (SpectralDiff's 'more than "
    "30000'; BDGF does not say). Features at timestep model.dif_timestep = 100 from decoder input "
    "model.dif_layer = 0 (F = 32 S = 8,192 channels), stored float16; the noise at feature time is "
    "SpectralDiff's Gaussian q_sample on every row (no masking, no speckle), one field per scene from the "
    "stage seed. "
    "Network: spectral 3D stem Conv3d(1 -> 8, (k,3,3), stride (k,1,1)) viewed as 64 channels; dif guidance "
    "convs w1_2d..w3_2d Conv2d(F -> 64, 3x3); fusion weights alpha, beta, gamma init 0.5; MFT-style tokens "
    "(4 HSI, 1 X; values Linear(C -> 64) of the raw pixels), one pre-norm attention layer per stream "
    "(no MLP), CrossViT CLS cross-attention (a CLS attends to itself and the other stream's tokens), "
    "merged HSI+X stream (CLS_hsi + CLS_x) querying the 81 dif tokens with a position embedding; Mamba v1 block per modality over the 81 pixels (model.mamba_sequence = "
    "pixels|bands); group attention with Q, K, V 1x1 convs on each input including dif (literal Eq. 21), "
    "group attention lambda init 0 as in DANet (model.group_attention = literal|shared: 'shared' feeds one "
    "1x1 projection of dif to Q, K, V, 15.5 M parameters); f_mamba = GAP(F_GA + f_m_sar); mutual learning "
    "on pairs (cnn<-trans, cnn<-mamba, trans<-mamba) with "
    "KL of temperature-softened outputs times T^2, no stop-gradient, T = softplus(Linear([cos, H_a + H_b])) "
    "(model.temperature = learned|fixed:<T>; its mean per epoch is logged as temperature_mean, since "
    "minimising T^2 KL can drive T towards 0); loss = CE(fused head) + the three mutual terms; prediction "
    "from the fused head. Training: epochs 200, batch 64, MultiStep milestones [100, 150] (unknown in the "
    "paper). "
)


def method_spec() -> MethodSpec:
    """The ``bdgf`` method: paper, ddpm-short (1,000 DDPM epochs for GPU budgets) and fast profiles."""
    return MethodSpec(
        name=NAME,
        build=build,
        input_kind="patch",
        modalities=("hsi", "x"),
        patch_size=9,
        profiles={
            "paper": {"train": dict(_PAPER_TRAIN), "model": dict(_PAPER_MODEL)},
            "ddpm-short": {"train": dict(_PAPER_TRAIN), "model": {**_PAPER_MODEL, "ddpm_epochs": 1000}},
            "fast": {"train": dict(_FAST_TRAIN), "model": dict(_FAST_MODEL)},
        },
        search_space=search_space,
        validate_model=resolve_options,
        stages=(Stage("pretrain", pretrain),),
        deterministic=True,
        paper=(
            "Liu et al., 'BDGF: balanced diffusion-guided fusion for hyperspectral and SAR image classification' "
            "(official code not public); DDPM: Chen et al., SpectralDiff (chenning0115/spectraldiff_diffusion)"
        ),
        url="",
        licence="MIT (this implementation, a reconstruction written from the papers)",
        description=(
            "RECONSTRUCTION: BDGF's code is not public; only its DDPM (SpectralDiff's 3D U-Net, 4,299,633 "
            "parameters, 996.43 G thop-style per 64x64x256 tile) is exact. Patch method, 9x9 patches. A label-free "
            "stage 'pretrain' trains the DDPM on the whole scene with adaptive modality masking and SAR speckle, "
            "then extracts per-pixel diffusion features (8,192 channels at the paper widths) into the stage cache "
            "(reused by every split and tuning trial of the same seed; run tags bench.method.ddpm = "
            "trained|reused and bench.method.dif_cache = hit|miss). The training network has CNN, Transformer "
            "and Mamba branches guided by the features, group attention, and a mutual-learning loss with a "
            "learned temperature; 16.58 M parameters at the Augsburg shapes, 16.60 M at Berlin's (paper 16.38 M for both). "
            "flops_per_sample counts the training network on cached features; the DDPM's cost is the stage's "
            "(time_stage_pretrain_s). params_total includes the frozen DDPM, params_trainable does not. "
            "Paper recipe: Adam 4e-4, MultiStepLR gamma 0.5, 100 training pixels per class (board split "
            "per-class:100). The paper's 30,000 DDPM epochs need days on a GPU; profile ddpm-short trains 1,000. "
            + _CHOICES
            + "Fast profile (our choice, sized to one synthetic cell in under a minute on 2 CPU cores, never "
            "tuned on any score): DDPM widths [2, 4, 8, 16], depth = the next multiple of 8 (model.ddpm_depth = 'mult8': 40 on the synthetic scene), 16x16 tiles, 16 DDPM epochs at lr 1e-3, "
            "batch 8, features at t = 50 (F = 4 S = 160 on the synthetic scene); network width 32 with 4 heads; 12 epochs of 8 steps at batch "
            "32, Adam 1e-3, milestones [6, 9]."
        ),
    )


@hookimpl
def bench_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register ``bdgf``."""
    register(method_spec())
