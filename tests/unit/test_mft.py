"""MFT plugin: reference parameter counts, the notebook's attention quirks, config errors."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from bench_plugins.methods import mft
from bench_plugins.methods.mft import model as mft_model
from torch import nn

from bench_core import ConfigError, SceneInfo, load_plugins

# Reference counts printed by the authors' notebook (torchsummary: leaf modules only) and
# measured on the reference module with every parameter (methods.md section 6.2); the other
# shapes' torchsummary counts are in the test below.
HOUSTON_LEAF, HOUSTON_ALL = 313_071, 321_903
TRENTO_LEAF = 263_526


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _info(hsi: int = 144, x: int = 1, classes: int = 15, patch: int = 11) -> SceneInfo:
    return SceneInfo(
        dataset="shape-only",
        bands={"hsi": hsi, "x": x},
        num_classes=classes,
        class_names=tuple(f"c{k}" for k in range(classes)),
        image_shape=(32, 32),
        patch_size=patch,
    )


def _counts(model: nn.Module) -> tuple[int, int]:
    """(all parameters, torchsummary-style count over modules without children)."""
    total = sum(p.numel() for p in model.parameters())
    leaf = sum(
        p.numel()
        for module in model.modules()
        if not any(True for _ in module.children())
        for p in module.parameters(recurse=False)
    )
    return total, leaf


def test_parameter_count_equals_the_reference_on_houston2013_shape() -> None:
    total, leaf = _counts(mft.build({}, _info(144, 1, 15)))
    assert (leaf, total) == (HOUSTON_LEAF, HOUSTON_ALL), (
        f"MFT on Houston2013 shapes (144 + 1 bands, 15 classes) has {total:,} parameters "
        f"({leaf:,} torchsummary-style); the reference has exactly {HOUSTON_ALL:,} ({HOUSTON_LEAF:,})"
    )


def test_bare_parameters_are_the_position_embedding_and_the_token_learners() -> None:
    # What torchsummary misses: the (1, 5, 64) position embedding, the HSI token learner's
    # W_a (64 x 4) and W_v (64 x 64), the X token learner's W_a (64 x 1) and W_v (64 x 64).
    total, leaf = _counts(mft.build({}, _info(144, 1, 15)))
    assert total - leaf == 5 * 64 + (64 * 4 + 64 * 64) + (64 * 1 + 64 * 64) == 8_832


@pytest.mark.parametrize(
    ("bands", "x_bands", "classes", "expected"),
    [
        (63, 1, 6, TRENTO_LEAF),
        (64, 2, 11, 249_387),  # MUUFL
        (180, 4, 7, 343_079),  # Augsburg HSI + SAR
        (244, 4, 8, 394_344),  # Berlin
    ],
    ids=["trento", "muufl", "augsburg-sar", "berlin"],
)
def test_parameter_count_equals_the_reference_on_other_shapes(
    bands: int, x_bands: int, classes: int, expected: int
) -> None:
    _, leaf = _counts(mft.build({}, _info(bands, x_bands, classes)))
    assert leaf == expected, (
        f"MFT ({bands} + {x_bands} bands, {classes} classes): {leaf:,} torchsummary-style parameters; "
        f"the reference has exactly {expected:,} (methods.md 6.2)"
    )


@pytest.mark.parametrize(("bands", "groups"), [(144, 16), (63, 8)])
def test_hetconv_groups_follow_the_notebook_rule(bands: int, groups: int) -> None:
    # 8 * (B - 8) stem channels: 1088 is divisible by 16, 440 is not.
    model = mft.build({}, _info(bands, 1, 6))
    grouped = model.hsi_conv2d[0].grouped
    assert grouped.groups == groups
    assert grouped.in_channels == 8 * (bands - 8)


@pytest.mark.parametrize(("patch", "x_bands"), [(11, 1), (7, 4), (5, 2)])
def test_forward_gives_logits_for_any_patch_and_x_band_count(patch: int, x_bands: int) -> None:
    torch.manual_seed(0)
    model = mft.build({}, _info(20, x_bands, 5, patch)).eval()
    batch = {"hsi": torch.randn(3, 20, patch, patch), "x": torch.randn(3, x_bands, patch, patch)}
    logits = model(batch)
    assert logits.shape == (3, 5)
    assert torch.isfinite(logits).all()


def test_fewer_bands_than_the_spectral_kernel_still_builds() -> None:
    model = mft.build({}, _info(6, 1, 3, 5))
    assert model.spectral_kernel == 6
    out = model({"hsi": torch.randn(2, 6, 5, 5), "x": torch.randn(2, 1, 5, 5)})
    assert out.shape == (2, 3)


def _attention_by_loops(attn: nn.Module, x: torch.Tensor, heads: int) -> torch.Tensor:
    """The notebook's cross attention written out per sample and head (the slow, obvious way)."""
    b, n, c = x.shape
    width = c // heads
    wq, wk, wv = attn.to_q.weight, attn.to_k.weight, attn.to_v.weight  # (c, width) each
    out = torch.zeros(b, 1, c)
    for s in range(b):
        concat = []
        for h in range(heads):
            part = x[s, :, h * width : (h + 1) * width]  # (n, width)
            q = wq @ part[0]  # query from the CLS token only
            scores = torch.stack([q @ (wk @ part[j]) for j in range(n)]) / math.sqrt(width)
            weights = torch.softmax(scores, dim=0)
            concat.append(sum(weights[j] * (wv @ part[j]) for j in range(n)))
        out[s, 0] = attn.proj(torch.cat(concat))
    return out


