"""Endmember spectra, the class and item models, and the presets of the synthetic scenes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

MATERIALS: tuple[str, ...] = (
    "vegetation", "soil", "asphalt", "concrete", "roof-tile", "metal", "water", "shadow",
)
"""The endmember materials, in the order of :func:`endmember_spectra`'s rows."""

SAR_BANDS: tuple[str, ...] = ("VV", "VH", "HH", "HV")
NORMALISATION = "per-band min-max over the scene"
Layout = Literal["region", "road", "river", "building", "orchard", "parking"]


def gauss(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _sigmoid(x: np.ndarray, mu: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x - mu) / width))


def endmember_spectra(wavelengths_nm: np.ndarray) -> np.ndarray:
    """Reflectance (0..1) of each of :data:`MATERIALS` at the given wavelengths: (M, B).

    Smooth, physically shaped curves: vegetation has a green peak, red absorption, the
    red edge near 715 nm and leaf-water absorptions at 1450 / 1940 nm; soil rises
    towards the SWIR; asphalt is dark; concrete bright and flat with a carbonate
    feature; red roof tile rises at 580 nm; metal is bright with an 850 nm dip; water is
    dark beyond the visible; shadow is uniformly dark.
    """
    lam = np.asarray(wavelengths_nm, dtype=np.float64)
    ramp = (lam - 400.0) / 2100.0
    moisture = 1.0 - 0.6 * gauss(lam, 1450, 70) - 0.7 * gauss(lam, 1940, 90)
    vegetation = (
        0.03 + 0.06 * gauss(lam, 550, 30) - 0.015 * gauss(lam, 670, 25)
        + 0.45 * _sigmoid(lam, 715, 15) * (1.0 - 0.45 * _sigmoid(lam, 1350, 120))
        * (1.0 - 0.3 * _sigmoid(lam, 2050, 120))
    ) * (moisture - 0.08 * gauss(lam, 980, 40) - 0.12 * gauss(lam, 1200, 50))
    soil = (0.08 + 0.27 * _sigmoid(lam, 800, 350)) * (
        1.0 - 0.2 * gauss(lam, 1420, 50) - 0.25 * gauss(lam, 1920, 60) - 0.12 * gauss(lam, 2200, 30)
    )
    asphalt = 0.05 + 0.06 * ramp + 0.01 * gauss(lam, 1700, 200) - 0.012 * gauss(lam, 2300, 30)
    concrete = (0.18 + 0.14 * _sigmoid(lam, 500, 60) - 0.04 * ramp) * (
        1.0 - 0.08 * gauss(lam, 1420, 50) - 0.1 * gauss(lam, 1920, 60) - 0.15 * gauss(lam, 2330, 30)
    )
    tile = (0.06 + 0.28 * _sigmoid(lam, 580, 25) - 0.05 * gauss(lam, 870, 90) + 0.05 * ramp) * (
        1.0 - 0.06 * gauss(lam, 1420, 50) - 0.08 * gauss(lam, 1920, 60)
    )
    metal = 0.5 - 0.1 * ramp - 0.06 * gauss(lam, 850, 120)
    water = 0.006 + 0.045 * gauss(lam, 480, 70) + 0.02 * gauss(lam, 570, 40) + 0.01 * gauss(lam, 700, 30)
    shadow = 0.02 + 0.01 * gauss(lam, 800, 300)
    rows = {
        "vegetation": vegetation, "soil": soil, "asphalt": asphalt, "concrete": concrete,
        "roof-tile": tile, "metal": metal, "water": water, "shadow": shadow,
    }
    return np.clip(np.stack([rows[m] for m in MATERIALS]), 0.002, 1.0)


