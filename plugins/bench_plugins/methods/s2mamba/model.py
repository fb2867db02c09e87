"""S2Mamba's network (module-level classes, so a built model pickles); imported by ``build``.

See the package docstring for the architecture and the reference's quirks kept here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bench_core.ops import SS2D, DirectionalSSM, cross_merge_1d, cross_scan_1d


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero whole samples with probability ``rate``, rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class BSS(nn.Module):
    """Spectral mixer: SS2D's shell around a 2-direction scan along the inner channels,
    with the p^2 pixel positions as the scan's channels."""

    def __init__(
        self, dim: int, inner: int, positions: int, dt_rank: int, d_state: int, dropout: float, true_reverse: bool
    ) -> None:
        super().__init__()
        self.true_reverse = true_reverse
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv2d = nn.Conv2d(inner, inner, 3, padding=1, groups=inner)
        self.ssm = DirectionalSSM(positions, dt_rank, d_state, directions=2)
        self.out_norm = nn.LayerNorm(positions)
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inner, p, p) after the conv -> (B, p, p, inner) scanned and normalised."""
        b, c, h, w = x.shape
        seq = x.reshape(b, c, h * w).transpose(1, 2)  # (B, p^2, inner): sequence = channels
        # The reference's second direction flips a size-1 axis, i.e. scans forward too.
        xs = cross_scan_1d(seq) if self.true_reverse else torch.stack([seq, seq], dim=1)
        y = cross_merge_1d(self.ssm(xs))  # (B, p^2, inner)
        y = self.out_norm(y.transpose(1, 2))  # LayerNorm over the p^2 positions
        return y.transpose(1, 2).reshape(b, h, w, c)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(tokens).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        return self.dropout(self.out_proj(self.core(x) * F.gelu(z)))


class MixtureGate(nn.Module):
    """SMG: softmax gate over the two mixers, small gates zeroed, DropPath."""

    def __init__(self, dim: int, threshold: float, dropout: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.drop_rate = dropout
        self.gate = nn.Sequential(
            nn.LayerNorm(2 * dim),
            nn.Linear(2 * dim, 2 * dim),
            nn.GELU(),
            nn.Linear(2 * dim, 2),
        )

    def forward(self, spatial: torch.Tensor, spectral: torch.Tensor) -> torch.Tensor:
        gates = self.gate(torch.cat([spatial, spectral], dim=-1)).softmax(dim=-1)
        gates = torch.where(gates < self.threshold, torch.zeros_like(gates), gates)
        mixed = gates[..., :1] * spatial + gates[..., 1:] * spectral
        return drop_path(mixed, self.drop_rate, self.training)


class S2Mamba(nn.Module):
    """HSI (+ X) patches -> (B, K) logits of the centre pixel.

    Tied to the patch size: BSS's projections have ``patch ** 2`` inputs and outputs.
    """

    def __init__(
        self,
        *,
        bands: int,
        num_classes: int,
        patch: int,
        dim: int,
        d_state: int,
        expand: int,
        dropout: float,
        gate_threshold: float,
        true_reverse: bool,
        concat_x: bool,
    ) -> None:
        super().__init__()
        inner = expand * dim
        dt_rank = math.ceil(dim / 16)
        self.concat_x = concat_x
        self.embed = nn.Sequential(nn.Conv2d(bands, dim, 1), nn.GELU())
        self.norm = nn.LayerNorm(dim)
        # PCS is VMamba's SS2D with S2Mamba's GELU gate.
        self.pcs = SS2D(dim, d_state, ssm_ratio=expand, gate_act="gelu", dropout=dropout)
        self.bss = BSS(dim, inner, patch * patch, dt_rank, d_state, dropout, true_reverse)
        self.fusion = MixtureGate(dim, gate_threshold, dropout)
        self.head_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        for module in self.modules():  # the reference's _init_weights
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([inputs["hsi"], inputs["x"]], dim=1) if self.concat_x else inputs["hsi"]
        tokens = self.embed(x).permute(0, 2, 3, 1)  # (B, p, p, dim)
        normed = self.norm(tokens)
        tokens = tokens + self.fusion(self.pcs(normed), self.bss(normed))
        return self.head(self.head_norm(tokens.flatten(1, 2)).mean(dim=1))
