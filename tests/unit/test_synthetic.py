"""The synthetic datasets: determinism, structure, spatial coherence, modality complementarity and context classes."""

from __future__ import annotations

import numpy as np
import pytest
from bench_plugins.datasets import synthetic
from bench_plugins.datasets.synthetic import (
    AUGSBURG_CLASSES,
    CLASS_MODELS,
    MATERIALS,
    PART_MODELS,
    PRESETS,
    SYNTHETIC_CLASSES,
    endmember_spectra,
    make_synthetic_scene,
)
from bench_plugins.datasets.synthetic import layout as synthetic_layout
from bench_plugins.datasets.synthetic.layout import CAR
from scipy import ndimage

from bench_core import ConfigError, DatasetContext, DatasetSpec, Scene, load_plugins


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


@pytest.mark.slow
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
    assert a.metadata["difficulty"] == b.metadata["difficulty"]


def test_the_registered_scene_is_the_default_arguments_with_seed_0(scene: Scene) -> None:
    again = make_synthetic_scene(**PRESETS["synthetic"])
    assert again.metadata["seed"] == 0 and again.metadata["generator_parameters"]["class_areas"] == "quota"
    for key in scene.modalities:
        assert np.array_equal(scene.modalities[key], again.modalities[key])
    assert np.array_equal(scene.labels, again.labels) and np.array_equal(scene.official_train, again.official_train)


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
    assert scene.palette is not None and len(scene.palette) == 8


def test_labels_and_official_maps(scene: Scene) -> None:
    labels, train, test = flat(scene)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.min() == 0 and labels.max() == 8
    assert set(np.unique(labels[train])) == set(range(1, 9))  # every class has training pixels
    assert set(np.unique(labels[test])) == set(range(1, 9))
    assert not np.intersect1d(train, test).size
    assert np.array_equal(np.union1d(train, test), np.flatnonzero(labels > 0))  # disjoint and covering
    # The maps carry the class labels, like the real datasets' train/test images.
    assert np.array_equal(np.asarray(scene.official_train).ravel()[train], labels[train])
    assert 0.03 <= train.size / np.count_nonzero(labels) <= 0.08


@pytest.mark.slow
def test_augsburg_preset_has_augsburgs_exact_shape(augsburg: Scene) -> None:
    assert augsburg.shape == (332, 485)
    assert augsburg.bands == {"hsi": 180, "sar": 4}
    assert augsburg.class_names == AUGSBURG_CLASSES
    assert augsburg.metadata["sar_bands"] == ["VV", "VH", "HH", "HV"]
    # Independent cell draws, as before the quota existed: the preset's arrays did not change.
    assert augsburg.metadata["generator_parameters"]["class_areas"] == "random"
    labels, train, test = flat(augsburg)
    assert set(np.unique(labels)) == set(range(8))
    assert np.array_equal(np.union1d(train, test), np.flatnonzero(labels > 0))
    assert 0.03 <= train.size / np.count_nonzero(labels) <= 0.08


def test_default_class_list_keeps_the_old_six_first_and_adds_the_context_classes() -> None:
    assert SYNTHETIC_CLASSES == (
        "grass", "tree", "road", "building-low", "building-high", "water", "orchard", "parking",
    )
    assert CLASS_MODELS["orchard"].items == "crown" and CLASS_MODELS["parking"].items == "car"
    assert CLASS_MODELS["road"].items == "car"  # roads carry a few cars too


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
        ({"class_areas": "even"}, "class_areas = 'even'"),
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


@pytest.mark.slow
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
    for cls in range(1, len(scene.class_names) + 1):
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
    # Flat classes: height cannot tell them apart (a parking lot's median pixel is asphalt too).
    flat_medians = [median[name] for name in ("grass", "road", "water", "parking")]
    assert max(flat_medians) - min(flat_medians) < 0.05


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


# ----------------------------------------------------------------------------- context classes and budget


