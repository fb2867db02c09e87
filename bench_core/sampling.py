"""Samplers: turn pixel indices into model inputs without per-sample copy loops.

* :class:`PatchSampler` — (N, C, p, p) patches centred on flat pixel indices, gathered
  from a strided (C, H, W, p, p) view of a scene padded once.
* :class:`CropSampler` — random (n, C, s, s) crops, each containing a training pixel,
  with their (n, s, s) target crops (``IGNORE_INDEX`` outside training pixels).
* :func:`sliding_window_logits` — dense inference over a whole scene with overlapping
  windows whose logits are averaged.

Flat indices are row-major into ``H * W`` (``index = row * W + col``), as everywhere
in the harness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch

from bench_core.errors import ConfigError, ModelOutputError, SamplingError
from bench_core.scene import IGNORE_INDEX

PAD_MODES = ("reflect", "symmetric", "edge", "zero")
"""Padding of the inputs at the scene border (``zero`` = constant 0)."""


# --------------------------------------------------------------------------- helpers


def _scene_shape(inputs: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """Common (H, W) of the inputs; raises if they disagree or are not (C, H, W)."""
    if not inputs:
        raise SamplingError("sampler inputs are empty; expected {name: (C, H, W) array}, e.g. {'hsi': ...}")
    shape: tuple[int, int] | None = None
    for name, arr in inputs.items():
        if np.ndim(arr) != 3:
            raise SamplingError(
                f"sampler input {name!r} has shape {np.shape(arr)}; expected (C, H, W)"
            )
        hw = (int(arr.shape[1]), int(arr.shape[2]))
        if shape is None:
            shape = hw
        elif hw != shape:
            raise SamplingError(
                f"sampler input {name!r} is {hw[0]}x{hw[1]} but the others are {shape[0]}x{shape[1]}; "
                f"all inputs must be co-registered on one (H, W) grid"
            )
    assert shape is not None
    return shape


def _pad(arr: np.ndarray, before: tuple[int, int], after: tuple[int, int], mode: str) -> np.ndarray:
    """Pad the spatial axes of a (C, H, W) array (a new, writable array)."""
    widths = ((0, 0), (before[0], after[0]), (before[1], after[1]))
    arr = np.asarray(arr, dtype=np.float32)
    if mode == "zero":
        return np.pad(arr, widths, mode="constant", constant_values=0.0)
    return np.pad(arr, widths, mode=mode)


def _check_pad_mode(pad_mode: str) -> None:
    if pad_mode not in PAD_MODES:
        raise ConfigError(f"pad_mode = {pad_mode!r}: expected one of {PAD_MODES}")


def _check_size(what: str, size: int, odd: bool) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or (odd and size % 2 == 0):
        kind = "an odd positive integer (the patch needs a centre pixel)" if odd else "a positive integer"
        raise ConfigError(f"{what} = {size!r}: expected {kind}")


def _windows(padded: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H', W') -> (H' - size + 1, W' - size + 1, C, size, size) strided view, no copy."""
    return padded.unfold(1, size, 1).unfold(2, size, 1).permute(1, 2, 0, 3, 4)


def _windows_channel_last(padded: torch.Tensor, size: int) -> torch.Tensor:
    """(H', W', C) -> (H' - size + 1, W' - size + 1, size, size, C) strided view, no copy."""
    hp, wp, c = padded.shape
    sh, sw, sc = padded.stride()
    return padded.as_strided((hp - size + 1, wp - size + 1, size, size, c), (sh, sw, sh, sw, sc))


def as_index(index: np.ndarray | torch.Tensor, num_pixels: int) -> torch.Tensor:
    """Flat pixel indices as a 1-D int64 CPU tensor, checked to lie in ``[0, num_pixels)``."""
    # torch.as_tensor copies read-only arrays (e.g. a sealed test index) instead of warning.
    t = index if isinstance(index, torch.Tensor) else torch.as_tensor(np.array(index, copy=True))
    t = t.reshape(-1).to(device="cpu")
    if t.numel() == 0:  # np.array([]) is float64; an empty index is still valid
        return torch.zeros(0, dtype=torch.int64)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise SamplingError(
            f"pixel index has dtype {t.dtype}; expected integer flat indices (row * W + col)"
        )
    t = t.to(torch.int64)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_pixels):
        raise SamplingError(
            f"pixel index ranges {int(t.min())}..{int(t.max())} but the scene has {num_pixels} "
            f"pixels; expected flat row-major indices in [0, {num_pixels})"
        )
    return t


