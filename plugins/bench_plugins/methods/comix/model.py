"""CoMiX's network: module-level classes (a built model pickles), imported by ``build``.

The architecture and every reconstruction choice are described in the package docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from bench_core import ConfigError
from bench_core.ops import EPA, DCNv4, Mlp, crop_inputs, dcn_backend, trunc_normal_init
from bench_plugins.methods.comix import DCN_GROUP_CHANNELS, NAME, STAGES

if TYPE_CHECKING:
    from bench_plugins.methods.comix import CoMiXOptions


# --------------------------------------------------------------------------- building blocks


def _pool_depth(t: torch.Tensor, depth: int, how: str) -> torch.Tensor:
    """(B, D*L, C) tokens, D outer -> (B, L, C) pooled over the spectral depth D."""
    b, n, c = t.shape
    t = t.reshape(b, depth, n // depth, c)
    return t.mean(dim=1) if how == "mean" else t.amax(dim=1)


def _broadcast_depth(t: torch.Tensor, depth: int) -> torch.Tensor:
    """(B, L, C) -> (B, D*L, C): the same tokens for every spectral slice (D outer)."""
    b, n, c = t.shape
    return t.unsqueeze(1).expand(b, depth, n, c).reshape(b, depth * n, c)


class SpectralStem(nn.Module):
    """HSI (B, C_h, s, s) -> (B, D, s, s, C): D slices of k = ceil(C_h / D) contiguous bands.

    Bands are zero-padded to D*k, then Conv3d(1 -> C, kernel = stride = (k, 1, 1)) (a 1x1
    spatial convolution per band group) + BatchNorm3d + SiLU.
    """

    def __init__(self, bands: int, depth: int, channels: int) -> None:
        super().__init__()
        self.bands = bands
        self.depth = depth
        self.group = math.ceil(bands / depth)
        self.conv = nn.Conv3d(1, channels, kernel_size=(self.group, 1, 1), stride=(self.group, 1, 1))
        self.norm = nn.BatchNorm3d(channels)
        self.act = nn.SiLU()

    def forward(self, hsi: torch.Tensor) -> torch.Tensor:
        pad = self.depth * self.group - self.bands
        x = hsi.unsqueeze(1)  # (B, 1, C_h, s, s)
        if pad:
            x = F.pad(x, (0, 0, 0, 0, 0, pad))
        return self.act(self.norm(self.conv(x))).permute(0, 2, 3, 4, 1)  # (B, D, s, s, C)


class XStem(nn.Module):
    """X (B, C_x, s, s) -> (B, s, s, C): Conv2d 1x1 + BatchNorm + SiLU."""

    def __init__(self, bands: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(bands, channels, kernel_size=1)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x))).permute(0, 2, 3, 1)


class Downsample2D(nn.Module):
    """(B, H, W, C_in) -> (B, ceil(H/2), ceil(W/2), C_out): Conv2d 3x3 stride 2 + LayerNorm."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class Downsample3D(nn.Module):
    """(B, D, H, W, C_in) -> (B, D, ceil(H/2), ceil(W/2), C_out): Conv3d 3x3x3 stride (1, 2, 2) + LayerNorm."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels_in, channels_out, kernel_size=3, stride=(1, 2, 2), padding=1)
        self.norm = nn.LayerNorm(channels_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1))


class DCNBlock2D(nn.Module):
    """2D DCN block (Eqs. 2-4), channel-last (B, H, W, C): ``x + LN(DCNv4(x))``, then ``+ LN(FFN(x))``."""

    def __init__(self, channels: int, kernel: int, ffn_ratio: float, options: CoMiXOptions) -> None:
        super().__init__()
        self.dcn = DCNv4(channels, kernel_size=kernel, group=channels // DCN_GROUP_CHANNELS,
                         offset_scale=float(options.dcn_offset_scale), dw_kernel_size=options.dcn_dw_kernel,
                         output_bias=True, backend=options.dcn_backend)
        self.norm1 = nn.LayerNorm(channels)
        self.ffn = Mlp(channels, int(channels * ffn_ratio))
        self.norm2 = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.dcn(x.reshape(b, h * w, c), shape=(h, w)).reshape(b, h, w, c)
        x = x + self.norm1(y)
        return x + self.norm2(self.ffn(x))


class EPABlock3D(nn.Module):
    """3D DCN block (Eqs. 8-10), (B, D, H, W, C): ``x + LN(EPA(x))`` over the H*W*D tokens, then
    ``x + Conv1x1x1(Conv3x3x3(ReLU(Conv3x3x3(x))))``."""

    def __init__(self, channels: int, grid: tuple[int, int, int], hidden: int, options: CoMiXOptions) -> None:
        super().__init__()
        depth, height, width = grid
        self.epa = EPA(depth * height * width, channels, options.proj_size, options.heads,
                       spatial_layout=options.epa_spatial_layout, scaling=options.epa_scaling,
                       token_shape=(depth, height, width))
        self.norm = nn.LayerNorm(channels)
        self.conv1 = nn.Conv3d(channels, hidden, kernel_size=3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv3d(hidden, channels, kernel_size=3, padding=1)
        self.proj = nn.Conv3d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w, c = x.shape
        tokens = x.reshape(b, d * h * w, c)
        x = (tokens + self.norm(self.epa(tokens))).reshape(b, d, h, w, c)
        y = x.permute(0, 4, 1, 2, 3)
        y = self.proj(self.conv2(self.act(self.conv1(y))))
        return x + y.permute(0, 2, 3, 4, 1)


class PathAttention(nn.Module):
    """One modality's half of a single-path CMFeX (``cmfex = "spa"`` or ``"spe"``).

    EPA's conventions (:mod:`bench_core.ops.epa`) restricted to what one rectification path
    uses, so that no parameter is left without a gradient: ``qkv`` Linear(C, 3C, bias=False)
    gives q, k and the path's values; the spatial path also has the token projection
    ``E`` Linear(N, p) (shared by k and v) and ``temperature2``, the spectral path
    ``temperature`` (``scaling="unetrpp"``; ``"paper"`` uses 1/sqrt(d) and has none).
    ``proj`` Linear(C, C) replaces EPA's two C -> C/2 output projections (one path fills
    all C channels). ``maps(x)`` equals the matching entries of ``EPA.maps`` for the same
    weights (tested).
    """

    def __init__(self, path: str, tokens: int, channels: int, proj_size: int, heads: int,
                 scaling: str, spatial_layout: str, token_shape: tuple[int, ...]) -> None:
        super().__init__()
        if path not in ("spa", "spe"):
            raise ConfigError(f"PathAttention: path = {path!r}; expected 'spa' or 'spe'")
        self.path = path
        self.tokens = tokens
        self.channels = channels
        self.heads = heads
        self.head_dim = channels // heads
        self.scaling = scaling
        self.spatial_layout = spatial_layout
        self.token_shape = token_shape
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        if path == "spa":
            self.E = nn.Linear(tokens, proj_size)
        self.proj = nn.Linear(channels, channels)
        self.temperature: nn.Parameter | None = None
        if scaling == "unetrpp":
            self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
            self.temperature._no_weight_decay = True  # type: ignore[attr-defined]

    def _scale(self) -> torch.Tensor | float:
        return self.temperature if self.temperature is not None else 1.0 / math.sqrt(self.head_dim)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(map, values): spatial path ``(SA (B, h, N, p), F(v_spa) (B, h, d, p))``, spectral path
        ``(SE (B, h, d, d), v_spe (B, h, d, N))``."""
        b, n, _ = x.shape
        if n != self.tokens:
            raise ConfigError(
                f"{NAME} CMFeX: {n} tokens; the token projection was built for {self.tokens} = "
                f"{self.token_shape}, fixed by the crop size; run at the crop size the model was built for"
            )
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 4, 1).unbind(0)
        if self.path == "spa":
            k_proj, v_proj = self.E(k), self.E(v)
            if self.scaling == "unetrpp":
                q = F.normalize(q, dim=-1)
            return (q.transpose(-2, -1) @ k_proj * self._scale()).softmax(dim=-1), v_proj
        if self.scaling == "unetrpp":
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        return (q @ k.transpose(-2, -1) * self._scale()).softmax(dim=-1), v

    def attend(self, attention: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The other modality's map applied to these values, as tokens (B, N, C) (EPA's layouts)."""
        b, h, d = values.shape[0], self.heads, self.head_dim
        if self.path == "spa":
            y = attention @ values.transpose(-2, -1)  # (B, h, N_map, d)
            n = y.shape[2]
            order = (0, 2, 1, 3) if self.spatial_layout == "paper" else (0, 3, 1, 2)
            return y.permute(*order).reshape(b, n, h * d)
        n = values.shape[3]
        return (attention @ values).permute(0, 3, 1, 2).reshape(b, n, h * d)


class CMFeX(nn.Module):
    """Cross-modality feature enhancement and exchange (Eqs. 11-22) on HSI (B, D*H*W, C) and X (B, H*W, C).

    ``mode="both"``: one :class:`~bench_core.ops.epa.EPA` per modality provides the maps and
    values (``EPA.maps``), the products cross modalities (``attend_spatial``,
    ``attend_channel``), each modality's ``EPA.project`` concatenates its two halves, and the
    inputs are added. ``"spa"``/``"spe"``: :class:`PathAttention` per modality, one path.
    Token-count mismatch: the H*W-token result for the HSI is broadcast over D, the
    H*W*D-token result for X is pooled over D (``depth_pool``).
    """

    def __init__(self, mode: str, channels: int, grid: tuple[int, int, int], options: CoMiXOptions) -> None:
        super().__init__()
        if mode not in ("both", "spa", "spe"):
            raise ConfigError(f"CMFeX: mode = {mode!r}; expected 'both', 'spa' or 'spe' ('none' builds no CMFeX)")
        self.mode = mode
        self.depth = grid[0]
        self.pool = options.depth_pool
        depth, height, width = grid
        shapes = {"hsi": (depth, height, width), "x": (height, width)}
        kwargs = {"scaling": options.epa_scaling, "spatial_layout": options.epa_spatial_layout}
        for name, shape in shapes.items():
            tokens = math.prod(shape)
            if mode == "both":
                module: nn.Module = EPA(tokens, channels, options.proj_size, options.heads,
                                        token_shape=shape, **kwargs)
            else:
                module = PathAttention(mode, tokens, channels, options.proj_size, options.heads,
                                       token_shape=shape, **kwargs)
            self.add_module(name, module)

    def forward(self, hsi: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.depth
        if self.mode == "both":
            mh, mx = self.hsi.maps(hsi), self.x.maps(x)
            hsi_spa = _broadcast_depth(self.hsi.attend_spatial(mx.spatial, mh.v_spatial), d)  # Eq. 15
            x_spa = _pool_depth(self.x.attend_spatial(mh.spatial, mx.v_spatial), d, self.pool)  # Eq. 16
            hsi_spe = self.hsi.attend_channel(mx.channel, mh.v_channel)  # Eq. 17
            x_spe = self.x.attend_channel(mh.channel, mx.v_channel)  # Eq. 18
            return hsi + self.hsi.project(hsi_spa, hsi_spe), x + self.x.project(x_spa, x_spe)  # Eqs. 19-22
        map_h, values_h = self.hsi.maps(hsi)
        map_x, values_x = self.x.maps(x)
        if self.mode == "spa":
            hsi_rec = _broadcast_depth(self.hsi.attend(map_x, values_h), d)
            x_rec = _pool_depth(self.x.attend(map_h, values_x), d, self.pool)
        else:
            hsi_rec = self.hsi.attend(map_x, values_h)
            x_rec = self.x.attend(map_h, values_x)
        return hsi + self.hsi.proj(hsi_rec), x + self.x.proj(x_rec)


class FFM(nn.Module):
    """Feature fusion module (Eqs. 23-25) on channel-last (B, H, W, C) maps -> (B, H, W, C).

    ``Y = cat(hsi, x)``; ``fc2(DWConv3x3(GELU(fc1(Y)))) + skip(Y)`` with fc1 2C -> h, fc2
    h -> C, skip 2C -> C (the paper's "MLP(Y_cat)").
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.skip = nn.Linear(2 * channels, channels)

    def forward(self, hsi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([hsi, x], dim=-1)
        z = self.act(self.fc1(y))
        z = self.dwconv(z.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(z) + self.skip(y)


class AllMLPDecoder(nn.Module):
    """SegFormer's All-MLP head: per stage Linear(C_i -> E), bilinear upsampling to the crop,
    concatenation (deepest first), Conv1x1(4E -> E) + BN + ReLU, Dropout2d, Conv1x1(E -> K)."""

    def __init__(self, channels: Sequence[int], dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(c, dim) for c in channels)
        self.fuse = nn.Conv2d(len(channels) * dim, dim, kernel_size=1, bias=False)
        self.norm = nn.BatchNorm2d(dim)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor], size: int) -> torch.Tensor:
        maps = []
        for linear, feature in zip(self.linears, features):
            m = linear(feature).permute(0, 3, 1, 2)  # (B, E, h, w)
            if m.shape[-2:] != (size, size):
                m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
            maps.append(m)
        y = self.act(self.norm(self.fuse(torch.cat(maps[::-1], dim=1))))
        return self.classifier(self.dropout(y))


# --------------------------------------------------------------------------- the method


class CoMiX(nn.Module):
    """``forward({"hsi": (B, C_h, s, s), "x": (B, C_x, s, s)})`` -> logits (B, K, s, s)."""

    def __init__(self, options: CoMiXOptions, hsi_bands: int, x_bands: int, num_classes: int, crop: int) -> None:
        super().__init__()
        self.options = options
        self.bands = (hsi_bands, x_bands)
        self.crop = crop
        self.depth = options.spectral_depth
        chans = options.channels
        half = (crop + 1) // 2  # the 3x3 stride-2 downsampling's output side
        sides = (crop,) + (half,) * (STAGES - 1)
        self.stem_hsi = SpectralStem(hsi_bands, self.depth, chans[0])
        self.stem_x = XStem(x_bands, chans[0])
        self.down_hsi = Downsample3D(chans[0], chans[1])
        self.down_x = Downsample2D(chans[0], chans[1])
        self.blocks_x = nn.ModuleList()
        self.blocks_hsi = nn.ModuleList()
        self.cmfex = nn.ModuleList() if options.cmfex != "none" else None
        self.ffm = nn.ModuleList() if options.ffm else None
        for i in range(STAGES):
            c, side = chans[i], sides[i]
            grid = (self.depth, side, side)
            self.blocks_x.append(nn.Sequential(*(
                DCNBlock2D(c, options.kernels[i], options.ffn_ratio, options) for _ in range(options.blocks_2d[i])
            )))
            self.blocks_hsi.append(nn.Sequential(*(
                EPABlock3D(c, grid, int(c * options.ffn3d_ratio), options) for _ in range(options.blocks_3d[i])
            )))
            if self.cmfex is not None:
                self.cmfex.append(CMFeX(options.cmfex, c, grid, options))
            if self.ffm is not None:
                self.ffm.append(FFM(c, int(c * options.ffm_hidden_ratio)))
        self.decoder = AllMLPDecoder(chans, options.decoder_dim, num_classes, float(options.decoder_dropout))
        if options.init == "trunc_normal":
            self.apply(trunc_normal_init)
            for module in self.modules():
                if isinstance(module, DCNv4):  # keeps the package's init (zero offsets/masks, Xavier)
                    module.reset_parameters()

    def _check_inputs(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return crop_inputs(
            NAME, inputs, self.bands, self.crop,
            f": the model is built for {self.crop} x {self.crop} crops (EPA and CMFeX project H*W*D tokens with layers "
            f"sized by the crop); run with train.patch_size={self.crop} or rebuild the model for another crop",
        )

    def encode(self, hsi: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
        """The four fused stage features, channel-last (B, s_i, s_i, C_i)."""
        h = self.stem_hsi(hsi)  # (B, D, s, s, C)
        xx = self.stem_x(x)  # (B, s, s, C)
        features = []
        for i in range(STAGES):
            if i == 1:
                h, xx = self.down_hsi(h), self.down_x(xx)
            xx = self.blocks_x[i](xx)
            h = self.blocks_hsi[i](h)
            b, d, side, _, c = h.shape
            if self.cmfex is not None:
                h_tokens, x_tokens = self.cmfex[i](h.reshape(b, d * side * side, c), xx.reshape(b, side * side, c))
                h, xx = h_tokens.reshape(b, d, side, side, c), x_tokens.reshape(b, side, side, c)
            h_flat = _pool_depth(h.reshape(b, d * side * side, c), d, self.options.depth_pool).reshape(b, side, side, c)
            features.append(self.ffm[i](h_flat, xx) if self.ffm is not None else (h_flat + xx) / 2)
        return features

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        hsi, x = self._check_inputs(inputs)
        return self.decoder(self.encode(hsi, x), self.crop)

    def bench_tags(self) -> dict[str, str]:
        """Run tags (``bench.method.<key>``): the DCN backend on the parameters' device and the ablation switches."""
        device = next(self.parameters()).device
        return {
            "dcn_backend": dcn_backend(self, device) or "none",
            "cmfex": self.options.cmfex,
            "ffm": str(self.options.ffm).lower(),
        }
