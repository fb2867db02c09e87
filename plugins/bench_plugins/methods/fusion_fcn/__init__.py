"""Fusion-FCN: the DFC2018 winner's fully convolutional HSI + X fusion, as CoMiX describes it.

The CoMiX paper (Zhang et al., IEEE TGRS) compares against "Fusion-FCN, the winner of
the 2018 IEEE Data Fusion Contest" (Xu et al., IEEE JSTARS 12(6), 2019) and describes
it as three 3x3 convolutional layers and three 2x2 average-pooling layers per
modality, the modality features fused by point-wise addition, with "consistent
spatial sizes between input images and feature maps at each level". We build exactly
that: per modality three blocks of conv3x3 + BN + ReLU + 2x2 average pooling, the
blocks' outputs added across modalities, a 1x1 classifier, and bilinear upsampling
back to the input size. With ``pool_stride = 1`` (the default, matching "consistent
spatial sizes") each 2x2 pool is padded on its bottom/right edge so the maps keep the
input size and the upsampling is the identity; ``pool_stride = 2`` halves the maps at
each pool and the upsampling restores them.

The network lives in :mod:`.model` (imports torch), which ``build`` imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bench_core import MethodSpec, SceneInfo, hookimpl, model_options, option, suggest_optimizer

if TYPE_CHECKING:
    import optuna
    from torch import nn

NAME = "fusion-fcn"


@dataclass(frozen=True)
class FusionFCNOptions:
    """``model.*`` of Fusion-FCN."""

    widths: tuple[int, ...] = option(
        (32, 32, 32), ge=1, length=3,
        hint="the channels of the three conv layers per modality, e.g. [32, 32, 32]",
    )
    pool_stride: Literal[1, 2] = option(
        1, expect="1 (maps keep the input size, as CoMiX describes Fusion-FCN) or 2 (each pool halves them)"
    )


def validate_model(config: Mapping[str, Any]) -> FusionFCNOptions:
    """The ``model`` config with defaults filled in; ConfigError for unknown keys or bad values."""
    return model_options(FusionFCNOptions, config, method=NAME)


def build(config: Mapping[str, Any], info: SceneInfo) -> nn.Module:
    """Build the network for the ``hsi`` and ``x`` bands in ``info`` and K classes."""
    from bench_plugins.methods.fusion_fcn.model import FusionFCN

    options = validate_model(config)
    return FusionFCN(info.bands["hsi"], info.bands["x"], info.num_classes, options.widths, options.pool_stride)


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    """Learning rate, weight decay and width."""
    width = trial.suggest_categorical("width", [16, 32, 64])
    return {
        "train": suggest_optimizer(trial, lr=(1e-4, 1e-2), weight_decay=(1e-6, 1e-2)),
        "model": {"widths": [width, width, width]},
    }


def method_spec() -> MethodSpec:
    """The ``fusion-fcn`` method spec (built on demand, nothing happens at import)."""
    return MethodSpec(
        name=NAME,
        build=build,
        input_kind="dense",
        modalities=("hsi", "x"),
        patch_size=64,
        profiles={
            "paper": {
                "train": {
                    "epochs": 100,
                    "batch_size": 8,
                    "optimizer": "adam",
                    "lr": 1e-3,
                    "weight_decay": 1e-4,
                    "scheduler": "poly",
                    "power": 0.9,
                    "patch_size": 64,
                },
                "model": {"widths": [32, 32, 32], "pool_stride": 1},
            },
            "fast": {
                "train": {
                    "epochs": 10,
                    "batch_size": 8,
                    "optimizer": "adam",
                    "lr": 3e-3,
                    "steps_per_epoch": 8,
                    "patch_size": 32,
                },
                "model": {"widths": [16, 16, 16], "pool_stride": 1},
            },
        },
        search_space=search_space,
        validate_model=validate_model,
        deterministic=True,
        paper=(
            "Fusion-FCN, winner of the 2018 IEEE GRSS Data Fusion Contest (Xu et al., 'Advanced "
            "multi-sensor optical remote sensing for urban land use and land cover "
            "classification: outcome of the 2018 IEEE GRSS Data Fusion Contest', IEEE JSTARS "
            "12(6), 2019), as described and re-run in Zhang et al., 'CoMiX: Cross-Modal Fusion "
            "with Deformable Convolutions for HSI-X Semantic Segmentation' (IEEE TGRS)"
        ),
        url="https://doi.org/10.1109/JSTARS.2019.2911113",
        licence="MIT (this implementation)",
        description=(
            "Per modality three 3x3 conv + BN + ReLU layers each followed by 2x2 average "
            "pooling (stride 1 with edge padding, so feature maps keep the input size as CoMiX "
            "describes), features fused by addition, 1x1 classifier, bilinear upsampling to "
            "the input size; (N, K, s, s) logits, loss masked to training pixels. CoMiX gives "
            "neither widths nor recipe for Fusion-FCN: widths 32 (about 0.08M parameters on "
            "Houston2013's 144+1 bands, CoMiX reports 0.09M), Adam 1e-3, weight decay 1e-4, "
            "100 epochs with a poly schedule, batch 8 and crops of 64x64 are our choice. Fast "
            "profile: widths 16, 32x32 crops, 10 epochs of 8 steps."
        ),
    )


@hookimpl
def bench_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register the ``fusion-fcn`` baseline."""
    register(method_spec())
