"""BDGF's training network (stage 2): CNN, Transformer and Mamba branches guided by diffusion features.

A RECONSTRUCTION of Liu et al., "balanced diffusion-guided fusion" (Eqs. 11-29); the official
code is not available. Layouts follow the table "Training network" of seed-methods.md 5a;
inputs per sample are the HSI patch (C_h, p, p), the X patch (C_x, p, p) and the DDPM feature
patch ``dif`` (F, p, p). Embedding width E = ``embed_dim`` (64).

* **CNN branch** (Eqs. 11-14). Spectral 3D stem: bands zero-padded to 8k (k = ceil(C_h / 8)),
  Conv3d(1 -> E/8, (k,3,3), stride (k,1,1)) + BN3d + ReLU -> (E/8, 8, p, p), i.e. E "channels".
  Three Conv2d(F -> E, 3x3) + BN + ReLU guidance maps of ``dif`` (viewed as (E/8, 8, p, p) where
  they meet 3D features), mixed by scalars beta, gamma, alpha (init 0.5):
  ``f1 = b*w1_3d(hsi) + (1-b)*w1_2d(dif)``, ``f2 = g*w2_3d(f1) + (1-g)*w2_2d(dif)``,
  ``f3 = a*w4_2d(x) + (1-a)*w3_2d(dif)``, ``f_cnn = w6_2d(w3_3d(f2) + w5_2d(f3))``; vector = GAP.
* **Transformer branch** (Eqs. 15-19). MFT tokenizer per modality (softmax over the p*p pixels of
  ``Linear(E -> n)(Conv1x1(C -> E)(x))`` weighting per-pixel values ``Linear(C -> E)(x)``);
  ``dif``: ``Linear(F -> E)`` per pixel + a learned position embedding. Each stream: a learned
  CLS token and one pre-norm self-attention layer with residual (no MLP). Cross-attention
  (CrossViT): a CLS attends to ``[its own CLS; the other stream's patch tokens]`` (pre-norm,
  residual). CLS_hsi' <- X tokens, CLS_x' <- HSI tokens; the merged CLS (CLS_hsi' + CLS_x')
  attends to ``[merged CLS; dif tokens]`` giving CLS_dif (attention output, no residual: Eq. 19
  adds CLS_hsi' + CLS_x' itself); ``f_trans = CLS_hsi' + CLS_x' + CLS_dif``.
* **Mamba branch** (Eq. 20). Per modality ``Linear(C -> E)`` per pixel, a row-major p*p-token
  sequence, LayerNorm then one Mamba v1 block (:class:`MambaBlock`), residual -> (E, p, p).
  ``mamba_sequence = "bands"`` scans the bands instead (module :class:`MambaStream`).
* **Group attention** (Eqs. 21-24, :class:`GroupAttention`) on f_m_spec, dif and f_cnn;
  ``f_mamba = GAP(F_GA + f_m_sar)``.
* **Heads**: Linear(E -> K) per branch (for mutual learning) and ``z_total = Linear(3E -> K)``
  of ``cat(f_trans, f_cnn, f_mamba)``, the prediction.
* **Loss** (Eqs. 25-29): CE(z_total) + three tempered-KL mutual terms with a learned per-sample
  temperature (:func:`mutual_learning_loss`).

Parameters (Augsburg 180 + 4 bands, F 8192, K 7, p 9): 16.58 M with the literal Eq. 21 (paper
16.38 M); the three F -> E 3x3 convolutions alone are 14.16 M.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench_core import ConfigError
from bench_core.ops import selective_scan
from bench_plugins.methods.bdgf.options import (
    SPECTRAL_DEPTH,
    NetOptions,
    parse_temperature,
    positive_int,
)

NAME = "bdgf"
BRANCHES = ("cnn", "trans", "mamba")
# (a, b): branch b is the target of branch a (CNN <- Trans, CNN <- Mamba, Trans <- Mamba).
PAIRS = (("cnn", "trans"), ("cnn", "mamba"), ("trans", "mamba"))
TEMPERATURE_EPS = 1e-6
IGNORE = -1

__all__ = [
    "BDGFNet",
    "GroupAttention",
    "MambaBlock",
    "NetOptions",
    "mutual_learning_loss",
    "parse_temperature",
]


# --------------------------------------------------------------------------- CNN branch


def _conv2d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _conv3d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class CNNBranch(nn.Module):
    """Eqs. 11-14: 3D spectral and 2D features, each mixed with a dif guidance map by a scalar."""

    def __init__(self, hsi_bands: int, x_bands: int, dif_channels: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.channels_3d = dim // SPECTRAL_DEPTH
        self.group = math.ceil(hsi_bands / SPECTRAL_DEPTH)  # k bands per spectral slice
        self.pad = SPECTRAL_DEPTH * self.group - hsi_bands
        c3 = self.channels_3d
        self.w1_3d = nn.Sequential(
            nn.Conv3d(1, c3, (self.group, 3, 3), stride=(self.group, 1, 1), padding=(0, 1, 1)),
            nn.BatchNorm3d(c3),
            nn.ReLU(inplace=True),
        )
        self.w2_3d = _conv3d(c3, c3)
        self.w3_3d = _conv3d(c3, c3)
        self.w1_2d = _conv2d(dif_channels, dim)
        self.w2_2d = _conv2d(dif_channels, dim)
        self.w3_2d = _conv2d(dif_channels, dim)
        self.w4_2d = _conv2d(x_bands, dim)
        self.w5_2d = _conv2d(dim, dim)
        self.w6_2d = _conv2d(dim, dim)
        self.alpha = nn.Parameter(torch.tensor(0.5))
        self.beta = nn.Parameter(torch.tensor(0.5))
        self.gamma = nn.Parameter(torch.tensor(0.5))

    def _as_3d(self, t: torch.Tensor) -> torch.Tensor:
        """(B, E, p, p) -> (B, E/8, 8, p, p), the layout the 3D convolutions read."""
        b, _, h, w = t.shape
        return t.reshape(b, self.channels_3d, SPECTRAL_DEPTH, h, w)

    def forward(self, hsi: torch.Tensor, x: torch.Tensor, dif: torch.Tensor) -> torch.Tensor:
        """The map f_cnn (B, E, p, p)."""
        b, _, h, w = hsi.shape
        volume = F.pad(hsi, (0, 0, 0, 0, 0, self.pad)).unsqueeze(1)  # (B, 1, 8k, p, p)
        f1 = self.beta * self.w1_3d(volume) + (1 - self.beta) * self._as_3d(self.w1_2d(dif))
        f2 = self.gamma * self.w2_3d(f1) + (1 - self.gamma) * self._as_3d(self.w2_2d(dif))
        f3 = self.alpha * self.w4_2d(x) + (1 - self.alpha) * self.w3_2d(dif)
        spectral = self.w3_3d(f2).reshape(b, self.dim, h, w)
        return self.w6_2d(spectral + self.w5_2d(f3))


# --------------------------------------------------------------------------- Transformer branch


class TokenLearner(nn.Module):
    """MFT's tokenizer: n tokens, each a softmax-over-pixels weighted sum of per-pixel values."""

    def __init__(self, bands: int, dim: int, tokens: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(bands, dim, 1)
        self.attend = nn.Linear(dim, tokens)
        self.value = nn.Linear(bands, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, p, p) -> (B, n, E)."""
        weights = self.attend(self.embed(x).flatten(2).transpose(1, 2)).softmax(dim=1)  # (B, N, n)
        values = self.value(x.flatten(2).transpose(1, 2))  # (B, N, E)
        return weights.transpose(1, 2) @ values


class SelfAttention(nn.Module):
    """One pre-norm self-attention layer with residual (Eq. 16; no MLP)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        normed = self.norm(tokens)
        return tokens + self.attn(normed, normed, normed, need_weights=False)[0]


class CrossAttention(nn.Module):
    """CrossViT: a CLS token (B, 1, E) attends to ``[CLS; other stream's patch tokens]`` (pre-norm)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """The attention output for ``cls`` (B, 1, E), without residual."""
        query = self.norm(cls)
        keys = torch.cat([query, self.norm(patches)], dim=1)
        return self.attn(query, keys, keys, need_weights=False)[0]


class TransformerBranch(nn.Module):
    """Eqs. 15-19: three token streams, self-attention, CrossViT-style cross-attention."""

    def __init__(self, hsi_bands: int, x_bands: int, dif_channels: int, patch: int, options: NetOptions) -> None:
        super().__init__()
        dim, heads = options.embed_dim, options.heads
        self.hsi_tokens = TokenLearner(hsi_bands, dim, options.hsi_tokens)
        self.x_tokens = TokenLearner(x_bands, dim, options.x_tokens)
        self.dif_embed = nn.Linear(dif_channels, dim)
        self.dif_position = nn.Parameter(torch.empty(1, patch * patch, dim))
        self.cls = nn.Parameter(torch.empty(3, 1, dim))  # hsi, x, dif
        nn.init.trunc_normal_(self.dif_position, std=0.02)
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.self_hsi = SelfAttention(dim, heads)
        self.self_x = SelfAttention(dim, heads)
        self.self_dif = SelfAttention(dim, heads)
        self.cross_hsi = CrossAttention(dim, heads)  # CLS_hsi <- X patches
        self.cross_x = CrossAttention(dim, heads)  # CLS_x <- HSI patches
        self.cross_dif = CrossAttention(dim, heads)  # merged CLS <- dif patches

    def _stream(self, index: int, patches: torch.Tensor, layer: SelfAttention) -> torch.Tensor:
        cls = self.cls[index].expand(patches.shape[0], -1, -1)
        return layer(torch.cat([cls, patches], dim=1))

    def forward(self, hsi: torch.Tensor, x: torch.Tensor, dif: torch.Tensor) -> torch.Tensor:
        """f_trans (B, E)."""
        dif_patches = self.dif_embed(dif.flatten(2).transpose(1, 2)) + self.dif_position
        s_hsi = self._stream(0, self.hsi_tokens(hsi), self.self_hsi)
        s_x = self._stream(1, self.x_tokens(x), self.self_x)
        s_dif = self._stream(2, dif_patches, self.self_dif)
        cls_hsi = s_hsi[:, :1] + self.cross_hsi(s_hsi[:, :1], s_x[:, 1:])
        cls_x = s_x[:, :1] + self.cross_x(s_x[:, :1], s_hsi[:, 1:])
        merged = cls_hsi + cls_x  # the merged stream's CLS (its patch tokens take no further part)
        cls_dif = self.cross_dif(merged, s_dif[:, 1:])
        return (merged + cls_dif).squeeze(1)


# --------------------------------------------------------------------------- Mamba branch


class MambaBlock(nn.Module):
    """Mamba v1 (mamba_simple.Mamba) on (B, L, E) sequences, scan via ``bench_core.ops.selective_scan``.

    ``A_log`` = log(1..N) per channel and ``D`` = 1 carry ``_no_weight_decay``; dt_proj's bias is
    softplus^-1 of dt drawn log-uniformly in [1e-3, 0.1] (mamba's init) and serves as the scan's
    ``delta_bias``.
    """

    def __init__(self, dim: int, d_state: int = 16, expand: int = 2, d_conv: int = 4) -> None:
        super().__init__()
        self.d_inner = expand * dim
        self.d_state = d_state
        self.dt_rank = math.ceil(dim / 16)
        di = self.d_inner
        self.in_proj = nn.Linear(dim, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1)
        self.x_proj = nn.Linear(di, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di)
        self.A_log = nn.Parameter(torch.empty(di, d_state))
        self.D = nn.Parameter(torch.empty(di))
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(di, dim, bias=False)
        self._init_ssm()

    @torch.no_grad()
    def _init_ssm(self) -> None:
        bound = self.dt_rank**-0.5
        self.dt_proj.weight.uniform_(-bound, bound)
        low, high = math.log(1e-3), math.log(0.1)
        dt = torch.exp(torch.rand(self.d_inner) * (high - low) + low).clamp(min=1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        states = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_log.copy_(torch.log(states).expand(self.d_inner, -1))
        self.D.fill_(1.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, E) -> (B, L, E)."""
        length = tokens.shape[1]
        xz = self.in_proj(tokens).transpose(1, 2)  # (B, 2*di, L)
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :length])  # causal: crop the right padding
        dt, b, c = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (B, di, L); bias added in the scan
        y = selective_scan(
            x, delta, -torch.exp(self.A_log.float()), b.transpose(1, 2), c.transpose(1, 2),
            self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        assert isinstance(y, torch.Tensor)
        return self.out_proj(y.transpose(1, 2))


class MambaStream(nn.Module):
    """One modality: embedding, pre-norm Mamba block with residual -> map (B, E, p, p).

    ``"pixels"``: tokens = the p*p pixels (row-major), ``Linear(C -> E)`` each. ``"bands"``: tokens
    = the C bands, ``Linear(p*p -> E)`` each; after the block ``Linear(E -> p*p)`` per band and
    ``Linear(C -> E)`` per pixel bring the result back to a map.
    """

    def __init__(self, bands: int, patch: int, options: NetOptions) -> None:
        super().__init__()
        dim, pixels = options.embed_dim, patch * patch
        self.sequence = options.mamba_sequence
        self.embed = nn.Linear(bands if self.sequence == "pixels" else pixels, dim)
        self.norm = nn.LayerNorm(dim)
        self.block = MambaBlock(dim, options.mamba_d_state, options.mamba_expand, options.mamba_d_conv)
        if self.sequence == "bands":
            self.unembed = nn.Linear(dim, pixels)
            self.to_map = nn.Linear(bands, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        flat = x.flatten(2)  # (B, C, N)
        tokens = self.embed(flat.transpose(1, 2) if self.sequence == "pixels" else flat)
        tokens = tokens + self.block(self.norm(tokens))
        if self.sequence == "bands":
            tokens = self.to_map(self.unembed(tokens).transpose(1, 2))  # (B, N, E)
        return tokens.transpose(1, 2).reshape(b, -1, h, w)


# --------------------------------------------------------------------------- group attention


class GroupAttention(nn.Module):
    """Eqs. 21-24: DANet-style channel attention per input, fused and gating the first input.

    For input f (C_f channels): Q, K, V = Conv1x1(C_f -> E) each; E = Q K^T (E x E over the
    flattened pixels); E' = rowmax(E) - E; f_CA = lambda * softmax(E') V + V (lambda init 0).
    ``F_GA = Conv1x1(3E -> E)(cat(f_CA)) * f_0 + f_0`` with f_0 the first input (f_m_spec).
    """

    def __init__(self, in_channels: Sequence[int], dim: int) -> None:
        super().__init__()
        if not in_channels or in_channels[0] != dim:
            raise ConfigError(
                f"{NAME} GroupAttention: in_channels = {list(in_channels)}; expected the gated first input "
                f"to have dim = {dim} channels"
            )
        self.query = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.key = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.value = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.lambdas = nn.Parameter(torch.zeros(len(in_channels)))
        self.fuse = nn.Conv2d(len(in_channels) * dim, dim, 1)

    def channel_attention(self, index: int, f: torch.Tensor) -> torch.Tensor:
        """f_CA of input ``index`` (Eqs. 21-23): (B, C_f, p, p) -> (B, E, p, p)."""
        b, _, h, w = f.shape
        q = self.query[index](f).flatten(2)
        k = self.key[index](f).flatten(2)
        v = self.value[index](f).flatten(2)
        energy = q @ k.transpose(1, 2)  # (B, E, E)
        energy = energy.amax(dim=-1, keepdim=True) - energy
        attended = energy.softmax(dim=-1) @ v
        return (self.lambdas[index] * attended + v).reshape(b, -1, h, w)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """F_GA (B, E, p, p) from the inputs in constructor order."""
        if len(features) != len(self.query):
            raise ConfigError(
                f"{NAME} GroupAttention: got {len(features)} inputs; expected {len(self.query)}"
            )
        attended = [self.channel_attention(i, f) for i, f in enumerate(features)]
        base = features[0]
        return self.fuse(torch.cat(attended, dim=1)) * base + base


# --------------------------------------------------------------------------- mutual learning


TemperatureFn = Callable[[tuple[str, str], torch.Tensor], torch.Tensor]


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    log_p = logits.log_softmax(dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def mutual_learning_loss(
    feats: Mapping[str, torch.Tensor],
    logits: Mapping[str, torch.Tensor],
    temperature_fn: TemperatureFn,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over :data:`PAIRS` of ``mean_i T_i^2 KL(p_b || p_a)`` (Eqs. 25-29) and the mean T.

    ``temperature_fn(pair, temp_in)`` maps ``temp_in`` = [cos(f_a, f_b), H_a + H_b] (B, 2) to
    T (B,) > 0; p = softmax(z / T). Nothing is detached: gradients reach both branches of a pair
    (with a detached target the Mamba head would learn nothing) and the temperature inputs.
    """
    total: torch.Tensor | None = None
    temps = []
    for a, b in PAIRS:
        z_a, z_b = logits[a], logits[b]
        cos = F.cosine_similarity(feats[a], feats[b], dim=-1)
        temp_in = torch.stack([cos, _entropy(z_a) + _entropy(z_b)], dim=-1)
        t = temperature_fn((a, b), temp_in)  # (B,)
        log_p_a = (z_a / t[:, None]).log_softmax(dim=-1)
        log_p_b = (z_b / t[:, None]).log_softmax(dim=-1)
        kl = (log_p_b.exp() * (log_p_b - log_p_a)).sum(dim=-1)  # KL(p_b || p_a) per sample
        term = (t.square() * kl).mean()
        total = term if total is None else total + term
        temps.append(t)
    assert total is not None
    return total, torch.stack(temps).mean()


# --------------------------------------------------------------------------- network


def _pair_key(pair: tuple[str, str]) -> str:
    return f"{pair[0]}_{pair[1]}"


class BDGFNet(nn.Module):
    """The three-branch classifier: forward -> logits and branch outputs; :meth:`loss` -> CE + mutual."""

    def __init__(
        self, hsi_bands: int, x_bands: int, dif_channels: int, num_classes: int, patch: int, options: NetOptions
    ) -> None:
        super().__init__()
        for key, value in (("hsi_bands", hsi_bands), ("x_bands", x_bands), ("dif_channels", dif_channels),
                           ("num_classes", num_classes), ("patch", patch)):
            positive_int(key, value)
        options.validate()
        self.options = options
        self.shapes = (hsi_bands, x_bands, dif_channels, patch)
        self.fixed_temperature = parse_temperature(options.temperature)
        dim = options.embed_dim
        self.cnn = CNNBranch(hsi_bands, x_bands, dif_channels, dim)
        self.trans = TransformerBranch(hsi_bands, x_bands, dif_channels, patch, options)
        self.mamba_hsi = MambaStream(hsi_bands, patch, options)
        self.mamba_x = MambaStream(x_bands, patch, options)
        # "shared": one Conv1x1(F -> E) map of dif feeds Q, K, V (the 15.5 M prototype)
        self.dif_reduce = nn.Conv2d(dif_channels, dim, 1) if options.group_attention == "shared" else None
        ga_dif = dim if self.dif_reduce is not None else dif_channels
        self.group_attention = GroupAttention((dim, ga_dif, dim), dim)
        self.heads = nn.ModuleDict({branch: nn.Linear(dim, num_classes) for branch in BRANCHES})
        self.head_total = nn.Linear(3 * dim, num_classes)
        self.temperature_fcs = (
            nn.ModuleDict({_pair_key(pair): nn.Linear(2, 1) for pair in PAIRS})
            if self.fixed_temperature is None else None
        )
        self._last_temperature: torch.Tensor | None = None

    @property
    def last_temperature(self) -> float | None:
        """Mean T (over pairs and samples) of the last :meth:`loss` call; read lazily (no sync per step)."""
        return None if self._last_temperature is None else float(self._last_temperature)

    def _check_input(self, name: str, tensor: torch.Tensor, channels: int) -> None:
        patch = self.shapes[3]
        if tensor.ndim != 4 or tensor.shape[1] != channels or tuple(tensor.shape[-2:]) != (patch, patch):
            raise ConfigError(
                f"{NAME}: input {name!r} has shape {tuple(tensor.shape)}; expected (batch, {channels}, "
                f"{patch}, {patch}) (the position embedding and the 3D stem fix bands and patch size)"
            )

    def forward(self, hsi: torch.Tensor, x: torch.Tensor, dif: torch.Tensor) -> dict[str, Any]:
        """``logits`` z_total (B, K), ``branch_logits`` and ``branch_features`` (B, E) per branch."""
        for name, tensor, channels in (("hsi", hsi, self.shapes[0]), ("x", x, self.shapes[1]),
                                       ("dif", dif, self.shapes[2])):
            self._check_input(name, tensor, channels)
        f_cnn_map = self.cnn(hsi, x, dif)
        f_trans = self.trans(hsi, x, dif)
        f_m_spec = self.mamba_hsi(hsi)
        f_m_sar = self.mamba_x(x)
        dif_ga = self.dif_reduce(dif) if self.dif_reduce is not None else dif
        f_ga = self.group_attention([f_m_spec, dif_ga, f_cnn_map])
        feats = {
            "cnn": f_cnn_map.mean(dim=(2, 3)),
            "trans": f_trans,
            "mamba": (f_ga + f_m_sar).mean(dim=(2, 3)),
        }
        branch_logits = {branch: self.heads[branch](feats[branch]) for branch in BRANCHES}
        logits = self.head_total(torch.cat([feats["trans"], feats["cnn"], feats["mamba"]], dim=1))
        return {"logits": logits, "branch_logits": branch_logits, "branch_features": feats}

    def _temperature(self, pair: tuple[str, str], temp_in: torch.Tensor) -> torch.Tensor:
        if self.temperature_fcs is None:
            assert self.fixed_temperature is not None
            return temp_in.new_full(temp_in.shape[:1], self.fixed_temperature)
        return F.softplus(self.temperature_fcs[_pair_key(pair)](temp_in)).squeeze(-1) + TEMPERATURE_EPS

    def loss(self, output: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        """CE(z_total) over targets != -1 plus the three mutual terms over the whole batch."""
        logits = output["logits"]
        # mean over labelled samples; 0 (not nan) when none is labelled, without a host sync
        labelled = (targets != IGNORE).sum().clamp(min=1)
        ce = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum") / labelled
        mutual, mean_t = mutual_learning_loss(output["branch_features"], output["branch_logits"], self._temperature)
        self._last_temperature = mean_t.detach()
        return ce + mutual
