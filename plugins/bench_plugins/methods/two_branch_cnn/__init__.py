"""A small two-branch CNN with late fusion by concatenation (patch classifier).

One branch reads the HSI patch (a 1x1 convolution reduces the spectrum, then 3x3
convolutions), the other reads the X patch (3x3 convolutions). Each branch is pooled
globally, the two feature vectors are concatenated and a linear head gives the
logits of the centre pixel. This is the family of two-branch HSI/LiDAR CNNs with
feature-level fusion (Chen et al., GRSL 2017; Xu et al., TGRS 2018) reduced to a
reference baseline; the widths and the recipe are our choice, not a paper's.

The network lives in :mod:`.model` (imports torch), which ``build`` imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench_core import MethodSpec, SceneInfo, hookimpl, model_options, option, suggest_optimizer

if TYPE_CHECKING:
    import optuna
    from torch import nn

NAME = "two-branch-cnn"
_WIDTHS_HINT = "channels of the successive 3x3 conv layers, e.g. [32, 64]"


@dataclass(frozen=True)
class TwoBranchCNNOptions:
    """``model.*`` of the two-branch CNN."""

    spectral_width: int = option(32, ge=1, hint="channels of the HSI branch's 1x1 spectral reduction")
    hsi_widths: tuple[int, ...] = option((32, 64), ge=1, hint=_WIDTHS_HINT)
    x_widths: tuple[int, ...] = option((16, 32), ge=1, hint=_WIDTHS_HINT)
    dropout: float = option(0.0, ge=0, lt=1)


def validate_model(config: Mapping[str, Any]) -> TwoBranchCNNOptions:
    """The ``model`` config with defaults filled in; ConfigError for unknown keys or bad values."""
    return model_options(TwoBranchCNNOptions, config, method=NAME)


def build(config: Mapping[str, Any], info: SceneInfo) -> nn.Module:
    """Build the network for ``info.bands["hsi"]`` + ``info.bands["x"]`` inputs and K classes."""
    from bench_plugins.methods.two_branch_cnn.model import TwoBranchCNN

    options = validate_model(config)
    return TwoBranchCNN(
        hsi_bands=info.bands["hsi"],
        x_bands=info.bands["x"],
        num_classes=info.num_classes,
        spectral_width=options.spectral_width,
        hsi_widths=options.hsi_widths,
        x_widths=options.x_widths,
        dropout=float(options.dropout),
    )


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    """Learning rate, weight decay, width and dropout."""
    width = trial.suggest_categorical("width", [16, 32, 64])
    return {
        "train": suggest_optimizer(trial, lr=(1e-4, 1e-2), weight_decay=(1e-6, 1e-2)),
        "model": {
            "spectral_width": width,
            "hsi_widths": [width, 2 * width],
            "x_widths": [width // 2, width],
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        },
    }


def method_spec() -> MethodSpec:
    """The ``two-branch-cnn`` method spec (built on demand, nothing happens at import)."""
    return MethodSpec(
        name=NAME,
        build=build,
        input_kind="patch",
        modalities=("hsi", "x"),
        patch_size=11,
        profiles={
            "paper": {
                "train": {
                    "epochs": 100,
                    "batch_size": 64,
                    "optimizer": "adam",
                    "lr": 1e-3,
                    "weight_decay": 1e-4,
                    "scheduler": "cosine",
                    "patch_size": 11,
                },
                "model": {
                    "spectral_width": 64,
                    "hsi_widths": [64, 128],
                    "x_widths": [32, 64],
                    "dropout": 0.2,
                },
            },
            "fast": {
                "train": {
                    "epochs": 10,
                    "batch_size": 32,
                    "optimizer": "adam",
                    "lr": 3e-3,
                    "steps_per_epoch": 10,
                    "patch_size": 7,
                },
                "model": {"spectral_width": 16, "hsi_widths": [16, 32], "x_widths": [8, 16], "dropout": 0.0},
            },
        },
        search_space=search_space,
        validate_model=validate_model,
        deterministic=True,
        paper=(
            "Reference baseline after the two-branch HSI/LiDAR CNNs with feature-level fusion: "
            "Chen et al., 'Deep fusion of remote sensing data for accurate classification', "
            "IEEE GRSL 14(8), 2017; Xu et al., 'Multisource remote sensing data classification "
            "based on convolutional neural network', IEEE TGRS 56(2), 2018"
        ),
        url="https://doi.org/10.1109/LGRS.2017.2704625",
        licence="MIT (this implementation)",
        description=(
            "HSI branch: 1x1 conv spectral reduction + BN + ReLU, then 3x3 conv-BN-ReLU layers; "
            "X branch: 3x3 conv-BN-ReLU layers; global average pooling per branch, "
            "concatenation, linear head on the centre pixel's patch. Patch 11 (paper profile) "
            "is the common HSI-LiDAR patch size (e.g. MFT's 11x11); widths, dropout and the "
            "recipe (Adam 1e-3, weight decay 1e-4, 100 epochs, cosine schedule, batch 64) are "
            "our choice, not taken from either paper. Fast profile: patch 7, narrow widths, "
            "10 epochs of 10 steps."
        ),
    )


@hookimpl
def bench_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register the ``two-branch-cnn`` baseline."""
    register(method_spec())
