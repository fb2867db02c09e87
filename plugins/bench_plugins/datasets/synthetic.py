"""The embedded default datasets: realistic multimodal scenes generated from a seed.

``synthetic`` (80 x 80, HSI 32 bands + LiDAR DSM, 8 urban classes) is the default
dataset of ``bench run``; ``synthetic-augsburg`` has the exact shape of the Augsburg
scene (332 x 485, HSI 180 bands + SAR 4 bands, Augsburg's 7 classes) for performance
work. Nothing is downloaded; the same seed always gives the same arrays.

How a scene is made (:func:`make_synthetic_scene`):

1. **Layout.** A domain-warped Voronoi partition gives spatially coherent regions
   (fields, forests, districts); rivers are meandering bands, roads straight strips,
   buildings rectangles on lots inside "urban parcel" regions. Cells are dealt to the
   region classes by area quota (``class_areas="quota"``), so that every seed gets about
   the same class areas. Region pixels at class boundaries and a share of whole regions
   stay unlabelled, as in hand-drawn ground truth.
2. **Context classes.** Some classes are made of items that look like other classes'
   pixels, and only their arrangement tells them apart (``ClassModel.items``): an
   *orchard* is grass with a rotated regular grid of tree crowns (spacing 5-6.5 px,
   crowns of 9-13 px, a few missing), a *parking* lot is road asphalt with double rows of
   stalls (3 x 5 px) facing aisles (4-6 px), three quarters of them holding a car (2 x 4 px);
   roads carry a few cars too. A crown pixel is a tree pixel and a car is a car in every
   modality, so a per-pixel classifier cannot separate orchard from grass and tree, nor
   parking from road; a window of 7 px or more sees the arrangement.
3. **HSI.** Smooth endmember reflectance curves over 400-2500 nm (vegetation with its
   red edge and water absorptions, soil, asphalt, concrete, roof tile, metal, water,
   shadow) are linearly mixed with the abundances of each pixel's appearance (its class,
   or its item). Within-class variability comes from per-object and per-pixel abundance
   perturbations and a per-pixel brightness scaling; a small spatial blur (sensor PSF)
   mixes boundary pixels; band-dependent Gaussian noise (stronger in the atmospheric
   absorption bands) is added.
4. **X modality.** A LiDAR DSM (terrain + object heights, canopy roughness and gaps,
   sensor noise) or 4-band SAR backscatter (VV/VH/HH/HV means, per-region texture,
   multiplicative gamma speckle, stored in dB).
5. **Complementarity.** Some classes differ only in the X modality (two roof classes
   of one material and different heights; Residential vs Commercial and Low plants vs
   Allotment share their spectra but not their backscatter) and others only in the
   HSI (grass, road and water are all flat), so neither modality alone reaches the
   fused accuracy.
6. **Official split.** A few compact training blobs per class (about 5 % of the
   labelled pixels), every other labelled pixel in test.

Every modality is normalised per band to [0, 1] (min-max over the scene), float32. The
scene's difficulty budget (share of context-class pixels, the per-pixel OA ceiling) is
in ``metadata["difficulty"]`` (see :func:`_difficulty` and docs/protocols.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from bench_core import ConfigError, DatasetContext, DatasetSpec, Scene, hookimpl

__all__ = [
    "AUGSBURG_CLASSES",
    "CLASS_MODELS",
    "MATERIALS",
    "PART_MODELS",
    "PRESETS",
    "SYNTHETIC_CLASSES",
    "ClassModel",
    "bench_register_datasets",
    "endmember_spectra",
    "make_synthetic_scene",
]

MATERIALS: tuple[str, ...] = (
    "vegetation", "soil", "asphalt", "concrete", "roof-tile", "metal", "water", "shadow",
)
"""The endmember materials, in the order of :func:`endmember_spectra`'s rows."""

SAR_BANDS: tuple[str, ...] = ("VV", "VH", "HH", "HV")
NORMALISATION = "per-band min-max over the scene"
Layout = Literal["region", "road", "river", "building", "orchard", "parking"]


