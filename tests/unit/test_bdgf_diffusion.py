"""BDGF masked-diffusion pretraining: volume, masks, speckle, effective noise, the DDPM loop."""

from __future__ import annotations

import copy
import inspect
import math

import numpy as np
import pytest
import torch
from bench_plugins.methods.bdgf import diffusion as dif
from scipy import stats

from bench_core import ConfigError
from bench_core.ops.ddpm3d import LinearBetaSchedule, SimpleUnet3D

pytestmark = pytest.mark.usefixtures("one_torch_thread")

L = 4.0
PSI = float(torch.special.digamma(torch.tensor(L, dtype=torch.float64))) - math.log(L)
PSI1 = float(torch.special.polygamma(1, torch.tensor(L, dtype=torch.float64)))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _scene(seed: int = 0, hsi: int = 5, x: int = 2, h: int = 12, w: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hsi_arr = rng.uniform(100.0, 4000.0, size=(hsi, h, w))
    hsi_arr[1] = 777.0  # constant band
    x_arr = rng.gamma(2.0, 0.3, size=(x, h, w)) - 5.0
    x_arr[-1] = 3.0  # constant band
    return hsi_arr.astype(np.float32), x_arr.astype(np.float32)


def _volume(seed: int = 0, depth: int = 8, **kw: int) -> dif.Volume:
    hsi, x = _scene(seed, **kw)
    return dif.build_volume(hsi, x, depth, dif.band_ranges(hsi), dif.band_ranges(x))


# --------------------------------------------------------------------------- 1. depth


@pytest.mark.parametrize(("bands", "depth"), [(184, 256), (248, 256), (145, 256), (5, 8), (8, 8), (9, 16), (129, 256)])
def test_volume_depth_pow2(bands: int, depth: int) -> None:
    assert dif.volume_depth("pow2", bands) == depth


@pytest.mark.parametrize(("bands", "depth"), [(33, 40), (5, 8), (8, 8), (9, 16), (184, 184), (169, 176)])
def test_volume_depth_mult8(bands: int, depth: int) -> None:
    assert dif.volume_depth("mult8", bands) == depth


def test_volume_depth_explicit_and_errors() -> None:
    assert dif.volume_depth(16, 9) == 16
    assert dif.volume_depth(256, 185) == 256
    for rule, bands in [(12, 5), (8, 9), ("pow3", 5), (True, 5), (8.0, 5), (None, 5)]:
        with pytest.raises(ConfigError, match=r"model\.ddpm_depth"):
            dif.volume_depth(rule, bands)


# --------------------------------------------------------------------------- 2. volume


def test_build_volume_ranges_and_row_order() -> None:
    hsi, x = _scene()
    vol = dif.build_volume(hsi, x, 16, dif.band_ranges(hsi), dif.band_ranges(x))
    cube = vol.cube.numpy()
    assert vol.cube.dtype == torch.float32 and cube.shape == (16, 12, 10)
    assert (vol.x_rows, vol.hsi_rows, vol.pad_rows, vol.depth) == (2, 5, 9, 16)
    assert vol.x_slice == slice(0, 2) and vol.spectral_slice == slice(2, 7) and vol.padding_slice == slice(7, 16)
    # X first, in [0, 1]; constant X band -> 0
    np.testing.assert_allclose(cube[0].min(), 0.0, atol=1e-6)
    np.testing.assert_allclose(cube[0].max(), 1.0, atol=1e-6)
    np.testing.assert_allclose(cube[0], (x[0] - x[0].min()) / (x[0].max() - x[0].min()), atol=1e-5)
    assert np.all(cube[1] == 0.0)
    # HSI next, in [-1, 1]; constant HSI band -> 0
    for band in (0, 2, 3, 4):
        np.testing.assert_allclose([cube[2 + band].min(), cube[2 + band].max()], [-1.0, 1.0], atol=1e-5)
        ref = 2 * (hsi[band] - hsi[band].min()) / (hsi[band].max() - hsi[band].min()) - 1
        np.testing.assert_allclose(cube[2 + band], ref, atol=1e-5)
    assert np.all(cube[3] == 0.0)
    assert np.all(cube[7:] == 0.0) and np.isfinite(cube).all()


def test_build_volume_batch_matches_scene_volume() -> None:
    hsi, x = _scene()
    hr, xr = dif.band_ranges(hsi), dif.band_ranges(x)
    vol = dif.build_volume(hsi, x, 8, hr, xr)
    p, corners = 5, [(0, 0), (3, 4), (7, 5)]
    hp = torch.stack([torch.from_numpy(hsi[:, r:r + p, c:c + p]) for r, c in corners])
    xp = torch.stack([torch.from_numpy(x[:, r:r + p, c:c + p]) for r, c in corners])
    batch = dif.build_volume_batch(hp, xp, 8, hr, xr)
    assert batch.shape == (3, 1, 8, p, p) and batch.dtype == torch.float32
    want = torch.stack([vol.cube[:, r:r + p, c:c + p] for r, c in corners]).unsqueeze(1)
    torch.testing.assert_close(batch, want, rtol=0, atol=1e-6)


def test_build_volume_errors() -> None:
    hsi, x = _scene()
    hr, xr = dif.band_ranges(hsi), dif.band_ranges(x)
    with pytest.raises(ConfigError, match=r"model\.ddpm_depth"):
        dif.build_volume(hsi, x, 4, hr, xr)  # 7 bands do not fit
    with pytest.raises(ValueError, match="hsi_range"):
        dif.build_volume(hsi, x, 8, xr, xr)
    with pytest.raises(ValueError, match="Volume"):
        dif.Volume(torch.zeros(8, 2, 2), x_rows=4, hsi_rows=5)


# --------------------------------------------------------------------------- 3. masks


def test_mask_probability_is_tanh() -> None:
    for prog in (0.0, 0.25, 0.5, 1.0):
        assert dif.mask_probability(prog) == pytest.approx(math.tanh(prog))
    prog = torch.linspace(0, 1, 11)
    torch.testing.assert_close(dif.mask_probability(prog), torch.tanh(prog))
    assert dif.mask_probability(1.0) == pytest.approx(0.7616, abs=1e-4)
    with pytest.raises(ConfigError):
        dif.mask_probability(1.5)


def _binom_ok(count: int, n: int, p: float) -> bool:
    lo, hi = stats.binom.interval(0.99, n, p)
    return lo <= count <= hi


def test_draw_masks_drop_rates_and_rows() -> None:
    b, x_rows, hsi_rows, depth, h, w, p = 4000, 2, 3, 8, 4, 4, 0.3
    hsi = slice(x_rows, x_rows + hsi_rows)

    keep = dif.draw_masks(b, hsi_rows, depth, h, w, p, "sample", _gen(1), x_rows=x_rows)
    assert keep.shape == (b, 1, depth, h, w) and keep.dtype == torch.float32
    part = keep[:, :, hsi].reshape(b, -1)
    assert torch.all(part.min(1).values == part.max(1).values)  # whole sample kept or dropped
    assert _binom_ok(int((part[:, 0] == 0).sum()), b, p)

    keep = dif.draw_masks(b, hsi_rows, depth, h, w, p, "structure", _gen(2), x_rows=x_rows)
    n_vox = b * hsi_rows * h * w
    assert _binom_ok(int((keep[:, :, hsi] == 0).sum()), n_vox, p)

    keep = dif.draw_masks(b, hsi_rows, depth, h, w, p, "both", _gen(3), x_rows=x_rows)
    frac = (keep[:, :, hsi] == 0).reshape(b, -1).double().mean(1)  # voxels correlate within a sample
    se = float(frac.std()) / math.sqrt(b)
    assert abs(float(frac.mean()) - (1 - (1 - p) ** 2)) < 2.576 * se

    for mode in dif.MASK_MODES:
        keep = dif.draw_masks(64, hsi_rows, depth, h, w, 1.0, mode, _gen(4), x_rows=x_rows)
        assert torch.all(keep[:, :, :x_rows] == 1) and torch.all(keep[:, :, x_rows + hsi_rows:] == 1)
        assert torch.all(keep[:, :, hsi] == (1.0 if mode == "none" else 0.0))


def test_draw_masks_same_draws_for_every_mode() -> None:
    """A mask ablation must not shift the generator stream (t / noise draws stay identical)."""
    after = []
    for mode in dif.MASK_MODES:
        g = _gen(5)
        dif.draw_masks(3, 4, 8, 5, 5, 0.5, mode, g, x_rows=1)
        after.append(torch.rand(4, generator=g))
    for other in after[1:]:
        torch.testing.assert_close(after[0], other)
    with pytest.raises(ConfigError, match=r"model\.mask"):
        dif.draw_masks(3, 4, 8, 5, 5, 0.5, "half", _gen(), x_rows=1)


# --------------------------------------------------------------------------- 4. speckle


def test_speckle_moments_exact_and_clt() -> None:
    n = 50_000
    small = dif.speckle_log_product(torch.full((4,), 4), L, (n,), _gen(6)).flatten().double()
    assert float(small.mean()) == pytest.approx(4 * PSI, abs=0.01)
    assert float(small.var()) == pytest.approx(4 * PSI1, rel=0.03)
    assert float(small.exp().mean()) == pytest.approx(1.0, abs=0.02)  # Var[prod] = 1.25^4 - 1

    big = dif.speckle_log_product(torch.full((4,), 100), L, (n,), _gen(7)).flatten().double()
    assert float(big.mean()) == pytest.approx(100 * PSI, abs=0.05)
    assert float(big.var()) == pytest.approx(100 * PSI1, rel=0.03)
    # E[prod] = 1 cannot be checked by sampling at t = 100 (Var[prod] = 1.25^100 - 1 ~ 5e9)

    zero = dif.speckle_log_product(torch.tensor([0, 0]), L, (3,), _gen())
    assert torch.all(zero == 0)


def test_speckle_single_factor_is_gamma() -> None:
    """One exact factor is Gamma(L, 1/L), also for L < 1 (the boosted sampler)."""
    for looks in (L, 0.5):
        draws = dif.speckle_log_product(torch.tensor([1]), looks, (20_000,), _gen(8)).exp().flatten().numpy()
        assert stats.kstest(draws, stats.gamma(looks, scale=1 / looks).cdf).pvalue > 0.001


def test_speckle_exact_and_clt_agree_at_16() -> None:
    t = torch.full((1,), 16)
    exact = dif.speckle_log_product(t, L, (20_000,), _gen(9), exact_max=16).flatten().numpy()
    clt = dif.speckle_log_product(t, L, (20_000,), _gen(10), exact_max=15).flatten().numpy()
    assert stats.ks_2samp(exact, clt).pvalue > 0.001
    # the test has power: a 10 % wrong variance is rejected
    assert stats.ks_2samp(exact, clt * math.sqrt(1.1)).pvalue < 0.001


def test_speckle_deterministic_under_generator() -> None:
    t = torch.tensor([0, 3, 16, 17, 400])
    a = dif.speckle_log_product(t, L, (2, 3, 3), _gen(11))
    b = dif.speckle_log_product(t, L, (2, 3, 3), _gen(11))
    c = dif.speckle_log_product(t, L, (2, 3, 3), _gen(12))
    assert a.shape == (5, 2, 3, 3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a[1:], c[1:])


# --------------------------------------------------------------------------- 5. effective noise


def test_noisy_volume_eps_eff() -> None:
    sched = LinearBetaSchedule()
    b, x_rows, hsi_rows, depth, hw = 6, 2, 3, 8, 4
    x0 = torch.rand((b, 1, depth, hw, hw), generator=_gen(13)) * 2 - 1
    x0[:, :, :x_rows] = x0[:, :, :x_rows].abs()
    x0[:, :, x_rows + hsi_rows:] = 0
    x0[0, :, 0] = 0  # zero SAR pixels stay zero
    t = torch.tensor([0, 1, 10, 16, 200, 499])
    keep = dif.draw_masks(b, hsi_rows, depth, hw, hw, 0.5, "both", _gen(14), x_rows=x_rows)
    eps = torch.randn(x0.shape, generator=_gen(15))
    x_t, eps_eff, x0m = dif.noisy_volume(x0, t, sched, keep, x_rows, hsi_rows, L, _gen(16), eps=eps)
    sa = sched.sqrt_alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    sb = sched.sqrt_one_minus_alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)

    torch.testing.assert_close(eps_eff[:, :, x_rows:], eps[:, :, x_rows:], rtol=0, atol=0)
    torch.testing.assert_close(x0m, x0 * keep)
    torch.testing.assert_close(x_t[:, :, x_rows:], (sa * x0 * keep + sb * eps)[:, :, x_rows:])
    torch.testing.assert_close(x_t[:, :, x_rows + hsi_rows:], (sb * eps)[:, :, x_rows + hsi_rows:])
    # X rows: multiplicative, no additive noise; eps_eff follows its definition
    assert torch.all(x_t[0, :, 0] == 0) and torch.all(x_t[:, :, :x_rows] >= 0)
    torch.testing.assert_close(sb * eps_eff, x_t - sa * x0m, rtol=1e-4, atol=1e-5)

    g = _gen(16)
    x_t_g, eps_eff_g, _ = dif.noisy_volume(x0, t, sched, keep, x_rows, hsi_rows, L, g, eps=eps, x_speckle="gaussian")
    torch.testing.assert_close(eps_eff_g, eps, rtol=0, atol=0)
    torch.testing.assert_close(x_t_g, sched.q_sample(x0 * keep, t, eps))


