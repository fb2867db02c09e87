"""OpenAI CLIP's ViT image encoder, loaded only from a checkpoint the user has on disk.

Why it exists: CLIP-guided methods (M3amba) need CLIP's image tower, but no package on the
registries ships the weights (every CLIP package downloads them at run time) and open_clip
needs torchvision. So this module holds the network in OpenAI's layout and parameter names,
infers its architecture from a state dict, and reads the checkpoints users have. It never
downloads anything.

Network (:class:`VisionTransformer`, names as OpenAI's ``clip/model.py`` so checkpoints
load 1:1): ``conv1`` (3 -> width, kernel = stride = patch, no bias), ``class_embedding``
(width), ``positional_embedding`` (grid^2 + 1, width), ``ln_pre``,
``transformer.resblocks.i.{ln_1, attn.{in_proj_weight, in_proj_bias, out_proj}, ln_2,
mlp.{c_fc, c_proj}}``, ``ln_post``, ``proj`` (width, output_dim). Output
``ln_post(class token) @ proj``. The MLP activation is ``QuickGELU`` (x * sigmoid(1.702 x))
for OpenAI weights and ``GELU`` for open_clip's non-quickgelu weights; a state dict cannot
tell them apart, so the caller says which (``act``).

Checkpoints (:func:`load_clip_visual`):

* OpenAI TorchScript archives (``ViT-B-32.pt``, ``ViT-B-16.pt``): read with
  ``torch.jit.load(..., map_location="cpu").state_dict()``; fp16 becomes fp32.
* open_clip or plain state dicts (``torch.load(weights_only=True)``), optionally wrapped as
  ``{"state_dict": ...}`` and with DistributedDataParallel's ``module.`` prefix.
* Only ``visual.*`` keys are kept (the text tower is ignored); a dict holding only the visual
  tower (``conv1.weight`` at the top) is accepted too.

Architecture inference (as ``clip.model.build_model``): width = conv1's output channels,
patch = its kernel, layers = number of resblocks, heads = width / 64, grid = sqrt(rows of
the positional embedding - 1), image size = patch * grid, output_dim = proj's columns.
ViT-B/32 has 87,849,216 parameters, ViT-B/16 86,192,640.

Attention is written out as matmuls on ``nn.MultiheadAttention``'s parameters (not its fused
fast path) so that :class:`torch.utils.flop_counter.FlopCounterMode` counts it.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench_core.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "CLIP_MEAN",
    "CLIP_STD",
    "KNOWN_ARCHS",
    "ClipVisionArch",
    "QuickGELU",
    "VisionTransformer",
    "expected_shapes",
    "file_sha256",
    "infer_clip_arch",
    "load_clip_visual",
    "normalize_clip",
    "parse_clip_arch",
    "random_clip_visual",
    "read_clip_checkpoint",
    "resize_bicubic",
    "visual_state_dict",
]

ACTIVATIONS = ("quickgelu", "gelu")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HEAD_WIDTH = 64  # OpenAI and open_clip ViTs: heads = width / 64
_BLOCK_KEYS = {
    "ln_1.weight": lambda w: (w,),
    "ln_1.bias": lambda w: (w,),
    "attn.in_proj_weight": lambda w: (3 * w, w),
    "attn.in_proj_bias": lambda w: (3 * w,),
    "attn.out_proj.weight": lambda w: (w, w),
    "attn.out_proj.bias": lambda w: (w,),
    "ln_2.weight": lambda w: (w,),
    "ln_2.bias": lambda w: (w,),
    "mlp.c_fc.weight": lambda w: (4 * w, w),
    "mlp.c_fc.bias": lambda w: (4 * w,),
    "mlp.c_proj.weight": lambda w: (w, 4 * w),
    "mlp.c_proj.bias": lambda w: (w,),
}
_RESBLOCK_RE = re.compile(r"^transformer\.resblocks\.(\d+)\.")


# --------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class ClipVisionArch:
    """The shape of a CLIP ViT image tower; ``name`` is e.g. ``"ViT-B-32"`` when it is a known one."""

    width: int
    layers: int
    heads: int
    patch: int
    image_size: int
    output_dim: int = 512

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CLIP ViT {key} = {value!r}: expected a positive integer")
        if self.width % self.heads:
            raise ConfigError(
                f"CLIP ViT width {self.width} is not divisible by heads {self.heads}; expected "
                f"width = heads * head width (64 for OpenAI's ViTs)"
            )
        if self.image_size % self.patch:
            raise ConfigError(
                f"CLIP ViT image_size {self.image_size} is not a multiple of patch {self.patch}"
            )

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch

    @property
    def name(self) -> str:
        """``ViT-B-32``-style name of a known tower, else a name listing every dimension."""
        for name, arch in KNOWN_ARCHS.items():
            if arch == self:
                return name
        return (
            f"ViT-w{self.width}-l{self.layers}-h{self.heads}-p{self.patch}-"
            f"i{self.image_size}-o{self.output_dim}"
        )


KNOWN_ARCHS: dict[str, ClipVisionArch] = {
    "ViT-B-32": ClipVisionArch(768, 12, 12, 32, 224, 512),
    "ViT-B-16": ClipVisionArch(768, 12, 12, 16, 224, 512),
    "ViT-L-14": ClipVisionArch(1024, 24, 16, 14, 224, 768),
}
_ARCH_KEYS = {"width", "layers", "heads", "patch", "image", "image_size", "output_dim"}


def parse_clip_arch(value: str | Mapping[str, Any]) -> ClipVisionArch:
    """A known name (``"ViT-B-32"``, ``"ViT-B/32"``) or ``{"width", "layers", "heads",
    "patch", "image", "output_dim"}`` (``image_size`` also accepted, output_dim default 512)."""
    if isinstance(value, str):
        key = value.replace("/", "-")
        if key not in KNOWN_ARCHS:
            raise ConfigError(
                f"CLIP architecture {value!r} is unknown; expected one of {sorted(KNOWN_ARCHS)} or "
                f"a mapping with width, layers, heads, patch, image and output_dim"
            )
        return KNOWN_ARCHS[key]
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"CLIP architecture {value!r}: expected a name such as 'ViT-B-32' or a mapping with "
            f"width, layers, heads, patch, image and output_dim"
        )
    unknown = sorted(set(value) - _ARCH_KEYS)
    missing = sorted({"width", "layers", "heads", "patch"} - set(value))
    if unknown or missing or ("image" in value) == ("image_size" in value):
        raise ConfigError(
            f"CLIP architecture {dict(value)!r}: expected keys width, layers, heads, patch, image "
            f"(or image_size) and optionally output_dim (default 512); unknown {unknown}, missing "
            f"{missing or (['image'] if 'image' not in value and 'image_size' not in value else [])}"
        )
    return ClipVisionArch(
        width=value["width"],
        layers=value["layers"],
        heads=value["heads"],
        patch=value["patch"],
        image_size=value.get("image", value.get("image_size")),
        output_dim=value.get("output_dim", 512),
    )


# --------------------------------------------------------------------------- network


class QuickGELU(nn.Module):
    """OpenAI CLIP's GELU approximation, ``x * sigmoid(1.702 x)``; its weights were trained with it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _activation(act: str) -> nn.Module:
    if act == "quickgelu":
        return QuickGELU()
    if act == "gelu":
        return nn.GELU()
    raise ConfigError(
        f"CLIP activation {act!r}: expected 'quickgelu' (OpenAI weights, open_clip '-quickgelu' "
        f"models) or 'gelu' (open_clip's other ViT weights)"
    )


