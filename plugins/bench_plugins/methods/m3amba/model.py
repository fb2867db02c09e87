"""M3amba's network: module-level classes (a built model pickles), imported by ``build``.

The architecture and the choices made where paper and code are silent are described in the
package docstring.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bench_core import ConfigError, SceneInfo
from bench_core.ops import (
    SS2D,
    CrossSS2D,
    Mlp,
    VisionTransformer,
    crop_inputs,
    file_sha256,
    load_clip_visual,
    normalize_clip,
    parse_clip_arch,
    random_clip_visual,
    resize_bicubic,
    trunc_normal_init,
)
from bench_plugins.methods.m3amba import (
    CONCAT_TAG,
    GUIDE_STREAMS,
    IGNORE,
    MISSING_WEIGHTS,
    NAME,
    STAND_IN_TAG,
    M3ambaOptions,
)

# --------------------------------------------------------------------------- building blocks


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's DropPath, as VMamba's blocks use it)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class PatchEmbed(nn.Module):
    """Conv2d(C -> dim, 1x1) + LayerNorm: (B, C, s, s) -> channel-last (B, s, s, dim)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, kernel_size=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Head(nn.Module):
    """LayerNorm -> channel-first -> Conv2d(dim -> K, 1x1): per-pixel logits (B, K, s, s)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Conv2d(dim, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x).permute(0, 3, 1, 2))


class GuidanceMap(nn.Module):
    """A CLIP embedding as an image: Linear(E -> s*s) -> (B, 1, s, s) -> Conv2d(1 -> C, 1x1).

    The reference hard-codes Linear(512 -> 1024) for 32 x 32 crops; the crop side comes from
    ``SceneInfo.patch_size`` here.
    """

    def __init__(self, embed_dim: int, crop: int, channels: int) -> None:
        super().__init__()
        self.crop = crop
        self.linear = nn.Linear(embed_dim, crop * crop)
        self.conv = nn.Conv2d(1, channels, kernel_size=1)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        image = self.linear(embedding).reshape(embedding.shape[0], 1, self.crop, self.crop)
        return self.conv(image)


class Adapter(nn.Module):
    """Paper variant: a modality-specific bottleneck (Linear, GELU, Linear) with a residual,
    inserted after each CLIP attention block. The up-projection starts at zero, so at init the
    adapted encoder equals the pretrained one."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def _ssm_kwargs(options: M3ambaOptions) -> dict[str, Any]:
    return {"d_state": options.d_state, "ssm_ratio": float(options.ssm_ratio),
            "dt_rank": options.resolved_dt_rank, "d_conv": options.d_conv}