def test_noisy_volume_index_zero_has_one_speckle_factor() -> None:
    sched = LinearBetaSchedule()
    x0 = torch.ones((1, 1, 8, 100, 100))
    keep = torch.ones_like(x0)
    x_t, _, _ = dif.noisy_volume(x0, torch.tensor([0]), sched, keep, 1, 7, L, _gen(17))
    log_n = torch.log(x_t[0, 0, 0] / float(sched.sqrt_alphas_cumprod[0])).double()
    assert float(log_n.var()) == pytest.approx(PSI1, rel=0.05)
    assert float(log_n.mean()) == pytest.approx(PSI, abs=0.02)


def test_pretrain_loss_targets() -> None:
    sched = LinearBetaSchedule(T=50)
    model = SimpleUnet3D((2, 4, 4, 4)).eval()
    x0 = torch.rand((3, 1, 8, 4, 4), generator=_gen(18))
    t = torch.tensor([0, 5, 40])
    keep = dif.draw_masks(3, 4, 8, 4, 4, 0.3, "both", _gen(19), x_rows=2)
    with torch.no_grad():
        x_t, eps_eff, _ = dif.noisy_volume(x0, t, sched, keep, 2, 4, L, _gen(20))
        pred = model(x_t, t)
        full = dif.pretrain_loss(model, x0, t, sched, keep, 2, 4, L, "effective", _gen(20))
        spec = dif.pretrain_loss(model, x0, t, sched, keep, 2, 4, L, "none", _gen(20))
    torch.testing.assert_close(full, (pred - eps_eff).abs().mean())
    torch.testing.assert_close(spec, (pred - eps_eff)[:, :, 2:].abs().mean())
    with pytest.raises(ConfigError, match=r"model\.sar_target"):
        dif.pretrain_loss(model, x0, t, sched, keep, 2, 4, L, "sar", _gen())