class Attention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names, batch first.

    Written as matmuls so FlopCounterMode counts it and so the result does not depend on
    which fused kernel ``nn.MultiheadAttention`` would pick.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, width) -> (B, L, width)."""
        batch, length, width = x.shape
        head_dim = width // self.heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.reshape(batch, length, 3, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, L, head_dim)
        scores = torch.matmul(q * head_dim**-0.5, k.transpose(-2, -1))
        out = torch.matmul(scores.softmax(dim=-1), v)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))``, an optional adapter, ``+ mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, act: str) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width),
                gelu=_activation(act),
                c_proj=nn.Linear(4 * width, width),
            )
        )

    def forward(self, x: torch.Tensor, adapter: nn.Module | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        if adapter is not None:  # M3amba's paper variant: modality adapters after attention
            x = adapter(x)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """The ``transformer.resblocks`` container, named as in OpenAI's checkpoints."""

    def __init__(self, width: int, layers: int, heads: int, act: str) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, act) for _ in range(layers))


class VisionTransformer(nn.Module):
    """CLIP's ViT image encoder: images (B, 3, image_size, image_size) -> embeddings (B, output_dim)."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        patch: int,
        image_size: int,
        output_dim: int = 512,
        act: str = "quickgelu",
    ) -> None:
        super().__init__()
        self.arch = ClipVisionArch(width, layers, heads, patch, image_size, output_dim)
        self.act = act
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.arch.grid**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, act)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    @classmethod
    def from_arch(cls, arch: ClipVisionArch, act: str = "quickgelu") -> VisionTransformer:
        return cls(arch.width, arch.layers, arch.heads, arch.patch, arch.image_size, arch.output_dim, act)

    @property
    def image_size(self) -> int:
        return self.arch.image_size

    @property
    def output_dim(self) -> int:
        return self.arch.output_dim

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Random weights drawn only from ``generator`` (a seeded stand-in must not touch torch's
        global RNG). Embeddings and ``proj``: N(0, width^-1/2) as OpenAI; blocks: OpenAI's text-tower
        rule (attention width^-1/2, residual projections width^-1/2 (2 layers)^-1/2, c_fc (2 width)^-1/2);
        conv1: N(0, (3 patch^2)^-1/2); biases 0, LayerNorms 1/0."""
        width, layers, patch = self.arch.width, self.arch.layers, self.arch.patch
        scale = width**-0.5
        proj_std = scale * (2 * layers) ** -0.5
        self.conv1.weight.normal_(0.0, (3 * patch * patch) ** -0.5, generator=generator)
        self.class_embedding.normal_(0.0, scale, generator=generator)
        self.positional_embedding.normal_(0.0, scale, generator=generator)
        self.proj.normal_(0.0, scale, generator=generator)
        for block in self.transformer.resblocks:
            block.attn.in_proj_weight.normal_(0.0, scale, generator=generator)
            block.attn.out_proj.weight.normal_(0.0, proj_std, generator=generator)
            block.mlp.c_fc.weight.normal_(0.0, (2 * width) ** -0.5, generator=generator)
            block.mlp.c_proj.weight.normal_(0.0, proj_std, generator=generator)
            for bias in (block.attn.in_proj_bias, block.attn.out_proj.bias, block.mlp.c_fc.bias,
                         block.mlp.c_proj.bias):
                bias.zero_()
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()

    def forward(
        self,
        images: torch.Tensor,
        *,
        adapters: Sequence[nn.Module | None] | None = None,
        skip_last: int = 0,
    ) -> torch.Tensor:
        """Embed ``images`` (B, 3, S, S), S = image_size: (B, output_dim).

        ``adapters`` (one per block that runs, or None) run after each block's attention;
        ``skip_last`` leaves out the last blocks (M3amba's paper drops the last layer).
        """
        size = self.arch.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (size, size):
            raise ConfigError(
                f"CLIP ViT ({self.arch.name}): images of shape {tuple(images.shape)}; expected "
                f"(batch, 3, {size}, {size}) (resize with bench_core.ops.clip_vit.resize_bicubic)"
            )
        blocks = list(self.transformer.resblocks)
        if not 0 <= skip_last < len(blocks):
            raise ConfigError(
                f"CLIP ViT skip_last = {skip_last}: expected 0 <= skip_last < {len(blocks)} layers"
            )
        blocks = blocks[: len(blocks) - skip_last]
        if adapters is not None and len(adapters) != len(blocks):
            raise ConfigError(
                f"CLIP ViT: {len(adapters)} adapters for {len(blocks)} blocks; expected one per block"
            )
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (B, grid^2, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        for i, block in enumerate(blocks):
            x = block(x, adapters[i] if adapters is not None else None)
        return self.ln_post(x[:, 0]) @ self.proj


# --------------------------------------------------------------------------- image helpers


def resize_bicubic(images: torch.Tensor, size: int, *, antialias: bool = False) -> torch.Tensor:
    """Bicubic resize of (B, C, H, W) to (B, C, size, size).

    ``antialias=False`` matches the M3amba reference (torchvision 0.16's ``F.resize`` on tensors,
    whose default then was no antialiasing: the a = -0.75 cubic kernel).
    """
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=antialias)


