"""Train / validation / test pixel splits, their validation carving and their leakage.

A :class:`Split` is what one benchmark cell trains and evaluates on. It is built by
:func:`make_split` from a registered :class:`~bench_core.specs.SplitProtocol`:

* the protocol partitions the labelled pixels into train and test;
* the harness carves the validation pixels from the training pixels, stratified per
  class (:func:`carve_validation`), so tuning and early stopping never see a test pixel;
* the split reports its *leakage* (:func:`patch_leakage`): the share of test pixels
  whose ``patch_size x patch_size`` window contains a training or validation pixel,
  i.e. how much of the test set a patch model has partly seen during training.

All indices are flat, row-major indices into ``H * W`` (``row * W + col``), int64,
sorted. The test indices are private: :meth:`Split.open_test` is the only way to read
them and every read is recorded, so a test can check that the harness reads the test
split once, after training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from bench_core.errors import ConfigError, SplitError
from bench_core.specs import SplitProtocol, SplitSpec

if TYPE_CHECKING:
    from bench_core.scene import Scene

__all__ = [
    "Split",
    "carve_validation",
    "derive_rngs",
    "make_split",
    "patch_leakage",
    "round_half_up",
    "window_cover",
]


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def round_half_up(value: float) -> int:
    """``value`` rounded to the nearest integer, halves up (unlike Python's banker's ``round``)."""
    return int(np.floor(value + 0.5))


@dataclass
class _TestAccess:
    """Mutable record of test-split reads, held by the (frozen) :class:`Split`."""

    reads: int = 0


@dataclass(frozen=True, eq=False)
class Split:
    """Train/val/test pixels of one scene under one protocol and seed.

    Attributes:
        spec: the split as asked for (protocol, argument, validation fraction).
        shape: (H, W) of the scene the indices refer to.
        train: sorted flat indices of the training pixels, validation pixels excluded.
        val: sorted flat indices of the validation pixels, carved from the protocol's
            training pixels (never from test).
        patch_size: window side the leakage was computed for.
        leakage: share (0..1) of test pixels whose centred ``patch_size`` window holds a
            train or validation pixel.
        num_test: number of test pixels (known without opening the test split).
    """

    spec: SplitSpec
    shape: tuple[int, int]
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    patch_size: int
    leakage: float
    _test: np.ndarray = field(repr=False)
    num_test: int = field(init=False)
    _access: _TestAccess = field(init=False, repr=False, default_factory=_TestAccess)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", _readonly(np.asarray(self.train, dtype=np.int64)))
        object.__setattr__(self, "val", _readonly(np.asarray(self.val, dtype=np.int64)))
        object.__setattr__(self, "_test", _readonly(np.asarray(self._test, dtype=np.int64)))
        object.__setattr__(self, "num_test", int(self._test.size))

    def open_test(self) -> np.ndarray:
        """The test indices (read-only). Every call is recorded; call it once, after training."""
        self._access.reads += 1
        return self._test

    @property
    def test_opened(self) -> bool:
        """Whether :meth:`open_test` has been called."""
        return self._access.reads > 0

    @property
    def test_reads(self) -> int:
        """How many times :meth:`open_test` has been called."""
        return self._access.reads

    def class_counts(self, labels: np.ndarray, num_classes: int | None = None) -> dict[str, np.ndarray]:
        """Pixels per class in each part: ``{"train": (K,), "val": (K,), "test": (K,)}`` int64.

        Entry ``k - 1`` counts class ``k``. ``num_classes`` defaults to the largest label.
        Counting does not open the test split (no test pixel is handed out).
        """
        flat = np.asarray(labels).reshape(-1)
        height, width = self.shape
        if flat.size != height * width:
            raise SplitError(
                f"class_counts: labels have {flat.size} pixels but split {self.spec.display!r} "
                f"was made for a {height}x{width} scene; pass the labels of that scene"
            )
        k = int(flat.max()) if num_classes is None else int(num_classes)
        out: dict[str, np.ndarray] = {}
        for part, index in (("train", self.train), ("val", self.val), ("test", self._test)):
            counts = np.bincount(flat[index].astype(np.int64), minlength=k + 1)
            out[part] = counts[1 : k + 1].astype(np.int64)
        return out


# ----------------------------------------------------------------------------- leakage


def _window_sums(mask: np.ndarray, patch_size: int) -> np.ndarray:
    """Number of set pixels in the window of each pixel (integral image, any window size).

    The window of pixel (i, j) spans rows ``i - patch_size // 2 .. i + (patch_size - 1) // 2``
    (and likewise columns): centred for odd sizes, one more pixel before than after for even.
    """
    before = patch_size // 2
    after = patch_size - 1 - before
    height, width = mask.shape
    integral = np.zeros((height + 1, width + 1), dtype=np.int64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1, out=integral[1:, 1:])
    rows = np.arange(height)
    cols = np.arange(width)
    r0 = np.clip(rows - before, 0, height)[:, None]
    r1 = np.clip(rows + after + 1, 0, height)[:, None]
    c0 = np.clip(cols - before, 0, width)[None, :]
    c1 = np.clip(cols + after + 1, 0, width)[None, :]
    return integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]


def _check_index(name: str, index: np.ndarray, size: int) -> np.ndarray:
    arr = np.asarray(index)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise SplitError(
            f"{name} must be a 1-D array of integer flat pixel indices, "
            f"got shape {arr.shape} dtype {arr.dtype}"
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        raise SplitError(
            f"{name} holds indices {int(arr.min())}..{int(arr.max())}; "
            f"expected 0..{size - 1} (flat indices into the H*W scene)"
        )
    return arr


def _check_patch_size(patch_size: object) -> int:
    if not isinstance(patch_size, (int, np.integer)) or isinstance(patch_size, bool) or patch_size < 1:
        raise ConfigError(f"patch_size = {patch_size!r}: expected a positive integer window side")
    return int(patch_size)


def window_cover(index: np.ndarray, shape: tuple[int, int], patch_size: int) -> np.ndarray:
    """(H, W) bool map of the pixels inside the ``patch_size`` window of at least one pixel of ``index``.

    The windows are those of :func:`patch_leakage`, so a pixel outside the cover of the test
    pixels lies in no test pixel's window: dropping covered training pixels makes the
    leakage exactly 0, for odd and even window sides alike.
    """
    patch_size = _check_patch_size(patch_size)
    height, width = (int(s) for s in shape)
    centres = _check_index("index", index, height * width)
    mask = np.zeros(height * width, dtype=bool)
    mask[centres] = True
    # Pixel q is in the window of centre c iff c is in the mirrored window of q; flipping
    # both axes turns the window sums into mirrored-window sums (matters for even sides).
    flipped = mask.reshape(height, width)[::-1, ::-1]
    return _window_sums(flipped, patch_size)[::-1, ::-1] > 0


def patch_leakage(
    train_index: np.ndarray, test_index: np.ndarray, shape: tuple[int, int], patch_size: int
) -> float:
    """Share (0..1) of test pixels whose ``patch_size x patch_size`` window holds a train pixel.

    Windows are centred on the test pixel (see :func:`_window_sums` for even sizes) and
    clipped at the scene border. ``train_index`` should include the validation pixels.
    An empty test set has leakage 0.
    """
    patch_size = _check_patch_size(patch_size)
    height, width = (int(s) for s in shape)
    size = height * width
    train = _check_index("train_index", train_index, size)
    test = _check_index("test_index", test_index, size)
    if test.size == 0:
        return 0.0
    mask = np.zeros(size, dtype=bool)
    mask[train] = True
    touched = _window_sums(mask.reshape(height, width), int(patch_size)).reshape(-1) > 0
    return float(np.count_nonzero(touched[test]) / test.size)


# ----------------------------------------------------------------------------- validation


def carve_validation(
    train_index: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split training pixels into ``(train, val)``, stratified per class.

    A class with ``n >= 2`` training pixels gives ``max(1, round(fraction * n))`` of them
    (rounded half up) to validation but keeps at least one in train; a class with a
    single training pixel keeps it; ``fraction == 0`` gives an empty validation set.
    ``labels`` is the (H, W) or flat label map the indices point into. Both outputs
    are sorted int64.
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(
            f"val_fraction = {fraction!r}: expected 0 <= value < 1 "
            f"(the share of each class's training pixels held out for validation)"
        )
    flat = np.asarray(labels).reshape(-1)
    train = np.sort(_check_index("train_index", train_index, flat.size))
    if fraction == 0 or train.size == 0:
        return train, np.empty(0, dtype=np.int64)
    train_labels = flat[train]
    val_parts: list[np.ndarray] = []
    for cls in np.unique(train_labels):  # a loop over classes, not pixels
        members = train[train_labels == cls]
        n = members.size
        if n < 2:
            continue
        take = min(max(1, round_half_up(fraction * n)), n - 1)
        val_parts.append(rng.choice(members, size=take, replace=False))
    val = np.sort(np.concatenate(val_parts)) if val_parts else np.empty(0, dtype=np.int64)
    keep = train[~np.isin(train, val, assume_unique=True)]
    return keep, val.astype(np.int64)


# ----------------------------------------------------------------------------- make_split


def derive_rngs(seed: int, protocol: str, argument: str | None) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators (protocol, validation) fixed by (seed, protocol, argument).

    The protocol text is hashed with SHA-256 (Python's ``hash`` is salted per process).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed = {seed!r}: expected a non-negative integer")
    digest = hashlib.sha256(f"{protocol}\x00{argument or ''}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    protocol_seq, val_seq = np.random.SeedSequence([int(seed), *words]).spawn(2)
    return np.random.default_rng(protocol_seq), np.random.default_rng(val_seq)


def _validated(
    name: str, result: object, labels: np.ndarray, scene_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check a protocol's ``(train, test)`` and return them sorted; raise SplitError naming it."""
    where = f"split protocol {name!r} on dataset {scene_name!r}"
    if not isinstance(result, tuple) or len(result) != 2:
        raise SplitError(f"{where} returned {type(result).__name__}; expected a (train_index, test_index) tuple")
    parts = []
    for part, index in zip(("train", "test"), result):
        try:
            arr = _check_index(f"{where}: {part} index", index, labels.size)
        except SplitError as exc:
            raise SplitError(f"{exc}; fix the protocol's make()") from None
        if arr.size == 0:
            raise SplitError(
                f"{where} gave an empty {part} set; expected at least one labelled pixel "
                f"(check the protocol argument or the dataset's labels)"
            )
        unique = np.unique(arr)
        if unique.size != arr.size:
            raise SplitError(
                f"{where}: {part} index holds {arr.size - unique.size} duplicate pixel(s); "
                f"expected each pixel at most once"
            )
        unlabelled = int(np.count_nonzero(labels[unique] <= 0))
        if unlabelled:
            raise SplitError(
                f"{where}: {part} index holds {unlabelled} unlabelled pixel(s) (label 0); "
                f"expected labelled pixels only"
            )
        parts.append(unique)
    overlap = np.intersect1d(parts[0], parts[1], assume_unique=True).size
    if overlap:
        raise SplitError(f"{where}: {overlap} pixel(s) are in both train and test; expected disjoint sets")
    return parts[0], parts[1]


