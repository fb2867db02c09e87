"""CoMiX plugin: CMFeX wiring and its ablation switches, FFM on/off, dense logits, the crop the
model is tied to, the spectral stem, gradients, weight-decay flags, run tags, config errors, and
the frozen calibration on Houston2013 shapes (parameters, thop-style MACs, harness FLOPs).
(The conformance suite runs on ``comix`` in tests/conformance/test_builtin_methods.py.)

Counting at 128 x 128 is done on the ``meta`` device (shapes only, no arithmetic, ~2 s); a test
checks that the meta counts equal the counts with real tensors at a small crop.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import torch
import torch.nn.functional as F
from bench_plugins.methods import comix
from bench_plugins.methods.comix import model as comix_model
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench_core import ConfigError, SceneInfo, TrainConfig, load_plugins
from bench_core.ops.dcnv4 import DCNv4, dcnv4_flops
from bench_core.ops.epa import EPA
from bench_core.timing import count_parameters, flops_per_sample
from bench_core.training import make_optimizer

# Frozen calibration (Houston2013 shapes: 144 HSI + 1 LiDAR band, 15 classes, 128 x 128, batch 1).
PAPER_PARAMS = 22_406_991
PAPER_THOP_MACS = 193_519_550_464
PAPER_HARNESS_FLOPS = 398_608_564_224
PAPER_DCN_FLOPS = 1_591_214_080  # 10 * H*W*C*Kp summed over the eight DCNv4 layers
TARGET_PARAMS, TARGET_MACS = 21.87e6, 197.02e9  # the paper's Table VII

SMALL: dict[str, Any] = {  # a few-millisecond model for the behaviour tests
    "channels": [16, 32, 32, 32], "spectral_depth": 3, "blocks_2d": [1, 1, 1, 1], "blocks_3d": [1, 1, 1, 1],
    "proj_size": 8, "heads": 2, "kernels": [3, 3, 5, 5], "ffn_ratio": 2.0, "decoder_dim": 16,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _info(hsi: int = 10, x: int = 2, classes: int = 5, crop: int = 12) -> SceneInfo:
    return SceneInfo(dataset="shape-only", bands={"hsi": hsi, "x": x}, num_classes=classes,
                     class_names=tuple(f"c{k}" for k in range(classes)), image_shape=(64, 64), patch_size=crop)


def _inputs(batch: int = 2, hsi: int = 10, x: int = 2, crop: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"hsi": torch.rand(batch, hsi, crop, crop, generator=gen),
            "x": torch.rand(batch, x, crop, crop, generator=gen)}


def _small(**overrides: Any) -> comix_model.CoMiX:
    torch.manual_seed(0)
    return comix.build({**SMALL, **overrides}, _info())


def _houston_on_meta(**overrides: Any) -> comix_model.CoMiX:
    spec = comix.method_spec()
    with torch.device("meta"):
        return comix.build({**spec.profiles["paper"]["model"], **overrides},
                           _info(hsi=144, x=1, classes=15, crop=128))


def _houston_example(device: str = "meta") -> dict[str, torch.Tensor]:
    return {"hsi": torch.empty(1, 144, 128, 128, device=device), "x": torch.empty(1, 1, 128, 128, device=device)}


def thop_macs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> int:
    """thop's convention: forward hooks on Linear and Conv layers only (output elements x inputs per
    output); attention matmuls, the DCNv4 sampling, norms and activations are not counted."""
    total = 0

    def hook(module: nn.Module, _: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            per_output = module.in_features
        else:
            per_output = module.in_channels // module.groups
            for k in module.kernel_size:
                per_output *= k
        total += output.numel() * per_output

    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    model.eval()
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


# ----------------------------------------------------------------------------- calibration


def test_calibrated_parameter_count_is_frozen_and_within_five_percent() -> None:
    model = _houston_on_meta()
    total, trainable = count_parameters(model)
    assert total == trainable == PAPER_PARAMS == comix.PAPER_PARAMS
    assert abs(total / TARGET_PARAMS - 1) <= 0.05  # +2.46 %


def test_calibrated_thop_macs_are_frozen_and_within_ten_percent() -> None:
    macs = thop_macs(_houston_on_meta(), _houston_example())
    assert macs == PAPER_THOP_MACS == comix.PAPER_THOP_MACS
    assert abs(macs / TARGET_MACS - 1) <= 0.10  # -1.78 %


@pytest.mark.slow
def test_harness_flops_include_attention_matmuls_and_the_dcn_formula() -> None:
    model = _houston_on_meta()
    assert flops_per_sample(model, _houston_example()) == PAPER_HARNESS_FLOPS == comix.PAPER_HARNESS_FLOPS
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(_houston_example())
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert by_op["bench.dcnv4"] == PAPER_DCN_FLOPS
    layers = [(m.kernel_size, m.channels, 128 if m.channels == 64 else 64)
              for m in model.modules() if isinstance(m, DCNv4)]
    assert [(k, c) for k, c, _ in layers] == [(3, 64)] * 2 + [(3, 160)] * 2 + [(7, 160)] * 4
    assert sum(dcnv4_flops(1, s, s, c // 16, 16, k * k) for k, c, s in layers) == PAPER_DCN_FLOPS
    # what thop leaves out: the attention products (bmm) and the DCN sampling
    assert PAPER_HARNESS_FLOPS == 2 * PAPER_THOP_MACS + by_op["aten.bmm"] + PAPER_DCN_FLOPS


def test_meta_counts_equal_counts_with_real_tensors() -> None:
    model = _small().eval()
    real_inputs = _inputs(batch=1)
    with torch.device("meta"):
        torch.manual_seed(0)
        meta = comix.build(SMALL, _info())
    meta_inputs = {k: torch.empty_like(v, device="meta") for k, v in real_inputs.items()}
    assert thop_macs(model, real_inputs) == thop_macs(meta, meta_inputs)
    assert flops_per_sample(model, real_inputs) == flops_per_sample(meta, meta_inputs)


def test_paper_profile_recipe_and_description() -> None:
    spec = load_plugins().methods.get("comix")
    assert spec.input_kind == "dense" and spec.patch_size == 128 and spec.modalities == ("hsi", "x")
    paper = spec.resolve("paper")
    train = paper.train
    assert (train.optimizer, train.lr, train.weight_decay, train.scheduler, train.power) == ("adam", 6e-5, 0.01,
                                                                                             "poly", 0.9)
    assert (train.epochs, train.batch_size, train.patch_size, train.val_every, train.restore_best) == (
        500, 4, 128, 10, False)
    model = dict(paper.model)
    assert model["channels"] == [64, 160, 160, 160] and model["spectral_depth"] == 6
    assert (model["proj_size"], model["heads"], model["decoder_dim"], model["ffm_hidden_ratio"]) == (32, 4, 512, 1.0)
    assert model["kernels"] == [3, 3, 7, 7] and model["blocks_2d"] == [2, 2, 2, 2] and model["blocks_3d"] == [1] * 4
    text = spec.description
    assert "NOT evidence of faithfulness" in text and "22,406,991" in text and "193.52 G" in text
    for switch in ("model.cmfex", "model.ffm", "model.epa_scaling", "model.epa_spatial_layout", "model.depth_pool",
                   "model.spectral_depth", "model.init", "model.dcn_backend"):
        assert switch in text
    fast = spec.resolve("fast").train
    assert fast.patch_size == 32 and fast.steps_per_epoch == 8 and fast.epochs == 10
    sampled = spec.search_space(optuna.trial.FixedTrial({"lr": 1e-4, "weight_decay": 0.01, "decoder_dropout": 0.2}))
    assert sampled == {"train": {"lr": 1e-4, "weight_decay": 0.01}, "model": {"decoder_dropout": 0.2}}
    spec.resolve("paper", sampled)  # the sampled keys are valid overrides


# ----------------------------------------------------------------------------- shapes and crop


@pytest.mark.parametrize("crop", [12, 13, 16])
def test_dense_logits_have_the_crop_shape(crop: int) -> None:
    torch.manual_seed(0)
    model = comix.build(SMALL, _info(crop=crop))
    for training in (True, False):
        model.train(training)
        with torch.set_grad_enabled(training):
            logits = model(_inputs(batch=3, crop=crop))
        assert logits.shape == (3, 5, crop, crop)
        assert bool(logits.isfinite().all())


def test_stage_shapes_and_token_projections_follow_the_crop() -> None:
    model = _houston_on_meta()
    assert model.stem_hsi.group == 24  # 144 bands in 6 slices of 24
    epa = [m for m in model.modules() if isinstance(m, EPA)]
    # the four 3D blocks' EPAs (H*W*D tokens), then per stage CMFeX's HSI and X EPAs
    sizes = [(m.input_size, m.proj_size) for m in epa]
    assert sizes == ([(98304, 32)] + [(24576, 32)] * 3 + [(98304, 32), (16384, 32)] + [(24576, 32), (4096, 32)] * 3)


def test_a_forward_at_another_crop_names_the_expected_crop() -> None:
    model = _small()
    with pytest.raises(ConfigError, match=r"expected \(batch, 10, 12, 12\).*12 x 12 crops.*train.patch_size=12"):
        model(_inputs(crop=16))
    with pytest.raises(ConfigError, match="lack \\['x'\\]"):
        model({"hsi": _inputs()["hsi"]})


def test_eval_forward_does_not_depend_on_the_other_samples() -> None:
    model = _small().eval()
    batch = _inputs(batch=3)
    with torch.no_grad():
        together = model(batch)
        alone = torch.cat([model({k: v[i : i + 1] for k, v in batch.items()}) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_spectral_stem_makes_ordered_slices_of_contiguous_bands() -> None:
    torch.manual_seed(0)
    stem = comix_model.SpectralStem(bands=10, depth=4, channels=16).eval()  # k = 3, two zero bands appended
    assert stem.conv.kernel_size == (3, 1, 1) and stem.conv.stride == (3, 1, 1)
    hsi = torch.rand(2, 10, 5, 5)
    with torch.no_grad():
        base = stem(hsi)
        assert base.shape == (2, 4, 5, 5, 16)
        for band, slice_ in ((0, 0), (4, 1), (8, 2), (9, 3)):
            changed = hsi.clone()
            changed[:, band] += 1.0
            moved = (stem(changed) - base).abs().amax(dim=(0, 2, 3, 4))
            assert [bool(v > 0) for v in moved] == [i == slice_ for i in range(4)]


# ----------------------------------------------------------------------------- CMFeX


def _cmfex(mode: str, depth: int = 3, side: int = 4, channels: int = 16, **overrides: Any) -> comix_model.CMFeX:
    options = comix._resolve({**SMALL, "proj_size": 5, "heads": 2, **overrides})
    torch.manual_seed(0)
    return comix_model.CMFeX(mode, channels, (depth, side, side), options).double()


def _tokens(depth: int = 3, side: int = 4, channels: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, depth * side * side, channels, generator=gen, dtype=torch.float64),
            torch.randn(2, side * side, channels, generator=gen, dtype=torch.float64))


def _per_depth(t: torch.Tensor, depth: int) -> torch.Tensor:
    return t.reshape(t.shape[0], depth, -1, t.shape[-1])


@pytest.mark.parametrize("mode", ["both", "spa", "spe"])
def test_cmfex_keeps_token_shapes(mode: str) -> None:
    block = _cmfex(mode)
    hsi, x = _tokens()
    out_hsi, out_x = block(hsi, x)
    assert out_hsi.shape == (2, 48, 16) and out_x.shape == (2, 16, 16)


def test_cmfex_both_crosses_maps_and_values_as_eqs_15_to_22() -> None:
    """A readable re-computation from the two EPAs' maps: spatial maps of one modality on the other's
    projected spatial values (HSI result broadcast over D, X result averaged over D), spectral maps of
    one modality on the other's spectral values, each modality's own output projections, residual."""
    depth = 3
    block = _cmfex("both", depth=depth)
    hsi, x = _tokens(depth=depth)
    out_hsi, out_x = block(hsi, x)
    mh, mx = block.hsi.maps(hsi), block.x.maps(x)
    b, h, d = 2, 2, 8

    def tokens(y: torch.Tensor) -> torch.Tensor:  # (B, h, N, d) -> (B, N, h*d), heads side by side
        return y.permute(0, 2, 1, 3).reshape(b, y.shape[2], h * d)

    hsi_spa = tokens(torch.einsum("bhnp,bhdp->bhnd", mx.spatial, mh.v_spatial))  # (B, HW, C)
    hsi_spa = hsi_spa.repeat(1, depth, 1)  # the same for every spectral slice
    x_spa = _per_depth(tokens(torch.einsum("bhnp,bhdp->bhnd", mh.spatial, mx.v_spatial)), depth).mean(dim=1)
    hsi_spe = tokens(torch.einsum("bhij,bhjn->bhni", mx.channel, mh.v_channel))
    x_spe = tokens(torch.einsum("bhij,bhjn->bhni", mh.channel, mx.v_channel))
    expected_hsi = hsi + torch.cat([block.hsi.out_proj(hsi_spa), block.hsi.out_proj2(hsi_spe)], dim=-1)
    expected_x = x + torch.cat([block.x.out_proj(x_spa), block.x.out_proj2(x_spe)], dim=-1)
    torch.testing.assert_close(out_hsi, expected_hsi, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_x, expected_x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_cmfex_with_one_spectral_slice_is_plain_cross_epa(pool: str) -> None:
    """D = 1: broadcasting and pooling over D are the identity, so each modality's output is its own
    EPA.combine applied to the OTHER modality's maps and its own values."""
    block = _cmfex("both", depth=1, depth_pool=pool)
    hsi, x = _tokens(depth=1)
    out_hsi, out_x = block(hsi, x)
    mh, mx = block.hsi.maps(hsi), block.x.maps(x)
    torch.testing.assert_close(out_hsi, hsi + block.hsi.combine(mx.spatial, mx.channel, mh.v_spatial, mh.v_channel),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_x, x + block.x.combine(mh.spatial, mh.channel, mx.v_spatial, mx.v_channel),
                               rtol=1e-12, atol=1e-12)
    # ... and without the exchange (own maps) it would be plain EPA: the exchange changes the result
    assert not torch.allclose(out_hsi, hsi + block.hsi(hsi))


