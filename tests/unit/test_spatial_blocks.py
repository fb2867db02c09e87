"""The ``spatial-blocks`` split: whole blocks, class balance, a guard band, zero leakage.

Also the two-decimal leakage of the official Houston2013 maps (issue 3) and the
``patch_size`` hand-over of :func:`bench_core.splits.make_split`.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from bench_core import Scene, SplitError, SplitProtocol, SplitSpec, load_plugins
from bench_core.splits import make_split, patch_leakage, window_cover
from bench_plugins import protocols
from bench_plugins.protocols import SPATIAL_BLOCKS_DEFAULTS, per_class_split, spatial_blocks_split
from tests.conftest import SHARED, skip_or_fail_in_ci


HOUSTON = SHARED / "data" / "houston2013-labels"
HOUSTON_TR = HOUSTON / "2013_IEEE_GRSS_DF_Contest_Samples_TR.tif"
HOUSTON_VA = HOUSTON / "2013_IEEE_GRSS_DF_Contest_Samples_VA.tif"


@pytest.fixture(scope="module")
def registered() -> SplitProtocol:
    host = load_plugins(extra={"protocols": protocols}, entry_points=False)
    assert not host.errors
    return host.splits.get("spatial-blocks")


def scene_from(labels: np.ndarray, train: np.ndarray | None = None, test: np.ndarray | None = None) -> Scene:
    labels = np.asarray(labels, dtype=np.int64)
    k = max(int(labels.max()), 1)
    return Scene(
        name="toy",
        modalities={"hsi": np.zeros((1, *labels.shape), dtype=np.float32)},
        labels=labels,
        class_names=tuple(f"c{i}" for i in range(1, k + 1)),
        official_train=train,
        official_test=test,
    )


def split_of(scene: Scene, protocol: SplitProtocol, text: str, patch: int, seed: int = 0, val: float = 0.0,
             carve: str = "auto"):
    return make_split(scene, SplitSpec.parse(text, val_fraction=val, val_carve=carve), protocol, seed, patch_size=patch)


def leaked_by_dilation(train: np.ndarray, test: np.ndarray, shape: tuple[int, int], patch: int) -> int:
    """Test pixels with a training pixel in their (odd) window, by a max filter (independent of the code)."""
    mask = np.zeros(shape[0] * shape[1], dtype=bool)
    mask[train] = True
    dilated = ndimage.maximum_filter(mask.reshape(shape), size=patch, mode="constant", cval=False).ravel()
    return int(np.count_nonzero(dilated[test]))


def stripes(height: int = 24, width: int = 32, classes: int = 4) -> np.ndarray:
    """Vertical class stripes, every pixel labelled: each 4x4 block holds one class."""
    return (np.arange(width)[None, :] * classes // width + 1).repeat(height, axis=0)


# ----------------------------------------------------------------------------- Houston2013 (real maps)


@pytest.fixture(scope="module")
def houston() -> tuple[np.ndarray, np.ndarray]:
    if not (HOUSTON_TR.is_file() and HOUSTON_VA.is_file()):
        skip_or_fail_in_ci(f"Houston2013 label maps not found in {HOUSTON} (the shared/ folder beside the repo)")
    from PIL import Image

    return np.array(Image.open(HOUSTON_TR)).astype(np.int64), np.array(Image.open(HOUSTON_VA)).astype(np.int64)


@pytest.mark.parametrize(("patch", "known_percent"), [(5, 2.99), (7, 6.68), (9, 10.83), (11, 15.03)])
def test_houston_official_leakage_to_two_decimals(
    houston: tuple[np.ndarray, np.ndarray], patch: int, known_percent: float
) -> None:
    train, test = houston
    leak = patch_leakage(np.flatnonzero(train.ravel()), np.flatnonzero(test.ravel()), train.shape, patch)
    assert round(100 * leak, 2) == known_percent


@pytest.mark.parametrize("patch", [5, 7, 9, 11])
def test_houston_spatial_blocks_has_zero_leakage_where_random_per_class_is_far_higher(
    houston: tuple[np.ndarray, np.ndarray], registered: SplitProtocol, patch: int
) -> None:
    train_map, test_map = houston
    scene = scene_from(train_map + test_map, train_map, test_map)
    split = split_of(scene, registered, "spatial-blocks", patch, val=0.1)
    train_all = np.concatenate([split.train, split.val])
    test = split.open_test()
    assert f"{100 * split.leakage:.2f}" == "0.00"
    assert leaked_by_dilation(train_all, test, scene.shape, patch) == 0
    # a random per-class split with the same training counts per class
    counts = split.class_counts(scene.labels, scene.num_classes)
    per_class = counts["train"] + counts["val"]
    rng = np.random.default_rng(0)
    labels = np.asarray(scene.labels).ravel()
    random_train = np.concatenate([
        rng.choice(np.flatnonzero(labels == c + 1), size=int(n), replace=False) for c, n in enumerate(per_class)
    ])
    random_test = np.setdiff1d(np.flatnonzero(labels > 0), random_train)
    random_leak = patch_leakage(random_train, random_test, scene.shape, patch)
    assert random_leak > 0.5  # datasets.md: ~95 % for the official counts at 7x7
    assert leaked_by_dilation(random_train, random_test, scene.shape, patch) == round(random_leak * random_test.size)


def test_houston_spatial_blocks_keeps_every_class_on_both_sides(
    houston: tuple[np.ndarray, np.ndarray], registered: SplitProtocol
) -> None:
    train_map, test_map = houston
    scene = scene_from(train_map + test_map)
    split = split_of(scene, registered, "spatial-blocks", 11)
    counts = split.class_counts(scene.labels, 15)
    assert np.all(counts["train"] > 0) and np.all(counts["test"] > 0)


# ----------------------------------------------------------------------------- construction


def test_registered_as_an_optional_argument_protocol_that_gets_the_patch_size(registered: SplitProtocol) -> None:
    assert registered.uses_patch_size
    assert not registered.takes_argument
    assert "guard" in registered.argument_help and registered.description


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    height=st.integers(6, 30),
    width=st.integers(6, 30),
    classes=st.integers(1, 3),
    block=st.integers(2, 6),
    patch=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_leakage_is_zero_by_construction_for_odd_and_even_windows(
    registered: SplitProtocol, height: int, width: int, classes: int, block: int, patch: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    # coherent regions: a coarse random label grid, upsampled, with a few holes
    coarse = rng.integers(0, classes + 1, size=(-(-height // 3), -(-width // 3)))
    labels = np.kron(coarse, np.ones((3, 3), dtype=np.int64))[:height, :width]
    if np.count_nonzero(labels) < 2:
        labels[0, 0], labels[-1, -1] = 1, 1
    scene = scene_from(labels)
    try:
        split = split_of(scene, registered, f"spatial-blocks:{block}", patch, seed=seed % 1000, val=0.2)
    except SplitError as exc:  # a class confined to one block, or eaten by the guard
        assert "has no training pixel with" in str(exc)
        return
    train_all = np.concatenate([split.train, split.val])
    test = split.open_test()
    assert split.leakage == 0.0
    # reference: no test pixel's window (the sampler's window, even sides included) holds a training pixel
    width_ = scene.shape[1]
    before, after = patch // 2, patch - 1 - patch // 2
    train_set = set(train_all.tolist())
    for t in test:
        r, c = divmod(int(t), width_)
        window = {rr * width_ + cc for rr in range(r - before, r + after + 1)
                  for cc in range(c - before, c + after + 1) if 0 <= rr < height and 0 <= cc < width}
        assert not window & train_set


def test_blocks_are_whole_and_the_test_set_does_not_depend_on_the_patch(registered: SplitProtocol) -> None:
    labels = stripes()
    scene = scene_from(labels)
    splits = {p: split_of(scene, registered, "spatial-blocks:4", p, seed=3) for p in (1, 3, 4, 5)}
    test = splits[1].open_test()
    block_id = (np.arange(24)[:, None] // 4 * 8 + np.arange(32)[None, :] // 4).ravel()
    in_test = np.zeros(labels.size, dtype=bool)
    in_test[test] = True
    for b in np.unique(block_id):  # a block is wholly test or wholly not test
        assert in_test[block_id == b].all() or not in_test[block_id == b].any()
    for p, split in splits.items():
        assert np.array_equal(split.open_test(), test), p
        assert split.leakage == 0.0
    # larger windows only remove training pixels, never add any
    sizes = [splits[p].train.size for p in (1, 3, 5)]
    assert sizes[0] > sizes[1] > sizes[2] > 0
    assert np.isin(splits[5].train, splits[3].train).all() and np.isin(splits[3].train, splits[1].train).all()


def test_patch_one_keeps_every_pixel_of_the_training_blocks(registered: SplitProtocol) -> None:
    scene = scene_from(stripes())
    split = split_of(scene, registered, "spatial-blocks:4", 1)
    assert split.train.size + split.num_test == scene.labels.size  # nothing dropped without a guard


@pytest.mark.parametrize("share", [0.2, 0.3, 0.5])
def test_each_class_gets_about_the_target_share(registered: SplitProtocol, share: float) -> None:
    scene = scene_from(stripes())
    split = split_of(scene, registered, f"spatial-blocks:4:train={share}", 1, seed=1)
    counts = split.class_counts(scene.labels, 4)
    totals = np.bincount(np.asarray(scene.labels).ravel(), minlength=5)[1:]
    # every block holds 16 pixels of one class, so the greedy rule lands within one block of the target
    assert np.all(np.abs(counts["train"] - share * totals) <= 16), (counts["train"], share * totals)


def test_the_guard_band_is_the_patch_radius(registered: SplitProtocol) -> None:
    # two classes side by side; with 8x8 blocks and patch 5 the training pixels are >= 3 columns from any test pixel
    labels = np.ones((16, 32), dtype=np.int64)
    labels[:, 16:] = 2
    scene = scene_from(labels)
    split = split_of(scene, registered, "spatial-blocks:8:train=0.5", 5, seed=0)
    test = split.open_test()
    train_rc = np.stack(np.divmod(split.train, 32), axis=1)
    test_rc = np.stack(np.divmod(test, 32), axis=1)
    chebyshev = np.abs(train_rc[:, None, :] - test_rc[None, :, :]).max(axis=2).min()
    assert chebyshev == 3  # radius 2 dropped; the nearest kept training pixel is just outside every 5x5 window


def test_same_seed_same_split_other_seed_other_blocks(registered: SplitProtocol) -> None:
    scene = scene_from(stripes(48, 64))
    a = split_of(scene, registered, "spatial-blocks:4", 3, seed=5)
    b = split_of(scene, registered, "spatial-blocks:4", 3, seed=5)
    c = split_of(scene, registered, "spatial-blocks:4", 3, seed=6)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.open_test(), b.open_test())
    assert not np.array_equal(a.open_test(), c.open_test())


def test_random_validation_is_carved_from_guarded_training_pixels(registered: SplitProtocol) -> None:
    scene = scene_from(stripes(48, 64))
    split = split_of(scene, registered, "spatial-blocks:8", 5, val=0.25, carve="random")
    no_val = split_of(scene, registered, "spatial-blocks:8", 5, val=0.0)
    assert split.val.size > 0 and split.val_carve == "random"
    assert np.array_equal(np.sort(np.concatenate([split.train, split.val])), no_val.train)
    assert split.leakage == 0.0 and leaked_by_dilation(split.val, split.open_test(), scene.shape, 5) == 0
    assert split.val_leakage > 0.9  # random validation pixels sit among training pixels


def test_spatial_blocks_carve_validation_spatially_by_default(registered: SplitProtocol) -> None:
    scene = scene_from(stripes(48, 64))
    split = split_of(scene, registered, "spatial-blocks:8", 5, val=0.25)
    no_val = split_of(scene, registered, "spatial-blocks:8", 5, val=0.0)
    assert split.val_carve == "spatial" and split.val.size > 0
    assert set(split.train) | set(split.val) <= set(no_val.train)  # carved from the guarded training pixels
    assert split.val_leakage == 0.0 and leaked_by_dilation(split.train, split.val, scene.shape, 5) == 0
    assert split.leakage == 0.0 and leaked_by_dilation(split.val, split.open_test(), scene.shape, 5) == 0


def test_an_explicit_guard_fixes_the_training_set_for_every_method(registered: SplitProtocol) -> None:
    scene = scene_from(stripes(48, 64))
    small, large = (split_of(scene, registered, "spatial-blocks:8:guard=7", p) for p in (3, 7))
    assert np.array_equal(small.train, large.train)
    assert small.leakage == large.leakage == 0.0
    beyond = split_of(scene, registered, "spatial-blocks:8:guard=3", 9)
    assert beyond.leakage > 0  # a window larger than the guard leaks, and the split says so
    assert beyond.leakage == patch_leakage(beyond.train, beyond.open_test(), scene.shape, 9)


def test_a_class_confined_to_one_block_is_a_clear_error(registered: SplitProtocol) -> None:
    labels = stripes(16, 16, 2)
    labels[:4, :4] = 3  # class 3 only in the first 4x4 block: training it would leave no test pixel
    with pytest.raises(SplitError) as info:
        split_of(scene_from(labels), registered, "spatial-blocks:4", 3)
    message = str(info.value)
    assert "class 3 ('c3')" in message and "16 labelled pixels" in message
    assert "4x4 blocks" in message and "too few blocks" in message and "spatial-blocks:2" in message


def test_the_guard_eating_a_class_is_a_clear_error(registered: SplitProtocol) -> None:
    labels = stripes(8, 8, 2)  # 4x4 blocks; a 9x9 window from any test block reaches every pixel
    with pytest.raises(SplitError, match="guard band for 9x9 windows"):
        split_of(scene_from(labels), registered, "spatial-blocks:4:train=0.5", 9)


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        (None, (int(SPATIAL_BLOCKS_DEFAULTS["block"]), SPATIAL_BLOCKS_DEFAULTS["train"], None)),
        ("16", (16, SPATIAL_BLOCKS_DEFAULTS["train"], None)),
        ("block=8:train=0.5", (8, 0.5, None)),
        ("24:guard=11", (24, SPATIAL_BLOCKS_DEFAULTS["train"], 11)),
        ("train=0.25:guard=5:block=12", (12, 0.25, 5)),
    ],
)
def test_argument_forms(argument: str | None, expected: tuple[int, float, int | None]) -> None:
    assert protocols._parse_spatial_blocks(argument) == expected


@pytest.mark.parametrize(
    ("argument", "bad"),
    [("0", "block='0'"), ("x", "block='x'"), ("16:train=1.5", "train='1.5'"), ("16:guard=0", "guard='0'"),
     ("16:size=3", "'size=3'"), ("16:16", "'16'"), ("train=0.2:train=0.3", "'train=0.3'")],
)
def test_bad_arguments_name_the_part_and_the_usage(registered: SplitProtocol, argument: str, bad: str) -> None:
    with pytest.raises(SplitError) as info:
        spatial_blocks_split(scene_from(stripes()), argument, np.random.default_rng(0), patch_size=3)
    message = str(info.value)
    assert f"spatial-blocks:{argument}" in message and bad in message
    assert "spatial-blocks:32:train=0.5:guard=11" in message


# ----------------------------------------------------------------------------- the harness side


@pytest.mark.parametrize("patch", [1, 2, 3, 4, 7])
def test_window_cover_is_the_union_of_the_leakage_windows(patch: int) -> None:
    rng = np.random.default_rng(patch)
    shape = (9, 11)
    centres = rng.choice(99, size=5, replace=False)
    cover = window_cover(centres, shape, patch).ravel()
    for pixel in range(99):
        # pixel is covered iff some centre's window holds it, i.e. a test pixel at the centre would leak
        leaks = [patch_leakage(np.array([pixel]), np.array([c]), shape, patch) > 0 for c in centres]
        assert cover[pixel] == any(leaks), pixel


def test_make_split_hands_the_patch_size_only_to_protocols_that_ask(registered: SplitProtocol) -> None:
    scene = scene_from(stripes())
    seen: list[int] = []

    def asks(scene: Scene, argument: str | None, rng: np.random.Generator, *, patch_size: int):
        seen.append(patch_size)
        return per_class_split(scene, "5", rng)

    def does_not(scene: Scene, argument: str | None, rng: np.random.Generator):
        return per_class_split(scene, "5", rng)

    make_split(scene, SplitSpec("asks"), SplitProtocol("asks", asks, uses_patch_size=True), 0, patch_size=7)
    make_split(scene, SplitSpec("plain"), SplitProtocol("plain", does_not), 0, patch_size=7)
    assert seen == [7]