# --------------------------------------------------------------------------- 6. pretraining


def _pretrain(model: SimpleUnet3D, vol: dif.Volume, seed: int, **kw: str) -> dif.PretrainReport:
    args = {"mask": "both", "sar_target": "effective", "x_speckle": "speckle", **kw}
    return dif.pretrain_ddpm(
        model, vol, epochs=3, batch=3, lr=1e-3, tile=8, schedule=LinearBetaSchedule(T=100), looks=L,
        generator=_gen(seed), device=torch.device("cpu"), **args,
    )


@pytest.mark.slow
def test_pretrain_ddpm_deterministic_under_generator() -> None:
    vol = _volume(depth=8, h=16, w=16)  # 2 X + 5 HSI + 1 padding row; 4 tiles of 8x8
    base = SimpleUnet3D((4, 8, 16, 32))
    init = copy.deepcopy(base.state_dict())
    runs = []
    for seed in (0, 0, 1):
        model = copy.deepcopy(base)
        report = _pretrain(model, vol, seed)
        assert report.steps == 6 and report.epochs == 3 and len(report.losses) == 3
        assert all(math.isfinite(v) for v in report.losses) and report.final_loss == report.losses[-1]
        assert not model.training and all(q.requires_grad for q in model.parameters())
        runs.append(model.state_dict())
    for key in init:
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=0, atol=0)
    weights = [k for k in init if k.endswith("weight")]
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in weights)
    assert any(not torch.equal(runs[0][k], init[k]) for k in weights)