class FusionBlock(nn.Module):
    """VMamba v2 VSS block: ``x + DropPath(SS2D(LN(x)))``, then ``+ DropPath(MLP(LN(x)))``."""

    def __init__(self, dim: int, ssm_kwargs: Mapping[str, Any], mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, **ssm_kwargs)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossBlock(nn.Module):
    """M3amba's cross block on (modality x, guide z), channel-last (B, s, s, dim) -> x's output.

    LayerNorm, in_proj, conv, out_norm, out_proj and the MLP are shared by both streams; each
    stream has its own scan parameters (``op.ssm`` for x, ``op.ssm_guide`` for the guide). The
    guide stream only feeds its B and A into x's scan, so ``op.ssm_guide``'s ``dt_projs_weight``,
    ``dt_projs_bias`` and ``Ds`` never influence the output and are frozen (in the reference
    they never receive a gradient either and stay at their init).
    """

    FROZEN_GUIDE_PARAMS = ("dt_projs_weight", "dt_projs_bias", "Ds")

    def __init__(
        self,
        dim: int,
        ssm_kwargs: Mapping[str, Any],
        mlp_ratio: float,
        drop_path: float,
        guide_stream: str = "skip",
    ) -> None:
        super().__init__()
        if guide_stream not in GUIDE_STREAMS:
            raise ConfigError(f"guide_stream = {guide_stream!r}: expected one of {list(GUIDE_STREAMS)}")
        self.guide_stream = guide_stream
        self.norm = nn.LayerNorm(dim)
        self.op = CrossSS2D(dim, **ssm_kwargs)
        for name in self.FROZEN_GUIDE_PARAMS:
            getattr(self.op.ssm_guide, name).requires_grad_(False)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def mix(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Cross-SS2D output of stream x alone (both inputs already normalised).

        The guide is encoded and projected only for its B; its scan, decode and MLP are
        skipped (:meth:`CrossSS2D.forward_x`). Equals ``self.op(x, guide)[0]``.
        """
        return self.op.forward_x(x, guide)

    def forward_both(self, x: torch.Tensor, guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's full block: both streams with residuals and MLP (the guide's is discarded)."""
        out_x, out_g = self.op(self.norm(x), self.norm(guide))
        x = x + self.drop_path(out_x)
        g = guide + self.drop_path(out_g)
        return x + self.drop_path(self.mlp(self.norm2(x))), g + self.drop_path(self.mlp(self.norm2(g)))

    def forward(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        if self.guide_stream == "compute":
            return self.forward_both(x, guide)[0]
        x = x + self.drop_path(self.mix(self.norm(x), self.norm(guide)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# --------------------------------------------------------------------------- the network


class M3ambaNet(nn.Module):
    """The reference ``VSSM``: guidance maps, embeddings, three branches, three heads.

    ``forward(hsi, x, guide_hsi, guide_x) -> (fused, head_hsi, head_x)`` logits (B, K, s, s);
    guide_* are the two CLIP embeddings (B, E) (None for ``guidance="concat"``).
    """

    def __init__(
        self,
        options: M3ambaOptions,
        hsi_bands: int,
        x_bands: int,
        num_classes: int,
        crop: int,
        embed_dim: int = 512,
    ) -> None:
        super().__init__()
        self.guidance = options.guidance
        self.concat_guides = options.uses_clip and options.clip_variant == "paper"
        self.checkpoint_blocks = options.checkpoint_blocks
        dim = options.dim
        if options.uses_clip:
            self.map_hsi = GuidanceMap(embed_dim, crop, hsi_bands)
            self.map_x = GuidanceMap(embed_dim, crop, x_bands)
        self.embed_hsi = PatchEmbed(hsi_bands, dim)
        self.embed_x = PatchEmbed(x_bands, dim)
        if not options.uses_clip:  # ablation (A): the images themselves replace the adaptation
            self.embed_cat = PatchEmbed(hsi_bands + x_bands, dim)
        elif self.concat_guides:  # paper variant: Y1, Y2 concatenated
            self.embed_guide = PatchEmbed(hsi_bands + x_bands, dim)
        else:
            self.embed_guide_hsi = PatchEmbed(hsi_bands, dim)
            self.embed_guide_x = PatchEmbed(x_bands, dim)
        rates = torch.linspace(0, options.drop_path, options.depth, device="cpu").tolist()
        ssm = _ssm_kwargs(options)
        self.blocks_hsi = nn.ModuleList(
            CrossBlock(dim, ssm, options.mlp_ratio, r, options.guide_stream) for r in rates
        )
        self.blocks_x = nn.ModuleList(
            CrossBlock(dim, ssm, options.mlp_ratio, r, options.guide_stream) for r in rates
        )
        self.blocks_fusion = nn.ModuleList(FusionBlock(dim, ssm, options.mlp_ratio, r) for r in rates)
        self.head_hsi = Head(dim, num_classes)
        self.head_x = Head(dim, num_classes)
        self.head_fusion = Head(dim, num_classes)
        self.apply(trunc_normal_init)  # the reference's _init_weights

    def _run(self, block: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_blocks and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(
        self,
        hsi: torch.Tensor,
        x: torch.Tensor,
        guide_hsi: torch.Tensor | None = None,
        guide_x: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.embed_hsi(hsi)
        b = self.embed_x(x)
        if self.guidance == "concat":
            z = self.embed_cat(torch.cat([hsi, x], dim=1))
        else:
            if guide_hsi is None or guide_x is None:
                raise ConfigError(f"{NAME}: guidance {self.guidance!r} needs both CLIP embeddings")
            maps = (self.map_hsi(guide_hsi), self.map_x(guide_x))
            if self.concat_guides:
                z = self.embed_guide(torch.cat(maps, dim=1))
            else:
                z = self.embed_guide_hsi(maps[0]) + self.embed_guide_x(maps[1])
        for block_hsi, block_x, block_fusion in zip(self.blocks_hsi, self.blocks_x, self.blocks_fusion):
            a = self._run(block_hsi, a, z)
            b = self._run(block_x, b, z)
            z = self._run(block_fusion, a + b)
        return self.head_fusion(z), self.head_hsi(a), self.head_x(b)

    def reference_key_map(self) -> dict[str, str]:
        """Our parameter name -> the reference ``VSSM`` state-dict key (``guidance="clip"``, code
        variant), so an official checkpoint's ``model_dict`` could be loaded."""
        if self.guidance == "concat" or self.concat_guides:
            raise ConfigError(
                f"{NAME}: the reference VSSM has the code variant's layout; guidance "
                f"{self.guidance!r} with clip_variant {'paper' if self.concat_guides else 'code'} has no counterpart"
            )
        return {name: _reference_name(name) for name, _ in self.named_parameters()}


_TOP_RENAMES = (
    ("map_hsi.linear.", "linear_hsi."), ("map_hsi.conv.", "conv_hsi."),
    ("map_x.linear.", "linear_lidar."), ("map_x.conv.", "conv_lidar."),
    ("embed_guide_hsi.proj.", "patch_embed_hsi_clip.0."), ("embed_guide_hsi.norm.", "patch_embed_hsi_clip.2."),
    ("embed_guide_x.proj.", "patch_embed_lidar_clip.0."), ("embed_guide_x.norm.", "patch_embed_lidar_clip.2."),
    ("embed_hsi.proj.", "patch_embed_hsi.0."), ("embed_hsi.norm.", "patch_embed_hsi.2."),
    ("embed_x.proj.", "patch_embed_lidar.0."), ("embed_x.norm.", "patch_embed_lidar.2."),
    ("head_hsi.proj.", "classifier_hsi.head."), ("head_hsi.norm.", "classifier_hsi.norm."),
    ("head_x.proj.", "classifier_lidar.head."), ("head_x.norm.", "classifier_lidar.norm."),
    ("head_fusion.proj.", "classifier_add.head."), ("head_fusion.norm.", "classifier_add.norm."),
    ("blocks_hsi.", "layers_x.0."), ("blocks_x.", "layers_y.0."), ("blocks_fusion.", "layers_z.0."),
)


def _reference_name(name: str) -> str:
    """The reference ``VSSM`` key of one of our parameter names (see ``reference_key_map``)."""
    for ours, theirs in _TOP_RENAMES:
        if name.startswith(ours):
            name = theirs + name[len(ours):]
            break
    # Scan parameters: op.ssm.<p> -> op.<p> (fusion blocks) or op.<p>_hsi (cross blocks, first
    # stream); op.ssm_guide.<p> -> op.<p>_lidar (the reference names streams after Houston's inputs).
    match = re.match(r"^(layers_([xyz])\.0\.\d+\.op\.)(ssm|ssm_guide)\.(\w+)$", name)
    if match:
        prefix, layer, stream, param = match.groups()
        if layer == "z":
            return prefix + param
        return prefix + param + ("_hsi" if stream == "ssm" else "_lidar")
    return name


# --------------------------------------------------------------------------- the method


class M3amba(nn.Module):
    """Reducers + frozen CLIP ViT (or none) + :class:`M3ambaNet`, with the paper's loss.

    ``forward({"hsi": (B, C_h, s, s), "x": (B, C_x, s, s)})`` returns ``{"logits": fused
    head, "aux": (hsi head, x head)}``, all (B, K, s, s).
    """

    def __init__(
        self,
        options: M3ambaOptions,
        hsi_bands: int,
        x_bands: int,
        num_classes: int,
        crop: int,
        clip: VisionTransformer | None = None,
        clip_sha256: str | None = None,
    ) -> None:
        super().__init__()
        if options.uses_clip != (clip is not None):
            raise ConfigError(
                f"{NAME}: guidance {options.guidance!r} "
                + ("needs a CLIP image encoder" if options.uses_clip else "takes no CLIP image encoder")
            )
        self.options = options
        self.crop = crop
        self.bands = (hsi_bands, x_bands)
        self.clip_sha256 = clip_sha256
        self.skip_last = 1 if options.uses_clip and options.clip_variant == "paper" else 0
        if clip is not None:
            self.reduce_hsi = nn.Conv2d(hsi_bands, 3, kernel_size=1)
            self.reduce_x = nn.Conv2d(x_bands, 3, kernel_size=1)
            self.clip = clip.requires_grad_(False)
            if not options.clip_backprop:  # the reference's test-time no_grad: reducers cannot learn
                self.reduce_hsi.requires_grad_(False)
                self.reduce_x.requires_grad_(False)
            if self.skip_last:
                width, layers = clip.arch.width, clip.arch.layers - self.skip_last
                hidden = max(1, int(width * options.adapter_ratio))
                self.adapters_hsi = nn.ModuleList(Adapter(width, hidden) for _ in range(layers))
                self.adapters_x = nn.ModuleList(Adapter(width, hidden) for _ in range(layers))
        embed_dim = clip.arch.output_dim if clip is not None else 512
        self.net = M3ambaNet(options, hsi_bands, x_bands, num_classes, crop, embed_dim)

    def _check_inputs(self, inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return crop_inputs(
            NAME, inputs, self.bands, self.crop,
            f" (the model is built for {self.crop} x {self.crop} crops: Linear(512 -> crop^2) fixes the crop side)",
        )

    def _encode(self, images: torch.Tensor, adapters: nn.ModuleList | None) -> torch.Tensor:
        images = resize_bicubic(images, self.clip.image_size)
        if self.options.clip_normalize:
            images = normalize_clip(images)
        return self.clip(images, adapters=list(adapters) if adapters is not None else None,
                         skip_last=self.skip_last)

    def guidance_embeddings(self, hsi: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two CLIP embeddings (B, E): reducer, bicubic resize, (normalise), frozen ViT."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.options.clip_backprop):
            images_hsi, images_x = self.reduce_hsi(hsi), self.reduce_x(x)
            if self.skip_last:
                return self._encode(images_hsi, self.adapters_hsi), self._encode(images_x, self.adapters_x)
            both = self._encode(torch.cat([images_hsi, images_x], dim=0), None)
            return both[: hsi.shape[0]], both[hsi.shape[0]:]

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        hsi, x = self._check_inputs(inputs)
        guides = self.guidance_embeddings(hsi, x) if self.options.uses_clip else (None, None)
        fused, head_hsi, head_x = self.net(hsi, x, *guides)
        return {"logits": fused, "aux": (head_hsi, head_x)}

    def loss(self, output: Mapping[str, Any], targets: torch.Tensor) -> torch.Tensor:
        """Eqs. 14-15: ``lambda_sup * (CE_hsi + CE_x + CE_fused) + lambda_unsup * L_unsup``.

        Each CE averages over labelled pixels (``-1`` never enters); ``L_unsup`` is
        ``2 - cos(hsi, fused) - cos(x, fused)`` per pixel over the class logits, averaged over
        all pixels (``unsup_pixels="all"``) or the labelled ones; it lies in [0, 4].
        """
        fused = output["logits"]
        head_hsi, head_x = output["aux"]
        labelled = targets != IGNORE
        count = labelled.sum().clamp(min=1)
        supervised = fused.new_zeros(())
        for logits in (head_hsi, head_x, fused):
            ce = F.cross_entropy(logits, targets.clamp(min=0), reduction="none")
            supervised = supervised + (ce * labelled).sum() / count
        target = fused.detach() if self.options.unsup_stop_grad else fused
        disagreement = (2 - F.cosine_similarity(head_hsi, target, dim=1)
                        - F.cosine_similarity(head_x, target, dim=1))
        if self.options.unsup_pixels == "labelled":
            unsupervised = (disagreement * labelled).sum() / count
        else:
            unsupervised = disagreement.mean()
        return self.options.lambda_sup * supervised + self.options.lambda_unsup * unsupervised

    def bench_tags(self) -> dict[str, str]:
        """Run tags (``bench.method.<key>``) that say what guided this run."""
        options = self.options
        if options.guidance == "clip":
            guidance = "clip"
        elif options.guidance == "clip-random":
            guidance = STAND_IN_TAG
        else:
            guidance = CONCAT_TAG
        clip = getattr(self, "clip", None)
        # "status" marks the row on every leaderboard (bench.method.status): a stand-in or an
        # ablation must never pass for the paper's method.
        status = {"clip-random": "STAND-IN: random CLIP weights", "concat": "ABLATION A: no CLIP"}
        return {
            **({"status": status[options.guidance]} if options.guidance in status else {}),
            "guidance": guidance,
            "clip_arch": clip.arch.name if clip is not None else "none",
            "clip_sha256": self.clip_sha256 or "none",
            "clip_variant": options.clip_variant if options.uses_clip else "none",
            "guide_stream": options.guide_stream,
        }


def clip_encoder(options: M3ambaOptions, info: SceneInfo) -> tuple[VisionTransformer | None, str | None]:
    """The frozen ViT for ``options.guidance`` and the sha256 of its weights file (if any)."""
    if options.guidance == "concat":
        return None, None
    if options.guidance == "clip-random":
        generator = torch.Generator().manual_seed(int(getattr(info, "seed", 0)))
        return random_clip_visual(parse_clip_arch(options.clip_arch), act=options.clip_act, generator=generator), None
    if options.clip_weights is None:
        raise ConfigError(MISSING_WEIGHTS)
    path = Path(options.clip_weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{NAME} model.clip_weights = {options.clip_weights!r}: no such file; expected a local "
            f"OpenAI (ViT-B-32.pt, ViT-B-16.pt) or open_clip checkpoint (nothing is downloaded)"
        )
    sha256 = file_sha256(path)
    if options.clip_sha256 is not None and options.clip_sha256.lower() != sha256:
        raise ConfigError(
            f"{NAME} model.clip_weights {str(path)!r} has sha256 {sha256}; model.clip_sha256 expects "
            f"{options.clip_sha256.lower()}"
        )
    return load_clip_visual(path, act=options.clip_act), sha256
