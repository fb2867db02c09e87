"""Built-in split protocols: ``official``, ``per-class:N``, ``fraction:p`` and ``spatial-blocks``.

Registered through the ``bench`` entry-point group like any third-party protocol.
Each protocol only partitions the labelled pixels (label > 0) into train and test;
the harness (:func:`bench_core.splits.make_split`) carves validation from train and
reports leakage.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bench_core import (
    Scene,
    SplitError,
    SplitProtocol,
    choose_blocks,
    hookimpl,
    round_half_up,
    window_cover,
)

__all__ = [
    "SPATIAL_BLOCKS_DEFAULTS",
    "bench_register_splits",
    "fraction_split",
    "official_split",
    "per_class_split",
    "spatial_blocks_split",
]


def _labels(scene: Scene) -> np.ndarray:
    return np.asarray(scene.labels).reshape(-1)


def _class_members(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(class, sorted flat indices)`` for every class with at least one labelled pixel."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    classes, starts = np.unique(sorted_labels, return_index=True)
    ends = np.append(starts[1:], sorted_labels.size)
    return [(int(c), order[s:e]) for c, s, e in zip(classes, starts, ends) if c > 0]


def _class_name(scene: Scene, cls: int) -> str:
    return f"{cls} ({scene.class_names[cls - 1]!r})" if 0 < cls <= len(scene.class_names) else str(cls)


def _draw(
    scene: Scene, rng: np.random.Generator, how_many: Callable[[int, int], int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, ``how_many(class, n)`` random training pixels; the rest of the class is test."""
    train_parts: list[np.ndarray] = []
    test_parts: list[np.ndarray] = []
    for cls, members in _class_members(_labels(scene)):
        take = how_many(cls, members.size)
        chosen = np.zeros(members.size, dtype=bool)
        chosen[rng.choice(members.size, size=take, replace=False)] = True
        train_parts.append(members[chosen])
        test_parts.append(members[~chosen])
    if not train_parts:
        raise SplitError(f"dataset {scene.name!r} has no labelled pixels (every label is 0); nothing to split")
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def _check_no_argument(argument: str | None) -> None:
    if argument is not None:
        raise SplitError(f"split protocol 'official' takes no argument, got 'official:{argument}'; use 'official'")


