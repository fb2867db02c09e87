"""Built-in split protocols: ``official``, ``per-class:N`` and ``fraction:p``.

Registered through the ``bench`` entry-point group like any third-party protocol.
Each protocol only partitions the labelled pixels (label > 0) into train and test;
the harness (:func:`bench_core.splits.make_split`) carves validation from train and
reports leakage.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bench_core import Scene, SplitError, SplitProtocol, hookimpl
from bench_core.splits import round_half_up

__all__ = ["fraction_split", "official_split", "per_class_split", "bench_register_splits"]


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


def official_split(scene: Scene, argument: str | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's own train/test maps: labelled pixels where each map is nonzero."""
    del rng  # the official split is fixed
    if argument is not None:
        raise SplitError(f"split protocol 'official' takes no argument, got 'official:{argument}'; use 'official'")
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


@hookimpl
def bench_register_splits(register: Callable[[SplitProtocol], None]) -> None:
    """Register ``official``, ``per-class`` and ``fraction``."""
    register(
        SplitProtocol(
            name="official",
            make=official_split,
            description="The dataset's own train/test maps (spatially clustered training areas).",
        )
    )
    register(
        SplitProtocol(
            name="per-class",
            make=per_class_split,
            takes_argument=True,
            argument_help="N: training pixels per class, an integer >= 1 (e.g. per-class:100)",
            description="N random labelled pixels per class for training, the rest of each class for test.",
        )
    )
    register(
        SplitProtocol(
            name="fraction",
            make=fraction_split,
            takes_argument=True,
            argument_help="p: share of each class's labelled pixels for training, 0 < p < 1 (e.g. fraction:0.05)",
            description=(
                "round(p * n) random labelled pixels of each class for training (at least 1), "
                "the rest for test."
            ),
        )
    )
