"""M3amba plugin: exact parameter counts and key names of the reference network, the skipped
guide stream, gradients and frozen parameters, the loss of Eqs. 14-15, guidance modes and
their errors, FLOPs at the paper width. (The conformance suite runs on both registered
methods in tests/conformance/test_builtin_methods.py.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_core import ConfigError, SceneInfo, load_plugins
from bench_core.ops.clip_vit import KNOWN_ARCHS, VisionTransformer
from bench_core.timing import flops_per_sample
from bench_plugins.methods import m3amba
from bench_plugins.methods.m3amba import model as m3amba_model

# The reference VSSM (kaka-Cao/M3amba net/net_vmamba_v4.py, CLIP and reducers excluded),
# counted by instantiating it with its CUDA/triton imports stubbed (methods.md section 3.2).
REFERENCE_PARAMS = {(144, 1, 15): 70_814_543, (180, 4, 7): 70_835_333, (64, 2, 11): 70_749_093}
CROSS_BLOCK_PARAMS = 2_679_168
FUSION_BLOCK_PARAMS = 2_378_112
FROZEN_GUIDE_VALUES = 79_872  # per cross block: dt_projs_weight, dt_projs_bias, Ds of the guide

# The reference VSSM's state-dict keys and shapes on Houston2013 shapes (144 + 1 bands, 15
# classes, 32 x 32 crops), generated once from the stubbed reference: 639 keys, 70,814,543
# values. "{i}" stands for the block index 0..8; C/L = the reference's "_hsi"/"_lidar" streams.
_REF_TOP = {
    "linear_hsi.weight": (1024, 512), "linear_hsi.bias": (1024,),
    "linear_lidar.weight": (1024, 512), "linear_lidar.bias": (1024,),
    "conv_hsi.weight": (144, 1, 1, 1), "conv_hsi.bias": (144,),
    "conv_lidar.weight": (1, 1, 1, 1), "conv_lidar.bias": (1,),
    **{f"patch_embed_{m}.0.weight": (384, c, 1, 1) for m, c in
       (("hsi", 144), ("lidar", 1), ("hsi_clip", 144), ("lidar_clip", 1))},
    **{f"patch_embed_{m}.{j}.bias": (384,) for m in ("hsi", "lidar", "hsi_clip", "lidar_clip") for j in (0, 2)},
    **{f"patch_embed_{m}.2.weight": (384,) for m in ("hsi", "lidar", "hsi_clip", "lidar_clip")},
    **{f"classifier_{h}.{k}": s for h in ("hsi", "lidar", "add") for k, s in
       (("norm.weight", (384,)), ("norm.bias", (384,)), ("head.weight", (15, 384, 1, 1)), ("head.bias", (15,)))},
}
_REF_BLOCK = {  # shared by the cross blocks (layers_x, layers_y) and the fusion blocks (layers_z)
    "norm.weight": (384,), "norm.bias": (384,), "norm2.weight": (384,), "norm2.bias": (384,),
    "mlp.fc1.weight": (1536, 384), "mlp.fc1.bias": (1536,), "mlp.fc2.weight": (384, 1536), "mlp.fc2.bias": (384,),
    "op.in_proj.weight": (1536, 384), "op.conv2d.weight": (768, 1, 3, 3), "op.conv2d.bias": (768,),
    "op.out_norm.weight": (768,), "op.out_norm.bias": (768,), "op.out_proj.weight": (384, 768),
}
_REF_SCAN = {"x_proj_weight": (4, 56, 768), "dt_projs_weight": (4, 768, 24), "dt_projs_bias": (4, 768),
             "A_logs": (3072, 16), "Ds": (3072,)}


def _reference_houston_keys() -> dict[str, tuple[int, ...]]:
    keys = dict(_REF_TOP)
    for i in range(9):
        for layer in ("layers_x", "layers_y", "layers_z"):
            for key, shape in _REF_BLOCK.items():
                keys[f"{layer}.0.{i}.{key}"] = shape
            for key, shape in _REF_SCAN.items():
                streams = ("",) if layer == "layers_z" else ("_hsi", "_lidar")
                for stream in streams:
                    keys[f"{layer}.0.{i}.op.{key}{stream}"] = shape
    return keys


TINY_CLIP = {"width": 64, "layers": 2, "heads": 2, "patch": 8, "image": 32, "output_dim": 512}
SMALL: dict[str, Any] = {  # a few-millisecond model for the behaviour tests
    "dim": 16, "depth": 2, "d_state": 4, "mlp_ratio": 2.0, "drop_path": 0.0,
    "guidance": "clip-random", "clip_arch": TINY_CLIP,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _info(hsi: int = 6, x: int = 2, classes: int = 4, crop: int = 8, seed: int = 0) -> SceneInfo:
    return SceneInfo(
        dataset="shape-only",
        bands={"hsi": hsi, "x": x},
        num_classes=classes,
        class_names=tuple(f"c{k}" for k in range(classes)),
        image_shape=(64, 64),
        patch_size=crop,
        seed=seed,
    )


def _inputs(batch: int = 2, hsi: int = 6, x: int = 2, crop: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"hsi": torch.rand(batch, hsi, crop, crop, generator=gen),
            "x": torch.rand(batch, x, crop, crop, generator=gen)}


def _small(**overrides: Any) -> m3amba_model.M3amba:
    torch.manual_seed(0)
    return m3amba.build({**SMALL, **overrides}, _info())


def _paper_on_meta(hsi: int, x: int, classes: int, **overrides: Any) -> m3amba_model.M3amba:
    config = {"guidance": "clip-random", "clip_arch": "ViT-B-32", **overrides}
    with torch.device("meta"):
        return m3amba.build(config, _info(hsi, x, classes, crop=32))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- parameters


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "expected"), sorted(REFERENCE_PARAMS.items()))
def test_parameter_count_equals_the_reference(shape: tuple[int, int, int], expected: int) -> None:
    hsi, x, classes = shape
    model = _paper_on_meta(hsi, x, classes)
    assert _count(model.net) == expected
    assert _count(model.clip) == 87_849_216  # ViT-B/32 visual, frozen
    assert _count(model.reduce_hsi) + _count(model.reduce_x) == 3 * (hsi + x) + 6
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected - 9 * 2 * FROZEN_GUIDE_VALUES + 3 * (hsi + x) + 6
    if shape == (144, 1, 15):
        assert trainable == 69_377_288


def test_per_block_counts_and_frozen_guide_tensors() -> None:
    model = _paper_on_meta(144, 1, 15)
    for block in (*model.net.blocks_hsi, *model.net.blocks_x):
        assert _count(block) == CROSS_BLOCK_PARAMS
        frozen = [name for name, p in block.named_parameters() if not p.requires_grad]
        assert frozen == ["op.ssm_guide.dt_projs_weight", "op.ssm_guide.dt_projs_bias", "op.ssm_guide.Ds"]
        assert sum(p.numel() for p in block.parameters() if not p.requires_grad) == FROZEN_GUIDE_VALUES
    for block in model.net.blocks_fusion:
        assert _count(block) == FUSION_BLOCK_PARAMS
        assert all(p.requires_grad for p in block.parameters())


def test_reference_key_map_covers_the_reference_state_dict() -> None:
    model = _paper_on_meta(144, 1, 15)
    reference = _reference_houston_keys()
    assert len(reference) == 639 and sum(torch.Size(s).numel() for s in reference.values()) == 70_814_543
    key_map = model.net.reference_key_map()
    ours = dict(model.net.named_parameters())
    assert sorted(key_map) == sorted(ours)
    assert len(set(key_map.values())) == len(key_map)  # 1:1
    mapped = {key_map[name]: tuple(p.shape) for name, p in ours.items()}
    assert mapped == reference


def test_concat_variant_has_no_clip_parts() -> None:
    with torch.device("meta"):
        model = m3amba.build_concat({}, _info(144, 1, 15, crop=32))
    names = [n for n, _ in model.named_parameters()]
    assert not any(re.search(r"clip|reduce|map_", n) for n in names)
    # ablation (A): the HSI + X stack replaces the two guidance maps and their embeddings
    assert _count(model) == 70_814_543 - 2 * (512 * 1024 + 1024) - (2 * 144 + 2) - 57_984 + 56_832
    with pytest.raises(ConfigError, match="reference VSSM"):
        model.net.reference_key_map()


# ----------------------------------------------------------------------------- the guide stream


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_skipped_guide_stream_equals_the_full_cross_ss2d(dtype: torch.dtype, tol: float) -> None:
    torch.manual_seed(1)
    block = m3amba_model.CrossBlock(16, {"d_state": 4, "ssm_ratio": 2.0, "dt_rank": 1, "d_conv": 3}, 2.0, 0.0).to(dtype)
    x = torch.randn(2, 6, 5, 16, dtype=dtype)
    guide = torch.randn(2, 6, 5, 16, dtype=dtype)
    with torch.no_grad():
        full_x, _ = block.op(block.norm(x), block.norm(guide))
        skipped = block.mix(block.norm(x), block.norm(guide))
        assert (skipped - full_x).abs().max().item() <= tol
        block.guide_stream = "compute"
        computed = block(x, guide)
        block.guide_stream = "skip"
        assert (block(x, guide) - computed).abs().max().item() <= tol


def test_guide_stream_modes_give_identical_model_outputs() -> None:
    skip = _small()
    compute = _small(guide_stream="compute")
    compute.load_state_dict(skip.state_dict())
    batch = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(skip(batch)["logits"], compute(batch)["logits"], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- gradients


def test_every_trainable_parameter_gets_a_finite_gradient_and_clip_is_frozen() -> None:
    model = _small().train()
    targets = torch.randint(-1, 4, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    model.loss(model(_inputs()), targets).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(bool(p.grad.isfinite().all()) for p in model.parameters() if p.grad is not None)
    assert all(not p.requires_grad and p.grad is None for p in model.clip.parameters())
    for reducer in (model.reduce_hsi, model.reduce_x):  # trained through the frozen encoder
        assert reducer.weight.grad.abs().sum() > 0 and reducer.bias.grad.abs().sum() > 0
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad and not n.startswith("clip."))
    expected = sorted(
        f"net.blocks_{b}.{i}.op.ssm_guide.{p}"
        for b in ("hsi", "x") for i in range(2) for p in ("dt_projs_weight", "dt_projs_bias", "Ds")
    )
    assert frozen == expected


def test_clip_backprop_off_freezes_the_reducers() -> None:
    model = _small(clip_backprop=False)
    assert not any(p.requires_grad for p in model.reduce_hsi.parameters())
    targets = torch.zeros(2, 8, 8, dtype=torch.long)
    model.loss(model(_inputs()), targets).backward()
    assert model.reduce_hsi.weight.grad is None
    assert model.net.map_hsi.linear.weight.grad is not None


@pytest.mark.slow
def test_block_checkpointing_gives_the_same_loss_and_gradients() -> None:
    plain = _small().train()
    checkpointed = _small(checkpoint_blocks=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    targets = torch.randint(-1, 4, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    losses = []
    for model in (plain, checkpointed):
        loss = model.loss(model(_inputs()), targets)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1])
    grads = dict(checkpointed.named_parameters())
    for name, p in plain.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-5, atol=1e-7, msg=name)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("crop", [16, 32])
def test_dense_logits_and_aux_heads(crop: int) -> None:
    torch.manual_seed(0)
    model = m3amba.build(SMALL, _info(crop=crop)).eval()
    assert model.net.map_hsi.linear.out_features == crop * crop
    assert model.net.map_hsi.linear.in_features == 512
    with torch.no_grad():
        out = model(_inputs(crop=crop))
    assert out["logits"].shape == (2, 4, crop, crop)
    assert [a.shape for a in out["aux"]] == [(2, 4, crop, crop)] * 2


def test_wrong_crop_names_the_expected_size() -> None:
    with pytest.raises(ConfigError, match="\\(batch, 6, 8, 8\\)"):
        _small()(_inputs(crop=10))


# ----------------------------------------------------------------------------- loss


def _output(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    return {"logits": fused, "aux": (a, b)}


def test_loss_without_unsup_is_the_sum_of_three_masked_ces() -> None:
    model = _small(lambda_unsup=0.0)
    gen = torch.Generator().manual_seed(3)
    heads = [torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3)]
    targets = torch.randint(-1, 4, (2, 8, 8), generator=gen)
    expected = sum(torch.nn.functional.cross_entropy(h, targets, ignore_index=-1) for h in heads)
    torch.testing.assert_close(model.loss(_output(*heads), targets), expected)


def test_unlabelled_pixels_never_enter_the_ce() -> None:
    model = _small(lambda_unsup=0.0)
    gen = torch.Generator().manual_seed(4)
    heads = [torch.randn(1, 4, 8, 8, generator=gen) for _ in range(3)]
    targets = torch.full((1, 8, 8), -1)
    targets[0, 2, 3], targets[0, 5, 5] = 1, 2
    changed = [h.clone() for h in heads]
    for h in changed:
        h[0, :, 0, 0] += 100.0  # an unlabelled pixel
    torch.testing.assert_close(model.loss(_output(*heads), targets), model.loss(_output(*changed), targets))
    assert model.loss(_output(*heads), torch.full((1, 8, 8), -1)).item() == 0.0


def test_unsupervised_term_bounds() -> None:
    model = _small(lambda_sup=0.0, lambda_unsup=1.0)
    gen = torch.Generator().manual_seed(5)
    targets = torch.zeros(2, 8, 8, dtype=torch.long)
    same = torch.randn(2, 4, 8, 8, generator=gen)
    assert abs(model.loss(_output(same, same, same), targets).item()) < 1e-6
    opposite = model.loss(_output(same, -same, -same), targets).item()
    assert abs(opposite - 4.0) < 1e-5
    for _ in range(5):
        heads = [torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3)]
        assert 0.0 <= model.loss(_output(*heads), targets).item() <= 4.0


def test_unsup_on_labelled_pixels_only_and_stop_gradient() -> None:
    gen = torch.Generator().manual_seed(6)
    heads = [torch.randn(1, 4, 8, 8, generator=gen, requires_grad=True) for _ in range(3)]
    targets = torch.full((1, 8, 8), -1)
    targets[0, 0, 0] = 0
    labelled = _small(lambda_sup=0.0, lambda_unsup=1.0, unsup_pixels="labelled")
    cos = torch.nn.functional.cosine_similarity
    expected = 2 - cos(heads[1], heads[0], dim=1)[0, 0, 0] - cos(heads[2], heads[0], dim=1)[0, 0, 0]
    torch.testing.assert_close(labelled.loss(_output(*heads), targets), expected)
    stopped = _small(lambda_sup=0.0, lambda_unsup=1.0, unsup_stop_grad=True)
    stopped.loss(_output(*heads), targets).backward()
    assert heads[0].grad.abs().sum() == 0 and heads[1].grad.abs().sum() > 0  # lambda_sup is 0


# ----------------------------------------------------------------------------- guidance modes


def test_clip_without_weights_names_the_fix_and_the_ablation() -> None:
    spec = m3amba.method_spec()
    with pytest.raises(ConfigError) as error:
        spec.build(spec.resolve("paper").model, _info(crop=32))
    assert "--set model.clip_weights=" in str(error.value) and "m3amba-concat" in str(error.value)


def _tiny_checkpoint(path: Path) -> Path:
    from bench_core.ops.clip_vit import ClipVisionArch, random_clip_visual

    tower = random_clip_visual(ClipVisionArch(64, 1, 1, 8, 32, 512), generator=torch.Generator().manual_seed(0))
    torch.save({f"visual.{k}": v for k, v in tower.state_dict().items()}, path)
    return path


def test_clip_guidance_loads_user_weights_and_tags_them(tmp_path: Path) -> None:
    from bench_core.ops.clip_vit import file_sha256

    path = _tiny_checkpoint(tmp_path / "tiny-clip.pt")
    config = {**SMALL, "guidance": "clip", "clip_weights": str(path)}
    model = m3amba.build(config, _info())
    tags = model.bench_tags()
    assert tags["guidance"] == "clip" and tags["clip_sha256"] == file_sha256(path)
    assert "status" not in tags  # the paper's method: no stand-in or ablation mark
    assert tags["clip_arch"] == "ViT-w64-l1-h1-p8-i32-o512"
    with torch.no_grad():
        assert model(_inputs())["logits"].shape == (2, 4, 8, 8)
    with pytest.raises(ConfigError, match="sha256"):
        m3amba.build({**config, "clip_sha256": "0" * 64}, _info())
    with pytest.raises(ConfigError, match="no such file"):
        m3amba.build({**config, "clip_weights": str(tmp_path / "missing.pt")}, _info())


def test_clip_random_is_a_tagged_seeded_stand_in() -> None:
    a = m3amba.build(SMALL, _info(seed=1))
    b = m3amba.build(SMALL, _info(seed=1))
    c = m3amba.build(SMALL, _info(seed=2))
    assert torch.equal(a.clip.proj, b.clip.proj) and not torch.equal(a.clip.proj, c.clip.proj)
    tags = a.bench_tags()
    assert tags["guidance"] == "clip-random (STAND-IN: no pretrained CLIP weights)"
    assert tags["status"] == "STAND-IN: random CLIP weights"
    assert tags["clip_arch"] == "ViT-w64-l2-h2-p8-i32-o512" and tags["clip_sha256"] == "none"
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())


def test_concat_method_builds_without_files_and_says_ablation_a() -> None:
    spec = m3amba.method_spec(concat=True)
    for profile in ("paper", "fast"):
        assert spec.resolve(profile).model["guidance"] == "concat"
    model = spec.build(spec.resolve("fast").model, _info(crop=16))
    assert not hasattr(model, "clip")
    assert model.bench_tags()["guidance"] == "concat (paper ablation A: no CLIP)"
    assert model.bench_tags()["status"] == "ABLATION A: no CLIP"
    assert "ablation (A)" in spec.description
    with pytest.raises(ConfigError, match="'m3amba' method"):
        m3amba.build_concat({"guidance": "clip"}, _info())
    with pytest.raises(ConfigError, match="clip_weights"):
        m3amba.build({"guidance": "concat", "clip_weights": "/x.pt"}, _info())


def test_paper_clip_variant_adapters_drop_last_layer_and_concatenate() -> None:
    model = _small(clip_variant="paper").train()
    assert model.skip_last == 1 and len(model.adapters_hsi) == len(model.adapters_x) == 1
    assert hasattr(model.net, "embed_guide") and not hasattr(model.net, "embed_guide_hsi")
    targets = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(2))
    model.loss(model(_inputs()), targets).backward()
    assert model.adapters_hsi[0].up.weight.grad.abs().sum() > 0


def test_unknown_and_bad_options_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown key\\(s\\) \\['width'\\]"):
        m3amba.build({"width": 3}, _info())
    with pytest.raises(ConfigError, match="model.guide_stream"):
        m3amba.build({**SMALL, "guide_stream": "half"}, _info())
    with pytest.raises(ConfigError, match="model.d_conv"):
        m3amba.build({**SMALL, "d_conv": 4}, _info())


# ----------------------------------------------------------------------------- FLOPs

L, DIM, INNER, N, R, K = 32 * 32, 384, 768, 16, 24, 4


def _stream_flops() -> int:
    """One stream of a block at the paper width, crop 32 (2 FLOPs per multiply-add)."""
    in_proj = 2 * L * DIM * 2 * INNER
    conv = 2 * L * INNER * 9
    x_proj = 2 * K * (R + 2 * N) * INNER * L
    dt_proj = 2 * K * INNER * R * L
    scan = 9 * L * K * INNER * N + K * INNER * L  # bench_core.ops.flops, with D
    out_proj = 2 * L * INNER * DIM
    mlp = 2 * 2 * L * DIM * 4 * DIM
    return in_proj + conv + x_proj + dt_proj + scan + out_proj + mlp


FUSION_FLOPS = _stream_flops()  # 5.20 GFLOPs
CROSS_SKIP_FLOPS = FUSION_FLOPS + 2 * L * DIM * 2 * INNER + 2 * L * INNER * 9 + 2 * K * (R + 2 * N) * INNER * L \
    + 2 * K * INNER * R * L  # + the guide's encode and projections: 6.93 GFLOPs


def _flops(fn: Any, *args: Any) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops()


def test_flops_per_block_at_the_paper_width() -> None:
    model = _paper_on_meta(144, 1, 15)
    x = torch.empty(1, 32, 32, DIM, device="meta")
    cross, fusion = model.net.blocks_hsi[0], model.net.blocks_fusion[0]
    assert _flops(fusion, x) == FUSION_FLOPS
    assert _flops(cross, x, x) == CROSS_SKIP_FLOPS
    assert round(FUSION_FLOPS / 1e9, 2) == 5.20 and round(CROSS_SKIP_FLOPS / 1e9, 2) == 6.93
    cross.guide_stream = "compute"
    assert round(_flops(cross, x, x) / 1e9, 2) == 10.40  # the reference computes both streams


@pytest.mark.slow
def test_flops_per_sample_equal_the_block_sum_estimate() -> None:
    """The whole paper model on one 32x32 Houston crop (meta tensors, no arithmetic): 27 blocks
    plus embeddings, guidance maps, heads and two ViT-B/32 passes, within 5 % of the estimate."""
    model = _paper_on_meta(144, 1, 15)
    example = {"hsi": torch.empty(1, 144, 32, 32, device="meta"), "x": torch.empty(1, 1, 32, 32, device="meta")}
    total = flops_per_sample(model, example)
    clip = _flops(model.clip, torch.empty(2, 3, 224, 224, device="meta"))
    embeds = 2 * 2 * L * (144 + 1) * DIM + 2 * 2 * 512 * L + 2 * L * (144 + 1)  # 4 embeddings, maps
    heads = 3 * 2 * L * DIM * 15
    reducers = 2 * L * (144 + 1) * 3
    estimate = 18 * 6.93e9 + 9 * 5.20e9 + embeds + heads + reducers + clip
    assert abs(total - estimate) / estimate < 0.05
    exact = 18 * CROSS_SKIP_FLOPS + 9 * FUSION_FLOPS + embeds + heads + reducers + clip
    assert total == exact  # ~189 GFLOPs: 171.5 in the blocks, 17.6 in CLIP
    assert abs(clip - 2 * 8.8e9) / (2 * 8.8e9) < 0.01


# ----------------------------------------------------------------------------- registration


def test_registered_with_profiles_search_space_and_description() -> None:
    host = load_plugins()
    assert {"m3amba", "m3amba-concat"} <= set(host.methods.names())
    spec = host.methods.get("m3amba")
    assert spec.input_kind == "dense" and spec.patch_size == 32 and spec.modalities == ("hsi", "x")
    paper = spec.resolve("paper")
    assert (paper.train.optimizer, paper.train.lr, paper.train.weight_decay, paper.train.batch_size,
            paper.train.epochs, paper.train.patch_size) == ("adamw", 1e-4, 1e-3, 8, 200, 32)
    assert paper.train.crops_per_epoch == "grid:8" and paper.train.val_every == 10
    assert not paper.train.restore_best and paper.train.scheduler == "none"
    assert paper.model["guidance"] == "clip" and paper.model["clip_weights"] is None
    fast = spec.resolve("fast")
    assert fast.model["guidance"] == "clip-random" and fast.train.patch_size == 16
    import optuna

    sampled = spec.search_space(optuna.trial.FixedTrial(
        {"lr": 1e-4, "weight_decay": 1e-3, "lambda_unsup": 0.5, "drop_path": 0.1}))
    assert set(sampled["train"]) == {"lr", "weight_decay"}
    assert set(sampled["model"]) == {"lambda_unsup", "drop_path"}
    for needle in ("Eq. 12", "clip_variant", "no CLIP mean/std", "clip_backprop", "lambda_sup", "unsup_pixels",
                   "restore_best", "grid:8", "guide_stream", "_no_weight_decay", "STAND-IN"):
        assert needle in spec.description, needle


@pytest.mark.slow
def test_fast_profile_step_is_cheap() -> None:
    """One fast-profile training step on a synthetic-sized batch (8 crops of 16 x 16, 32 + 1 bands)."""
    import time

    spec = load_plugins().methods.get("m3amba")
    config = spec.resolve("fast")
    torch.manual_seed(0)
    model = spec.build(config.model, _info(32, 1, 6, crop=16)).train()
    batch = _inputs(8, 32, 1, 16)
    targets = torch.randint(-1, 6, (8, 16, 16), generator=torch.Generator().manual_seed(0))
    model.loss(model(batch), targets).backward()  # warm-up
    start = time.perf_counter()
    model.loss(model(batch), targets).backward()
    assert time.perf_counter() - start < 5.0  # ~0.3-0.8 s on 2 busy cores


@pytest.mark.slow
def test_clip_tower_is_the_known_architecture() -> None:
    assert isinstance(_paper_on_meta(144, 1, 15).clip, VisionTransformer)
    assert _paper_on_meta(144, 1, 15, clip_arch="ViT-B-16").clip.arch == KNOWN_ARCHS["ViT-B-16"]