@pytest.mark.parametrize("mode", ["spa", "spe"])
def test_single_path_cmfex_equals_that_path_of_the_full_module(mode: str) -> None:
    """With the full module's q, k, values (and E) copied in, a single-path CMFeX reproduces the kept
    path of CMFeX 'both' before the output projection; its projection is Linear(C -> C)."""
    full, single = _cmfex("both"), _cmfex(mode)
    quarter = {"spa": 3, "spe": 2}[mode]  # qkvv chunks: q, k, v_spe, v_spa
    c = 16
    with torch.no_grad():
        for name in ("hsi", "x"):
            epa, part = getattr(full, name), getattr(single, name)
            w = epa.qkvv.weight
            part.qkv.weight.copy_(torch.cat([w[:c], w[c : 2 * c], w[quarter * c : (quarter + 1) * c]]))
            if mode == "spa":
                part.E.load_state_dict(epa.E.state_dict())
                part.temperature.copy_(epa.temperature2)
            else:
                part.temperature.copy_(epa.temperature)
            part.proj.weight.copy_(torch.eye(c))
            part.proj.bias.zero_()
    hsi, x = _tokens()
    mh, mx = full.hsi.maps(hsi), full.x.maps(x)
    if mode == "spa":
        assert single.hsi.E.in_features == 48 and single.x.E.in_features == 16
        expected_hsi = comix_model._broadcast_depth(full.hsi.attend_spatial(mx.spatial, mh.v_spatial), 3)
        expected_x = comix_model._pool_depth(full.x.attend_spatial(mh.spatial, mx.v_spatial), 3, "mean")
    else:
        assert not hasattr(single.hsi, "E") and not hasattr(single.x, "E")  # no token projection at all
        expected_hsi = full.hsi.attend_channel(mx.channel, mh.v_channel)
        expected_x = full.x.attend_channel(mh.channel, mx.v_channel)
    out_hsi, out_x = single(hsi, x)
    torch.testing.assert_close(out_hsi - hsi, expected_hsi, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_x - x, expected_x, rtol=1e-12, atol=1e-12)


