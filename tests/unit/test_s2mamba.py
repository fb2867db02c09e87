"""S2Mamba plugin: exact parameter counts, the three registered variants, X input modes,
the mixers' scan semantics."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from bench_plugins.methods import s2mamba
from bench_plugins.methods.s2mamba import model as s2mamba_model

from bench_core import ConfigError, SceneInfo, load_plugins
from bench_core.ops import selective_scan_sequential

# Measured on the reference module (methods.md 7.2): S2Mamba(in_chans=B, patch=p, num_classes=K).
HOUSTON_PARAMS = 118_759  # B 144, p 9, K 15
MUUFL_LIKE_PARAMS = 113_379  # B 64, p 9, K 11
INDIAN_PARAMS = 118_632  # B 200, p 7, K 16
# What each registered name computes: (modalities, model.x_input, model.spectral_reverse).
VARIANTS = {
    "s2mamba": (("hsi",), "none", "reference"),
    "s2mamba-fused": (("hsi", "x"), "concat", "reference"),
    "s2mamba-bidir": (("hsi",), "none", "sequence"),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _info(hsi: int = 144, x: int | None = None, classes: int = 15, patch: int = 9) -> SceneInfo:
    bands = {"hsi": hsi} if x is None else {"hsi": hsi, "x": x}
    return SceneInfo(
        dataset="shape-only",
        bands=bands,
        num_classes=classes,
        class_names=tuple(f"c{k}" for k in range(classes)),
        image_shape=(32, 32),
        patch_size=patch,
    )


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("bands", "classes", "patch", "expected"),
    [(144, 15, 9, HOUSTON_PARAMS), (64, 11, 9, MUUFL_LIKE_PARAMS), (200, 16, 7, INDIAN_PARAMS)],
    ids=["houston2013", "muufl-like", "indian"],
)
def test_parameter_count_equals_the_reference_module(bands: int, classes: int, patch: int, expected: int) -> None:
    total = _count(s2mamba.build({}, _info(bands, None, classes, patch)))
    assert total == expected, (
        f"S2Mamba (B {bands}, p {patch}, K {classes}) has {total:,} parameters; "
        f"the reference module has exactly {expected:,}"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("s2mamba", 118_759), ("s2mamba-fused", 118_823), ("s2mamba-bidir", 118_759)],
)
def test_each_variant_has_the_exact_count_its_description_states(name: str, expected: int) -> None:
    # Houston2013 shapes: 144 HSI bands, 1 LiDAR band, patch 9, 15 classes. The fused
    # variant's 1x1 embedding sees 145 bands: 64 more weights than the reference.
    spec = s2mamba.method_spec(name)
    info = _info(144, 1 if "x" in spec.modalities else None, 15, 9)
    total = _count(s2mamba.build(spec.resolve("paper").model, info))
    assert total == expected, f"{name} on Houston2013 shapes: {total:,} parameters, expected {expected:,}"
    assert f"{expected:,} parameters on Houston2013 shapes" in spec.description


def test_concat_adds_the_x_bands_to_the_embedding_only() -> None:
    hsi_only = s2mamba.build({"x_input": "none"}, _info(20, 3, 4, 5))
    stacked = s2mamba.build({"x_input": "concat"}, _info(20, 3, 4, 5))
    assert stacked.embed[0].in_channels == 23 and hsi_only.embed[0].in_channels == 20
    difference = sum(p.numel() for p in stacked.parameters()) - sum(p.numel() for p in hsi_only.parameters())
    assert difference == 3 * 64  # three more input channels of the 1x1 embedding


def test_concat_without_x_input_names_the_fused_method() -> None:
    with pytest.raises(ConfigError, match="s2mamba-fused"):
        s2mamba.build({"x_input": "concat"}, _info(20, None, 4, 5))


def test_x_input_none_ignores_the_x_patch() -> None:
    torch.manual_seed(0)
    model = s2mamba.build({"x_input": "none"}, _info(12, 2, 3, 5)).eval()
    hsi = torch.randn(2, 12, 5, 5)
    with torch.no_grad():
        a = model({"hsi": hsi, "x": torch.randn(2, 2, 5, 5)})
        b = model({"hsi": hsi})
    torch.testing.assert_close(a, b)


def test_concat_uses_the_x_patch() -> None:
    torch.manual_seed(0)
    model = s2mamba.build({"x_input": "concat"}, _info(12, 2, 3, 5)).eval()
    hsi = torch.randn(2, 12, 5, 5)
    with torch.no_grad():
        a = model({"hsi": hsi, "x": torch.zeros(2, 2, 5, 5)})
        b = model({"hsi": hsi, "x": torch.ones(2, 2, 5, 5)})
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("patch", [7, 9, 11])
def test_forward_gives_logits_for_the_reference_patch_sizes(patch: int) -> None:
    torch.manual_seed(1)
    model = s2mamba.build({}, _info(10, 1, 4, patch)).eval()
    with torch.no_grad():
        logits = model({"hsi": torch.randn(2, 10, patch, patch), "x": torch.randn(2, 1, patch, patch)})
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    assert model.bss.out_norm.normalized_shape == (patch * patch,)


def _spectral_by_hand(bss: torch.nn.Module, x: torch.Tensor, true_reverse: bool) -> torch.Tensor:
    """BSS's scan core written out per direction with the sequential reference scan."""
    b, c, h, w = x.shape
    p2 = h * w
    seq = x.reshape(b, c, p2).transpose(1, 2)  # (B, p^2, C): the channels are the sequence
    ssm = bss.ssm
    rank = ssm.dt_projs_weight.shape[-1]
    outs = []
    for k, u in enumerate((seq, seq.flip(-1) if true_reverse else seq)):
        x_dbl = torch.einsum("wc,bcl->bwl", ssm.x_proj_weight[k], u)
        dt, bmat, cmat = torch.split(x_dbl, [rank, 16, 16], dim=1)
        delta = torch.einsum("cr,brl->bcl", ssm.dt_projs_weight[k], dt)
        channels = slice(k * p2, (k + 1) * p2)
        outs.append(
            selective_scan_sequential(
                u, delta, -torch.exp(ssm.A_logs[channels]), bmat, cmat, ssm.Ds[channels],
                delta_bias=ssm.dt_projs_bias[k], delta_softplus=True,
            )
        )
    y = outs[0] + outs[1].flip(-1)
    y = torch.nn.functional.layer_norm(y.transpose(1, 2), (p2,), bss.out_norm.weight, bss.out_norm.bias)
    return y.transpose(1, 2).reshape(b, h, w, c)


