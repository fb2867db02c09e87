"""CLIP ViT image encoder: architecture inference, checkpoint formats the tests write
themselves (TorchScript archive, open_clip state dict, wrapped state dict), forward equal to
OpenAI's layout, clear errors, FLOPs countable."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench_core import ConfigError
from bench_core.ops.clip_vit import (
    KNOWN_ARCHS,
    ClipVisionArch,
    VisionTransformer,
    expected_shapes,
    file_sha256,
    infer_clip_arch,
    load_clip_visual,
    normalize_clip,
    parse_clip_arch,
    random_clip_visual,
    resize_bicubic,
    visual_state_dict,
)

# The tiny tower the checkpoints below hold: width 128 -> 2 heads by the width / 64 rule.
TINY = ClipVisionArch(width=128, layers=2, heads=2, patch=8, image_size=32, output_dim=48)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- an OpenAI-style model


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """OpenAI's ResidualAttentionBlock, sequence-first, with torch's nn.MultiheadAttention."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, 4 * width), gelu=_QuickGELU(), c_proj=nn.Linear(4 * width, width)))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class _Visual(nn.Module):
    """OpenAI's VisionTransformer, written out independently of bench_core (the oracle)."""

    def __init__(self, arch: ClipVisionArch) -> None:
        super().__init__()
        w = arch.width
        self.conv1 = nn.Conv2d(3, w, arch.patch, arch.patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(arch.grid**2 + 1, w) * w**-0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = _Transformer(w, arch.layers, arch.heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, arch.output_dim) * w**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).reshape(x.shape[0], self.conv1.out_channels, -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)  # NLD -> LND as OpenAI
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class _CLIP(nn.Module):
    """A whole CLIP: the visual tower plus a text tower the loader must ignore."""

    def __init__(self, arch: ClipVisionArch) -> None:
        super().__init__()
        self.visual = _Visual(arch)
        self.token_embedding = nn.Embedding(50, 32)
        self.positional_embedding = nn.Parameter(torch.randn(7, 32))
        self.transformer = _Transformer(32, 1, 1)
        self.ln_final = nn.LayerNorm(32)
        self.text_projection = nn.Parameter(torch.randn(32, arch.output_dim))
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


def _tiny_clip(seed: int = 0) -> _CLIP:
    torch.manual_seed(seed)
    model = _CLIP(TINY).eval()
    with torch.no_grad():  # random LayerNorm affines and biases, so every key matters
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(5))


# ----------------------------------------------------------------------------- architecture


def _shape_dict(name: str) -> dict[str, torch.Tensor]:
    arch = KNOWN_ARCHS[name]
    return {f"visual.{k}": torch.empty(shape, device="meta") for k, shape in expected_shapes(arch).items()}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "params"), [("ViT-B-32", 87_849_216), ("ViT-B-16", 86_192_640)])
def test_architecture_inferred_from_openai_shapes(name: str, params: int) -> None:
    arch = infer_clip_arch(visual_state_dict(_shape_dict(name)))
    assert arch == KNOWN_ARCHS[name] and arch.name == name
    assert (arch.width, arch.layers, arch.heads, arch.image_size, arch.output_dim) == (768, 12, 12, 224, 512)
    model = random_clip_visual(arch, device="meta")
    assert sum(p.numel() for p in model.parameters()) == params
    assert not any(p.requires_grad for p in model.parameters())


def test_parse_clip_arch_names_and_mappings() -> None:
    assert parse_clip_arch("ViT-B/16") == KNOWN_ARCHS["ViT-B-16"]
    tiny = parse_clip_arch({"width": 64, "layers": 2, "heads": 2, "patch": 8, "image": 32})
    assert tiny == ClipVisionArch(64, 2, 2, 8, 32, 512)
    assert tiny.name == "ViT-w64-l2-h2-p8-i32-o512"
    with pytest.raises(ConfigError, match="ViT-B-32"):
        parse_clip_arch("ViT-H-99")
    with pytest.raises(ConfigError, match="unknown \\['depth'\\]"):
        parse_clip_arch({"width": 64, "layers": 2, "heads": 2, "patch": 8, "image": 32, "depth": 3})
    with pytest.raises(ConfigError, match="divisible by heads"):
        ClipVisionArch(64, 2, 3, 8, 32)


# ----------------------------------------------------------------------------- forward


@pytest.mark.slow
def test_forward_equals_openai_layout_with_torch_multihead_attention() -> None:
    oracle = _tiny_clip().visual
    ours = VisionTransformer.from_arch(TINY)
    ours.load_state_dict(oracle.state_dict())
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(ours(images), oracle(images), rtol=1e-5, atol=1e-5)


def test_gelu_activation_changes_the_output() -> None:
    state = _tiny_clip().visual.state_dict()
    quick, gelu = VisionTransformer.from_arch(TINY, "quickgelu"), VisionTransformer.from_arch(TINY, "gelu")
    quick.load_state_dict(state)
    gelu.load_state_dict(state)
    with torch.no_grad():
        assert not torch.allclose(quick(_images()), gelu(_images()), atol=1e-4)


def test_wrong_image_size_is_refused_with_the_expected_size() -> None:
    model = VisionTransformer.from_arch(TINY)
    with pytest.raises(ConfigError, match="\\(batch, 3, 32, 32\\)"):
        model(torch.rand(1, 3, 16, 16))


