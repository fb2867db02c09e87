"""Samplers against naive references (np.pad + slicing), and dense window blending."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench_core.errors import ConfigError
from bench_core.sampling import (
    CropSampler,
    ModelOutputError,
    PatchSampler,
    SamplingError,
    sliding_window_logits,
    sliding_window_logits_at,
    window_starts,
)


def _scene(height: int = 9, width: int = 7, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "hsi": rng.normal(size=(5, height, width)).astype(np.float32),
        "x": rng.normal(size=(2, height, width)).astype(np.float32),
    }


def _naive_patch(arr: np.ndarray, row: int, col: int, size: int, mode: str) -> np.ndarray:
    r = size // 2
    np_mode = {"zero": "constant"}.get(mode, mode)
    padded = np.pad(arr, ((0, 0), (r, r), (r, r)), mode=np_mode)
    return padded[:, row : row + size, col : col + size]


# --------------------------------------------------------------------------- PatchSampler


@pytest.mark.parametrize("size", [1, 3, 7, 11])
@pytest.mark.parametrize("mode", ["reflect", "zero", "edge"])
def test_patches_match_naive_reference_everywhere(size: int, mode: str) -> None:
    inputs = _scene(9, 7)
    sampler = PatchSampler(inputs, size, pad_mode=mode)
    index = np.arange(9 * 7)[::-1].copy()  # every pixel (corners, borders), reversed order
    out = sampler.patches(index)
    for name, arr in inputs.items():
        assert out[name].shape == (index.size, arr.shape[0], size, size)
        assert out[name].dtype == torch.float32
        for i, flat in enumerate(index):
            expected = _naive_patch(arr, flat // 7, flat % 7, size, mode)
            np.testing.assert_array_equal(out[name][i].numpy(), expected)


def test_patches_accept_tensor_index_and_repeat_pixels() -> None:
    inputs = _scene()
    sampler = PatchSampler(inputs, 5)
    index = torch.tensor([0, 62, 0, 31])
    out = sampler.patches(index)
    np.testing.assert_array_equal(out["hsi"][0].numpy(), out["hsi"][2].numpy())
    np.testing.assert_array_equal(out["x"][3].numpy(), _naive_patch(inputs["x"], 31 // 7, 31 % 7, 5, "reflect"))


def test_patch_view_shares_storage_with_the_padded_scene() -> None:
    sampler = PatchSampler(_scene(), 7)
    for name in ("hsi", "x"):
        view, padded = sampler.views[name], sampler.padded[name]
        assert view.untyped_storage().data_ptr() == padded.untyped_storage().data_ptr()
        assert view.shape == (9, 7, 7, 7, padded.shape[-1])  # channel-last windows
    before = sampler.padded["hsi"].untyped_storage().data_ptr()
    sampler.patches(np.arange(10))
    assert sampler.padded["hsi"].untyped_storage().data_ptr() == before


def test_pixels_are_the_centre_spectra() -> None:
    inputs = _scene()
    sampler = PatchSampler(inputs, 5)
    index = np.array([0, 6, 20, 62])
    pix = sampler.pixels(index)
    for name, arr in inputs.items():
        expected = arr.reshape(arr.shape[0], -1)[:, index].T
        np.testing.assert_array_equal(pix[name].numpy(), expected)
        np.testing.assert_array_equal(sampler.patches(index)[name][:, :, 2, 2].numpy(), expected)


def test_patch_sampler_rejects_bad_arguments() -> None:
    inputs = _scene()
    with pytest.raises(ConfigError, match="patch_size = 4"):
        PatchSampler(inputs, 4)
    with pytest.raises(ConfigError, match="pad_mode"):
        PatchSampler(inputs, 3, pad_mode="wrap-around")
    with pytest.raises(SamplingError, match="co-registered"):
        PatchSampler({"hsi": inputs["hsi"], "x": inputs["x"][:, :5]}, 3)
    sampler = PatchSampler(inputs, 3)
    with pytest.raises(SamplingError, match=r"\[0, 63\)"):
        sampler.patches(np.array([63]))
    with pytest.raises(SamplingError, match="dtype"):
        sampler.patches(np.array([1.5]))


# --------------------------------------------------------------------------- CropSampler


def _targets(height: int, width: int, train: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.full(height * width, -1, dtype=np.int64)
    t[train] = rng.integers(0, 4, size=train.size)
    return t.reshape(height, width)


@pytest.mark.parametrize("crop", [4, 5, 12])
def test_crops_match_naive_slicing_and_contain_training_pixels(crop: int) -> None:
    height, width = 10, 8
    inputs = _scene(height, width)
    train = np.array([0, 7, 33, 79, 41])  # corners and inner pixels
    targets = _targets(height, width, train)
    sampler = CropSampler(inputs, targets, crop)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    rows, cols = sampler.positions(64, gen)
    gen.set_state(state)
    crops, target_crops = sampler.sample(64, gen)
    p = crop // 2
    padded_t = np.pad(targets, p, mode="constant", constant_values=-1)
    for name, arr in inputs.items():
        padded = np.pad(arr, ((0, 0), (p, p), (p, p)), mode="reflect")
        assert crops[name].shape == (64, arr.shape[0], crop, crop)
        for i in range(64):
            r, c = int(rows[i]) + p, int(cols[i]) + p
            np.testing.assert_array_equal(crops[name][i].numpy(), padded[:, r : r + crop, c : c + crop])
    for i in range(64):
        r, c = int(rows[i]) + p, int(cols[i]) + p
        np.testing.assert_array_equal(target_crops[i].numpy(), padded_t[r : r + crop, c : c + crop])
    assert target_crops.dtype == torch.int64
    assert bool(((target_crops >= 0).flatten(1).sum(1) >= 1).all())
    # At most crop // 2 rows/cols of a crop leave the scene.
    assert int(rows.min()) >= -p and int(rows.max()) + crop <= height + p
    assert int(cols.min()) >= -p and int(cols.max()) + crop <= width + p


def test_crop_targets_are_ignore_outside_training_pixels() -> None:
    height, width = 12, 12
    train = np.array([5, 50, 100, 143])
    targets = _targets(height, width, train)
    sampler = CropSampler(_scene(height, width), targets, 6)
    rows, cols = sampler.positions(200, torch.Generator().manual_seed(0))
    _, target_crops = sampler.sample(200, torch.Generator().manual_seed(0))
    for i in range(200):
        r0, c0 = int(rows[i]), int(cols[i])
        rr, cc = np.meshgrid(np.arange(r0, r0 + 6), np.arange(c0, c0 + 6), indexing="ij")
        inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        flat = np.where(inside, rr * width + cc, -1)
        is_train = np.isin(flat, train)
        crop = target_crops[i].numpy()
        assert (crop[~is_train] == -1).all()
        np.testing.assert_array_equal(crop[is_train], targets.reshape(-1)[flat[is_train]])


def test_crops_are_deterministic_under_a_seeded_generator_and_vary_otherwise() -> None:
    inputs = _scene(16, 16)
    targets = _targets(16, 16, np.arange(0, 256, 5))
    sampler = CropSampler(inputs, targets, 8)
    a, ta = sampler.sample(6, torch.Generator().manual_seed(11))
    b, tb = sampler.sample(6, torch.Generator().manual_seed(11))
    c, _ = sampler.sample(6, torch.Generator().manual_seed(12))
    assert torch.equal(a["hsi"], b["hsi"]) and torch.equal(ta, tb)
    assert not torch.equal(a["hsi"], c["hsi"])


def test_crops_cover_the_whole_range_of_positions() -> None:
    # One training pixel in the middle: every placement of it inside the crop must occur.
    height = width = 9
    targets = _targets(height, width, np.array([4 * 9 + 4]))
    sampler = CropSampler(_scene(height, width), targets, 3)
    rows, cols = sampler.positions(400, torch.Generator().manual_seed(0))
    assert set(rows.tolist()) == {2, 3, 4}
    assert set(cols.tolist()) == {2, 3, 4}


def test_crop_larger_than_scene_is_padded() -> None:
    inputs = _scene(5, 4)
    targets = _targets(5, 4, np.array([0, 19]))
    sampler = CropSampler(inputs, targets, 7, pad_mode="zero")
    crops, target_crops = sampler.sample(10, torch.Generator().manual_seed(0))
    assert crops["hsi"].shape == (10, 5, 7, 7) and target_crops.shape == (10, 7, 7)
    assert bool(((target_crops >= 0).flatten(1).sum(1) >= 1).all())
    # Zero padding shows up: some input rows outside the 5-row scene are all zero.
    assert bool((crops["hsi"] == 0).any())


def test_crop_sampler_rejects_bad_targets() -> None:
    inputs = _scene(6, 6)
    with pytest.raises(SamplingError, match="no training pixel"):
        CropSampler(inputs, np.full((6, 6), -1, dtype=np.int64), 4)
    with pytest.raises(SamplingError, match=r"\(6, 6\) integer map"):
        CropSampler(inputs, np.zeros((5, 6), dtype=np.int64), 4)
    with pytest.raises(SamplingError, match="-3"):
        CropSampler(inputs, np.full((6, 6), -3, dtype=np.int64), 4)


# --------------------------------------------------------------------------- sliding windows


def test_window_starts_cover_the_axis() -> None:
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert window_starts(4, 4, 2) == [0]


def _linear_forward(weight: torch.Tensor, bias: torch.Tensor):
    """A per-pixel linear map (1x1 conv) over the concatenated inputs."""

    def forward(x: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat([x["hsi"], x["x"]], dim=1)
        return torch.einsum("kc,bchw->bkhw", weight, stacked) + bias[None, :, None, None]

    return forward


@pytest.mark.parametrize(
    ("height", "width", "crop", "overlap"),
    [(16, 16, 8, 0.5), (13, 11, 6, 0.5), (9, 17, 5, 0.25), (4, 3, 8, 0.5), (10, 7, 4, 0.0), (7, 7, 7, 0.9)],
)
def test_sliding_window_of_a_pixelwise_map_equals_the_map(height: int, width: int, crop: int, overlap: float) -> None:
    inputs = _scene(height, width)
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 7, generator=gen)
    bias = torch.randn(4, generator=gen)
    logits, count = sliding_window_logits(
        _linear_forward(weight, bias), inputs, crop, 4, overlap=overlap, batch_size=3
    )
    stacked = torch.from_numpy(np.concatenate([inputs["hsi"], inputs["x"]]))
    expected = torch.einsum("kc,chw->khw", weight, stacked) + bias[:, None, None]
    assert logits.shape == (4, height, width) and count.shape == (height, width)
    assert bool((count >= 1).all())
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_sliding_window_counts_overlaps_and_averages_position_dependent_output() -> None:
    # The forward returns each window's own start row: the blend is the mean over windows.
    inputs = {"hsi": np.zeros((1, 6, 4), dtype=np.float32)}
    calls: list[int] = []

    def forward(x: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(x["hsi"].shape[0])
        return torch.zeros(x["hsi"].shape[0], 2, 4, 4)

    _, count = sliding_window_logits(forward, inputs, 4, 2, overlap=0.5, batch_size=1)
    # Rows: windows start at 0 and 2 -> rows 2, 3 covered twice. Cols: one window.
    np.testing.assert_array_equal(count.numpy(), np.array([[1] * 4, [1] * 4, [2] * 4, [2] * 4, [1] * 4, [1] * 4]))
    assert calls == [1, 1]

    rows_in = {"hsi": np.broadcast_to(np.arange(6, dtype=np.float32)[None, :, None], (1, 6, 4)).copy()}

    def first_row(x: dict[str, torch.Tensor]) -> torch.Tensor:
        start = x["hsi"][:, 0, 0, 0]  # the scene row where the window starts
        return start[:, None, None, None].expand(-1, 1, 4, 4).clone()

    logits, _ = sliding_window_logits(first_row, rows_in, 4, 1, overlap=0.5)
    expected = np.array([0, 0, 1, 1, 2, 2], dtype=np.float32)  # rows 2-3: mean of starts 0 and 2
    np.testing.assert_allclose(logits[0, :, 0].numpy(), expected)


def test_sliding_window_infers_num_classes_and_checks_shapes() -> None:
    inputs = _scene(6, 6)
    logits, _ = sliding_window_logits(
        lambda x: torch.zeros(x["hsi"].shape[0], 3, 4, 4), inputs, 4, None
    )
    assert logits.shape == (3, 6, 6)
    with pytest.raises(ModelOutputError, match=r"expected logits of shape \(\d+, 5, 4, 4\)"):
        sliding_window_logits(lambda x: torch.zeros(x["hsi"].shape[0], 3, 4, 4), inputs, 4, 5)
    with pytest.raises(ModelOutputError, match="4, 4"):
        sliding_window_logits(lambda x: torch.zeros(x["hsi"].shape[0], 3), inputs, 4, 3)
    with pytest.raises(ConfigError, match="overlap"):
        sliding_window_logits(lambda x: x["hsi"], inputs, 4, 3, overlap=1.0)


# --------------------------------------------------------------------------- dense prediction on chosen pixels


def _position_dependent_forward(seed: int = 0):
    """A small conv net whose output depends on each pixel's place in the window (zero padding)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(7, 6, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(6, 4, 3, padding=1))

    def forward(x: dict[str, torch.Tensor]) -> torch.Tensor:
        return net(torch.cat([x["hsi"], x["x"]], dim=1))

    return forward


