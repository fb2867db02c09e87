"""The generator: :func:`make_synthetic_scene` turns a layout into HSI, LiDAR or SAR and labels."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from bench_core import ConfigError, Scene
from bench_plugins.datasets.synthetic.layout import (
    TERRAIN_STD_M,
    SceneLayout,
    make_layout,
    minmax,
    official_maps,
    smooth_field,
)
from bench_plugins.datasets.synthetic.materials import (
    AUGSBURG_CLASSES,
    BACKGROUND,
    CLASS_MODELS,
    MATERIALS,
    NORMALISATION,
    PART_MODELS,
    SAR_BANDS,
    SYNTHETIC_CLASSES,
    ClassModel,
    endmember_spectra,
    gauss,
)

# ----------------------------------------------------------------------------- the generator


def make_synthetic_scene(
    *,
    seed: int = 0,
    height: int = 80,
    width: int = 80,
    hsi_bands: int = 32,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    aux: Literal["lidar", "sar"] = "lidar",
    noise: float = 0.012,
    sar_looks: float = 4.0,
    region_size: float = 16.0,
    unlabelled_share: float = 0.15,
    train_fraction: float = 0.05,
    gsd: float = 1.0,
    class_areas: Literal["quota", "random"] = "quota",
    name: str = "synthetic",
) -> Scene:
    """Generate a realistic HSI + LiDAR/SAR scene with labels and official train/test maps.

    Args:
        seed: the only source of randomness; the same arguments give identical arrays.
        height, width: scene size in pixels.
        hsi_bands: HSI bands, evenly spaced over 400-2500 nm.
        num_classes: take the first ``num_classes`` of the default class list
            (:data:`SYNTHETIC_CLASSES` for LiDAR, :data:`AUGSBURG_CLASSES` for SAR).
        classes: explicit class names from :data:`CLASS_MODELS` (overrides the default list).
        aux: the X modality: ``"lidar"`` (a 1-band DSM) or ``"sar"`` (VV, VH, HH, HV in dB).
        noise: std of the additive HSI noise in reflectance units (before normalisation).
        sar_looks: equivalent number of looks of the gamma speckle (smaller = noisier).
        region_size: typical side of a region in pixels.
        unlabelled_share: share of regions left unannotated.
        train_fraction: share of each class's labelled pixels in the official train map.
        gsd: ground sampling distance in metres (metadata only).
        class_areas: how Voronoi cells are dealt to the region classes: ``"quota"`` (each
            cell to the class furthest below its area share, so class areas follow the
            weights for every seed) or ``"random"`` (independent draws; the
            ``synthetic-augsburg`` preset keeps them, and so its published arrays).
        name: the scene's dataset name.
    """
    from scipy import ndimage

    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"make_synthetic_scene: seed = {seed!r}; expected a non-negative integer")
    chosen = _resolve_classes(classes, num_classes, aux)
    _check_args(height, width, hsi_bands, noise, sar_looks, region_size, unlabelled_share, train_fraction)
    if class_areas not in ("quota", "random"):
        raise ConfigError(f"make_synthetic_scene: class_areas = {class_areas!r}; expected 'quota' or 'random'")
    models = [CLASS_MODELS[c] for c in chosen]
    shape = (height, width)
    root = np.random.SeedSequence([int(seed), 0x5EED])
    layout_rng, spectra_rng, aux_rng, split_rng = (np.random.default_rng(s) for s in root.spawn(4))

    layout = make_layout(layout_rng, shape, models, region_size, unlabelled_share, class_areas)
    table = [BACKGROUND, *models, *PART_MODELS.values()]  # row 0 = unlabelled background
    cover = layout.appearance.reshape(-1)  # what each pixel looks like (a class or an item)
    objects = layout.objects.reshape(-1)
    n_pixels = cover.size

    # --- HSI: linear mixing of perturbed endmembers.
    wavelengths = np.linspace(400.0, 2500.0, hsi_bands)
    endmembers = endmember_spectra(wavelengths)
    knots = np.linspace(400.0, 2500.0, 8)
    endmembers *= 1.0 + 0.04 * np.stack(
        [np.interp(wavelengths, knots, spectra_rng.standard_normal(knots.size)) for _ in MATERIALS]
    )
    mixture = np.array([[m.mixture.get(mat, 0.0) for mat in MATERIALS] for m in table])
    variability = np.array([m.variability for m in table])
    region_z = spectra_rng.standard_normal((layout.num_objects, len(MATERIALS)))
    pixel_z = spectra_rng.standard_normal((n_pixels, len(MATERIALS)))
    abundance = mixture[cover] * np.exp(variability[cover, None] * (0.6 * region_z[objects] + 0.8 * pixel_z))
    abundance /= abundance.sum(axis=1, keepdims=True)
    brightness = (1.0 + 0.07 * smooth_field(spectra_rng, shape, region_size).reshape(-1)
                  + 0.05 * spectra_rng.standard_normal(n_pixels))
    weighted = (abundance * np.clip(brightness, 0.5, None)[:, None]).astype(np.float32)
    hsi = (endmembers.T.astype(np.float32) @ weighted.T).reshape(hsi_bands, *shape)
    hsi = ndimage.gaussian_filter(hsi, sigma=(0.0, 0.6, 0.6), mode="nearest")  # sensor PSF
    band_noise = noise * (1.0 + 1.5 * (gauss(wavelengths, 1400, 40) + gauss(wavelengths, 1900, 50))
                          + 0.5 * (gauss(wavelengths, 400, 30) + gauss(wavelengths, 2500, 60)))
    hsi += band_noise[:, None, None] * spectra_rng.standard_normal(hsi.shape, dtype=np.float32)

    # --- X modality.
    if aux == "lidar":
        x_name, x_data = "lidar", _dsm(aux_rng, layout, table, shape, region_size)
    else:
        x_name, x_data = "sar", _sar(aux_rng, layout, table, shape, sar_looks)

    labels = np.where(layout.labelled, layout.cover, 0).astype(np.int64)
    official_train, official_test = official_maps(split_rng, labels, chosen, train_fraction, min_train=10)
    parameters = {
        "seed": int(seed), "height": int(height), "width": int(width), "hsi_bands": int(hsi_bands),
        "classes": list(chosen), "aux": aux, "noise": noise, "sar_looks": sar_looks,
        "region_size": region_size, "unlabelled_share": unlabelled_share,
        "train_fraction": train_fraction, "gsd": gsd, "class_areas": class_areas,
    }
    metadata: dict[str, Any] = {
        "source": "generated by bench_plugins.datasets.synthetic.make_synthetic_scene (no download)",
        "generator_parameters": parameters,
        "seed": int(seed),
        "sensor": "synthetic",
        "gsd_m": gsd,
        "wavelengths_nm": [round(float(w), 3) for w in wavelengths],
        "materials": list(MATERIALS),
        "normalisation": NORMALISATION,
        "x_modality": ("lidar: DSM in m (terrain + object heights)" if aux == "lidar"
                       else f"sar: {', '.join(SAR_BANDS)} backscatter in dB, gamma speckle L={sar_looks}"),
    }
    if aux == "sar":
        metadata["sar_bands"] = list(SAR_BANDS)
    metadata["difficulty"] = _difficulty(layout, table, models, aux)
    return Scene(
        name=name,
        modalities={"hsi": minmax(hsi), x_name: minmax(x_data)},
        labels=labels,
        class_names=tuple(chosen),
        official_train=official_train,
        official_test=official_test,
        palette=tuple(m.colour for m in models),
        metadata=metadata,
    )


def _difficulty(
    layout: SceneLayout, table: Sequence[ClassModel], models: Sequence[ClassModel], aux: str
) -> dict[str, float]:
    """The scene's difficulty budget, in percent of its labelled pixels.

    A pixel's *look* is the appearance model it was drawn from (a class's, or an item's such
    as an orchard crown or a car). Pixels of two classes that share a look have the same
    distribution in every modality, so no classifier that sees one pixel at a time can tell
    them apart; only the arrangement around them can. Returned keys:

    - ``context_class_pixels``: pixels of the classes with a context layout (orchard, parking).
    - ``shared_look_pixels``: pixels whose look (HSI and X) is shared by several classes.
    - ``per_pixel_ceiling_oa``: the OA of the best rule that knows every pixel's look but not
      its surroundings (majority class of each look); an upper bound for per-pixel classifiers
      up to the sensor blur, which mixes a little of an item's neighbours into its edge pixels.
    - ``hsi_per_pixel_ceiling_oa``: the same with the HSI look only (classes that differ only
      in the X modality merge).
    """
    labelled = layout.labelled
    cover, look = layout.cover[labelled], layout.appearance[labelled]
    total = max(int(cover.size), 1)

    def hsi_key(m: ClassModel) -> tuple[Any, ...]:
        return (tuple(sorted(m.mixture.items())), m.variability)

    def x_key(m: ClassModel) -> tuple[Any, ...]:
        return (m.height, m.roughness, m.gaps) if aux == "lidar" else (m.sar, m.sar_texture)

    def budget(key: Callable[[ClassModel], tuple[Any, ...]]) -> tuple[float, float]:
        groups: dict[tuple[Any, ...], int] = {}
        group_of = np.array([groups.setdefault(key(m), len(groups)) for m in table])
        counts = np.zeros((len(groups), len(models) + 1))
        np.add.at(counts, (group_of[look], cover), 1)
        shared = np.count_nonzero(counts, axis=1) > 1
        return 100.0 * counts.max(axis=1).sum() / total, 100.0 * counts[shared].sum() / total

    ceiling, shared = budget(lambda m: (hsi_key(m), x_key(m)))
    hsi_ceiling, _ = budget(hsi_key)
    context = [c for c, m in enumerate(models, start=1) if m.layout in ("orchard", "parking")]
    return {
        "context_class_pixels": round(100.0 * float(np.isin(cover, context).sum()) / total, 2),
        "shared_look_pixels": round(float(shared), 2),
        "per_pixel_ceiling_oa": round(float(ceiling), 2),
        "hsi_per_pixel_ceiling_oa": round(float(hsi_ceiling), 2),
    }


def _resolve_classes(classes: Sequence[str] | None, num_classes: int | None, aux: str) -> tuple[str, ...]:
    if aux not in ("lidar", "sar"):
        raise ConfigError(f"aux = {aux!r}: expected 'lidar' (a DSM band) or 'sar' (4 backscatter bands)")
    if classes is None:
        default = SYNTHETIC_CLASSES if aux == "lidar" else AUGSBURG_CLASSES
        k = len(default) if num_classes is None else num_classes
        if not isinstance(k, int) or not 2 <= k <= len(default):
            raise ConfigError(
                f"num_classes = {num_classes!r}: expected 2..{len(default)} for aux={aux!r} "
                f"(the first of {list(default)}); name others with classes=[...]"
            )
        return default[:k]
    chosen = tuple(classes)
    unknown = [c for c in chosen if c not in CLASS_MODELS]
    if unknown or len(set(chosen)) != len(chosen) or len(chosen) < 2:
        raise ConfigError(
            f"classes = {list(chosen)!r}: expected at least 2 distinct names from {sorted(CLASS_MODELS)}"
            + (f"; unknown: {unknown}" if unknown else "")
        )
    if num_classes is not None and num_classes != len(chosen):
        raise ConfigError(
            f"num_classes = {num_classes} but {len(chosen)} classes were named; give one or make them agree"
        )
    return chosen


def _check_args(
    height: int, width: int, hsi_bands: int, noise: float, sar_looks: float,
    region_size: float, unlabelled_share: float, train_fraction: float,
) -> None:
    checks = [
        ("height", height, isinstance(height, (int, np.integer)) and height >= 16, "an integer >= 16"),
        ("width", width, isinstance(width, (int, np.integer)) and width >= 16, "an integer >= 16"),
        ("hsi_bands", hsi_bands, isinstance(hsi_bands, (int, np.integer)) and hsi_bands >= 4, "an integer >= 4"),
        ("noise", noise, noise >= 0, "a non-negative reflectance std"),
        ("sar_looks", sar_looks, sar_looks > 0, "a positive number of looks"),
        ("region_size", region_size, region_size >= 4, "at least 4 pixels"),
        ("unlabelled_share", unlabelled_share, 0 <= unlabelled_share < 1, "0 <= value < 1"),
        ("train_fraction", train_fraction, 0 < train_fraction < 0.5, "0 < value < 0.5"),
    ]
    for field_name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"make_synthetic_scene: {field_name} = {value!r}; expected {expected}")


def _dsm(
    rng: np.random.Generator, layout: SceneLayout, table: Sequence[ClassModel], shape: tuple[int, int],
    region_size: float,
) -> np.ndarray:
    """(1, H, W) DSM in metres: terrain + per-object heights + roughness and gaps + noise."""
    cover = layout.appearance.reshape(-1)
    objects = layout.objects.reshape(-1)
    n = cover.size
    terrain = TERRAIN_STD_M * smooth_field(rng, shape, 4 * region_size).reshape(-1)
    lo = np.array([m.height[0] for m in table])
    hi = np.array([m.height[1] for m in table])
    # One height per object (a building, a stand of trees), drawn in its class's range.
    object_class = np.zeros(layout.num_objects, dtype=np.int64)
    object_class[objects] = cover
    base = rng.uniform(lo[object_class], hi[object_class])
    rough = np.array([m.roughness for m in table])[cover]
    surface = (0.7 * smooth_field(rng, shape, 3.0).reshape(-1) + 0.5 * rng.standard_normal(n))
    dsm = terrain + base[objects] + rough * surface
    gaps = rng.random(n) < np.array([m.gaps for m in table])[cover]
    dsm[gaps] = terrain[gaps] + np.abs(0.3 * rng.standard_normal(int(gaps.sum())))
    dsm += 0.1 * rng.standard_normal(n)
    return dsm.reshape(1, *shape)


def _sar(
    rng: np.random.Generator, layout: SceneLayout, table: Sequence[ClassModel], shape: tuple[int, int],
    looks: float,
) -> np.ndarray:
    """(4, H, W) VV/VH/HH/HV backscatter in dB with per-region texture and gamma speckle."""
    from scipy import ndimage

    cover = layout.appearance.reshape(-1)
    objects = layout.objects.reshape(-1)
    sar = np.array([m.sar for m in table], dtype=np.float64)
    vv, vh, hh_minus_vv = sar[:, 0], sar[:, 1], sar[:, 2]
    means = np.stack([vv, vh, vv + hh_minus_vv, vh])[:, cover]  # (4, N) dB; HV ~ VH (reciprocity)
    texture = np.array([m.sar_texture for m in table])
    region_offset = rng.standard_normal(layout.num_objects)[objects] * texture[cover]
    means = means + region_offset + 0.5 * rng.standard_normal(means.shape)
    reflectivity = 10.0 ** (means.reshape(4, *shape) / 10.0)
    reflectivity = ndimage.gaussian_filter(reflectivity, sigma=(0.0, 0.8, 0.8), mode="nearest")
    speckled = reflectivity * rng.gamma(looks, 1.0 / looks, size=reflectivity.shape)
    return np.clip(10.0 * np.log10(np.maximum(speckled, 1e-6)), -40.0, 15.0)