@pytest.mark.parametrize("mode", ["sequence", "reference"])
def test_spectral_scan_matches_a_per_direction_sequential_scan(mode: str) -> None:
    torch.manual_seed(2)
    model = s2mamba.build({"spectral_reverse": mode}, _info(6, 1, 3, 3))
    x = torch.randn(2, 128, 3, 3)
    with torch.no_grad():
        ours = model.bss.core(x)
        expected = _spectral_by_hand(model.bss, x, true_reverse=mode == "sequence")
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_spectral_reverse_modes_differ() -> None:
    torch.manual_seed(3)
    seq_model = s2mamba.build({"spectral_reverse": "sequence"}, _info(6, 1, 3, 3))
    ref_model = s2mamba.build({"spectral_reverse": "reference"}, _info(6, 1, 3, 3))
    ref_model.load_state_dict(seq_model.state_dict())
    x = torch.randn(1, 128, 3, 3)
    with torch.no_grad():
        assert not torch.allclose(seq_model.bss.core(x), ref_model.bss.core(x))


def test_spatial_scan_sees_the_whole_patch_from_every_pixel() -> None:
    # Four directions reach every pixel from every other: a change at one corner moves all outputs.
    torch.manual_seed(4)
    model = s2mamba.build({}, _info(6, 1, 3, 5))
    x = torch.randn(1, 5, 5, 64)
    bumped = x.clone()
    bumped[:, 0, 0] += 1.0
    with torch.no_grad():
        changed = (model.pcs(bumped) - model.pcs(x)).abs().sum(dim=-1)
    assert changed.shape == (1, 5, 5)
    unaffected = (changed == 0).nonzero().tolist()
    assert not unaffected, f"pixels unaffected by a change at (0, 0): {unaffected}"