@dataclass(frozen=True)
class ClassModel:
    """How one land-cover class looks in every modality.

    Attributes:
        layout: ``region`` (Voronoi regions), ``road`` (straight strips), ``river``
            (a meandering band), ``building`` (rectangles in urban parcels), or the
            context layouts ``orchard`` (Voronoi regions holding a grid of tree crowns)
            and ``parking`` (Voronoi regions holding rows of parked cars).
        weight: relative area of the class (regions and buildings).
        mixture: mean abundance per material (sums to about 1).
        variability: log-std of the per-pixel and per-region abundance perturbations.
        height: range (m) of an object's height above the terrain.
        roughness: per-pixel height roughness (m), e.g. a canopy surface.
        gaps: share of pixels where the LiDAR reaches the ground (canopy gaps, yards).
        sar: mean backscatter in dB: (VV, VH, HH - VV).
        sar_texture: per-region std (dB) of the backscatter.
        colour: RGB for classification maps.
        items: what the layout scatters over this class's ground, by its name in
            :data:`PART_MODELS`: ``"crown"`` (an orchard's tree crowns) or ``"car"`` (cars
            in a parking lot's stalls or, sparse, on a road); ``None`` for nothing. Items
            take their own appearance; the pixels between them take this model's.
    """

    layout: Layout
    weight: float
    mixture: Mapping[str, float]
    variability: float
    height: tuple[float, float]
    roughness: float
    gaps: float
    sar: tuple[float, float, float]
    sar_texture: float
    colour: tuple[int, int, int]
    items: str | None = None


_WATER_MIX = {"water": 0.9, "vegetation": 0.05, "soil": 0.05}
_ROOF_MIX = {"roof-tile": 0.55, "concrete": 0.35, "metal": 0.10}
_DISTRICT_MIX = {"roof-tile": 0.38, "vegetation": 0.30, "asphalt": 0.16, "concrete": 0.16}

_GRASS = ClassModel("region", 3.0, {"vegetation": 0.74, "soil": 0.26}, 0.35,
                    (0.0, 0.3), 0.08, 0.0, (-12, -19, 0), 1.5, (120, 200, 80))
# Trees share the grass spectrum up to a little soil and shadow; height tells them apart.
_TREE = ClassModel("region", 1.6, {"vegetation": 0.80, "soil": 0.12, "shadow": 0.08}, 0.35,
                   (6.0, 14.0), 2.0, 0.08, (-8, -13, 0), 1.5, (20, 110, 30))
_ROAD = ClassModel("road", 1.0, {"asphalt": 0.85, "concrete": 0.10, "soil": 0.05}, 0.25,
                   (0.0, 0.2), 0.05, 0.0, (-17, -25, -1), 1.0, (150, 150, 150), items="car")
# A car: painted metal, glass and its shadow, 1.3-1.9 m high; each car its own colour. (An
# item's layout, weight and colour are not used.)
_CAR = ClassModel("region", 0.0, {"metal": 0.45, "roof-tile": 0.20, "concrete": 0.20, "shadow": 0.15}, 0.8,
                  (1.3, 1.9), 0.1, 0.0, (-2, -12, 3), 1.5, (0, 0, 0))

PART_MODELS: Mapping[str, ClassModel] = MappingProxyType({"crown": _TREE, "car": _CAR})
"""The appearance of the items a layout scatters over a class's ground (see ``ClassModel.items``).
An orchard's crown is a tree pixel in every modality, a parked car is a car on a road."""

