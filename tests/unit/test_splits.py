"""bench_core.splits: leakage against known facts, validation carving, make_split checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench_core import ConfigError, MethodSpec, Scene, SplitError, SplitProtocol, SplitSpec, TrainConfig
from bench_core.splits import (
    Split,
    carve_validation,
    carve_validation_spatial,
    make_split,
    patch_leakage,
    round_half_up,
)
from tests.conftest import SHARED, skip_or_fail_in_ci


HOUSTON = SHARED / "data" / "houston2013-labels"
HOUSTON_TR = HOUSTON / "2013_IEEE_GRSS_DF_Contest_Samples_TR.tif"
HOUSTON_VA = HOUSTON / "2013_IEEE_GRSS_DF_Contest_Samples_VA.tif"


def scene_from_labels(labels: np.ndarray, train: np.ndarray | None = None, test: np.ndarray | None = None) -> Scene:
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max())
    return Scene(
        name="toy",
        modalities={"hsi": np.zeros((1, *labels.shape), dtype=np.float32)},
        labels=labels,
        class_names=tuple(f"c{i}" for i in range(1, k + 1)),
        official_train=train,
        official_test=test,
    )


def protocol(name: str, make: Callable[..., tuple[np.ndarray, np.ndarray]], **kw: object) -> SplitProtocol:
    return SplitProtocol(name=name, make=make, **kw)  # type: ignore[arg-type]


def random_protocol(scene: Scene, argument: str | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Half of the labelled pixels at random for training."""
    labelled = rng.permutation(np.flatnonzero(np.asarray(scene.labels).ravel() > 0))
    half = labelled.size // 2
    return labelled[:half], labelled[half:]


def brute_force_leakage(train: np.ndarray, test: np.ndarray, shape: tuple[int, int], p: int) -> float:
    """Per-pixel reference: look at every pixel of every test pixel's window."""
    height, width = shape
    train_set = {int(i) for i in train}
    before, after = p // 2, p - 1 - p // 2
    hit = 0
    for t in test:
        r, c = divmod(int(t), width)
        found = False
        for rr in range(r - before, r + after + 1):
            for cc in range(c - before, c + after + 1):
                if 0 <= rr < height and 0 <= cc < width and rr * width + cc in train_set:
                    found = True
        hit += found
    return hit / len(test) if len(test) else 0.0


# ----------------------------------------------------------------------------- leakage


@pytest.fixture(scope="module")
def houston() -> tuple[np.ndarray, np.ndarray]:
    if not (HOUSTON_TR.is_file() and HOUSTON_VA.is_file()):
        skip_or_fail_in_ci(f"Houston2013 label maps not found in {HOUSTON} (the shared/ folder beside the repo)")
    from PIL import Image

    return np.array(Image.open(HOUSTON_TR)), np.array(Image.open(HOUSTON_VA))


def test_houston_maps_are_the_official_ones(houston: tuple[np.ndarray, np.ndarray]) -> None:
    train, test = houston
    assert train.shape == test.shape == (349, 1905)
    assert int(np.count_nonzero(train)) == 2832
    assert int(np.count_nonzero(test)) == 12197
    assert not np.any((train > 0) & (test > 0))


@pytest.mark.parametrize(("patch", "known_percent"), [(5, 3.0), (7, 6.7), (9, 10.8), (11, 15.0)])
def test_houston_official_split_leakage_matches_the_known_figures(
    houston: tuple[np.ndarray, np.ndarray], patch: int, known_percent: float
) -> None:
    train, test = houston
    leak = patch_leakage(np.flatnonzero(train.ravel()), np.flatnonzero(test.ravel()), train.shape, patch)
    assert round(100 * leak, 1) == known_percent


