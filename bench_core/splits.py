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
    "VAL_CARVES",
    "Split",
    "carve_validation",
    "carve_validation_spatial",
    "choose_blocks",
    "derive_rngs",
    "make_split",
    "patch_leakage",
    "resolve_val_carve",
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
        patch_size: side of the window the leakage was computed for: the patch side for
            patch methods, ``2s - 1`` for dense methods with crop side s (a dense prediction
            at a pixel depends on every crop covering it), 1 for pixel methods.
        leakage: share (0..1) of test pixels whose centred ``patch_size`` window holds a
            train or validation pixel.
        val_leakage: share (0..1) of validation pixels whose window holds a training pixel
            (near 1 for a random carve, 0 for a spatial one).
        val_carve: ``"random"`` or ``"spatial"`` (:func:`carve_validation_spatial`).
        num_test: number of test pixels (known without opening the test split).
    """

    spec: SplitSpec
    shape: tuple[int, int]
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    patch_size: int
    leakage: float
    _test: np.ndarray = field(repr=False)
    val_leakage: float = 0.0
    val_carve: str = "random"
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


VAL_CARVES = ("auto", "random", "spatial")
"""How validation is carved: ``random`` pixels, ``spatial`` blocks with a guard band, or
``auto`` (the protocol's choice: ``spatial`` for ``spatial-blocks``, else ``random``)."""


def choose_blocks(counts: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Pick blocks so that each class gets about ``share`` of its pixels in the chosen blocks.

    Used for the training blocks of ``spatial-blocks`` and the validation blocks of the
    spatial validation carve. ``counts`` is (blocks, classes) labelled pixels. Repeatedly take the class furthest
    below its target (relative to its size) and add the unassigned block holding that class
    which brings all classes' training shares closest to the target (L1); ties go to a
    seeded random order. A block is never taken if it would put every pixel of some class
    in training, so each class keeps pixels outside the chosen blocks. A class whose best block would worsen
    the overall fit stops growing, unless it has no training pixel yet.
    """
    num_blocks, num_classes = counts.shape
    totals = counts.sum(axis=0).astype(np.float64)
    present = totals > 0
    target = share * totals
    scale = np.where(present, totals, 1.0)
    got = np.zeros(num_classes, dtype=np.float64)
    chosen = np.zeros(num_blocks, dtype=bool)
    active = present.copy()
    tie_rank = rng.permutation(num_blocks)
    while True:
        need = active & (got < target)
        if not need.any():
            return chosen
        deficit = np.where(need, (target - got) / scale, -np.inf)
        cls = int(np.argmax(deficit))
        candidates = np.flatnonzero(~chosen & (counts[:, cls] > 0))
        after = got[None, :] + counts[candidates]
        keeps_test = np.all(after < np.where(present, totals, np.inf), axis=1)
        candidates, after = candidates[keeps_test], after[keeps_test]
        if candidates.size == 0:
            active[cls] = False
            continue
        error_after = (np.abs(after - target) / scale)[:, present].sum(axis=1)
        best = np.lexsort((tie_rank[candidates], error_after))[0]
        error_now = (np.abs(got - target) / scale)[present].sum()
        if error_after[best] >= error_now and got[cls] > 0:
            active[cls] = False
            continue
        chosen[candidates[best]] = True
        got += counts[candidates[best]]


def carve_validation_spatial(
    train_index: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator, window: int,
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split training pixels into ``(train, val)`` by spatial blocks with a guard band.

    The scene is tiled into ``block x block`` blocks (default ``max(window, 8)``); blocks of
    training pixels go to validation until each class has about ``fraction`` of its training
    pixels there (:func:`choose_blocks`, seeded; every class keeps training pixels outside
    them). Then training pixels inside the ``window`` of any validation pixel are dropped (used
    nowhere), so no validation pixel's window holds a training pixel: its leakage is 0 and
    best-epoch selection, early stopping and tuning are judged on pixels the model has not
    seen around. A class that would lose every training pixel to that guard band keeps them
    (the validation leakage then says how much leaks). ``labels`` is the (H, W) label map.
    Both outputs are sorted int64.
    """
    if not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(f"val_fraction = {fraction!r}: expected 0 <= value < 1")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise SplitError(f"carve_validation_spatial: labels have shape {labels.shape}; expected the (H, W) map")
    window = _check_patch_size(window)
    height, width = labels.shape
    flat = labels.reshape(-1)
    train = np.sort(_check_index("train_index", train_index, flat.size))
    if fraction == 0 or train.size == 0:
        return train, np.empty(0, dtype=np.int64)
    side = max(window, 8) if block is None else _check_patch_size(block)
    rows, cols = np.divmod(train, width)
    block_of = (rows // side) * (-(-width // side)) + cols // side
    blocks, inverse = np.unique(block_of, return_inverse=True)
    k = int(flat[train].max())
    counts = np.bincount(inverse * k + (flat[train] - 1), minlength=blocks.size * k).reshape(blocks.size, k)
    in_val = choose_blocks(counts, float(fraction), rng)[inverse]
    val = train[in_val]
    covered = window_cover(val, (height, width), window).reshape(-1) if val.size else np.zeros(flat.size, bool)
    rest = train[~in_val]
    kept = ~covered[rest]
    # A class whose every remaining training pixel lies in the guard band keeps them: it must
    # train. Its neighbouring validation pixels then leak, which val_leakage reports.
    emptied = np.setdiff1d(np.unique(flat[rest]), np.unique(flat[rest[kept]]))
    kept |= np.isin(flat[rest], emptied)
    return rest[kept].astype(np.int64), np.sort(val).astype(np.int64)


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
    carve = resolve_val_carve(spec, protocol)
    if carve == "spatial":
        train, val = carve_validation_spatial(train_all, labels.reshape(scene.shape), spec.val_fraction, val_rng,
                                              patch_size)
    else:
        train, val = carve_validation(train_all, labels, spec.val_fraction, val_rng)
    used = np.union1d(train, val)  # pixels dropped by a guard band are used nowhere
    return Split(
        spec=spec,
        shape=scene.shape,
        train=train,
        val=val,
        patch_size=patch_size,
        leakage=patch_leakage(used, test, scene.shape, patch_size),
        _test=test,
        val_leakage=patch_leakage(train, val, scene.shape, patch_size),
        val_carve=carve,
    )


def resolve_val_carve(spec: SplitSpec, protocol: SplitProtocol) -> str:
    """``spec.val_carve``, with ``auto`` resolved to the protocol's ``validation``."""
    carve = protocol.validation if spec.val_carve == "auto" else spec.val_carve
    if carve not in VAL_CARVES[1:]:
        raise ConfigError(f"validation carve {carve!r} (split {spec.display!r}): expected one of {VAL_CARVES}")
    return carve