def _gauss(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
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
    moisture = 1.0 - 0.6 * _gauss(lam, 1450, 70) - 0.7 * _gauss(lam, 1940, 90)
    vegetation = (
        0.03 + 0.06 * _gauss(lam, 550, 30) - 0.015 * _gauss(lam, 670, 25)
        + 0.45 * _sigmoid(lam, 715, 15) * (1.0 - 0.45 * _sigmoid(lam, 1350, 120))
        * (1.0 - 0.3 * _sigmoid(lam, 2050, 120))
    ) * (moisture - 0.08 * _gauss(lam, 980, 40) - 0.12 * _gauss(lam, 1200, 50))
    soil = (0.08 + 0.27 * _sigmoid(lam, 800, 350)) * (
        1.0 - 0.2 * _gauss(lam, 1420, 50) - 0.25 * _gauss(lam, 1920, 60) - 0.12 * _gauss(lam, 2200, 30)
    )
    asphalt = 0.05 + 0.06 * ramp + 0.01 * _gauss(lam, 1700, 200) - 0.012 * _gauss(lam, 2300, 30)
    concrete = (0.18 + 0.14 * _sigmoid(lam, 500, 60) - 0.04 * ramp) * (
        1.0 - 0.08 * _gauss(lam, 1420, 50) - 0.1 * _gauss(lam, 1920, 60) - 0.15 * _gauss(lam, 2330, 30)
    )
    tile = (0.06 + 0.28 * _sigmoid(lam, 580, 25) - 0.05 * _gauss(lam, 870, 90) + 0.05 * ramp) * (
        1.0 - 0.06 * _gauss(lam, 1420, 50) - 0.08 * _gauss(lam, 1920, 60)
    )
    metal = 0.5 - 0.1 * ramp - 0.06 * _gauss(lam, 850, 120)
    water = 0.006 + 0.045 * _gauss(lam, 480, 70) + 0.02 * _gauss(lam, 570, 40) + 0.01 * _gauss(lam, 700, 30)
    shadow = 0.02 + 0.01 * _gauss(lam, 800, 300)
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

_BACKGROUND = ClassModel("region", 1.0, {"soil": 0.6, "vegetation": 0.4}, 0.4,
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


# ----------------------------------------------------------------------------- helpers


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std random field varying over about ``scale`` pixels (cubic upsampling)."""
    from scipy import ndimage

    height, width = shape
    scale = max(float(scale), 1.0)
    coarse = rng.standard_normal((int(np.ceil(height / scale)) + 3, int(np.ceil(width / scale)) + 3))
    fine = ndimage.zoom(coarse, scale, order=3, mode="nearest")
    off = int(scale)
    field = fine[off : off + height, off : off + width]
    return (field - field.mean()) / (field.std() + 1e-12)


def _minmax(array: np.ndarray) -> np.ndarray:
    """Per-band min-max to [0, 1] over the scene, float32; a constant band becomes 0."""
    flat = array.reshape(array.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    out = (flat - lo) / np.where(span > 0, span, 1.0)
    return out.reshape(array.shape).astype(np.float32)


@dataclass(frozen=True)
class _Layout:
    cover: np.ndarray       # (H, W) class 1..K of every pixel, 0 = unlabelled background
    appearance: np.ndarray  # (H, W) row of the appearance table: the cover, or K + 1 + i for PART_MODELS[i]
    objects: np.ndarray     # (H, W) object id (region, road segment, river, building, tree, patch, car)
    labelled: np.ndarray    # (H, W) bool, the pixels the ground truth annotates
    num_objects: int


_REGION_LIKE = ("region", "orchard", "parking")
"""Layouts whose classes are assigned whole Voronoi cells."""


def _lines(
    rng: np.random.Generator, shape: tuple[int, int], count: int, width: float
) -> list[np.ndarray]:
    """``count`` straight strips of ``width`` pixels through the scene, mostly axis-aligned.

    Even-numbered strips run along the rows (horizontal), odd-numbered ones along the columns.
    """
    height, w = shape
    rows, cols = np.mgrid[0:height, 0:w].astype(np.float64)
    out = []
    for i in range(count):
        angle = (np.pi / 2) * (i % 2) + rng.normal(0.0, 0.12)
        r0, c0 = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * w
        # Distance to the line through (r0, c0) with direction (sin, cos).
        dist = np.abs((rows - r0) * np.cos(angle) - (cols - c0) * np.sin(angle))
        out.append(dist < width / 2)
    return out


def _river(rng: np.random.Generator, shape: tuple[int, int], width: float) -> np.ndarray:
    """A meandering band across the longer side of the scene."""
    height, w = shape
    transpose = height > w
    h, length = (w, height) if transpose else (height, w)
    x = np.arange(length, dtype=np.float64)
    centre = (rng.uniform(0.3, 0.7) * h
              + 0.12 * h * np.sin(2 * np.pi * x / (length * rng.uniform(0.6, 1.2)) + rng.uniform(0, 2 * np.pi))
              + 0.03 * h * np.interp(x, np.linspace(0, length, 6), rng.standard_normal(6)))
    half = width / 2 * (1.0 + 0.2 * np.sin(2 * np.pi * x / max(length / 3, 1.0)))
    band = np.abs(np.arange(h, dtype=np.float64)[:, None] - centre[None, :]) < half[None, :]
    return band.T if transpose else band


# Sizes in pixels of the context layouts (about metres at the default 1 m GSD).
ORCHARD_SPACING = (5.0, 6.5)   # distance between neighbouring crowns of an orchard's grid
ORCHARD_RADIUS = (1.4, 2.1)    # crown radius: about 9 to 13 pixels a crown
ORCHARD_MISSING = 0.08         # share of grid nodes without a tree
CAR = (2, 4)                   # a car's width and length
STALL = (3, 5)                 # a parking stall's width and depth; two rows of stalls face an aisle
AISLE = (4, 6)                 # aisle width range (inclusive)
PARKING_OCCUPANCY = 0.75       # share of occupied stalls
ROAD_PIXELS_PER_CAR = 45.0     # cars on roads: one per this many road pixels
ROAD_SEGMENT = 10              # a road's surface is drawn per segment of this length
TERRAIN_STD_M = 0.3            # ground height variation of a LiDAR scene (a flat town), metres


def _orchard(rng: np.random.Generator, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One orchard: (crown mask, tree number of every pixel inside, -1 outside).

    A rotated regular grid of round crowns, a few missing. Every pixel belongs to its
    nearest grid node (a tree and its patch of grass), which numbers crowns and patches.
    """
    height, width = inside.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = rng.uniform(0.0, np.pi / 2)
    spacing = rng.uniform(*ORCHARD_SPACING)
    radius = rng.uniform(*ORCHARD_RADIUS)
    pu, pv = rng.uniform(0.0, spacing, 2)
    u = rows * np.cos(theta) + cols * np.sin(theta) - pu
    v = -rows * np.sin(theta) + cols * np.cos(theta) - pv
    iu, iv = np.round(u / spacing), np.round(v / spacing)
    number = np.full(inside.shape, -1, dtype=np.int64)
    _, number[inside] = np.unique(np.stack([iu[inside], iv[inside]]), axis=1, return_inverse=True)
    missing = rng.random(int(number.max()) + 1) < ORCHARD_MISSING
    crown = ((u - iu * spacing) ** 2 + (v - iv * spacing) ** 2 <= radius**2) & inside
    crown[crown] = ~missing[number[crown]]
    return crown, number


def _parking(rng: np.random.Generator, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One parking lot: (car mask, car number of every car pixel, patch number of every pixel inside).

    Double rows of stalls (``STALL``) face aisles (``AISLE``); a car (``CAR``) stands in a
    share ``PARKING_OCCUPANCY`` of the stalls, nose to nose with the other row, rows along
    the rows or the columns of the scene. A patch is one stall wide and one double row plus
    aisle deep. Numbers are -1 where they do not apply.
    """
    height, width = inside.shape
    rows, cols = np.mgrid[0:height, 0:width]
    across, along = (rows, cols) if rng.random() < 0.5 else (cols, rows)
    (stall_w, stall_d), (car_w, car_l) = STALL, CAR
    period = 2 * stall_d + int(rng.integers(AISLE[0], AISLE[1] + 1))
    a = across + int(rng.integers(period))
    b = along + int(rng.integers(stall_w))
    depth = a % period
    side = depth >= stall_d  # the second row of the pair
    from_middle = np.where(side, depth - stall_d, stall_d - 1 - depth)  # 0 where the rows meet
    car = (depth < 2 * stall_d) & (from_middle >= stall_d - car_l) & (b % stall_w < car_w) & inside
    stride = width + height + stall_w
    stall = ((a // period) * 2 + side) * stride + b // stall_w
    keys, stall_of = np.unique(stall[car], return_inverse=True)
    occupied = rng.random(keys.size) < PARKING_OCCUPANCY
    car[car] = occupied[stall_of.reshape(-1)]
    cars = np.full(inside.shape, -1, dtype=np.int64)
    _, cars[car] = np.unique(stall[car], return_inverse=True)
    patches = np.full(inside.shape, -1, dtype=np.int64)
    _, patches[inside] = np.unique(((a // period) * stride + b // stall_w)[inside], return_inverse=True)
    return car, cars, patches


def _road_cars(
    rng: np.random.Generator, strip: np.ndarray, horizontal: bool
) -> tuple[np.ndarray, np.ndarray]:
    """A few cars on one road strip: (car mask, car number of every car pixel, -1 elsewhere)."""
    car_w, car_l = CAR
    number = np.full(strip.shape, -1, dtype=np.int64)
    where = np.flatnonzero(strip)
    count = int(round(where.size / ROAD_PIXELS_PER_CAR))
    if count == 0:
        return number >= 0, number
    starts = rng.choice(where, size=count, replace=False)
    dr, dc = (car_w, car_l) if horizontal else (car_l, car_w)
    width = strip.shape[1]
    for k, start in enumerate(starts):
        r, c = divmod(int(start), width)
        box = np.zeros_like(strip)
        box[r : r + dr, c : c + dc] = True
        box &= strip & (number < 0)
        number[box] = k
    return number >= 0, number


def _layout(
    rng: np.random.Generator,
    shape: tuple[int, int],
    models: Sequence[ClassModel],
    region_size: float,
    unlabelled_share: float,
    class_areas: str = "random",
) -> _Layout:
    """Spatially coherent class cover, appearance, object ids and the annotated-pixel mask."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    height, width = shape
    classes = np.arange(1, len(models) + 1)
    layouts = np.array([m.layout for m in models])
    region_cls = classes[np.isin(layouts, _REGION_LIKE)]
    plain_cls = classes[layouts == "region"]
    building_cls = classes[layouts == "building"]

    # Voronoi cells on warped coordinates: organic, spatially coherent regions.
    entries = [int(c) for c in region_cls] + ([-1] if building_cls.size else [])  # -1 = urban parcel
    weights = [models[c - 1].weight for c in region_cls]
    if building_cls.size:
        weights.append(2.5 * sum(models[c - 1].weight for c in building_cls))
    n_cells = max(2 * max(len(entries), 1), int(round(height * width / region_size**2)))
    seeds = np.column_stack([rng.uniform(0, height, n_cells), rng.uniform(0, width, n_cells)])
    warp = 0.35 * region_size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    rows += warp * _smooth_field(rng, shape, region_size)
    cols += warp * _smooth_field(rng, shape, region_size)
    _, cell = cKDTree(seeds).query(np.column_stack([rows.ravel(), cols.ravel()]))
    cell = cell.reshape(shape).astype(np.int64)

    # Rivers, then roads (no bridges: rivers stay rivers), drawn over the cells.
    overlay = np.zeros(shape, dtype=np.int64)  # class of river/road pixels, 0 elsewhere
    objects = cell.copy()
    next_id = n_cells
    side = float(min(height, width))
    for c in classes[layouts == "river"]:
        band = _river(rng, shape, max(4.0, 0.07 * side)) & (overlay == 0)
        overlay[band], objects[band] = c, next_id
        next_id += 1
    road_cls = classes[layouts == "road"]
    strips: list[tuple[int, np.ndarray, bool]] = []  # (class, pixels, horizontal)
    if road_cls.size:
        count = max(2, int(round((height + width) / 70)))
        row_index, col_index = np.indices(shape)
        along = (col_index // ROAD_SEGMENT, row_index // ROAD_SEGMENT)  # horizontal, vertical strips
        for i, strip in enumerate(_lines(rng, shape, count * road_cls.size, max(3.0, side / 20))):
            strip &= overlay == 0
            # One object per segment of the road (its own surface draw), not one per road.
            segment = along[i % 2][strip]
            overlay[strip], objects[strip] = road_cls[i % road_cls.size], next_id + segment
            strips.append((int(road_cls[i % road_cls.size]), strip, i % 2 == 0))
            next_id += int(segment.max(initial=0)) + 1
    fixed = overlay > 0

    # Every region class (and the urban parcels) gets one of the cells with the largest
    # interior, so that each class keeps annotated pixels however small the scene.
    cell_entry = np.zeros(n_cells, dtype=np.int64)  # 0 = background (no region class asked for)
    skipped: np.ndarray | None = None  # cells left unannotated (drawn below)
    inner = ~ndimage.binary_dilation(fixed, structure=np.ones((3, 3), dtype=bool))
    inner &= ndimage.maximum_filter(cell, size=3, mode="nearest") == ndimage.minimum_filter(
        cell, size=3, mode="nearest"
    )
    by_area = np.argsort(-np.bincount(cell[inner], minlength=n_cells), kind="stable")
    guaranteed = by_area[: len(entries)]
    if entries:
        p = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        if class_areas == "quota":
            # Choose the unannotated cells first, then deal the annotated cells (and apart from
            # them the unannotated ones) in a random order, each to the entry furthest below its
            # share of the area: annotated class areas follow the weights whatever the seed.
            skipped = rng.random(n_cells) < unlabelled_share
            skipped[guaranteed] = False
            area = np.bincount(cell[~fixed], minlength=n_cells).astype(np.float64)
            picks = np.zeros(n_cells, dtype=np.int64)
            picks[guaranteed] = rng.permutation(len(entries))
            is_guaranteed = np.isin(np.arange(n_cells), guaranteed)
            for group in (~skipped, skipped):
                got = np.bincount(picks[group & is_guaranteed], weights=area[group & is_guaranteed],
                                  minlength=len(entries))
                rest = np.flatnonzero(group & ~is_guaranteed)
                for k in rest[rng.permutation(rest.size)]:
                    picks[k] = int(np.argmax(p * area[group].sum() - got))
                    got[picks[k]] += area[k]
        else:  # independent draws: class areas vary from seed to seed
            picks = rng.choice(len(entries), size=n_cells, p=p)
            picks[guaranteed] = rng.permutation(len(entries))
        cell_entry = np.asarray(entries)[picks]
    ground_cls = plain_cls if plain_cls.size else region_cls
    ground = int(min(ground_cls, key=lambda c: models[c - 1].height[1])) if ground_cls.size else 0
    cover = np.where(cell_entry == -1, ground, cell_entry)[cell]
    cover[fixed] = overlay[fixed]
    parcel = (cell_entry == -1)[cell] & ~fixed

    if building_cls.size:
        # Buildings: one rectangle per lot of a grid, inside urban parcels only.
        lot = max(5, int(round(0.6 * region_size)))
        per_row = width // lot + 1
        lot_id = (np.arange(height)[:, None] // lot) * per_row + (np.arange(width)[None, :] // lot)
        lots = np.unique(lot_id[parcel])
        # Lots with the most parcel area first: those guarantee every building class a footprint.
        lots = lots[np.argsort(-np.bincount(lot_id[parcel])[lots], kind="stable")]
        if lots.size < building_cls.size:
            raise ConfigError(
                f"synthetic scene {height}x{width} with region_size={region_size} has room for "
                f"{lots.size} building lot(s) but {building_cls.size} building classes; "
                f"use a larger scene or fewer building classes"
            )
        lots = np.concatenate([lots[: building_cls.size], rng.permutation(lots[building_cls.size :])])
        bw = np.asarray([models[c - 1].weight for c in building_cls], dtype=np.float64)
        # Neighbouring lots share a building type (districts), with some mixing.
        if class_areas == "quota":  # districts dealt by parcel area, like the region classes
            cell_type = np.full(n_cells, building_cls[0])
            parcel_area = np.bincount(cell[parcel], minlength=n_cells).astype(np.float64)
            got = np.zeros(building_cls.size)
            districts = np.flatnonzero(parcel_area > 0)
            for k in districts[rng.permutation(districts.size)]:
                pick = int(np.argmax(bw / bw.sum() * parcel_area.sum() - got))
                cell_type[k], got[pick] = building_cls[pick], got[pick] + parcel_area[k]
        else:
            cell_type = rng.choice(building_cls, size=n_cells, p=bw / bw.sum())
        first = rng.permutation(building_cls)
        for i, lid in enumerate(lots):
            r0, c0 = (lid // per_row) * lot, (lid % per_row) * lot
            in_lot = parcel[r0 : r0 + lot, c0 : c0 + lot]
            if i < building_cls.size:
                kind = first[i]
            else:
                kind = cell_type[np.bincount(cell[r0 : r0 + lot, c0 : c0 + lot][in_lot]).argmax()]
                if rng.random() < 0.15:
                    kind = rng.choice(building_cls)
            bh = int(rng.integers(max(2, int(0.45 * lot)), max(3, int(0.85 * lot)) + 1))
            bwid = int(rng.integers(max(2, int(0.45 * lot)), max(3, int(0.85 * lot)) + 1))
            oy = int(rng.integers(1, max(2, lot - bh)))
            ox = int(rng.integers(1, max(2, lot - bwid)))
            rect = np.zeros_like(in_lot)
            rect[oy : oy + bh, ox : ox + bwid] = True
            rect &= in_lot
            if i < building_cls.size and not rect.any():
                rect = in_lot
            cover[r0 : r0 + lot, c0 : c0 + lot][rect] = kind
            objects[r0 : r0 + lot, c0 : c0 + lot][rect] = next_id
            next_id += 1

    # Items on a class's ground: orchard crowns, parked cars, cars on roads. They keep the
    # class label and take the appearance of their part (PART_MODELS), one object each.
    appearance = cover.copy()
    part_row = {name: len(models) + 1 + i for i, name in enumerate(PART_MODELS)}
    for k in np.flatnonzero(np.isin(cell_entry, classes[np.isin(layouts, ("orchard", "parking"))])):
        model = models[cell_entry[k] - 1]
        inside = (cell == k) & ~fixed
        if not inside.any():
            continue
        # Ground and items are small objects (a tree and its patch of grass, a stall's
        # asphalt, a car), each with its own draw: no per-pixel signature of the lot.
        if model.layout == "orchard":
            crown, patches = _orchard(rng, inside)
            number = np.where(crown, patches, -1)
        else:
            _, number, patches = _parking(rng, inside)
        items = number >= 0
        ground = inside & ~items
        objects[ground] = next_id + patches[ground]
        next_id += int(patches.max()) + 1
        if model.items is not None:
            appearance[items] = part_row[model.items]
        objects[items] = next_id + number[items]
        next_id += int(number.max()) + 1
    for c, strip, horizontal in strips:
        item = models[c - 1].items
        if item is None:
            continue
        cars, number = _road_cars(rng, strip, horizontal)
        appearance[cars] = part_row[item]
        objects[cars] = next_id + number[cars]
        next_id += int(number.max()) + 1

    # Annotation: region and river pixels at a class boundary stay unlabelled, as do a
    # share of whole regions (never the guaranteed ones); roads and buildings are whole.
    area_like = np.isin(cover, classes[np.isin(layouts, (*_REGION_LIKE, "river"))])
    edge = ndimage.maximum_filter(cover, size=3, mode="nearest") != ndimage.minimum_filter(
        cover, size=3, mode="nearest"
    )
    if skipped is None:
        skipped = rng.random(n_cells) < unlabelled_share
        skipped[guaranteed] = False
    labelled = (cover > 0) & ~(area_like & edge) & ~(skipped[cell] & area_like & ~fixed)
    for c in classes:  # in tiny scenes a class can be all edge: annotate it whole then
        if np.count_nonzero(labelled & (cover == c)) < 4:
            labelled |= cover == c
    return _Layout(cover=cover, appearance=appearance, objects=objects, labelled=labelled,
                   num_objects=next_id)


def _official_maps(
    rng: np.random.Generator,
    labels: np.ndarray,
    class_names: Sequence[str],
    train_fraction: float,
    min_train: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Spatially clustered training blobs per class; every other labelled pixel is test."""
    height, width = labels.shape
    flat = labels.reshape(-1)
    train = np.zeros_like(flat)
    for c, class_name in enumerate(class_names, start=1):
        members = np.flatnonzero(flat == c)
        n = members.size
        if n < 2:
            raise ConfigError(
                f"synthetic scene {height}x{width}: class {c} ({class_name!r}) has {n} labelled "
                f"pixel(s); expected at least 2 for an official train/test split; use a larger "
                f"scene, a smaller region_size or fewer classes"
            )
        target = max(1, int(min(max(round(train_fraction * n), min(min_train, n // 2)), n - 1)))
        blobs = int(np.clip(round(target / 20), 2, 5)) if target >= 8 else 1
        pos = np.column_stack([members // width, members % width]).astype(np.float64)
        # Farthest-point picks among random candidates keep the blobs apart.
        candidates = pos[rng.choice(n, size=min(n, 200), replace=False)]
        centres = [candidates[0]]
        for _ in range(blobs - 1):
            d = np.min([np.sum((candidates - s) ** 2, axis=1) for s in centres], axis=0)
            centres.append(candidates[int(np.argmax(d))])
        dist = np.min([np.sum((pos - s) ** 2, axis=1) for s in centres], axis=0)
        train[members[np.argpartition(dist, target - 1)[:target]]] = c
    test = np.where((flat > 0) & (train == 0), flat, 0)
    return train.reshape(labels.shape), test.reshape(labels.shape)


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

    layout = _layout(layout_rng, shape, models, region_size, unlabelled_share, class_areas)
    table = [_BACKGROUND, *models, *PART_MODELS.values()]  # row 0 = unlabelled background
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
    brightness = (1.0 + 0.07 * _smooth_field(spectra_rng, shape, region_size).reshape(-1)
                  + 0.05 * spectra_rng.standard_normal(n_pixels))
    weighted = (abundance * np.clip(brightness, 0.5, None)[:, None]).astype(np.float32)
    hsi = (endmembers.T.astype(np.float32) @ weighted.T).reshape(hsi_bands, *shape)
    hsi = ndimage.gaussian_filter(hsi, sigma=(0.0, 0.6, 0.6), mode="nearest")  # sensor PSF
    band_noise = noise * (1.0 + 1.5 * (_gauss(wavelengths, 1400, 40) + _gauss(wavelengths, 1900, 50))
                          + 0.5 * (_gauss(wavelengths, 400, 30) + _gauss(wavelengths, 2500, 60)))
    hsi += band_noise[:, None, None] * spectra_rng.standard_normal(hsi.shape, dtype=np.float32)

    # --- X modality.
    if aux == "lidar":
        x_name, x_data = "lidar", _dsm(aux_rng, layout, table, shape, region_size)
    else:
        x_name, x_data = "sar", _sar(aux_rng, layout, table, shape, sar_looks)

    labels = np.where(layout.labelled, layout.cover, 0).astype(np.int64)
    official_train, official_test = _official_maps(split_rng, labels, chosen, train_fraction, min_train=10)
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
        modalities={"hsi": _minmax(hsi), x_name: _minmax(x_data)},
        labels=labels,
        class_names=tuple(chosen),
        official_train=official_train,
        official_test=official_test,
        palette=tuple(m.colour for m in models),
        metadata=metadata,
    )


def _difficulty(
    layout: _Layout, table: Sequence[ClassModel], models: Sequence[ClassModel], aux: str
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
    rng: np.random.Generator, layout: _Layout, table: Sequence[ClassModel], shape: tuple[int, int],
    region_size: float,
) -> np.ndarray:
    """(1, H, W) DSM in metres: terrain + per-object heights + roughness and gaps + noise."""
    cover = layout.appearance.reshape(-1)
    objects = layout.objects.reshape(-1)
    n = cover.size
    terrain = TERRAIN_STD_M * _smooth_field(rng, shape, 4 * region_size).reshape(-1)
    lo = np.array([m.height[0] for m in table])
    hi = np.array([m.height[1] for m in table])
    # One height per object (a building, a stand of trees), drawn in its class's range.
    object_class = np.zeros(layout.num_objects, dtype=np.int64)
    object_class[objects] = cover
    base = rng.uniform(lo[object_class], hi[object_class])
    rough = np.array([m.roughness for m in table])[cover]
    surface = (0.7 * _smooth_field(rng, shape, 3.0).reshape(-1) + 0.5 * rng.standard_normal(n))
    dsm = terrain + base[objects] + rough * surface
    gaps = rng.random(n) < np.array([m.gaps for m in table])[cover]
    dsm[gaps] = terrain[gaps] + np.abs(0.3 * rng.standard_normal(int(gaps.sum())))
    dsm += 0.1 * rng.standard_normal(n)
    return dsm.reshape(1, *shape)


def _sar(
    rng: np.random.Generator, layout: _Layout, table: Sequence[ClassModel], shape: tuple[int, int],
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


# ----------------------------------------------------------------------------- registration


def _loader(preset: str) -> Callable[[DatasetContext], Scene]:
    def load(context: DatasetContext) -> Scene:
        del context  # generated: no files to read or cache
        return make_synthetic_scene(name=preset, **PRESETS[preset])

    return load


@hookimpl
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register ``synthetic`` (the default) and ``synthetic-augsburg``."""
    common = {
        "recommended_profile": "fast",
        "paper": "",
        "url": "",  # generated in-process: no source to point at
        "licence": "CC0-1.0 (generated)",
    }
    register(DatasetSpec(
        name="synthetic",
        load=_loader("synthetic"),
        modalities=("hsi", "lidar"),
        class_names=SYNTHETIC_CLASSES,
        shape=(PRESETS["synthetic"]["height"], PRESETS["synthetic"]["width"]),
        description=(
            "Generated 80x80 urban scene, HSI 32 bands + LiDAR DSM, 8 classes; linear spectral "
            "mixing over coherent regions; roof classes differ only in height, orchard and parking "
            "only in the arrangement of tree crowns and cars (per pixel they look like grass, tree "
            "and road). The embedded default."
        ),
        **common,
    ))
    register(DatasetSpec(
        name="synthetic-augsburg",
        load=_loader("synthetic-augsburg"),
        modalities=("hsi", "sar"),
        class_names=AUGSBURG_CLASSES,
        shape=(PRESETS["synthetic-augsburg"]["height"], PRESETS["synthetic-augsburg"]["width"]),
        description=(
            "Generated scene of Augsburg's shape (332x485, HSI 180 bands + SAR 4 bands with gamma "
            "speckle, Augsburg's 7 classes) for performance work; no download."
        ),
        **common,
    ))