def test_mixture_gate_zeroes_small_gates() -> None:
    torch.manual_seed(5)
    model = s2mamba.build({"gate_threshold": 0.45}, _info(6, 1, 3, 3)).eval()
    spatial, spectral = torch.randn(4, 3, 3, 64), torch.randn(4, 3, 3, 64)
    with torch.no_grad():
        # Force the gate's logits to (big, 0): softmax ~ (1, 0), the second gate falls under 0.45.
        last = model.fusion.gate[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([5.0, 0.0]))
        mixed = model.fusion(spatial, spectral)
    g1 = torch.softmax(torch.tensor([5.0, 0.0]), dim=0)[0]
    torch.testing.assert_close(mixed, g1 * spatial)


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean() -> None:
    torch.manual_seed(6)
    x = torch.ones(4000, 3, 3, 2)
    out = s2mamba_model.drop_path(x, 0.25, training=True)
    per_sample = out.flatten(1)
    assert bool(((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all())
    assert abs(float(out.mean()) - 1.0) < 0.05
    assert torch.equal(s2mamba_model.drop_path(x, 0.25, training=False), x)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"depth": 2}, "depth"),
        ({"x_input": "stack"}, "x_input"),
        ({"spectral_reverse": "both"}, "spectral_reverse"),
        ({"dropout": -0.1}, "dropout"),
        ({"d_state": 0}, "d_state"),
    ],
)
def test_bad_model_config_is_rejected_naming_the_key(config: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        s2mamba.build(config, _info(8, 1, 3, 5))


def test_paper_profile_holds_the_reference_houston_recipe() -> None:
    paper = s2mamba.method_spec().resolve("paper")
    train = paper.train
    assert (train.optimizer, train.lr, train.weight_decay) == ("adamw", 1e-4, 5e-3)
    assert (train.scheduler, train.gamma) == ("exponential", 0.99)
    assert (train.batch_size, train.epochs, train.patch_size) == (64, 100, 9)
    assert not train.restore_best, "the reference keeps the last epoch"
    assert paper.model["dropout"] == 0.1 and paper.model["d_state"] == 16 and paper.model["dim"] == 64
    params = paper.to_params()
    # s2mamba is the reference computation: HSI only, the reference code's spectral reverse.
    assert (params["model.x_input"], params["model.spectral_reverse"]) == ("'none'", "'reference'")
    assert s2mamba.method_spec().name == "s2mamba"


def test_default_build_is_the_reference_computation() -> None:
    torch.manual_seed(7)
    model = s2mamba.build({}, _info(6, 1, 3, 3)).eval()
    assert model.embed[0].in_channels == 6  # the X band is not stacked in
    x = torch.randn(2, 128, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            model.bss.core(x), _spectral_by_hand(model.bss, x, true_reverse=False), rtol=1e-4, atol=1e-5
        )


def test_the_variants_differ_only_in_modalities_x_input_and_spectral_reverse() -> None:
    """... and in the fast profile's patch, chosen per variant on validation OA."""
    specs = {name: s2mamba.method_spec(name) for name in VARIANTS}
    fast_patch = {"s2mamba": 3, "s2mamba-fused": 5, "s2mamba-bidir": 5}
    reference = specs["s2mamba"]
    for name, (modalities, x_input, reverse) in VARIANTS.items():
        spec = specs[name]
        assert (spec.name, spec.modalities) == (name, modalities)
        assert spec.paper.startswith("Wang, Zhang, Peng, Zhang, Jia, Jiao, 'S2Mamba")
        for profile in ("paper", "fast"):
            a, b = spec.resolve(profile), reference.resolve(profile)
            patch = fast_patch[name] if profile == "fast" else 9
            assert a.train == dataclasses.replace(b.train, patch_size=patch)
            assert (a.model["x_input"], a.model["spectral_reverse"]) == (x_input, reverse)
            ignored = {"x_input": None, "spectral_reverse": None}
            assert {**a.model, **ignored} == {**b.model, **ignored}


def test_an_unknown_variant_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match="s2mamba-hsi"):
        s2mamba.method_spec("s2mamba-hsi")


def test_plugin_code_never_moves_tensors_to_cuda() -> None:
    files = sorted(Path(s2mamba.__file__).parent.glob("*.py"))
    assert len(files) >= 2, f"expected the s2mamba package (__init__.py and model.py), found {files}"
    calls = [
        f"{path.name}:{n.lineno}"
        for path in files
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Attribute) and n.attr == "cuda"
    ]
    assert not calls, f"s2mamba uses .cuda at {calls}; the Trainer owns the device"


def test_the_three_variants_are_registered_through_the_bench_entry_point() -> None:
    host = load_plugins()
    missing = [n for n in VARIANTS if n not in host.methods]
    assert not missing, f"{missing} not registered; plugin errors: {host.errors}"
    registered = sorted(n for n in host.methods.names() if n.startswith("s2mamba"))
    assert registered == sorted(VARIANTS), "the old name s2mamba-hsi is gone"