CLASS_MODELS: Mapping[str, ClassModel] = MappingProxyType({
    # -- an urban scene with a LiDAR DSM
    "grass": _GRASS,
    "tree": _TREE,
    "road": _ROAD,
    # The two roof classes have one material mix; only their heights differ.
    "building-low": ClassModel("building", 1.0, _ROOF_MIX, 0.3,
                               (3.0, 7.0), 0.3, 0.0, (-3, -11, 3), 2.0, (230, 140, 60)),
    "building-high": ClassModel("building", 0.8, _ROOF_MIX, 0.3,
                                (12.0, 25.0), 0.4, 0.0, (0, -9, 4), 2.0, (170, 40, 40)),
    "water": ClassModel("river", 1.0, _WATER_MIX, 0.3,
                        (-0.6, -0.4), 0.03, 0.0, (-22, -28, -1), 1.0, (40, 90, 220)),
    # Context classes: every pixel looks like a pixel of another class, the arrangement decides.
    # An orchard is grass (its ground) with a regular grid of tree crowns; a parking lot is a
    # road's asphalt with rows of parked cars (roads carry a few cars too).
    "orchard": replace(_GRASS, layout="orchard", weight=2.4, colour=(210, 180, 60), items="crown"),
    "parking": replace(_ROAD, layout="parking", weight=2.2, colour=(110, 70, 150), items="car"),
    # -- Augsburg's classes (HSI + SAR); pairs share spectra but not backscatter
    "Forest": ClassModel("region", 2.5, {"vegetation": 0.72, "shadow": 0.23, "soil": 0.05}, 0.3,
                         (14.0, 26.0), 3.0, 0.05, (-7, -12, 0), 1.5, (0, 100, 0)),
    "Residential": ClassModel("region", 2.0, _DISTRICT_MIX, 0.45,
                              (3.0, 10.0), 3.0, 0.3, (-4, -12, 2), 1.5, (255, 130, 60)),
    "Industrial": ClassModel("region", 0.8, {"metal": 0.45, "concrete": 0.35, "asphalt": 0.20}, 0.35,
                             (6.0, 14.0), 2.0, 0.2, (1, -7, 3), 2.0, (160, 160, 160)),
    "Low plants": ClassModel("region", 3.5, {"vegetation": 0.62, "soil": 0.38}, 0.45,
                             (0.0, 0.8), 0.2, 0.0, (-13, -20, 0), 1.5, (170, 230, 90)),
    "Allotment": ClassModel("region", 0.6, {"vegetation": 0.60, "soil": 0.36, "roof-tile": 0.04}, 0.45,
                            (0.5, 3.0), 1.5, 0.4, (-7, -13, 1), 1.5, (230, 200, 120)),
    "Commercial": ClassModel("region", 0.7, {"roof-tile": 0.36, "vegetation": 0.28, "asphalt": 0.18,
                                             "concrete": 0.18}, 0.45,
                             (8.0, 20.0), 3.0, 0.2, (3, -7, 3), 1.5, (200, 50, 200)),
    "Water": ClassModel("river", 0.8, _WATER_MIX, 0.3,
                        (-0.6, -0.4), 0.03, 0.0, (-22, -28, -1), 1.0, (30, 60, 200)),
})
"""Every class the generator knows, by name; pick any of them with ``classes=``."""

BACKGROUND = ClassModel("region", 1.0, {"soil": 0.6, "vegetation": 0.4}, 0.4,
                         (0.0, 0.5), 0.2, 0.0, (-11, -18, 0), 1.5, (0, 0, 0))
"""Unlabelled ground between buildings when no region class is asked for."""

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "grass", "tree", "road", "building-low", "building-high", "water", "orchard", "parking",
)
AUGSBURG_CLASSES: tuple[str, ...] = (
    "Forest", "Residential", "Industrial", "Low plants", "Allotment", "Commercial", "Water",
)

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "synthetic": MappingProxyType({
        "height": 80, "width": 80, "hsi_bands": 32, "aux": "lidar", "classes": SYNTHETIC_CLASSES,
        "region_size": 16, "gsd": 1.0,
    }),
    "synthetic-augsburg": MappingProxyType({
        "height": 332, "width": 485, "hsi_bands": 180, "aux": "sar", "classes": AUGSBURG_CLASSES,
        "region_size": 26, "gsd": 30.0, "unlabelled_share": 0.35, "train_fraction": 0.04,
        "class_areas": "random",
    }),
})
"""Keyword arguments of :func:`make_synthetic_scene` for each registered dataset."""