@pytest.mark.parametrize(("height", "width", "crop", "overlap"), [(23, 19, 8, 0.5), (16, 16, 6, 0.25), (5, 9, 8, 0.5)])
def test_logits_at_chosen_pixels_equal_whole_scene_logits_there(height: int, width: int, crop: int, overlap: float) -> None:
    inputs = _scene(height, width, seed=4)
    forward = _position_dependent_forward()
    scene_logits, _ = sliding_window_logits(forward, inputs, crop, 4, overlap=overlap, batch_size=5)
    rng = np.random.default_rng(0)
    index = rng.choice(height * width, size=max(1, height * width // 12), replace=False)
    at, windows = sliding_window_logits_at(forward, inputs, crop, index, 4, overlap=overlap, batch_size=5)
    expected = scene_logits.reshape(4, -1)[:, index].T
    torch.testing.assert_close(at, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(at.argmax(1), expected.argmax(1))
    full_h, full_w = max(height, crop), max(width, crop)
    stride = max(1, int(crop * (1 - overlap)))
    all_windows = len(window_starts(full_h, crop, stride)) * len(window_starts(full_w, crop, stride))
    assert 1 <= windows <= all_windows


def test_logits_at_run_only_the_windows_that_cover_the_pixels() -> None:
    inputs = {"hsi": np.zeros((1, 32, 32), dtype=np.float32)}
    starts: list[tuple[int, int]] = []

    def forward(x: dict[str, torch.Tensor]) -> torch.Tensor:
        starts.extend([(0, 0)] * x["hsi"].shape[0])
        return torch.zeros(x["hsi"].shape[0], 2, 8, 8)

    # Stride 4 on a 32 x 32 scene: 7 x 7 windows; pixel (0, 0) lies in 1, pixel (10, 10) in 2 x 2.
    _, windows = sliding_window_logits_at(forward, inputs, 8, np.array([0, 10 * 32 + 10]), 2, overlap=0.5)
    assert windows == 1 + 4 and len(starts) == 5
    _, none = sliding_window_logits_at(forward, inputs, 8, np.zeros(0, dtype=np.int64), 2)
    assert none == 0


def test_grid_positions_are_the_stride_grid_crops_holding_a_training_pixel() -> None:
    height, width, crop, stride = 20, 13, 8, 4
    train = np.array([0, 5 * 13 + 6, 19 * 13 + 12])
    targets = _targets(height, width, train)
    sampler = CropSampler(_scene(height, width), targets, crop)
    rows, cols = sampler.grid_positions(stride)
    p = crop // 2
    expected = []
    for cy in range(0, height, stride):
        for cx in range(0, width, stride):
            top, left = cy - p, cx - p
            window = np.pad(targets, p, constant_values=-1)[top + p : top + p + crop, left + p : left + p + crop]
            if (window != -1).any():
                expected.append((top, left))
    assert list(zip(rows.tolist(), cols.tolist())) == expected
    crops, target_crops = sampler.crops_at(rows, cols)
    assert crops["hsi"].shape == (len(expected), 5, crop, crop)
    assert bool(((target_crops != -1).flatten(1).any(1)).all())
    with pytest.raises(ConfigError, match="stride"):
        sampler.grid_positions(0)