def normalize_clip(images: torch.Tensor) -> torch.Tensor:
    """CLIP's per-channel mean/std normalisation (OpenAI preprocessing) of (B, 3, H, W)."""
    mean = images.new_tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


# --------------------------------------------------------------------------- checkpoints


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (CLIP towers are 170-350 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript zips hold ``<root>/code/`` and ``constants.pkl``; ``torch.save`` zips do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in names)


def read_clip_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a CLIP checkpoint, fp32 on the CPU, wrappers and ``module.`` removed."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"CLIP checkpoint {str(file)!r} does not exist; expected an OpenAI archive "
            f"(ViT-B-32.pt) or an open_clip state dict on local disk (nothing is downloaded)"
        )
    if _is_torchscript_archive(file):
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated, but it is OpenAI's format
                warnings.simplefilter("ignore", DeprecationWarning)
                state: Any = torch.jit.load(str(file), map_location="cpu").state_dict()
        except Exception as exc:  # any reader failure becomes one clear message
            raise ConfigError(f"CLIP checkpoint {str(file)!r}: cannot read the TorchScript archive ({exc})") from exc
    else:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # idem
            raise ConfigError(
                f"CLIP checkpoint {str(file)!r}: cannot read it as a state dict with "
                f"torch.load(weights_only=True) ({type(exc).__name__}: {exc}); expected an OpenAI "
                f"TorchScript archive or a (possibly {{'state_dict': ...}}-wrapped) state dict"
            ) from exc
    while isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ConfigError(
            f"CLIP checkpoint {str(file)!r} holds a {type(state).__name__}; expected a state dict"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = key.removeprefix("module.")
        out[name] = value.detach().to(torch.float32) if value.is_floating_point() else value.detach()
    return out


def visual_state_dict(state: Mapping[str, torch.Tensor], source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The image tower's tensors with the ``visual.`` prefix removed; the text tower is dropped."""
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual and "conv1.weight" in state:  # a dict of the visual tower alone
        visual = dict(state)
    if not visual:
        sample = sorted(state)[:8]
        raise ConfigError(
            f"{source}: no CLIP image-tower keys (expected 'visual.conv1.weight', "
            f"'visual.transformer.resblocks.0.attn.in_proj_weight', ...); first keys: {sample}"
        )
    if any(k.startswith("trunk.") for k in visual):
        raise ConfigError(f"{source}: a timm-backbone open_clip tower ('visual.trunk.*'); only OpenAI-layout ViTs load")
    if "conv1.weight" not in visual and any(k.startswith("layer1.") for k in visual):
        raise ConfigError(f"{source}: a ResNet CLIP tower (RN50 ...); only ViT towers (ViT-B-32, ViT-B-16) load")
    return visual


def infer_clip_arch(
    visual: Mapping[str, torch.Tensor], heads: int | None = None, source: str = "the checkpoint"
) -> ClipVisionArch:
    """Architecture of a visual state dict (keys without ``visual.``), as ``clip.model.build_model``."""
    required = ("conv1.weight", "positional_embedding", "proj")
    missing = [f"visual.{k}" for k in required if k not in visual]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {missing}; cannot infer the ViT architecture")
    conv = visual["conv1.weight"]
    if conv.ndim != 4 or conv.shape[1] != 3 or conv.shape[2] != conv.shape[3]:
        raise ConfigError(
            f"{source}: visual.conv1.weight has shape {tuple(conv.shape)}; expected (width, 3, patch, patch)"
        )
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    pos = visual["positional_embedding"]
    grid = math.isqrt(max(int(pos.shape[0]) - 1, 0)) if pos.ndim == 2 else 0
    if pos.ndim != 2 or grid < 1 or grid * grid + 1 != pos.shape[0] or pos.shape[1] != width:
        raise ConfigError(
            f"{source}: visual.positional_embedding has shape {tuple(pos.shape)}; expected "
            f"(grid^2 + 1, {width}) for a square patch grid"
        )
    proj = visual["proj"]
    if proj.ndim != 2 or proj.shape[0] != width:
        raise ConfigError(f"{source}: visual.proj has shape {tuple(proj.shape)}; expected ({width}, output_dim)")
    blocks = {int(m.group(1)) for k in visual if (m := _RESBLOCK_RE.match(k))}
    layers = len(blocks)
    if layers == 0 or blocks != set(range(layers)):
        raise ConfigError(
            f"{source}: transformer blocks {sorted(blocks)}; expected visual.transformer.resblocks.0 .. n-1"
        )
    return ClipVisionArch(
        width=width,
        layers=layers,
        heads=heads if heads is not None else max(1, width // _HEAD_WIDTH),
        patch=patch,
        image_size=patch * grid,
        output_dim=int(proj.shape[1]),
    )


def expected_shapes(arch: ClipVisionArch) -> dict[str, tuple[int, ...]]:
    """Every key of a visual state dict (without ``visual.``) and its shape for ``arch``."""
    w = arch.width
    shapes: dict[str, tuple[int, ...]] = {
        "conv1.weight": (w, 3, arch.patch, arch.patch),
        "class_embedding": (w,),
        "positional_embedding": (arch.grid**2 + 1, w),
        "ln_pre.weight": (w,),
        "ln_pre.bias": (w,),
        "ln_post.weight": (w,),
        "ln_post.bias": (w,),
        "proj": (w, arch.output_dim),
    }
    for i in range(arch.layers):
        for key, shape in _BLOCK_KEYS.items():
            shapes[f"transformer.resblocks.{i}.{key}"] = shape(w)
    return shapes


def _check_keys(visual: Mapping[str, torch.Tensor], arch: ClipVisionArch, source: str) -> None:
    expected = expected_shapes(arch)
    missing = sorted(set(expected) - set(visual))
    unexpected = sorted(set(visual) - set(expected))
    if missing or unexpected:
        raise ConfigError(
            f"{source} is not an OpenAI-layout CLIP ViT ({arch.name}): missing key(s) "
            f"{['visual.' + k for k in missing][:10]}{' ...' if len(missing) > 10 else ''}, unexpected "
            f"key(s) {['visual.' + k for k in unexpected][:10]}{' ...' if len(unexpected) > 10 else ''}"
        )
    bad = [
        f"visual.{k}: {tuple(visual[k].shape)} (expected {shape})"
        for k, shape in expected.items()
        if tuple(visual[k].shape) != shape
    ]
    if bad:
        raise ConfigError(f"{source}: unexpected shapes for {arch.name}: {'; '.join(bad[:10])}")


def load_clip_visual(
    path: str | Path, *, act: str = "quickgelu", heads: int | None = None
) -> VisionTransformer:
    """The image tower of the CLIP checkpoint at ``path`` (formats in the module docstring), fp32,
    on the CPU, frozen (``requires_grad=False``). ``heads`` overrides width / 64."""
    source = f"CLIP checkpoint {str(path)!r}"
    visual = visual_state_dict(read_clip_checkpoint(path), source)
    arch = infer_clip_arch(visual, heads=heads, source=source)
    _check_keys(visual, arch, source)
    _activation(act)  # a bad name fails before any work
    with torch.device("meta"):
        model = VisionTransformer.from_arch(arch, act)
    model.load_state_dict({k: v.contiguous() for k, v in visual.items()}, strict=True, assign=True)
    return model.requires_grad_(False)


def random_clip_visual(
    arch: ClipVisionArch,
    *,
    act: str = "quickgelu",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> VisionTransformer:
    """A frozen ViT of ``arch`` with weights drawn from ``generator`` only (a declared stand-in:
    the compute profile of CLIP without its semantics). ``device="meta"`` (or a meta default
    device) gives shapes without memory, for counting parameters and FLOPs."""
    target = torch.device(device) if device is not None else torch.get_default_device()
    with torch.device("meta"):
        model = VisionTransformer.from_arch(arch, act)
    if target.type != "meta":
        model.to_empty(device=target)
        model.reset_parameters(generator)
    return model.requires_grad_(False)