def test_pretrain_ddpm_variants_and_no_labels() -> None:
    params = set(inspect.signature(dif.pretrain_ddpm).parameters)
    assert not any("label" in p or "target" == p or "y" == p for p in params)
    vol = _volume(depth=8, h=8, w=8)
    for kw in ({"x_speckle": "gaussian"}, {"sar_target": "none", "mask": "none"}):
        report = _pretrain(SimpleUnet3D((2, 4, 4, 4)), vol, 3, **kw)
        assert report.steps == 3 and all(math.isfinite(v) for v in report.losses)


# --------------------------------------------------------------------------- 7. config errors


@pytest.mark.parametrize(
    ("kw", "key"),
    [({"mask": "half"}, "mask"), ({"sar_target": "sar"}, "sar_target"), ({"x_speckle": "gamma"}, "x_speckle")],
)
def test_pretrain_ddpm_config_errors(kw: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"model\.{key} = '") as err:
        _pretrain(SimpleUnet3D((2, 4, 4, 4)), _volume(depth=8, h=8, w=8), 0, **kw)
    assert "expected one of" in str(err.value)


def test_noisy_volume_bad_x_speckle() -> None:
    x0 = torch.zeros((1, 1, 8, 2, 2))
    with pytest.raises(ConfigError, match=r"model\.x_speckle"):
        dif.noisy_volume(x0, torch.tensor([0]), LinearBetaSchedule(), torch.ones_like(x0), 1, 2, L, _gen(),
                         x_speckle="lidar")
    with pytest.raises(ConfigError, match=r"model\.speckle_looks"):
        dif.noisy_volume(x0, torch.tensor([0]), LinearBetaSchedule(), torch.ones_like(x0), 1, 2, 0.0, _gen())