def test_make_split_reports_the_leakage_of_train_plus_val(houston: tuple[np.ndarray, np.ndarray]) -> None:
    train, test = houston
    scene = scene_from_labels(np.maximum(train, test), train=train, test=test)

    def official(scene: Scene, argument: str | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return np.flatnonzero(np.asarray(scene.official_train).ravel()), np.flatnonzero(
            np.asarray(scene.official_test).ravel()
        )

    split = make_split(scene, SplitSpec("official", val_fraction=0.2), protocol("official", official), 0, 7)
    assert split.val.size > 0
    assert round(100 * split.leakage, 1) == 6.7  # val pixels are still training-side pixels
    assert split.train.size + split.val.size == 2832 and split.num_test == 12197


def _method(kind: str, size: int) -> MethodSpec:
    return MethodSpec(name=f"toy-{kind}", build=lambda cfg, info: None, input_kind=kind,  # type: ignore[arg-type]
                      modalities=("hsi",), profiles={"paper": {}, "fast": {}}, patch_size=size)


def test_the_leakage_window_of_a_dense_method_is_2s_minus_1() -> None:
    train = TrainConfig()
    assert _method("patch", 9).leakage_window(train) == 9
    assert _method("dense", 32).leakage_window(train) == 63  # every crop covering a pixel reaches s - 1 away
    assert _method("pixel", 1).leakage_window(train) == 1


@pytest.mark.parametrize(("crop", "patch_window", "dense_window"), [(16, 25.65, 50.19), (32, 52.15, 81.27)])
def test_houston_official_leakage_for_dense_crops(
    houston: tuple[np.ndarray, np.ndarray], crop: int, patch_window: float, dense_window: float
) -> None:
    train, test = houston
    a, b = np.flatnonzero(train.ravel()), np.flatnonzero(test.ravel())
    assert round(100 * patch_leakage(a, b, train.shape, crop), 2) == patch_window  # what was reported before
    window = _method("dense", crop).leakage_window(TrainConfig())
    assert round(100 * patch_leakage(a, b, train.shape, window), 2) == dense_window


def test_spatial_blocks_guard_a_dense_method_with_its_whole_window(houston: tuple[np.ndarray, np.ndarray]) -> None:
    from bench_core.pipeline import make_cell_split
    from bench_core.plugins import load_plugins

    train, test = houston
    scene = scene_from_labels(np.maximum(train, test), train=train, test=test)
    blocks = load_plugins().splits.get("spatial-blocks")
    spec = SplitSpec.parse("spatial-blocks:32:train=0.5", val_fraction=0.0)
    window = _method("dense", 32).leakage_window(TrainConfig())
    # Guarding only the crop (the old behaviour) reported 0 % while half the test set lies within
    # reach of the training crops.
    crop_only = make_split(scene, spec, blocks, 0, patch_size=32)
    assert crop_only.leakage == 0.0
    assert round(100 * patch_leakage(crop_only.train, crop_only.open_test(), scene.shape, window), 2) == 49.93
    # With the whole window, 32-pixel blocks cannot keep every class: the error says so ...
    with pytest.raises(SplitError, match="63x63 windows"):
        make_cell_split(scene, spec, blocks, 0, window)
    # (on Houston2013 no block size keeps its compact class 3 for 32x32 crops); on a scene with
    # larger classes the guarded split's leakage really is 0 for the dense method.
    wide = scene_from_labels(_blobs(256, 256))
    split = make_cell_split(wide, SplitSpec.parse("spatial-blocks:64:train=0.5", val_fraction=0.0), blocks, 0, window)
    assert split.leakage == 0.0 and patch_leakage(split.train, split.open_test(), wide.shape, window) == 0.0


def test_patch_size_one_gives_zero_leakage_for_disjoint_sets() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.permutation(30 * 40)
    assert patch_leakage(pixels[:600], pixels[600:], (30, 40), 1) == 0.0


def test_leakage_of_one_train_pixel_is_its_neighbourhood() -> None:
    # 7x7 scene, train = centre pixel, test = all others: a 3x3 window reaches 8 of 48.
    centre = 3 * 7 + 3
    test = np.setdiff1d(np.arange(49), [centre])
    assert patch_leakage(np.array([centre]), test, (7, 7), 3) == pytest.approx(8 / 48)
    assert patch_leakage(np.array([centre]), test, (7, 7), 7) == pytest.approx(1.0)
    assert patch_leakage(np.array([0]), np.array([48]), (7, 7), 11) == pytest.approx(0.0)
    assert patch_leakage(np.array([0]), np.array([48]), (7, 7), 13) == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    patch=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_vectorised_leakage_equals_the_per_pixel_reference(height: int, width: int, patch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    role = rng.integers(0, 3, size=height * width)  # 0 unused, 1 train, 2 test
    train, test = np.flatnonzero(role == 1), np.flatnonzero(role == 2)
    expected = brute_force_leakage(train, test, (height, width), patch)
    assert patch_leakage(train, test, (height, width), patch) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_patch_leakage_rejects_bad_patch_sizes(bad: object) -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        patch_leakage(np.array([0]), np.array([1]), (2, 2), bad)  # type: ignore[arg-type]


def test_patch_leakage_rejects_out_of_range_indices() -> None:
    with pytest.raises(SplitError, match="expected 0..3"):
        patch_leakage(np.array([4]), np.array([1]), (2, 2), 3)


# ----------------------------------------------------------------------------- validation carving


def test_carve_validation_follows_the_per_class_rules() -> None:
    # class 1: 1 pixel, class 2: 2 pixels, class 3: 10 pixels, class 4: 5 pixels
    labels = np.array([1] + [2] * 2 + [3] * 10 + [4] * 5)
    train = np.arange(labels.size)
    keep, val = carve_validation(train, labels, 0.25, np.random.default_rng(0))
    val_counts = np.bincount(labels[val], minlength=5)[1:]
    keep_counts = np.bincount(labels[keep], minlength=5)[1:]
    # n=1 stays; n=2 -> max(1, round(0.5)) = 1 but keeps 1; n=10 -> round(2.5) = 3; n=5 -> round(1.25) = 1
    assert val_counts.tolist() == [0, 1, 3, 1]
    assert keep_counts.tolist() == [1, 1, 7, 4]


def test_carve_validation_with_fraction_zero_keeps_everything() -> None:
    labels = np.array([1, 1, 2, 2, 2])
    keep, val = carve_validation(np.array([4, 0, 2]), labels, 0.0, np.random.default_rng(0))
    assert keep.tolist() == [0, 2, 4] and val.size == 0


def test_carve_validation_rejects_a_bad_fraction() -> None:
    with pytest.raises(ConfigError, match="val_fraction = 1.0"):
        carve_validation(np.array([0, 1]), np.array([1, 1]), 1.0, np.random.default_rng(0))


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**31 - 1),
)
def test_carve_validation_partitions_the_training_pixels(counts: list[int], fraction: float, seed: int) -> None:
    labels = np.repeat(np.arange(1, len(counts) + 1), counts)
    rng = np.random.default_rng(seed)
    train = rng.permutation(labels.size)
    keep, val = carve_validation(train, labels, fraction, rng)
    assert np.array_equal(np.sort(np.concatenate([keep, val])), np.arange(labels.size))
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(val) > 0)
    for cls, n in enumerate(counts, start=1):
        n_val = int(np.count_nonzero(labels[val] == cls))
        if n >= 2 and fraction > 0:
            assert n_val == min(max(1, round_half_up(fraction * n)), n - 1)
        else:
            assert n_val == 0