def make_split(
    scene: Scene, spec: SplitSpec, protocol: SplitProtocol, seed: int, patch_size: int = 1
) -> Split:
    """Apply ``protocol`` to ``scene`` under ``seed``, carve validation, compute leakage.

    The same (scene, spec, seed) always gives the same split. A protocol declaring
    ``uses_patch_size`` also gets ``patch_size`` (e.g. for a guard band), so its split may
    depend on it. Raises :class:`SplitError` naming the protocol when it returns
    something invalid.
    """
    patch_size = _check_patch_size(patch_size)
    if spec.protocol != protocol.name:
        raise SplitError(
            f"split {spec.display!r} asks for protocol {spec.protocol!r} but protocol "
            f"{protocol.name!r} was given; look the protocol up by the spec's name"
        )
    if protocol.takes_argument and spec.argument is None:
        raise SplitError(
            f"split protocol {protocol.name!r} needs an argument ({protocol.argument_help or 'see bench plugins'}), "
            f"e.g. {protocol.name}:<value>"
        )
    labels = np.asarray(scene.labels).reshape(-1)
    protocol_rng, val_rng = derive_rngs(seed, protocol.name, spec.argument)
    if protocol.uses_patch_size:
        result = protocol.make(scene, spec.argument, protocol_rng, patch_size=patch_size)
    else:
        result = protocol.make(scene, spec.argument, protocol_rng)
    train_all, test = _validated(protocol.name, result, labels, scene.name)
    train, val = carve_validation(train_all, labels, spec.val_fraction, val_rng)
    leakage = patch_leakage(train_all, test, scene.shape, patch_size)
    return Split(
        spec=spec,
        shape=scene.shape,
        train=train,
        val=val,
        patch_size=patch_size,
        leakage=leakage,
        _test=test,
    )
