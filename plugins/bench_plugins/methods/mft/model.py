"""MFT's network (module-level classes, so a built model pickles); imported by ``build``.

See the package docstring for the architecture and the notebook quirks kept here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

SPECTRAL_MAPS = 8  # Conv3d output maps in the reference HSI stem


def learn_tokens(pixels: torch.Tensor, attn_weight: torch.Tensor, value_weight: torch.Tensor) -> torch.Tensor:
    """MFT's token learner: (B, P, C) pixel vectors -> (B, n, C) tokens.

    ``attn_weight`` (1, n, C) scores every pixel for each token; a softmax over the P
    pixels turns the scores into pooling weights, which pool the pixels projected by
    ``value_weight`` (1, C, C): ``softmax_P(X Wa^T)^T (X Wv)``.
    """
    weights = torch.matmul(pixels, attn_weight.transpose(1, 2)).transpose(1, 2).softmax(dim=-1)
    return torch.matmul(weights, torch.matmul(pixels, value_weight))


class HetConv(nn.Module):
    """Grouped 3x3 conv plus pointwise 1x1 conv over the same input, summed."""

    def __init__(self, in_channels: int, dim: int, groups: int) -> None:
        super().__init__()
        self.grouped = nn.Conv2d(in_channels, dim, 3, padding=1, groups=groups)
        self.pointwise = nn.Conv2d(in_channels, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grouped(x) + self.pointwise(x)


class ClsCrossAttention(nn.Module):
    """MFT's multi-head cross attention: the CLS token queries all tokens; output (B, 1, dim)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dim = dim
        head_width = dim // heads
        self.scale = head_width**-0.5  # the reference scales by the head width, not by dim
        # One Linear per role, shared by every head, maps a head's slice to dim channels.
        self.to_q = nn.Linear(head_width, dim, bias=False)
        self.to_k = nn.Linear(head_width, dim, bias=False)
        self.to_v = nn.Linear(head_width, dim, bias=False)
        self.proj = nn.Linear(dim * heads, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads, dim = self.heads, self.dim
        b, n, c = x.shape
        slices = x.reshape(b, n, heads, c // heads)
        q = self.to_q(slices[:, :1])  # (B, 1, heads, dim)
        k = self.to_k(slices)  # (B, N, heads, dim)
        v = self.to_v(slices)
        attn = (torch.einsum("bqhd,bkhd->bhqk", q, k) * self.scale).softmax(dim=-1)
        out = torch.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, 1, heads * dim)
        return self.drop(self.proj(out))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ClsCrossAttention(dim, heads, dropout)
        self.mlp_norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))  # (B, 1, dim) broadcast onto every token
        return x + self.mlp(self.mlp_norm(x))


def token_weight(*shape: int) -> nn.Parameter:
    # Same (1, rows, cols) shapes as the reference so Xavier-normal gets the same fans.
    weight = torch.empty(1, *shape)
    nn.init.xavier_normal_(weight)
    return nn.Parameter(weight)


class MFT(nn.Module):
    """HSI + X patches -> (B, K) logits of the centre pixel.

    ``kernel`` is the Conv3d's band extent and ``groups`` the HetConv's group count, both
    resolved by :func:`bench_plugins.methods.mft.build`.
    """

    def __init__(
        self,
        *,
        hsi_bands: int,
        x_bands: int,
        num_classes: int,
        dim: int,
        heads: int,
        hsi_tokens: int,
        depth: int,
        mlp_hidden: int,
        dropout: float,
        kernel: int,
        groups: int,
    ) -> None:
        super().__init__()
        stem_channels = SPECTRAL_MAPS * (hsi_bands - kernel + 1)
        self.spectral_kernel = kernel
        self.hsi_conv3d = nn.Sequential(
            nn.Conv3d(1, SPECTRAL_MAPS, (kernel, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(SPECTRAL_MAPS),
            nn.ReLU(),
        )
        self.hsi_conv2d = nn.Sequential(HetConv(stem_channels, dim, groups), nn.BatchNorm2d(dim), nn.ReLU())
        self.x_conv = nn.Sequential(nn.Conv2d(x_bands, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.GELU())
        # Bare parameters on this module, as in the reference (torchsummary leaves them out).
        self.hsi_token_attn = token_weight(hsi_tokens, dim)
        self.hsi_token_value = token_weight(dim, dim)
        self.x_token_attn = token_weight(1, dim)
        self.x_token_value = token_weight(dim, dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, hsi_tokens + 1, dim))
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_hidden, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.normal_(self.head.bias, std=1e-6)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        hsi, x = inputs["hsi"], inputs["x"]
        b, _, h, w = hsi.shape
        feats = self.hsi_conv3d(hsi.unsqueeze(1)).reshape(b, -1, h, w)
        feats = self.hsi_conv2d(feats).flatten(2).transpose(1, 2)  # (B, p*p, dim)
        x_feats = self.x_conv(x).flatten(2).transpose(1, 2)
        cls = learn_tokens(x_feats, self.x_token_attn, self.x_token_value)
        tokens = learn_tokens(feats, self.hsi_token_attn, self.hsi_token_value)
        seq = self.dropout(torch.cat([cls, tokens], dim=1) + self.pos_embedding)
        for block in self.blocks:
            seq = block(seq)
        return self.head(self.norm(seq)[:, 0])