def test_cmfex_switch_changes_modules_and_outputs() -> None:
    models = {mode: _small(cmfex=mode) for mode in comix.CMFEX_MODES}
    assert models["none"].cmfex is None
    kinds = {mode: {type(m.hsi).__name__ for m in model.cmfex} for mode, model in models.items() if mode != "none"}
    assert kinds == {"both": {"EPA"}, "spa": {"PathAttention"}, "spe": {"PathAttention"}}
    assert all(hasattr(m.x, "E") for m in models["spa"].cmfex)
    assert not any(hasattr(m.x, "E") for m in models["spe"].cmfex)
    counts = {mode: count_parameters(model)[0] for mode, model in models.items()}
    assert counts["both"] > counts["spa"] > counts["spe"] > counts["none"]
    batch = _inputs()
    with torch.no_grad():
        outputs = {mode: model.eval()(batch) for mode, model in models.items()}
    for a in comix.CMFEX_MODES:
        for b in comix.CMFEX_MODES:
            if a < b:
                assert not torch.allclose(outputs[a], outputs[b]), (a, b)


def _branch_outputs(model: comix_model.CoMiX, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The X branch's block outputs per stage (after the 2D DCN blocks, before CMFeX)."""
    seen: list[torch.Tensor] = []
    handles = [blocks.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
               for blocks in model.blocks_x]
    try:
        with torch.no_grad():
            model.eval()(batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.mark.parametrize("mode", ["both", "spa", "spe"])
def test_without_cmfex_the_x_branch_never_sees_the_hsi(mode: str) -> None:
    batch = _inputs()
    other = dict(batch, hsi=torch.rand_like(batch["hsi"]))
    independent = _small(cmfex="none")
    for a, b in zip(_branch_outputs(independent, batch), _branch_outputs(independent, other)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    exchanging = _small(cmfex=mode)
    later = list(zip(_branch_outputs(exchanging, batch), _branch_outputs(exchanging, other)))
    torch.testing.assert_close(*later[0], rtol=0, atol=0)  # stage 1's blocks run before the first exchange
    assert all(not torch.allclose(a, b) for a, b in later[1:])


# ----------------------------------------------------------------------------- FFM


def test_ffm_layers_follow_eqs_23_to_25() -> None:
    model = _small(ffm_hidden_ratio=2.0)
    shapes = {n: tuple(p.shape) for n, p in model.ffm[1].named_parameters()}
    assert shapes == {"fc1.weight": (64, 64), "fc1.bias": (64,), "dwconv.weight": (64, 1, 3, 3), "dwconv.bias": (64,),
                      "fc2.weight": (32, 64), "fc2.bias": (32,), "skip.weight": (32, 64), "skip.bias": (32,)}
    ffm = model.ffm[0].double()
    gen = torch.Generator().manual_seed(0)
    hsi, x = (torch.randn(2, 5, 5, 16, generator=gen, dtype=torch.float64) for _ in range(2))
    y = torch.cat([hsi, x], dim=-1)
    z = F.gelu(ffm.fc1(y)).permute(0, 3, 1, 2)
    z = F.conv2d(z, ffm.dwconv.weight, ffm.dwconv.bias, padding=1, groups=z.shape[1]).permute(0, 2, 3, 1)
    torch.testing.assert_close(ffm(hsi, x), ffm.fc2(z) + ffm.skip(y), rtol=1e-12, atol=1e-12)


def test_ffm_off_averages_the_two_features() -> None:
    model = _small(ffm=False).eval()
    assert model.ffm is None
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda m, i, o: captured.append(o)) for m in model.cmfex]
    stages: list[torch.Tensor] = []
    original = model.decoder.forward

    def spy(features: list[torch.Tensor], size: int) -> torch.Tensor:
        stages.extend(features)
        return original(features, size)

    model.decoder.forward = spy  # type: ignore[method-assign]
    with torch.no_grad():
        model(_inputs())
    for handle in handles:
        handle.remove()
    depth = SMALL["spectral_depth"]
    for (hsi, x), fused in zip(captured, stages):
        expected = (_per_depth(hsi, depth).mean(dim=1) + x) / 2
        torch.testing.assert_close(fused.reshape(expected.shape), expected, rtol=0, atol=1e-6)
    assert count_parameters(_small())[0] - count_parameters(model)[0] == sum(
        count_parameters(m)[0] for m in _small().ffm)


# ----------------------------------------------------------------------------- training plumbing


@pytest.mark.parametrize("cmfex", comix.CMFEX_MODES)
@pytest.mark.parametrize("ffm", [True, False])
def test_every_parameter_gets_a_finite_gradient_in_every_ablation(cmfex: str, ffm: bool) -> None:
    model = _small(cmfex=cmfex, ffm=ffm).train()
    targets = torch.randint(-1, 5, (2, 12, 12), generator=torch.Generator().manual_seed(0))
    F.cross_entropy(model(_inputs()), targets, ignore_index=-1).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(bool(p.grad.isfinite().all()) for p in model.parameters())
    # Only DCNv4's own zero init (masks 0, so the DCN output is 0) leaves gradients at exactly 0:
    # its value/output projections, offset dwconv and the LayerNorm scale right after it.
    zero = {n.split(".", 3)[-1] for n, p in model.named_parameters() if not bool(p.grad.any())}
    assert zero <= {"dcn.value_proj.weight", "dcn.value_proj.bias", "dcn.output_proj.weight",
                    "dcn.offset_mask_dw.weight", "dcn.offset_mask_dw.bias", "norm1.weight"}


def test_temperatures_are_exempt_from_weight_decay() -> None:
    model = _small()
    flagged = sorted(n for n, p in model.named_parameters() if getattr(p, "_no_weight_decay", False))
    assert flagged and all(n.rsplit(".", 1)[-1] in ("temperature", "temperature2") for n in flagged)
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.01))
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    assert all(decay[id(names[n])] == 0.0 for n in flagged)
    assert decay[id(names["decoder.fuse.weight"])] == 0.01
    for mode in ("spa", "spe"):
        part = _small(cmfex=mode).cmfex[0].hsi
        assert part.temperature._no_weight_decay
    paper_scaling = _small(epa_scaling="paper")
    assert not any(getattr(p, "_no_weight_decay", False) for p in paper_scaling.parameters())