# --------------------------------------------------------------------------- patches


PAD_COPY_BYTES = 256 * 2**20
"""Inputs whose padded float32 copy would be larger than this (or that are memory-mapped) are
gathered straight from the source array instead of from a padded copy."""


def border_index(index: np.ndarray, length: int, pad_mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Map coordinates that may lie up to ``length - 1`` outside ``[0, length)`` back inside.

    The index arithmetic equivalent of ``np.pad(..., mode)`` for one axis: ``reflect``
    (edge not repeated), ``symmetric`` (edge repeated), ``edge`` (clamped), ``zero`` (clamped,
    with a mask of the coordinates that are outside and read as 0).

    Returns:
        ``(inside, outside)``: indices into ``[0, length)`` and, for ``zero``, a boolean mask
        (``None`` otherwise).
    """
    index = np.asarray(index, dtype=np.int64)
    last = length - 1
    if pad_mode == "reflect":
        if length == 1:
            return np.zeros_like(index), None
        period = 2 * last
        folded = np.abs(index) % period
        return np.where(folded > last, period - folded, folded), None
    if pad_mode == "symmetric":
        period = 2 * length
        folded = np.where(index < 0, -index - 1, index) % period
        return np.where(folded > last, period - 1 - folded, folded), None
    inside = np.clip(index, 0, last)
    if pad_mode == "edge":
        return inside, None
    return inside, (index < 0) | (index > last)


class _SourceGather:
    """Patches of one (C, H, W) input read straight from the source array, cast per batch.

    For memory-mapped or large inputs (e.g. BDGF's 8,192-channel float16 diffusion features):
    no padded copy; the border is handled by :func:`border_index`. A source stored
    channel-last on disk (an (H, W, C) array passed as its (C, H, W) transpose) reads each
    patch pixel as one contiguous run of C values.
    """

    def __init__(self, arr: np.ndarray, patch_size: int, pad_mode: str) -> None:
        self.source = np.moveaxis(arr, 0, -1)  # (H, W, C) view, no copy
        self.height, self.width, self.channels = self.source.shape
        self.pad_mode = pad_mode
        self.offsets = np.arange(patch_size) - patch_size // 2

    def patches(self, rows: np.ndarray, cols: np.ndarray, device: torch.device) -> torch.Tensor:
        r, r_out = border_index(rows[:, None] + self.offsets, self.height, self.pad_mode)
        c, c_out = border_index(cols[:, None] + self.offsets, self.width, self.pad_mode)
        block = np.asarray(self.source[r[:, :, None], c[:, None, :]])  # (N, p, p, C) in the source dtype
        out = torch.from_numpy(block).to(device=device, dtype=torch.float32)
        if r_out is not None and c_out is not None:
            outside = torch.from_numpy(r_out[:, :, None] | c_out[:, None, :]).to(device)
            out = out.masked_fill(outside[..., None], 0.0)
        return out.permute(0, 3, 1, 2).contiguous()


def _needs_source_gather(arr: np.ndarray, patch_size: int) -> bool:
    if isinstance(arr, np.memmap) or isinstance(getattr(arr, "base", None), np.memmap):
        return True
    c, h, w = (int(v) for v in arr.shape)
    return c * (h + patch_size - 1) * (w + patch_size - 1) * 4 > PAD_COPY_BYTES


class PatchSampler:
    """Per-modality (N, C, p, p) patches centred on flat pixel indices.

    Each ordinary input is padded once by ``patch_size // 2`` and kept channel-last on
    ``device``; patches come from a strided (H, W, p, p, C) view of the padded tensor with one
    advanced-indexing gather per modality and call. Memory-mapped inputs and inputs whose
    padded float32 copy would exceed :data:`PAD_COPY_BYTES` are not copied: their patches are
    gathered from the source array (any float dtype, e.g. float16) by index arithmetic at the
    border and cast to float32 per batch. Both ways give the same patches.
    """

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        patch_size: int,
        pad_mode: str = "reflect",
        device: torch.device | str = "cpu",
    ) -> None:
        _check_size("patch_size", patch_size, odd=True)
        _check_pad_mode(pad_mode)
        self.height, self.width = _scene_shape(inputs)
        self.patch_size = patch_size
        self.radius = patch_size // 2
        self.device = torch.device(device)
        r = self.radius
        self.padded: dict[str, torch.Tensor] = {}
        self.views: dict[str, torch.Tensor] = {}
        self.sources: dict[str, _SourceGather] = {}
        self.channels: dict[str, int] = {}
        for name, arr in inputs.items():
            self.channels[name] = int(arr.shape[0])
            if _needs_source_gather(arr, patch_size):
                self.sources[name] = _SourceGather(arr, patch_size, pad_mode)
                continue
            # Channel-last (H', W', C): a patch row is then one run of p * C floats, which makes
            # the gather an order of magnitude faster than from (C, H', W') for 100+ bands.
            padded = torch.from_numpy(_pad(arr, (r, r), (r, r), pad_mode)).permute(1, 2, 0).contiguous()
            padded = padded.to(self.device)
            self.padded[name] = padded
            self.views[name] = _windows_channel_last(padded, patch_size)
        self._order = list(inputs)

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def _rows_cols(self, index: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = as_index(index, self.num_pixels)
        return flat // self.width, flat % self.width

    def patches(self, index: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: (N, C, p, p) float32}`` on the sampler's device, in the order of ``index``."""
        rows, cols = self._rows_cols(index)
        out: dict[str, torch.Tensor] = {}
        if self.views:
            rows_d, cols_d = rows.to(self.device), cols.to(self.device)
        for name in self._order:
            if name in self.sources:
                out[name] = self.sources[name].patches(rows.numpy(), cols.numpy(), self.device)
            else:
                # Window (i, j) of the padded scene is centred on scene pixel (i, j).
                out[name] = self.views[name][rows_d, cols_d].permute(0, 3, 1, 2).contiguous()
        return out

    def pixels(self, index: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: (N, C) float32}`` spectra of the centre pixels."""
        rows, cols = self._rows_cols(index)
        r = self.radius
        out: dict[str, torch.Tensor] = {}
        for name in self._order:
            if name in self.sources:
                values = np.asarray(self.sources[name].source[rows.numpy(), cols.numpy()])
                out[name] = torch.from_numpy(values).to(device=self.device, dtype=torch.float32)
            else:
                out[name] = self.padded[name][rows.to(self.device) + r, cols.to(self.device) + r]
        return out


# --------------------------------------------------------------------------- crops


class CropSampler:
    """Random (n, C, s, s) crops around training pixels, with (n, s, s) target crops.

    ``targets`` is an (H, W) int64 map with the 0-based class of every *training*
    pixel and ``IGNORE_INDEX`` elsewhere. Each crop contains a training pixel drawn
    uniformly from all of them, at a uniformly drawn position inside the crop, limited
    so that at most ``crop_size // 2`` rows/cols of a crop fall outside the scene.
    Outside the scene inputs are padded with ``pad_mode`` and targets with -1.
    """

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        targets: np.ndarray,
        crop_size: int,
        pad_mode: str = "reflect",
        device: torch.device | str = "cpu",
    ) -> None:
        _check_size("crop_size", crop_size, odd=False)
        _check_pad_mode(pad_mode)
        self.height, self.width = _scene_shape(inputs)
        targets = np.asarray(targets)
        if targets.shape != (self.height, self.width) or not np.issubdtype(targets.dtype, np.integer):
            raise SamplingError(
                f"crop targets have shape {targets.shape} dtype {targets.dtype}; expected an "
                f"({self.height}, {self.width}) integer map (class of training pixels, -1 elsewhere)"
            )
        if targets.size and int(targets.min()) < IGNORE_INDEX:
            raise SamplingError(
                f"crop targets contain {int(targets.min())}; expected 0-based classes or {IGNORE_INDEX}"
            )
        train = np.flatnonzero(targets.reshape(-1) != IGNORE_INDEX)
        if train.size == 0:
            raise SamplingError(
                f"crop targets mark no training pixel (all {IGNORE_INDEX}); expected at least one "
                f"pixel with a 0-based class"
            )
        self.crop_size = crop_size
        self.device = torch.device(device)
        self.pad = crop_size // 2
        self.train_pixels = torch.from_numpy(train.astype(np.int64))
        p = self.pad
        self.padded: dict[str, torch.Tensor] = {}
        self.views: dict[str, torch.Tensor] = {}
        for name, arr in inputs.items():
            padded = torch.from_numpy(_pad(arr, (p, p), (p, p), pad_mode)).to(self.device)
            self.padded[name] = padded
            self.views[name] = _windows(padded, crop_size)
        tmap = np.pad(targets.astype(np.int64), p, mode="constant", constant_values=IGNORE_INDEX)
        self.padded_targets = torch.from_numpy(tmap).to(self.device)
        self.target_views = _windows(self.padded_targets[None], crop_size)[:, :, 0]

    def positions(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-left corners (rows, cols) in scene coordinates (may be negative) of ``n`` crops."""
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"number of crops n = {n!r}: expected a positive integer")
        s, p = self.crop_size, self.pad
        pick = torch.randint(self.train_pixels.numel(), (n,), generator=generator)
        centre = self.train_pixels[pick]
        u = torch.rand((2, n), generator=generator, dtype=torch.float64)

        def corner(coord: torch.Tensor, length: int, u_axis: torch.Tensor) -> torch.Tensor:
            # The crop [lo, lo + s) contains coord and stays inside the padded scene.
            lo = torch.clamp(coord - s + 1, min=-p)
            hi = torch.clamp(coord, max=length + p - s)
            return lo + torch.floor(u_axis * (hi - lo + 1)).to(torch.int64).clamp(max=hi - lo)

        rows = corner(centre // self.width, self.height, u[0])
        cols = corner(centre % self.width, self.width, u[1])
        return rows, cols

    def grid_positions(self, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-left corners of the crops centred every ``stride`` pixels that hold a training pixel.

        Centres are at rows/cols ``0, stride, 2 * stride, ...`` of the scene, so a crop
        reaches ``crop_size // 2`` pixels past the border (padded as for random crops).
        This is how the M3amba reference code builds one epoch of training crops.
        """
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise ConfigError(f"crop grid stride = {stride!r}: expected a positive integer (e.g. 'grid:8')")
        p = self.pad
        centre_rows = torch.arange(0, self.height, stride)
        centre_cols = torch.arange(0, self.width, stride)
        rows = centre_rows.repeat_interleave(centre_cols.numel())
        cols = centre_cols.repeat(centre_rows.numel())
        # In padded coordinates a crop centred at c starts at c - p + p = c.
        holds = (self.target_views.cpu()[rows, cols] != IGNORE_INDEX).flatten(1).any(dim=1)
        return rows[holds] - p, cols[holds] - p

    def crops_at(self, rows: torch.Tensor, cols: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Crops with top-left corners ``(rows, cols)`` (scene coordinates) and their targets."""
        rows = (rows + self.pad).to(self.device)
        cols = (cols + self.pad).to(self.device)
        crops = {name: view[rows, cols] for name, view in self.views.items()}
        return crops, self.target_views[rows, cols]

    def sample(self, n: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``n`` crops ``{name: (n, C, s, s)}`` and their targets (n, s, s) int64, on the device.

        ``generator`` is a CPU :class:`torch.Generator`; the same state gives the same crops.
        """
        rows, cols = self.positions(n, generator)
        return self.crops_at(rows, cols)


# --------------------------------------------------------------------------- dense inference


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis of ``length >= size``; the last window ends at the border."""
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _check_dense(inputs: Mapping[str, np.ndarray], crop_size: int, batch_size: int, pad_mode: str) -> tuple[int, int]:
    """The scene's (H, W), after checking the arguments every dense-inference entry point takes."""
    _check_size("crop_size", crop_size, odd=False)
    _check_size("batch_size", batch_size, odd=False)
    _check_pad_mode(pad_mode)
    return _scene_shape(inputs)


def _window_grid(height: int, width: int, size: int, overlap: float) -> tuple[int, int, list[tuple[int, int]]]:
    """(padded H, padded W, window top-left corners in row-major order) of the sliding windows."""
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap = {overlap!r}: expected 0 <= overlap < 1")
    full_h, full_w = max(height, size), max(width, size)
    stride = max(1, int(size * (1.0 - overlap)))
    grid = [(r, c) for r in window_starts(full_h, size, stride) for c in window_starts(full_w, size, stride)]
    return full_h, full_w, grid


def _blend_windows(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    inputs: Mapping[str, np.ndarray],
    size: int,
    grid: list[tuple[int, int]],
    full_shape: tuple[int, int],
    num_classes: int | None,
    batch_size: int,
    pad_mode: str,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed logits (K, H', W') and window counts (H', W') of ``grid``'s windows, in grid order."""
    height, width = _scene_shape(inputs)
    full_h, full_w = full_shape
    s = size
    padded = {
        name: torch.from_numpy(_pad(arr, (0, 0), (full_h - height, full_w - width), pad_mode)).to(device)
        for name, arr in inputs.items()
    }
    views = {name: _windows(t, s) for name, t in padded.items()}
    count = torch.zeros((full_h, full_w), dtype=torch.float32, device=device)
    total: torch.Tensor | None = None
    with torch.inference_mode():
        for first in range(0, len(grid), batch_size):
            chunk = grid[first : first + batch_size]
            rows = torch.tensor([r for r, _ in chunk], device=device)
            cols = torch.tensor([c for _, c in chunk], device=device)
            out = forward({name: view[rows, cols] for name, view in views.items()})
            if not isinstance(out, torch.Tensor) or out.ndim != 4 or out.shape[0] != len(chunk) \
                    or tuple(out.shape[2:]) != (s, s) \
                    or (num_classes is not None and out.shape[1] != num_classes):
                k = "K" if num_classes is None else num_classes
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ModelOutputError(
                    f"dense forward returned {got} for {len(chunk)} windows of {s}x{s}; expected "
                    f"logits of shape ({len(chunk)}, {k}, {s}, {s})"
                )
            if total is None:
                total = torch.zeros((out.shape[1], full_h, full_w), dtype=torch.float32, device=device)
            out = out.to(torch.float32)
            # Loop over windows (few), never over pixels; keeps the sum order fixed.
            for i, (r, c) in enumerate(chunk):
                total[:, r : r + s, c : c + s] += out[i]
                count[r : r + s, c : c + s] += 1.0
    assert total is not None
    return total, count


def sliding_window_logits(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    inputs: Mapping[str, np.ndarray],
    crop_size: int,
    num_classes: int | None,
    *,
    overlap: float = 0.5,
    batch_size: int = 16,
    pad_mode: str = "reflect",
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense logits for every pixel of a scene from overlapping ``crop_size`` windows.

    Windows lie on a grid with stride ``max(1, int(crop_size * (1 - overlap)))``, the
    last row/column of windows aligned to the border; a scene smaller than a window is
    padded (bottom/right, ``pad_mode``). ``forward({name: (B, C, s, s)})`` must return
    (B, K, s, s) logits; overlapping logits are averaged. ``num_classes=None`` takes K
    from the first window.

    Returns:
        ``(logits (K, H, W) float32, count (H, W))`` on ``device``; ``count`` is how many
        windows covered each pixel (always >= 1).
    """
    height, width = _check_dense(inputs, crop_size, batch_size, pad_mode)
    full_h, full_w, grid = _window_grid(height, width, crop_size, overlap)
    total, count = _blend_windows(
        forward, inputs, crop_size, grid, (full_h, full_w), num_classes, batch_size, pad_mode, torch.device(device)
    )
    logits = (total / count)[:, :height, :width].contiguous()
    return logits, count[:height, :width].contiguous()


DENSE_STRIP_BYTES = 256 * 2**20
"""Whole-scene dense prediction of inputs whose float32 copy is larger than this runs in strips."""


def sliding_window_predict(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    inputs: Mapping[str, np.ndarray],
    crop_size: int,
    num_classes: int | None,
    *,
    overlap: float = 0.5,
    batch_size: int = 16,
    pad_mode: str = "reflect",
    device: torch.device | str = "cpu",
    strip_bytes: int | None = None,
    check: Callable[[torch.Tensor], None] | None = None,
) -> np.ndarray:
    """(H, W) int64 argmax of :func:`sliding_window_logits`, streamed in horizontal strips.

    A scene whose inputs' float32 copy exceeds ``strip_bytes`` (default :data:`DENSE_STRIP_BYTES`)
    is predicted strip by strip:
    each strip runs the windows of the whole-scene grid that overlap it (in grid order, so
    every pixel averages the same windows in the same order) on a copy of only the rows
    those windows read, then keeps the argmax. Memory is then bounded by the strip, not the
    scene (a 2404 x 8344 scene never needs its padded copy or (K, H, W) logits at once);
    windows that straddle two strips run twice. ``check(logits)`` sees each strip's (K, h, W)
    logits (e.g. to refuse non-finite values). Smaller scenes take the one-pass path.
    """
    height, width = _check_dense(inputs, crop_size, batch_size, pad_mode)
    strip_bytes = DENSE_STRIP_BYTES if strip_bytes is None else strip_bytes
    channels = sum(int(arr.shape[0]) for arr in inputs.values())
    s = crop_size
    if height <= s or width < s or channels * height * width * 4 <= strip_bytes:
        logits, _ = sliding_window_logits(forward, inputs, s, num_classes, overlap=overlap, batch_size=batch_size,
                                          pad_mode=pad_mode, device=device)
        if check is not None:
            check(logits)
        return logits.argmax(dim=0).cpu().numpy().astype(np.int64)
    full_h, full_w, grid = _window_grid(height, width, s, overlap)  # (height, width): the scene holds a window
    rows = max(s, strip_bytes // (channels * width * 4) - s)
    out = np.empty((height, width), dtype=np.int64)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        chosen = [(r, c) for r, c in grid if r < bottom and r + s > top]
        first, last = min(r for r, _ in chosen), max(r for r, _ in chosen) + s
        strip = {name: arr[:, first:last] for name, arr in inputs.items()}
        total, count = _blend_windows(
            forward, strip, s, [(r - first, c) for r, c in chosen], (last - first, full_w), num_classes, batch_size,
            pad_mode, torch.device(device),
        )
        logits = total[:, top - first:bottom - first] / count[top - first:bottom - first]
        if check is not None:
            check(logits)
        out[top:bottom] = logits.argmax(dim=0).cpu().numpy()
    return out


def sliding_window_logits_at(
    forward: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    inputs: Mapping[str, np.ndarray],
    crop_size: int,
    index: np.ndarray | torch.Tensor,
    num_classes: int | None,
    *,
    overlap: float = 0.5,
    batch_size: int = 16,
    pad_mode: str = "reflect",
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, int]:
    """Dense logits (N, K) at the flat pixels ``index``, equal to :func:`sliding_window_logits` there.

    Only the windows of the whole-scene grid that contain at least one indexed pixel are
    run. Those are all the windows covering each indexed pixel, blended in the same order,
    so every indexed pixel gets the same average as whole-scene prediction gives it. This
    is what makes dense validation cheap: a few validation pixels need a few windows, not
    the scene.

    Returns:
        ``(logits (N, K) float32 on device, windows run)``.
    """
    height, width = _check_dense(inputs, crop_size, batch_size, pad_mode)
    flat = as_index(index, height * width)
    full_h, full_w, grid = _window_grid(height, width, crop_size, overlap)
    if flat.numel() == 0:
        k = num_classes if num_classes is not None else 0
        return torch.zeros((0, k), dtype=torch.float32, device=torch.device(device)), 0
    # Integral image of the wanted pixels: windows holding at least one of them, in O(1) each.
    wanted = np.zeros((full_h + 1, full_w + 1), dtype=np.int64)
    rows, cols = np.divmod(flat.numpy(), width)
    np.add.at(wanted, (rows + 1, cols + 1), 1)
    integral = wanted.cumsum(0).cumsum(1)
    s = crop_size
    chosen = [
        (r, c) for r, c in grid
        if integral[r + s, c + s] - integral[r, c + s] - integral[r + s, c] + integral[r, c] > 0
    ]
    total, count = _blend_windows(
        forward, inputs, s, chosen, (full_h, full_w), num_classes, batch_size, pad_mode, torch.device(device)
    )
    rows_t = torch.from_numpy(rows).to(total.device)
    cols_t = torch.from_numpy(cols).to(total.device)
    logits = (total[:, rows_t, cols_t] / count[rows_t, cols_t]).T.contiguous()
    return logits, len(chosen)


__all__ = [
    "DENSE_STRIP_BYTES",
    "PAD_COPY_BYTES",
    "PAD_MODES",
    "CropSampler",
    "ModelOutputError",
    "PatchSampler",
    "SamplingError",
    "as_index",
    "border_index",
    "sliding_window_logits",
    "sliding_window_logits_at",
    "sliding_window_predict",
    "window_starts",
]