def window_features(scene: Scene, size: int = 7) -> np.ndarray:
    """(N, 3C) per-pixel features plus their mean and std over a ``size`` x ``size`` window."""
    stacked = np.concatenate([np.asarray(a, dtype=np.float64) for a in scene.modalities.values()])
    mean = ndimage.uniform_filter(stacked, size=(1, size, size), mode="reflect")
    square = ndimage.uniform_filter(stacked**2, size=(1, size, size), mode="reflect")
    out = np.concatenate([stacked, mean, np.sqrt(np.maximum(square - mean**2, 0.0))])
    return out.reshape(out.shape[0], -1).T


def separability(scene: Scene, data: np.ndarray, positive: tuple[str, ...], negative: tuple[str, ...]) -> float:
    """Balanced accuracy of a linear classifier of ``positive`` vs ``negative`` classes, fitted and
    scored on every labelled pixel of the two groups (how separable the groups are, not a benchmark)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(scene.labels).ravel()
    index = {name: k for k, name in enumerate(scene.class_names, start=1)}
    pos = np.isin(labels, [index[n] for n in positive])
    both = pos | np.isin(labels, [index[n] for n in negative])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, class_weight="balanced"))
    model.fit(data[both], pos[both])
    return float(balanced_accuracy_score(pos[both], model.predict(data[both])))


def test_context_classes_are_ambiguous_per_pixel_and_a_7x7_window_resolves_them(scene: Scene) -> None:
    pixel, window = features(scene, "both"), window_features(scene)
    for positive, negative in ((("orchard",), ("grass", "tree")), (("parking",), ("road",))):
        alone = separability(scene, pixel, positive, negative)
        around = separability(scene, window, positive, negative)
        assert alone < 0.9, f"{positive} vs {negative}: per-pixel balanced accuracy {alone:.3f}"
        assert around > 0.88 and around >= alone + 0.1, f"{positive}: window {around:.3f}, pixel {alone:.3f}"


def test_a_per_pixel_nearest_mean_classifier_confuses_the_context_classes(scene: Scene) -> None:
    # Even with every class's true mean (over all its labelled pixels; standardised HSI + LiDAR),
    # the nearest mean of one pixel gets the context classes mostly wrong, the others mostly right.
    labels = np.asarray(scene.labels).ravel()
    labelled = labels > 0
    data, truth = features(scene, "both")[labelled], labels[labelled]
    data = (data - data.mean(axis=0)) / (data.std(axis=0) + 1e-9)
    classes = range(1, len(scene.class_names) + 1)
    means = np.stack([data[truth == c].mean(axis=0) for c in classes])
    predicted = 1 + np.argmin(((data[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    index = {name: c for c, name in enumerate(scene.class_names, start=1)}
    context = np.isin(truth, [index["orchard"], index["parking"]])
    on_context = float(np.mean(predicted[context] == truth[context]))
    elsewhere = float(np.mean(predicted[~context] == truth[~context]))
    assert on_context < 0.65 and elsewhere > on_context + 0.1, (on_context, elsewhere)
    # ... and its mistakes there are the look-alikes: orchard as grass or tree, parking as road.
    look_alike = ((truth == index["orchard"]) & np.isin(predicted, [index["grass"], index["tree"]])) | (
        (truth == index["parking"]) & (predicted == index["road"])
    )
    wrong = context & (predicted != truth)
    assert look_alike.sum() > 0.25 * context.sum() and look_alike.sum() > 0.6 * wrong.sum()


def test_x_only_classes_share_their_spectra_and_flat_classes_their_heights(scene: Scene) -> None:
    labels = np.asarray(scene.labels).ravel()
    hsi = features(scene, "hsi")
    height = np.asarray(scene.modalities["lidar"]).ravel()
    index = {name: c for c, name in enumerate(scene.class_names, start=1)}
    low, high = labels == index["building-low"], labels == index["building-high"]
    pooled = np.sqrt((hsi[low].var(axis=0) + hsi[high].var(axis=0)) / 2)
    # Building classes: HSI means within a standard deviation in every band, heights far apart.
    assert np.max(np.abs(hsi[low].mean(axis=0) - hsi[high].mean(axis=0)) / pooled) < 1.0
    spread = np.sqrt((height[low].var() + height[high].var()) / 2)
    assert (np.median(height[high]) - np.median(height[low])) / spread > 2.0
    # Grass and road: one height, far-apart spectra.
    grass, road = labels == index["grass"], labels == index["road"]
    pooled = np.sqrt((hsi[grass].var(axis=0) + hsi[road].var(axis=0)) / 2)
    assert np.max(np.abs(hsi[grass].mean(axis=0) - hsi[road].mean(axis=0)) / pooled) > 3.0


def test_difficulty_budget_is_recorded_and_holds_for_any_seed(scene: Scene) -> None:
    for s in (scene, make_synthetic_scene(seed=1), make_synthetic_scene(seed=2)):
        budget = s.metadata["difficulty"]
        assert set(budget) == {"context_class_pixels", "shared_look_pixels", "per_pixel_ceiling_oa",
                               "hsi_per_pixel_ceiling_oa"}
        assert 15.0 <= budget["context_class_pixels"] <= 40.0
        assert 65.0 <= budget["per_pixel_ceiling_oa"] <= 88.0
        assert budget["hsi_per_pixel_ceiling_oa"] < budget["per_pixel_ceiling_oa"]  # roofs need the LiDAR
        labels = np.asarray(s.labels)
        share = np.bincount(labels.ravel(), minlength=9)[1:] / np.count_nonzero(labels)
        assert share.min() >= 0.02, dict(zip(s.class_names, share.round(3)))
    # A per-pixel classifier cannot read the arrangement: it stays near the look ceiling (a few
    # points above it at most, from the sensor blur that mixes items into their neighbours).
    assert overall_accuracy(scene, "both") < scene.metadata["difficulty"]["per_pixel_ceiling_oa"] + 10.0


def test_orchard_crowns_have_tree_size_and_a_regular_spacing() -> None:
    rng = np.random.default_rng(7)
    crown, trees = synthetic_layout._orchard(rng, np.ones((60, 60), dtype=bool))
    assert trees.min() == 0 and np.all(trees >= 0)  # every pixel belongs to a tree's patch
    parts, n = ndimage.label(crown)
    areas = np.bincount(parts.ravel())[1:]
    inner = [i + 1 for i in range(n) if not _touches_border(parts == i + 1)]
    assert 0.15 <= crown.mean() <= 0.5
    assert np.all((areas[np.asarray(inner) - 1] >= 4) & (areas[np.asarray(inner) - 1] <= 16))
    centres = np.array(ndimage.center_of_mass(crown, parts, inner))
    gaps = np.sort(np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1)), axis=1)[:, 1]
    lo, hi = synthetic_layout.ORCHARD_SPACING
    assert lo - 0.8 <= np.median(gaps) <= hi + 0.8


def test_parking_holds_rows_of_car_size_items_and_roads_a_few() -> None:
    rng = np.random.default_rng(3)
    cars, numbers, patches = synthetic_layout._parking(rng, np.ones((60, 60), dtype=bool))
    assert np.all(patches >= 0) and np.all(numbers[cars] >= 0) and np.all(numbers[~cars] == -1)
    parts, n = ndimage.label(cars)
    areas = np.array([np.count_nonzero(parts == i + 1) for i in range(n) if not _touches_border(parts == i + 1)])
    assert np.mean(areas == CAR[0] * CAR[1]) > 0.9  # whole cars, 2 x 4 pixels, apart from each other
    assert 0.15 <= cars.mean() <= 0.4
    strip = np.zeros((40, 80), dtype=bool)
    strip[18:22] = True
    on_road, _ = synthetic_layout._road_cars(np.random.default_rng(0), strip, horizontal=True)
    assert on_road.any() and not (on_road & ~strip).any()
    assert on_road.sum() / strip.sum() < 0.3


def test_items_look_like_other_classes() -> None:
    assert PART_MODELS["crown"] == CLASS_MODELS["tree"]
    same_look = ("mixture", "variability", "height", "roughness", "gaps", "sar", "sar_texture")
    for context, ground in (("orchard", "grass"), ("parking", "road")):
        for field in same_look:
            assert getattr(CLASS_MODELS[context], field) == getattr(CLASS_MODELS[ground], field), (context, field)


def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
