"""The scene layout: regions, roads, rivers, buildings, orchards and parking lots, and the official split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench_core import ConfigError
from bench_plugins.datasets.synthetic.materials import PART_MODELS, ClassModel

# ----------------------------------------------------------------------------- helpers


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-std random field varying over about ``scale`` pixels (cubic upsampling)."""
    from scipy import ndimage

    height, width = shape
    scale = max(float(scale), 1.0)
    coarse = rng.standard_normal((int(np.ceil(height / scale)) + 3, int(np.ceil(width / scale)) + 3))
    fine = ndimage.zoom(coarse, scale, order=3, mode="nearest")
    off = int(scale)
    field = fine[off : off + height, off : off + width]
    return (field - field.mean()) / (field.std() + 1e-12)


def minmax(array: np.ndarray) -> np.ndarray:
    """Per-band min-max to [0, 1] over the scene, float32; a constant band becomes 0."""
    flat = array.reshape(array.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    out = (flat - lo) / np.where(span > 0, span, 1.0)
    return out.reshape(array.shape).astype(np.float32)


@dataclass(frozen=True)
class SceneLayout:
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


def make_layout(
    rng: np.random.Generator,
    shape: tuple[int, int],
    models: Sequence[ClassModel],
    region_size: float,
    unlabelled_share: float,
    class_areas: str = "random",
) -> SceneLayout:
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
    rows += warp * smooth_field(rng, shape, region_size)
    cols += warp * smooth_field(rng, shape, region_size)
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
    return SceneLayout(cover=cover, appearance=appearance, objects=objects, labelled=labelled,
                   num_objects=next_id)


def official_maps(
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
