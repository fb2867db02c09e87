"""The two-branch CNN (a module-level class, so a built model pickles); imported by ``build``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn


def conv_stack(in_ch: int, widths: Sequence[int]) -> list[nn.Module]:
    """3x3 conv + BN + ReLU per width."""
    layers: list[nn.Module] = []
    for width in widths:
        # padding=1 keeps the patch size, so any patch >= 1 works.
        layers += [nn.Conv2d(in_ch, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        in_ch = width
    return layers


class TwoBranchCNN(nn.Module):
    """HSI branch + X branch, global average pooling each, concatenation, linear head."""

    def __init__(
        self,
        *,
        hsi_bands: int,
        x_bands: int,
        num_classes: int,
        spectral_width: int,
        hsi_widths: Sequence[int],
        x_widths: Sequence[int],
        dropout: float,
    ) -> None:
        super().__init__()
        self.hsi_branch = nn.Sequential(
            nn.Conv2d(hsi_bands, spectral_width, 1, bias=False),
            nn.BatchNorm2d(spectral_width),
            nn.ReLU(),
            *conv_stack(spectral_width, hsi_widths),
        )
        self.x_branch = nn.Sequential(*conv_stack(x_bands, x_widths))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hsi_widths[-1] + x_widths[-1], num_classes)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        h = self.pool(self.hsi_branch(inputs["hsi"])).flatten(1)
        x = self.pool(self.x_branch(inputs["x"])).flatten(1)
        return self.head(self.dropout(torch.cat([h, x], dim=1)))