def test_cross_attention_matches_a_loop_implementation_of_the_reference_maths() -> None:
    torch.manual_seed(1)
    model = mft.build({}, _info(16, 1, 4)).eval()
    attn = model.blocks[0].attn
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        ours = attn(x)
        expected = _attention_by_loops(attn, x, heads=8)
    assert ours.shape == (2, 1, 64)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_block_adds_one_attention_vector_to_every_token() -> None:
    # With the MLP silenced, a block changes every token by the same vector.
    torch.manual_seed(2)
    model = mft.build({"dropout": 0.0}, _info(16, 1, 4)).eval()
    block = model.blocks[0]
    with torch.no_grad():
        for p in block.mlp.parameters():
            p.zero_()
        x = torch.randn(3, 5, 64)
        delta = block(x) - x
    torch.testing.assert_close(delta, delta[:, :1].expand_as(delta))
    assert delta.abs().sum() > 0


def test_attention_is_invariant_to_the_order_of_the_hsi_tokens() -> None:
    torch.manual_seed(3)
    attn = mft.build({}, _info(16, 1, 4)).eval().blocks[0].attn
    x = torch.randn(2, 5, 64)
    shuffled = x[:, [0, 3, 1, 4, 2]]
    with torch.no_grad():
        torch.testing.assert_close(attn(x), attn(shuffled), rtol=1e-5, atol=1e-6)
        changed_cls = x.clone()
        changed_cls[:, 0] += 1.0
        assert not torch.allclose(attn(x), attn(changed_cls))


def test_token_learner_pools_projected_pixels_with_softmax_over_pixels() -> None:
    torch.manual_seed(4)
    pixels = torch.randn(2, 9, 6)
    attn_weight = torch.randn(1, 3, 6)
    value_weight = torch.randn(1, 6, 6)
    tokens = mft_model.learn_tokens(pixels, attn_weight, value_weight)
    assert tokens.shape == (2, 3, 6)
    for s in range(2):
        for t in range(3):
            scores = torch.stack([attn_weight[0, t] @ pixels[s, i] for i in range(9)])
            weights = torch.softmax(scores, dim=0)
            expected = sum(weights[i] * (pixels[s, i] @ value_weight[0]) for i in range(9))
            torch.testing.assert_close(tokens[s, t], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"width": 64}, "width"),
        ({"dim": 60}, "heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"spectral_kernel": 0}, "spectral_kernel"),
        ({"depth": True}, "depth"),
    ],
)
def test_bad_model_config_is_rejected_naming_the_key(config: dict, names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        mft.build(config, _info(20, 1, 3))


def test_paper_profile_holds_the_papers_recipe() -> None:
    spec = mft.method_spec()
    paper = spec.resolve("paper")
    train = paper.train
    assert (train.optimizer, train.lr, train.weight_decay) == ("adam", 5e-4, 5e-3)
    assert (train.scheduler, train.step_size, train.gamma) == ("step", 50, 0.9)
    assert (train.batch_size, train.epochs, train.patch_size) == (64, 500, 11)
    assert train.restore_best, "the paper profile selects the checkpoint on validation pixels"
    assert dict(paper.model) == {
        "dim": 64, "heads": 8, "hsi_tokens": 4, "depth": 2, "mlp_hidden": 512,
        "dropout": 0.1, "spectral_kernel": 9,
    }
    assert paper.to_params()["train.lr"] == "0.0005"
    assert spec.modalities == ("hsi", "x") and spec.input_kind == "patch" and spec.patch_size == 11


def test_fast_profile_is_the_same_architecture() -> None:
    spec = mft.method_spec()
    assert dict(spec.resolve("fast").model) == dict(spec.resolve("paper").model)


def test_plugin_code_never_moves_tensors_to_cuda() -> None:
    files = sorted(Path(mft.__file__).parent.glob("*.py"))
    assert len(files) >= 2, f"expected the mft package (__init__.py and model.py), found {files}"
    calls = [
        f"{path.name}:{n.lineno}"
        for path in files
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Attribute) and n.attr == "cuda"
    ]
    assert not calls, f"mft uses .cuda at {calls}; the Trainer owns the device"


def test_registered_through_the_bench_entry_point() -> None:
    host = load_plugins()
    assert "mft" in host.methods, f"mft not registered; plugin errors: {host.errors}"
    assert host.methods.get("mft").paper.startswith("Roy")