def test_adapters_and_skip_last() -> None:
    model = VisionTransformer.from_arch(TINY).eval()
    images = _images()
    with torch.no_grad():
        full = model(images)
        identity = model(images, adapters=[nn.Identity(), nn.Identity()])
        shorter = model(images, skip_last=1)
        # skip_last=1 is the same as a model holding only the first block
        model.transformer.resblocks = model.transformer.resblocks[:1]
        expected = model(images)
    torch.testing.assert_close(full, identity)
    torch.testing.assert_close(shorter, expected)
    assert not torch.allclose(full, shorter)


@pytest.mark.slow
def test_flops_count_the_attention_matmuls() -> None:
    arch = KNOWN_ARCHS["ViT-B-32"]
    model = random_clip_visual(arch, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, 224, 224, device="meta"))
    w, tokens, layers = arch.width, arch.grid**2 + 1, arch.layers
    macs = 3 * arch.patch**2 * w * arch.grid**2  # conv1
    macs += layers * tokens * (3 * w * w + w * w + 8 * w * w)  # in_proj, out_proj, MLP
    macs += layers * 2 * tokens * tokens * w  # q k^T and attention @ v over all heads
    macs += w * arch.output_dim  # proj
    assert counter.get_total_flops() == 2 * macs  # ~8.8 GFLOPs for one image


# ----------------------------------------------------------------------------- checkpoints


def _half_rounded(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_openai_torchscript_archive_loads_fp16_as_fp32(tmp_path: Path) -> None:
    model = _half_rounded(_tiny_clip())
    images = _images()
    with torch.no_grad():
        expected = model(images)
    scripted = torch.jit.script(model)
    scripted.half()  # OpenAI's archives store fp16
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(scripted, str(path))
    loaded = load_clip_visual(path)
    assert loaded.arch == TINY
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), expected, rtol=1e-5, atol=1e-5)


def test_open_clip_state_dict_with_text_tower_loads(tmp_path: Path) -> None:
    model = _tiny_clip(1)
    path = tmp_path / "open_clip.bin"
    torch.save(model.state_dict(), path)
    loaded = load_clip_visual(path, act="quickgelu")
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()), model(_images()), rtol=1e-5, atol=1e-5)


def test_wrapped_state_dict_with_module_prefix_loads(tmp_path: Path) -> None:
    model = _tiny_clip(2)
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    path = tmp_path / "epoch_3.pt"
    torch.save(wrapped, path)
    loaded = load_clip_visual(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(_images()), model(_images()), rtol=1e-5, atol=1e-5)


def test_visual_only_state_dict_loads(tmp_path: Path) -> None:
    model = _tiny_clip(3)
    path = tmp_path / "visual.pt"
    torch.save(model.visual.state_dict(), path)
    assert load_clip_visual(path).arch == TINY


def test_heads_override(tmp_path: Path) -> None:
    path = tmp_path / "visual.pt"
    torch.save(_tiny_clip().visual.state_dict(), path)
    assert load_clip_visual(path, heads=4).arch.heads == 4


def test_missing_key_is_named(tmp_path: Path) -> None:
    state = _tiny_clip().state_dict()
    del state["visual.transformer.resblocks.1.mlp.c_fc.bias"]
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ConfigError, match="visual.transformer.resblocks.1.mlp.c_fc.bias"):
        load_clip_visual(path)


def test_unexpected_shape_is_named(tmp_path: Path) -> None:
    state = _tiny_clip().state_dict()
    state["visual.ln_post.weight"] = torch.ones(7)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ConfigError, match="visual.ln_post.weight: \\(7,\\) \\(expected \\(128,\\)\\)"):
        load_clip_visual(path)


def test_unexpected_key_is_named(tmp_path: Path) -> None:
    state = _tiny_clip().state_dict()
    state["visual.transformer.resblocks.0.ls_1.gamma"] = torch.ones(128)
    path = tmp_path / "layerscale.pt"
    torch.save(state, path)
    with pytest.raises(ConfigError, match="ls_1.gamma"):
        load_clip_visual(path)


def test_not_a_clip_checkpoint_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.ones(2)}, path)
    with pytest.raises(ConfigError, match="visual.conv1.weight"):
        load_clip_visual(path)
    resnet = tmp_path / "rn50.pt"
    torch.save({"visual.layer1.0.conv1.weight": torch.ones(1)}, resnet)
    with pytest.raises(ConfigError, match="ResNet"):
        load_clip_visual(resnet)
    with pytest.raises(ConfigError, match="does not exist"):
        load_clip_visual(tmp_path / "nowhere.pt")


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ----------------------------------------------------------------------------- stand-in and helpers


def test_random_tower_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = random_clip_visual(TINY, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), before)
    b = random_clip_visual(TINY, generator=torch.Generator().manual_seed(7))
    c = random_clip_visual(TINY, generator=torch.Generator().manual_seed(8))
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q), name
        assert not p.requires_grad
    assert not torch.equal(a.proj, c.proj)


def test_resize_bicubic_and_normalize() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert resize_bicubic(x, 8) is x
    up = resize_bicubic(x, 32)
    assert up.shape == (2, 3, 32, 32)
    torch.testing.assert_close(up, F.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False))
    assert not torch.allclose(up, resize_bicubic(x, 32, antialias=True))  # a = -0.5 vs -0.75 kernel
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize_clip(mean.expand(1, 3, 2, 2)), torch.zeros(1, 3, 2, 2))