def test_bench_tags_report_the_dcn_backend_and_switches() -> None:
    assert _small().bench_tags() == {"dcn_backend": "pure_torch", "cmfex": "both", "ffm": "true"}
    assert _small(cmfex="spe", ffm=False).bench_tags() == {"dcn_backend": "pure_torch", "cmfex": "spe", "ffm": "false"}
    assert _houston_on_meta().bench_tags()["dcn_backend"] == "pure_torch"


def test_trunc_normal_init_keeps_dcnv4s_own_init() -> None:
    model = _small(init="trunc_normal")
    dcn = next(m for m in model.modules() if isinstance(m, DCNv4))
    assert not dcn.offset_mask.weight.any() and not dcn.offset_mask.bias.any()
    assert float(model.decoder.linears[0].weight.detach().std()) == pytest.approx(0.02, rel=0.25)
    assert not model.decoder.linears[0].bias.any()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"width": 3}, r"unknown key\(s\) \['width'\]"),
        ({"channels": [64, 160, 160]}, r"model.channels = \[64, 160, 160\]: expected 4 integers"),
        ({"channels": [24, 32, 32, 32]}, r"24 is not a multiple of 16"),
        ({"channels": [16, 32, 48, 48]}, r"stages 2-4 share one width"),
        ({"heads": 3}, r"model.heads = 3: does not divide the stage width 16"),
        ({"kernels": [3, 3, 6, 7]}, r"6 is even; expected odd"),
        ({"cmfex": "cross"}, r"model.cmfex = 'cross': expected one of \['both', 'spa', 'spe', 'none'\]"),
        ({"ffm": "yes"}, r"model.ffm = 'yes': expected true"),
        ({"epa_scaling": "sqrt"}, r"model.epa_scaling = 'sqrt'"),
        ({"decoder_dropout": 1.0}, r"model.decoder_dropout = 1.0: expected a probability"),
        ({"spectral_depth": 11}, r"model.spectral_depth = 11: more spectral slices than the 10 HSI bands"),
        ({"blocks_2d": [1, 1, -1, 1]}, r"model.blocks_2d = \[1, 1, -1, 1\]: expected 4 integers >= 0"),
        ({"dcn_backend": "triton"}, r"model.dcn_backend = 'triton'"),
    ],
)
def test_config_errors_name_key_value_and_expectation(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        comix.build({**SMALL, **overrides}, _info())


def test_runs_are_tagged_with_the_dcn_backend_and_no_scan_backend() -> None:
    from bench_core.pipeline import method_tags

    tags = method_tags(_small(), torch.device("cpu"))
    assert tags["bench.dcn_backend"] == "pure_torch"
    assert tags["bench.method.dcn_backend"] == "pure_torch"
    assert "bench.scan_backend" not in tags  # CoMiX has no selective scan
