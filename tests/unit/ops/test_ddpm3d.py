"""3D U-Net DDPM (SpectralDiff / BDGF): parameter counts and FLOPs at paper widths on the meta device,
shapes, the schedule against its closed form, the loss and its gradients, light-split tiling and
feature extraction at tiny widths, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench_core.errors import BenchError, ConfigError
from bench_core.ops.ddpm3d import (
    DDPM_PAPER_CHANNELS,
    DDPMInputError,
    LinearBetaSchedule,
    SimpleUnet3D,
    count_flops,
    extract_features,
    feature_channels,
    light_split,
    merge_tiles,
    pad_bands,
    sinusoidal_embedding,
    thop_style_macs,
)

TINY = (2, 4, 4, 8)
TIME_DIM = 8


def _tiny_model(seed: int = 0) -> SimpleUnet3D:
    torch.manual_seed(seed)
    return SimpleUnet3D(TINY, time_dim=TIME_DIM)


def _meta_model(channels: tuple[int, ...] = DDPM_PAPER_CHANNELS, time_dim: int = 32) -> SimpleUnet3D:
    with torch.device("meta"):
        return SimpleUnet3D(channels, time_dim)


# --------------------------------------------------------------------------- size and cost


@pytest.mark.parametrize(
    ("channels", "expected"),
    [((16, 32, 64, 128), 4_299_633), ((4, 8, 16, 32), 272_325), ((8, 16, 32, 64), 1_079_177)],
)
def test_parameter_counts_are_exact(channels: tuple[int, ...], expected: int) -> None:
    model = _meta_model(channels)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_flop_counter_mode_at_the_paper_tile_on_meta() -> None:
    flops = count_flops(_meta_model(), (1, 1, 256, 64, 64))
    assert flops == pytest.approx(1_802.95e9, rel=1e-5)  # 901.47 GMAC
    # S = 8 reference point of the spec: 28.17 GMAC.
    assert count_flops(_meta_model(), (1, 1, 8, 64, 64)) / 2 == pytest.approx(28.17e9, rel=1e-3)


def test_thop_style_count_reproduces_the_paper() -> None:
    assert thop_style_macs(_meta_model()) == pytest.approx(996.43e9, rel=2e-3)


# --------------------------------------------------------------------------- shapes


def test_noise_prediction_has_the_input_shape() -> None:
    model = _tiny_model()
    x = torch.randn(2, 1, 8, 5, 7)
    out = model(x, torch.tensor([0, 3]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    # A scalar timestep broadcasts over the batch.
    model.eval()
    assert torch.equal(model(x, 3), model(x, torch.tensor([3, 3])))


def test_feature_shapes_at_paper_widths_on_meta() -> None:
    model = _meta_model()
    depth = 256
    feats = model(torch.empty(2, 1, depth, 64, 64, device="meta"), torch.zeros(2, device="meta"), features=True)
    assert [tuple(f.shape) for f in feats] == [
        (2, 256, depth // 8, 64, 64),
        (2, 128, depth // 4, 64, 64),
        (2, 64, depth // 2, 64, 64),
    ]
    for layer, f in enumerate(feats):
        per_pixel = f.shape[1] * f.shape[2]
        assert per_pixel == 2 * 16 * depth == 8192 == feature_channels(DDPM_PAPER_CHANNELS, depth, layer)


def test_decoder_features_match_forward_and_follow_the_widths() -> None:
    model = _tiny_model().eval()
    x = torch.randn(1, 1, 16, 4, 4)
    all_three = model(x, 7, features=True)
    assert [tuple(f.shape) for f in all_three] == [(1, 16, 2, 4, 4), (1, 8, 4, 4, 4), (1, 8, 8, 4, 4)]
    only_middle = model.decoder_features(x, 7, layers=(1,))
    assert torch.equal(only_middle[0], all_three[1])
    for layer, f in enumerate(all_three):
        assert f.shape[1] * f.shape[2] == feature_channels(TINY, 16, layer)


def test_sinusoidal_embedding_formula() -> None:
    t = torch.tensor([0.0, 5.0])
    emb = sinusoidal_embedding(t, 8)
    freqs = [10000 ** (-k / 3) for k in range(4)]
    expected = [[math.sin(v * f) for f in freqs] + [math.cos(v * f) for f in freqs] for v in (0.0, 5.0)]
    assert torch.allclose(emb, torch.tensor(expected), atol=1e-6)


# --------------------------------------------------------------------------- errors


def test_depth_not_a_multiple_of_8_is_rejected_clearly() -> None:
    model = _tiny_model()
    with pytest.raises(DDPMInputError, match=r"S=12.*multiple of 8.*pad_bands") as info:
        model(torch.randn(1, 1, 12, 4, 4), 0)
    assert isinstance(info.value, BenchError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("x", "t", "pattern"),
    [
        (torch.randn(1, 8, 4, 4), 0, r"x has shape \(1, 8, 4, 4\); expected \(B, 1, S, H, W\)"),
        (torch.randn(1, 2, 8, 4, 4), 0, r"expected \(B, 1, S, H, W\)"),
        (torch.randn(2, 1, 8, 4, 4), torch.zeros(3), r"t has shape \(3,\); expected \(2,\)"),
    ],
)
def test_bad_inputs_name_the_argument(x: torch.Tensor, t: object, pattern: str) -> None:
    with pytest.raises(DDPMInputError, match=pattern):
        _tiny_model()(x, t)


def test_bad_configuration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="channels=.*four widths"):
        SimpleUnet3D((4, 8, 16))
    with pytest.raises(ConfigError, match="time_dim=9"):
        SimpleUnet3D(TINY, time_dim=9)
    with pytest.raises(ConfigError, match="beta_end=1.5"):
        LinearBetaSchedule(beta_end=1.5)
    with pytest.raises(ConfigError, match="layers|layer=3"):
        feature_channels(TINY, 8, 3)


# --------------------------------------------------------------------------- schedule and loss


def test_schedule_values_and_closed_form() -> None:
    s = LinearBetaSchedule()
    assert s.T == 500 and s.betas.shape == (500,)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    steps = torch.diff(s.betas)
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / 499))
    abar = s.alphas_cumprod
    assert (torch.diff(abar) < 0).all() and 0 < abar[-1] < abar[0] < 1
    assert abar[0].item() == pytest.approx(1 - 1e-4)
    closed = math.prod(1 - (1e-4 + k * (0.02 - 1e-4) / 499) for k in range(500))
    assert abar[-1].item() == pytest.approx(closed, rel=1e-9)


def test_q_sample_matches_the_closed_form() -> None:
    s = LinearBetaSchedule()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 1, 8, 2, 2, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 250, 499])
    got = s.q_sample(x0, t, noise)
    for i, ti in enumerate(t.tolist()):
        abar = math.prod(1 - (1e-4 + k * (0.02 - 1e-4) / 499) for k in range(ti + 1))
        expected = math.sqrt(abar) * x0[i] + math.sqrt(1 - abar) * noise[i]
        assert torch.allclose(got[i], expected, atol=1e-6)
    with pytest.raises(DDPMInputError, match=r"timesteps span \[0, 500\]; expected 0..499"):
        s.q_sample(x0, torch.tensor([0, 1, 500]), noise)
    with pytest.raises(DDPMInputError, match="noise has shape"):
        s.q_sample(x0, t, noise[:2])


def test_loss_is_finite_and_reaches_every_parameter() -> None:
    model = _tiny_model()
    s = LinearBetaSchedule()
    x0 = torch.randn(2, 1, 8, 4, 4)
    loss = s.training_loss(model, x0, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


def test_loss_is_deterministic_under_a_seeded_generator() -> None:
    s = LinearBetaSchedule()
    x0 = torch.randn(2, 1, 8, 4, 4)
    losses = [s.training_loss(_tiny_model(), x0, torch.Generator().manual_seed(seed)) for seed in (3, 3, 4)]
    assert torch.equal(losses[0], losses[1])
    assert not torch.equal(losses[0], losses[2])


# --------------------------------------------------------------------------- tiles and features


def test_pad_bands() -> None:
    cube = np.ones((103, 2, 3), dtype=np.float32)
    padded = pad_bands(cube)
    assert padded.shape == (104, 2, 3) and padded[103].sum() == 0 and padded[:103].all()
    t = torch.ones(16, 2, 2)
    assert pad_bands(t) is t
    assert pad_bands(torch.ones(9, 2, 2)).shape == (16, 2, 2)


def test_light_split_tiles_and_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    scene = torch.randn(3, 10, 13, generator=g)
    tiles, pos = light_split(scene, tile=4)
    assert tiles.shape == (3 * 4, 1, 3, 4, 4) and pos.grid == (3, 4) and len(pos) == 12
    # Row-major tiles; each is the scene's block, zero outside the scene.
    for i in range(len(pos)):
        r, c = pos.rows[i], pos.cols[i]
        block = scene[:, r:r + 4, c:c + 4]
        h, w = block.shape[1:]
        assert torch.equal(tiles[i, 0, :, :h, :w], block)
        assert tiles[i, 0, :, h:, :].abs().sum() == 0 and tiles[i, 0, :, :, w:].abs().sum() == 0
    # Any per-tile map stitched back: the round trip gives the (C, H, W) map, border cropped.
    assert torch.equal(merge_tiles(tiles[:, 0], pos), scene)
    out = np.zeros((3, 10, 13), dtype=np.float16)
    merge_tiles(tiles[:, 0], pos, out=out)
    assert np.array_equal(out, scene.numpy().astype(np.float16))
    with pytest.raises(DDPMInputError, match="tile_maps has shape"):
        merge_tiles(tiles[:5, 0], pos)


def test_extract_features_equals_a_per_tile_computation() -> None:
    model = _tiny_model()
    # Non-trivial BN running statistics so that eval mode is visible.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.train()
    s = LinearBetaSchedule()
    scene = torch.randn(8, 6, 7)
    feats = extract_features(model, scene, 10, schedule=s, layer=1, tile=4, batch=3,
                             generator=torch.Generator().manual_seed(5))
    assert model.training  # mode restored
    assert feats.shape == (feature_channels(TINY, 8, 1), 6, 7) == (16, 6, 7)
    # Same thing by hand: one noise field over the zero-filled scene, tile (1, 1) = rows 4:8, cols 4:8.
    noise = torch.randn(8, 8, 8, generator=torch.Generator().manual_seed(5))
    padded = torch.nn.functional.pad(scene, (0, 1, 0, 2))
    x0 = padded[None, None, :, 4:8, 4:8]
    model.eval()
    with torch.no_grad():
        ref = model.decoder_features(s.q_sample(x0, 10, noise[None, None, :, 4:8, 4:8]), 10, layers=(1,))[0]
    ref = ref[0].flatten(0, 1)  # (C*D, 4, 4), index c*D + d
    assert torch.allclose(feats[:, 4:6, 4:7], ref[:, :2, :3], atol=1e-5)
    # Independent of the batch size; deterministic under the seed; float16 and numpy outputs.
    again = extract_features(model, scene, 10, schedule=s, layer=1, tile=4, batch=1,
                             generator=torch.Generator().manual_seed(5))
    assert torch.allclose(again, feats, atol=1e-6)
    half = extract_features(model, scene, 10, schedule=s, layer=1, tile=4,
                            generator=torch.Generator().manual_seed(5), dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.allclose(half.float(), feats, atol=1e-2, rtol=1e-2)
    out = np.empty((16, 6, 7), dtype=np.float16)
    extract_features(model, scene, 10, schedule=s, layer=1, tile=4,
                     generator=torch.Generator().manual_seed(5), out=out)
    assert np.array_equal(out, half.numpy())
    other = extract_features(model, scene, 10, schedule=s, layer=1, tile=4,
                             generator=torch.Generator().manual_seed(6))
    assert not torch.allclose(other, feats)


def test_extract_features_rejects_unpadded_bands() -> None:
    with pytest.raises(DDPMInputError, match="cube has 7 bands.*pad_bands"):
        extract_features(_tiny_model(), torch.randn(7, 4, 4), 0, tile=4)