def official_split(scene: Scene, argument: str | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's own train/test maps: labelled pixels where each map is nonzero."""
    del rng  # the official split is fixed
    _check_no_argument(argument)
    if scene.official_train is None or scene.official_test is None:
        raise SplitError(
            f"dataset {scene.name!r} ships no official train/test maps, so split 'official' "
            f"cannot be used; use 'per-class:N' (e.g. per-class:20) or 'fraction:p' (e.g. fraction:0.05)"
        )
    labelled = _labels(scene) > 0
    train = np.flatnonzero((np.asarray(scene.official_train).reshape(-1) != 0) & labelled)
    test = np.flatnonzero((np.asarray(scene.official_test).reshape(-1) != 0) & labelled)
    both = np.intersect1d(train, test, assume_unique=True).size
    if both:
        raise SplitError(
            f"dataset {scene.name!r}: {both} pixel(s) are in both the official train and test maps; "
            f"expected disjoint maps (fix the dataset's official_train/official_test)"
        )
    return train, test


def _parse_count(argument: str | None) -> int:
    text = (argument or "").strip()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SplitError(
            f"split 'per-class:{argument if argument is not None else ''}': argument {argument!r} "
            f"is not a positive integer; expected 'per-class:N' with N >= 1, e.g. per-class:20"
        )
    return value


def per_class_split(scene: Scene, argument: str | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``N`` random training pixels per class; the rest of each class is test."""
    n_train = _parse_count(argument)

    def how_many(cls: int, n: int) -> int:
        if n <= n_train:
            raise SplitError(
                f"split 'per-class:{n_train}' on dataset {scene.name!r}: class {_class_name(scene, cls)} "
                f"has only {n} labelled pixel(s), expected more than {n_train} so that some are "
                f"left for test; use a smaller N or 'fraction:p'"
            )
        return n_train

    return _draw(scene, rng, how_many)


def _parse_fraction(argument: str | None) -> float:
    text = (argument or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0.0 < value < 1.0):
        raise SplitError(
            f"split 'fraction:{argument if argument is not None else ''}': argument {argument!r} is not "
            f"a number strictly between 0 and 1; expected 'fraction:p', e.g. fraction:0.05"
        )
    return value


def fraction_split(scene: Scene, argument: str | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``round(p * n)`` (at least 1) random training pixels per class; the rest is test.

    A class with at least two pixels always keeps one for test; a class with a single
    labelled pixel puts it in train.
    """
    p = _parse_fraction(argument)
    return _draw(scene, rng, lambda cls, n: max(1, min(round_half_up(p * n), n - 1)))


SPATIAL_BLOCKS_DEFAULTS: dict[str, float] = {"block": 32, "train": 0.3}
"""Block side in pixels and target training share per class of ``spatial-blocks``."""

_SPATIAL_BLOCKS_USAGE = (
    "expected 'spatial-blocks[:B][:train=T][:guard=P]' with B >= 1 the block side in pixels, "
    "0 < T < 1 the target training share of each class, P >= 1 the window side the guard band "
    "protects, e.g. spatial-blocks:32 or spatial-blocks:32:train=0.5:guard=11"
)


def _parse_spatial_blocks(argument: str | None) -> tuple[int, float, int | None]:
    """``(block, train_share, guard)`` from ``B``, ``block=B``, ``train=T``, ``guard=P`` joined by ``:``."""
    block, share, guard = int(SPATIAL_BLOCKS_DEFAULTS["block"]), SPATIAL_BLOCKS_DEFAULTS["train"], None
    seen: set[str] = set()
    for position, token in enumerate(argument.split(":") if argument else []):
        key, sep, text = token.strip().partition("=")
        if not sep:  # a bare number is the block side, and only in first position
            key, text = ("block", key) if position == 0 else ("", key)
        key, text = key.strip(), text.strip()
        if key not in ("block", "train", "guard") or key in seen:
            raise SplitError(
                f"split 'spatial-blocks:{argument}': part {token!r} is unknown or repeated; {_SPATIAL_BLOCKS_USAGE}"
            )
        seen.add(key)
        try:
            value = float(text) if key == "train" else int(text)
        except ValueError:
            value = math.nan if key == "train" else 0
        if key == "train":
            if not 0.0 < value < 1.0:
                raise SplitError(f"split 'spatial-blocks:{argument}': train={text!r}; {_SPATIAL_BLOCKS_USAGE}")
            share = float(value)
        elif value < 1:
            raise SplitError(f"split 'spatial-blocks:{argument}': {key}={text!r}; {_SPATIAL_BLOCKS_USAGE}")
        elif key == "block":
            block = int(value)
        else:
            guard = int(value)
    return block, share, guard


def spatial_blocks_split(
    scene: Scene, argument: str | None, rng: np.random.Generator, *, patch_size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Spatially disjoint blocks with a guard band: no test pixel's window holds a training pixel.

    The scene is tiled into ``B x B`` blocks (``spatial-blocks:B``, default 32), whole blocks
    go to training until each class has about ``train=T`` (default 0.3) of its labelled pixels
    there (:func:`~bench_core.splits.choose_blocks`, seeded), and every other labelled pixel is test. Then the
    guard band: training pixels inside the ``P x P`` window of any test pixel are dropped
    from training (they are used nowhere), with ``P`` = ``guard=P`` if given, else the
    cell's patch size. Dropping on the training side keeps the test set independent of the
    method's patch size, so all methods of a grid are scored on the same test pixels.
    """
    block, share, guard = _parse_spatial_blocks(argument)
    guard = int(patch_size) if guard is None else guard
    labels = _labels(scene)
    height, width = scene.shape
    labelled = np.flatnonzero(labels > 0)
    if labelled.size == 0:
        raise SplitError(f"dataset {scene.name!r} has no labelled pixels (every label is 0); nothing to split")
    rows, cols = np.divmod(labelled, width)
    block_of = (rows // block) * (-(-width // block)) + cols // block
    blocks, inverse = np.unique(block_of, return_inverse=True)
    k = int(labels.max())
    counts = np.bincount(inverse * k + (labels[labelled] - 1), minlength=blocks.size * k).reshape(blocks.size, k)
    chosen = choose_blocks(counts, share, rng)
    in_train_block = chosen[inverse]
    test = labelled[~in_train_block]
    covered = window_cover(test, (height, width), guard).reshape(-1)
    candidates = labelled[in_train_block]
    train = candidates[~covered[candidates]]
    totals = np.bincount(labels[labelled], minlength=k + 1)
    untrained = np.flatnonzero((totals > 0) & (np.bincount(labels[train], minlength=k + 1) == 0))
    if untrained.size:
        cls = int(untrained[0])
        in_blocks = int(np.count_nonzero(labels[candidates] == cls))
        why = (
            f"all {in_blocks} pixel(s) of it in training blocks lie within the guard band for "
            f"{guard}x{guard} windows around test pixels"
            if in_blocks
            else "it lies in too few blocks to give one to training and keep test pixels"
        )
        raise SplitError(
            f"split 'spatial-blocks:{argument or ''}' on dataset {scene.name!r}: class "
            f"{_class_name(scene, cls)} ({int(totals[cls])} labelled pixels) has no training pixel with "
            f"{block}x{block} blocks: {why}; use smaller blocks (e.g. spatial-blocks:{max(1, block // 2)}), "
            f"a larger train share (train=...), or a smaller guard (guard=...) at the price of leakage"
        )
    return np.sort(train), np.sort(test)


@hookimpl
def bench_register_splits(register: Callable[[SplitProtocol], None]) -> None:
    """Register ``official``, ``per-class``, ``fraction`` and ``spatial-blocks``."""
    register(
        SplitProtocol(
            name="official",
            make=official_split,
            check_argument=_check_no_argument,
            description="The dataset's own train/test maps (spatially clustered training areas).",
        )
    )
    register(
        SplitProtocol(
            name="per-class",
            make=per_class_split,
            check_argument=_parse_count,
            takes_argument=True,
            argument_help="N: training pixels per class, an integer >= 1 (e.g. per-class:100)",
            description="N random labelled pixels per class for training, the rest of each class for test.",
        )
    )
    register(
        SplitProtocol(
            name="fraction",
            make=fraction_split,
            check_argument=_parse_fraction,
            takes_argument=True,
            argument_help="p: share of each class's labelled pixels for training, 0 < p < 1 (e.g. fraction:0.05)",
            description=(
                "round(p * n) random labelled pixels of each class for training (at least 1), "
                "the rest for test."
            ),
        )
    )
    register(
        SplitProtocol(
            name="spatial-blocks",
            make=spatial_blocks_split,
            check_argument=_parse_spatial_blocks,
            uses_patch_size=True,
            validation="spatial",
            argument_help=(
                "optional 'B[:train=T][:guard=P]': block side B in pixels (default 32), target "
                "training share T per class (default 0.3), window side P protected by the guard "
                "band (default the method's patch size)"
            ),
            description=(
                "Whole BxB blocks for training, class-balanced and seeded, the other blocks for test; "
                "training pixels within the patch radius of a test pixel are dropped, so leakage is 0."
            ),
            paper=(
                "Nalepa, Myller, Kawulok, 'Validating hyperspectral image segmentation', IEEE GRSL 2019"
            ),
        )
    )
