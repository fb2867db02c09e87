"""The synthetic datasets: determinism, structure, spatial coherence and modality complementarity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bench_core import ConfigError, DatasetContext, DatasetSpec, Scene, load_plugins
from bench_plugins.datasets import synthetic
from bench_plugins.datasets.synthetic import (
    AUGSBURG_CLASSES,
    MATERIALS,
    SYNTHETIC_CLASSES,
    endmember_spectra,
    make_synthetic_scene,
)


@pytest.fixture(scope="module")
def specs() -> dict[str, DatasetSpec]:
    host = load_plugins(extra={"synthetic": synthetic}, entry_points=False)
    assert not host.errors
    return {name: host.datasets.get(name) for name in host.datasets.names()}


@pytest.fixture(scope="module")
def scene(specs: dict[str, DatasetSpec]) -> Scene:
    return specs["synthetic"].load(DatasetContext())


@pytest.fixture(scope="module")
def augsburg(specs: dict[str, DatasetSpec]) -> Scene:
    return specs["synthetic-augsburg"].load(DatasetContext())


def flat(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(scene.labels).ravel()
    return (
        labels,
        np.flatnonzero(np.asarray(scene.official_train).ravel() > 0),
        np.flatnonzero(np.asarray(scene.official_test).ravel() > 0),
    )


def features(scene: Scene, which: str) -> np.ndarray:
    """(N, C) per-pixel features: "hsi", "x" (the other modality) or "both"."""
    hsi = np.asarray(scene.modalities["hsi"]).reshape(scene.bands["hsi"], -1).T
    aux = scene.inputs_for(("x",))["x"]
    x = np.asarray(aux).reshape(aux.shape[0], -1).T
    return {"hsi": hsi, "x": x, "both": np.hstack([hsi, x])}[which]


def overall_accuracy(scene: Scene, which: str) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels, train, test = flat(scene)
    data = features(scene, which)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=2000))
    model.fit(data[train], labels[train])
    return 100.0 * float(np.mean(model.predict(data[test]) == labels[test]))


# ----------------------------------------------------------------------------- registration


def test_both_datasets_are_registered_with_provenance(specs: dict[str, DatasetSpec]) -> None:
    assert set(specs) == {"synthetic", "synthetic-augsburg"}
    for spec in specs.values():
        assert spec.recommended_profile == "fast"
        assert spec.licence == "CC0-1.0 (generated)" and spec.description
        assert not spec.files  # nothing to download
    assert specs["synthetic"].modalities == ("hsi", "lidar")
    assert specs["synthetic-augsburg"].modalities == ("hsi", "sar")


def test_the_registered_facts_match_the_loaded_scenes(specs: dict[str, DatasetSpec], scene: Scene,
                                                      augsburg: Scene) -> None:
    for name, loaded in (("synthetic", scene), ("synthetic-augsburg", augsburg)):
        spec = specs[name]
        assert loaded.name == name
        assert loaded.shape == spec.shape
        assert loaded.class_names == spec.class_names
        assert tuple(loaded.modalities) == spec.modalities


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_arrays_and_another_seed_does_not() -> None:
    a, b, c = make_synthetic_scene(seed=0), make_synthetic_scene(seed=0), make_synthetic_scene(seed=1)
    for key in a.modalities:
        assert np.array_equal(a.modalities[key], b.modalities[key])
        assert not np.array_equal(a.modalities[key], c.modalities[key])
    for attr in ("labels", "official_train", "official_test"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr))
    assert not np.array_equal(a.labels, c.labels)


# ----------------------------------------------------------------------------- structure


def test_default_scene_shapes_dtypes_and_normalisation(scene: Scene) -> None:
    assert scene.shape == (80, 80)
    assert scene.bands == {"hsi": 32, "lidar": 1}
    assert scene.class_names == SYNTHETIC_CLASSES
    for array in scene.modalities.values():
        assert array.dtype == np.float32
        per_band = array.reshape(array.shape[0], -1)
        assert np.allclose(per_band.min(axis=1), 0.0) and np.allclose(per_band.max(axis=1), 1.0)
    assert scene.metadata["normalisation"] == "per-band min-max over the scene"
    assert len(scene.metadata["wavelengths_nm"]) == 32
    assert scene.metadata["seed"] == 0
    assert scene.palette is not None and len(scene.palette) == 6


def test_labels_and_official_maps(scene: Scene) -> None:
    labels, train, test = flat(scene)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() == 0 and labels.max() == 6
    assert set(np.unique(labels[train])) == set(range(1, 7))  # every class has training pixels
    assert set(np.unique(labels[test])) == set(range(1, 7))
    assert not np.intersect1d(train, test).size
    assert np.array_equal(np.union1d(train, test), np.flatnonzero(labels > 0))  # disjoint and covering
    # The maps carry the class labels, like the real datasets' train/test images.
    assert np.array_equal(np.asarray(scene.official_train).ravel()[train], labels[train])
    assert 0.03 <= train.size / np.count_nonzero(labels) <= 0.08


def test_augsburg_preset_has_augsburgs_exact_shape(augsburg: Scene) -> None:
    assert augsburg.shape == (332, 485)
    assert augsburg.bands == {"hsi": 180, "sar": 4}
    assert augsburg.class_names == AUGSBURG_CLASSES
    assert augsburg.metadata["sar_bands"] == ["VV", "VH", "HH", "HV"]
    labels, train, test = flat(augsburg)
    assert set(np.unique(labels)) == set(range(0, 8))
    assert np.array_equal(np.union1d(train, test), np.flatnonzero(labels > 0))
    assert 0.03 <= train.size / np.count_nonzero(labels) <= 0.08


def test_num_classes_and_explicit_classes() -> None:
    four = make_synthetic_scene(num_classes=4, height=48, width=48)
    assert four.class_names == SYNTHETIC_CLASSES[:4]
    assert set(np.unique(four.labels)) == set(range(5))
    mixed = make_synthetic_scene(classes=("grass", "road", "Water"), aux="sar", height=48, width=64, hsi_bands=8)
    assert mixed.bands == {"hsi": 8, "sar": 4} and mixed.class_names == ("grass", "road", "Water")
    assert set(np.unique(mixed.labels)) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aux": "radar"}, "aux = 'radar'"),
        ({"seed": -1}, "seed = -1"),
        ({"num_classes": 1}, "num_classes = 1"),
        ({"num_classes": 9}, "num_classes = 9"),
        ({"classes": ("grass", "lava")}, "unknown: \\['lava'\\]"),
        ({"classes": ("grass", "road"), "num_classes": 3}, "num_classes = 3 but 2"),
        ({"height": 8}, "height = 8"),
        ({"noise": -1.0}, "noise = -1.0"),
        ({"train_fraction": 0.0}, "train_fraction = 0.0"),
    ],
)
def test_bad_generator_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_synthetic_scene(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- realism


def test_endmembers_have_physical_shapes() -> None:
    lam = np.array([480.0, 550.0, 670.0, 850.0, 1450.0, 1650.0, 2200.0])
    spectra = dict(zip(MATERIALS, endmember_spectra(lam)))
    veg, water = spectra["vegetation"], spectra["water"]
    assert veg[3] > 4 * veg[2]  # red edge: NIR far above red
    assert veg[1] > veg[0] and veg[1] > veg[2]  # green peak
    assert veg[4] < veg[5]  # leaf-water absorption at 1450 nm
    assert water[0] > water[3] and water[3] < 0.02  # water is dark in the NIR
    assert spectra["concrete"].min() > spectra["asphalt"].max()


def test_class_regions_are_spatially_coherent(scene: Scene, augsburg: Scene) -> None:
    for s in (scene, augsburg):
        labels = np.asarray(s.labels)
        same, total = 0, 0
        for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
            both = (a > 0) & (b > 0)
            same += int(np.count_nonzero(both & (a == b)))
            total += int(np.count_nonzero(both))
        share = np.bincount(labels[labels > 0]) / np.count_nonzero(labels)
        iid_expectation = float(np.sum(share**2))
        assert same / total > 0.9
        assert same / total > iid_expectation + 0.4


def test_official_training_pixels_come_in_a_few_compact_blobs(scene: Scene) -> None:
    labels, train, _ = flat(scene)
    rng = np.random.default_rng(0)
    for cls in range(1, 7):
        members = train[labels[train] == cls]
        mask = np.zeros(labels.size, dtype=bool)
        mask[members] = True
        blobs = ndimage.label(mask.reshape(scene.shape), structure=np.ones((3, 3)))[1]
        scattered = np.zeros(labels.size, dtype=bool)
        scattered[rng.choice(np.flatnonzero(labels == cls), size=members.size, replace=False)] = True
        random_blobs = ndimage.label(scattered.reshape(scene.shape), structure=np.ones((3, 3)))[1]
        assert blobs <= 10, f"class {cls}: {blobs} training blobs"
        assert blobs < random_blobs


def test_lidar_heights_separate_what_the_spectra_cannot(scene: Scene) -> None:
    labels = np.asarray(scene.labels).ravel()
    height = np.asarray(scene.modalities["lidar"]).ravel()
    median = {name: float(np.median(height[labels == k])) for k, name in enumerate(scene.class_names, 1)}
    assert median["building-high"] > median["building-low"] > median["grass"]
    assert median["tree"] > median["grass"]
    assert abs(median["grass"] - median["road"]) < 0.05  # flat classes: height cannot tell them apart


def test_fusion_beats_either_modality_with_lidar(scene: Scene) -> None:
    hsi, x, both = (overall_accuracy(scene, w) for w in ("hsi", "x", "both"))
    assert hsi < 95.0, f"HSI alone reaches {hsi:.1f} % OA"
    assert both >= max(hsi, x) + 3.0, f"fused {both:.1f} vs HSI {hsi:.1f}, LiDAR {x:.1f}"


def test_fusion_beats_either_modality_with_sar() -> None:
    # Augsburg's classes and SAR on a smaller scene, to keep the test fast.
    small = make_synthetic_scene(height=96, width=128, hsi_bands=48, aux="sar", region_size=16)
    hsi, x, both = (overall_accuracy(small, w) for w in ("hsi", "x", "both"))
    assert hsi < 95.0, f"HSI alone reaches {hsi:.1f} % OA"
    assert both >= max(hsi, x) + 3.0, f"fused {both:.1f} vs HSI {hsi:.1f}, SAR {x:.1f}"