# ----------------------------------------------------------------------------- make_split


@pytest.fixture
def toy_scene() -> Scene:
    labels = np.zeros((12, 15), dtype=np.int64)
    labels[:, :5] = 1
    labels[:, 5:10] = 2
    labels[:6, 10:] = 3
    return scene_from_labels(labels)


def test_same_seed_gives_the_same_split_and_other_seeds_differ(toy_scene: Scene) -> None:
    proto = protocol("half", random_protocol)
    spec = SplitSpec("half", val_fraction=0.2)
    a, b = make_split(toy_scene, spec, proto, 7), make_split(toy_scene, spec, proto, 7)
    c = make_split(toy_scene, spec, proto, 8)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert np.array_equal(a.open_test(), b.open_test())
    assert not np.array_equal(a.train, c.train)


@pytest.mark.slow
def test_the_seed_derivation_does_not_depend_on_python_hash_salting() -> None:
    code = (
        "import numpy as np; from bench_core.splits import derive_rngs; "
        "a, b = derive_rngs(5, 'per-class', '20'); print(a.integers(0, 2**62), b.integers(0, 2**62))"
    )
    outputs = set()
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1


def test_split_parts_are_disjoint_sorted_readonly_and_val_comes_from_train(toy_scene: Scene) -> None:
    split = make_split(toy_scene, SplitSpec("half", val_fraction=0.3), protocol("half", random_protocol), 1)
    test = split.open_test()
    labels = np.asarray(toy_scene.labels).ravel()
    for part in (split.train, split.val, test):
        assert np.all(np.diff(part) > 0) and np.all(labels[part] > 0)
        assert not part.flags.writeable
    assert not np.intersect1d(split.train, test).size and not np.intersect1d(split.val, test).size
    assert not np.intersect1d(split.train, split.val).size
    assert split.train.size + split.val.size + test.size == np.count_nonzero(labels)
    with pytest.raises(ValueError):
        test[0] = 0


def test_open_test_records_every_read_and_class_counts_does_not_open(toy_scene: Scene) -> None:
    split = make_split(toy_scene, SplitSpec("half", val_fraction=0.2), protocol("half", random_protocol), 0)
    counts = split.class_counts(toy_scene.labels)
    assert not split.test_opened and split.test_reads == 0
    labels = np.asarray(toy_scene.labels).ravel()
    test = split.open_test()
    split.open_test()
    assert split.test_opened and split.test_reads == 2
    for part, index in (("train", split.train), ("val", split.val), ("test", test)):
        expected = [int(np.count_nonzero(labels[index] == k)) for k in (1, 2, 3)]
        assert counts[part].tolist() == expected
    assert split.num_test == test.size
    assert counts["test"].sum() + counts["train"].sum() + counts["val"].sum() == np.count_nonzero(labels)


def test_class_counts_rejects_labels_of_another_scene(toy_scene: Scene) -> None:
    split = make_split(toy_scene, SplitSpec("half"), protocol("half", random_protocol), 0)
    with pytest.raises(SplitError, match="12x15"):
        split.class_counts(np.ones((3, 3), dtype=np.int64))


def test_split_is_immutable(toy_scene: Scene) -> None:
    split = make_split(toy_scene, SplitSpec("half"), protocol("half", random_protocol), 0)
    assert isinstance(split, Split)
    with pytest.raises(AttributeError):
        split.leakage = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ((np.array([0, 1]), np.array([2, 99999])), "expected 0..179"),
        ((np.array([0, 1]), np.array([2, 178])), "unlabelled"),
        ((np.array([0, 1, 1]), np.array([2])), "duplicate"),
        ((np.array([0, 1]), np.array([1, 2])), "both train and test"),
        ((np.array([0, 1]), np.array([], dtype=np.int64)), "empty test"),
        ((np.array([], dtype=np.int64), np.array([2])), "empty train"),
        ((np.array([0.0, 1.0]), np.array([2])), "integer"),
        (np.array([0, 1]), "tuple"),
    ],
)
def test_make_split_rejects_a_bad_protocol_result(toy_scene: Scene, result: object, message: str) -> None:
    # pixel 178 = row 11, col 13: in the unlabelled lower-right block
    proto = protocol("broken", lambda scene, argument, rng: result)
    with pytest.raises(SplitError, match=message) as info:
        make_split(toy_scene, SplitSpec("broken"), proto, 0)
    assert "'broken'" in str(info.value)


def test_make_split_needs_the_argument_a_protocol_takes(toy_scene: Scene) -> None:
    proto = protocol("per-n", random_protocol, takes_argument=True, argument_help="N: pixels per class")
    with pytest.raises(SplitError, match="needs an argument.*N: pixels per class"):
        make_split(toy_scene, SplitSpec("per-n"), proto, 0)


def test_make_split_rejects_a_spec_for_another_protocol(toy_scene: Scene) -> None:
    with pytest.raises(SplitError, match="'fraction'.*'half'"):
        make_split(toy_scene, SplitSpec("fraction", "0.1"), protocol("half", random_protocol), 0)


def test_make_split_rejects_a_negative_seed(toy_scene: Scene) -> None:
    with pytest.raises(ConfigError, match="seed = -1"):
        make_split(toy_scene, SplitSpec("half"), protocol("half", random_protocol), -1)


# ----------------------------------------------------------------------------- validation leakage and carves


def _blobs(height: int = 40, width: int = 40, classes: int = 3) -> np.ndarray:
    labels = np.zeros((height, width), dtype=np.int64)
    for k in range(classes):  # one wide band of training area per class
        labels[:, k * width // classes : (k + 1) * width // classes] = k + 1
    return labels


def test_random_validation_leaks_and_the_spatial_carve_does_not() -> None:
    labels = _blobs()
    scene = scene_from_labels(labels)
    everything = protocol("all", lambda scene, argument, rng: (np.flatnonzero(labels.ravel())[::2],
                                                               np.flatnonzero(labels.ravel())[1::2]))
    random = make_split(scene, SplitSpec("all", val_fraction=0.2, val_carve="random"), everything, 0, 5)
    spatial = make_split(scene, SplitSpec("all", val_fraction=0.2, val_carve="spatial"), everything, 0, 5)
    assert random.val_carve == "random" and random.val_leakage == 1.0  # every validation pixel has training neighbours
    assert spatial.val_carve == "spatial" and spatial.val_leakage == 0.0
    assert patch_leakage(spatial.train, spatial.val, scene.shape, 5) == 0.0
    assert "auto" == SplitSpec("all").val_carve
    assert make_split(scene, SplitSpec("all", val_fraction=0.2), everything, 0, 5).val_carve == "random"


def test_spatial_carve_takes_about_the_fraction_per_class_and_is_seeded() -> None:
    labels = _blobs(64, 64)
    train = np.flatnonzero(labels.ravel())
    a_train, a_val = carve_validation_spatial(train, labels, 0.25, np.random.default_rng(0), window=5)
    b_train, b_val = carve_validation_spatial(train, labels, 0.25, np.random.default_rng(0), window=5)
    _, c_val = carve_validation_spatial(train, labels, 0.25, np.random.default_rng(1), window=5)
    assert np.array_equal(a_val, b_val) and np.array_equal(a_train, b_train) and not np.array_equal(a_val, c_val)
    assert set(a_train).isdisjoint(a_val) and set(a_train) | set(a_val) <= set(train)
    flat = labels.ravel()
    for k in (1, 2, 3):
        share = np.count_nonzero(flat[a_val] == k) / np.count_nonzero(flat[train] == k)
        assert 0.1 <= share <= 0.4, (k, share)
        assert np.count_nonzero(flat[a_train] == k) > 0
    assert patch_leakage(a_train, a_val, labels.shape, 5) == 0.0


def test_a_class_the_guard_band_would_empty_keeps_its_training_pixels() -> None:
    labels = np.zeros((16, 16), dtype=np.int64)
    labels[:, :8] = 1
    labels[7:9, 8:10] = 2  # a 2x2 class: whatever goes to validation, the guard covers the rest
    train = np.flatnonzero(labels.ravel())
    kept, val = carve_validation_spatial(train, labels, 0.5, np.random.default_rng(0), window=5, block=1)
    assert np.count_nonzero(labels.ravel()[kept] == 2) > 0
    assert patch_leakage(kept, val, labels.shape, 5) > 0  # reported, not hidden


def test_bad_val_carve_is_refused() -> None:
    with pytest.raises(ConfigError, match="val_carve = 'blocks'"):
        SplitSpec("official", val_carve="blocks")
