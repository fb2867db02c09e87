"""The built-in split protocols: official, per-class:N, fraction:p."""

from __future__ import annotations

import numpy as np
import pytest

from bench_core import Scene, SplitError, SplitProtocol, SplitSpec, load_plugins
from bench_core.splits import make_split, round_half_up
from bench_plugins import protocols


@pytest.fixture(scope="module")
def registered() -> dict[str, SplitProtocol]:
    host = load_plugins(extra={"protocols": protocols}, entry_points=False)
    assert not host.errors
    return {name: host.splits.get(name) for name in host.splits.names()}


def make_scene(with_maps: bool = True) -> Scene:
    """Classes of 40, 25 and 12 labelled pixels, unlabelled pixels between them."""
    labels = np.zeros((10, 12), dtype=np.int64)
    labels[:4, :10] = 1          # 40
    labels[5:10, :5] = 2         # 25
    labels[5:8, 7:11] = 3        # 12
    train = np.zeros_like(labels)
    test = np.zeros_like(labels)
    if with_maps:
        train[:2, :3] = labels[:2, :3]       # 6 pixels of class 1
        train[5, :2] = 2                     # 2 pixels of class 2
        train[5, 7] = 3                      # 1 pixel of class 3
        train[9, 11] = 1                     # an unlabelled pixel in the map: ignored
        test[(labels > 0) & (train == 0)] = labels[(labels > 0) & (train == 0)]
        test[4, 11] = 2                      # unlabelled again: ignored
    return Scene(
        name="toy",
        modalities={"hsi": np.zeros((2, 10, 12), dtype=np.float32)},
        labels=labels,
        class_names=("field", "forest", "lake"),
        official_train=train if with_maps else None,
        official_test=test if with_maps else None,
    )


def per_class_counts(scene: Scene, index: np.ndarray) -> list[int]:
    return np.bincount(np.asarray(scene.labels).ravel()[index], minlength=4)[1:].tolist()


def test_the_builtin_protocols_are_registered(registered: dict[str, SplitProtocol]) -> None:
    assert set(registered) == {"official", "per-class", "fraction", "spatial-blocks"}
    assert not registered["official"].takes_argument
    assert registered["per-class"].takes_argument and registered["fraction"].takes_argument
    assert all(p.description for p in registered.values())


def test_official_uses_the_labelled_pixels_of_each_map(registered: dict[str, SplitProtocol]) -> None:
    scene = make_scene()
    train, test = registered["official"].make(scene, None, np.random.default_rng(0))
    labels = np.asarray(scene.labels).ravel()
    assert per_class_counts(scene, train) == [6, 2, 1]
    assert per_class_counts(scene, test) == [34, 23, 11]
    assert 9 * 12 + 11 not in train and 4 * 12 + 11 not in test
    assert np.all(labels[train] > 0) and np.all(labels[test] > 0)


def test_official_is_the_same_under_every_seed(registered: dict[str, SplitProtocol]) -> None:
    scene = make_scene()
    a = make_split(scene, SplitSpec("official", val_fraction=0.0), registered["official"], 0)
    b = make_split(scene, SplitSpec("official", val_fraction=0.0), registered["official"], 9)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.open_test(), b.open_test())


def test_official_without_maps_names_the_dataset_and_the_alternatives(registered: dict[str, SplitProtocol]) -> None:
    with pytest.raises(SplitError, match="'toy'.*per-class:N.*fraction:p"):
        registered["official"].make(make_scene(with_maps=False), None, np.random.default_rng(0))


def test_official_takes_no_argument(registered: dict[str, SplitProtocol]) -> None:
    with pytest.raises(SplitError, match="official:3"):
        registered["official"].make(make_scene(), "3", np.random.default_rng(0))


def test_official_rejects_overlapping_maps(registered: dict[str, SplitProtocol]) -> None:
    scene = make_scene()
    test = np.asarray(scene.official_test).copy()
    test[0, 0] = 1  # also in the train map
    bad = Scene(name="overlap", modalities=scene.modalities, labels=scene.labels, class_names=scene.class_names,
                official_train=scene.official_train, official_test=test)
    with pytest.raises(SplitError, match="'overlap': 1 pixel"):
        registered["official"].make(bad, None, np.random.default_rng(0))


def test_per_class_takes_n_pixels_of_every_class(registered: dict[str, SplitProtocol]) -> None:
    scene = make_scene()
    train, test = registered["per-class"].make(scene, "5", np.random.default_rng(1))
    assert per_class_counts(scene, train) == [5, 5, 5]
    assert per_class_counts(scene, test) == [35, 20, 7]
    assert not np.intersect1d(train, test).size
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.flatnonzero(np.asarray(scene.labels).ravel()))


def test_per_class_draws_depend_on_the_generator(registered: dict[str, SplitProtocol]) -> None:
    scene = make_scene()
    make = registered["per-class"].make
    a = make(scene, "5", np.random.default_rng(1))[0]
    assert np.array_equal(a, make(scene, "5", np.random.default_rng(1))[0])
    assert not np.array_equal(a, make(scene, "5", np.random.default_rng(2))[0])


def test_per_class_names_the_class_that_is_too_small(registered: dict[str, SplitProtocol]) -> None:
    pattern = r"'per-class:12'.*class 3 \('lake'\) has only 12 .*more than 12.*smaller N or 'fraction:p'"
    with pytest.raises(SplitError, match=pattern):
        registered["per-class"].make(make_scene(), "12", np.random.default_rng(0))


@pytest.mark.parametrize("argument", ["abc", "0", "-2", "1.5", ""])
def test_per_class_rejects_a_bad_argument(registered: dict[str, SplitProtocol], argument: str) -> None:
    with pytest.raises(SplitError, match=f"{argument!r}.*per-class:N"):
        registered["per-class"].make(make_scene(), argument, np.random.default_rng(0))


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.95])
def test_fraction_takes_a_share_of_every_class(registered: dict[str, SplitProtocol], p: float) -> None:
    scene = make_scene()
    train, test = registered["fraction"].make(scene, str(p), np.random.default_rng(0))
    expected = [min(max(1, round_half_up(p * n)), n - 1) for n in (40, 25, 12)]
    assert per_class_counts(scene, train) == expected
    assert per_class_counts(scene, test) == [n - e for n, e in zip((40, 25, 12), expected)]


@pytest.mark.parametrize("argument", ["2", "0", "1", "abc", "nan", "-0.1", ""])
def test_fraction_rejects_a_bad_argument(registered: dict[str, SplitProtocol], argument: str) -> None:
    with pytest.raises(SplitError, match=f"{argument!r}.*fraction:p"):
        registered["fraction"].make(make_scene(), argument, np.random.default_rng(0))


@pytest.mark.parametrize("text", ["per-class", "fraction"])
def test_a_missing_argument_is_reported_by_make_split(registered: dict[str, SplitProtocol], text: str) -> None:
    spec = SplitSpec.parse(text)
    with pytest.raises(SplitError, match=f"'{text}' needs an argument"):
        make_split(make_scene(), spec, registered[text], 0)


@pytest.mark.parametrize("text", ["official", "per-class:5", "fraction:0.2"])
def test_every_protocol_passes_make_split_validation(registered: dict[str, SplitProtocol], text: str) -> None:
    spec = SplitSpec.parse(text, val_fraction=0.2)
    scene = make_scene()
    split = make_split(scene, spec, registered[spec.protocol], 3, patch_size=3)
    labels = np.asarray(scene.labels).ravel()
    everything = np.concatenate([split.train, split.val, split.open_test()])
    assert np.unique(everything).size == everything.size
    assert np.all(labels[everything] > 0)
    assert 0.0 <= split.leakage <= 1.0
