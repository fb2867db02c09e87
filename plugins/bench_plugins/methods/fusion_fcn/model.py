"""Fusion-FCN's network (module-level classes, so a built model pickles); imported by ``build``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def pool(stride: int) -> nn.Module:
    """The 2x2 average pool after each conv block."""
    if stride == 1:
        # A 2x2 window at stride 1 loses one row/column; pad bottom/right to keep the size.
        return nn.Sequential(nn.ReplicationPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, stride=1))
    return nn.AvgPool2d(2, stride=2, ceil_mode=True)  # ceil: odd sizes keep their edge


def branch(in_ch: int, widths: Sequence[int], stride: int) -> nn.Sequential:
    """One modality's conv3x3 + BN + ReLU + pool blocks."""
    blocks: list[nn.Module] = []
    for width in widths:
        blocks.append(
            nn.Sequential(
                nn.Conv2d(in_ch, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                pool(stride),
            )
        )
        in_ch = width
    return nn.Sequential(*blocks)


class FusionFCN(nn.Module):
    """Per-modality conv/pool branches, additive fusion, 1x1 classifier, bilinear upsampling."""

    def __init__(self, hsi_bands: int, x_bands: int, num_classes: int, widths: Sequence[int], pool_stride: int) -> None:
        super().__init__()
        self.branches = nn.ModuleDict(
            {"hsi": branch(hsi_bands, widths, pool_stride), "x": branch(x_bands, widths, pool_stride)}
        )
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        size = inputs["hsi"].shape[-2:]
        fused = self.branches["hsi"](inputs["hsi"]) + self.branches["x"](inputs["x"])
        logits = self.classifier(fused)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits
