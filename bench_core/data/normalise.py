"""Declared normalisation of a scene's rasters: one named, recorded step.

Every real dataset loader normalises each modality per band over the whole scene and
records what it did as ``scene.metadata["normalisation"]``; the runner logs that string
as the run param ``normalisation``, so two runs with different preprocessing never look
alike.

* ``minmax`` (default): ``(x - min_b) / (max_b - min_b)`` per band b, into [0, 1]
  (M3amba's crop pipeline, Hong's band-wise ``mat2gray``).
* ``zscore``: ``(x - mean_b) / std_b`` per band b (S2Mamba).

A constant band becomes all zeros under either. Pick the method with the environment
variable ``BENCH_NORMALISATION`` (``minmax`` or ``zscore``) or the ``method`` argument.
The on-disk cache keeps one converted copy per method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from bench_core.errors import ConfigError

__all__ = [
    "DEFAULT_NORMALISATION",
    "NORMALISATIONS",
    "NORMALISATION_ENV",
    "describe_normalisation",
    "normalise_bands",
    "normalise_modalities",
    "resolve_normalisation",
]

NORMALISATION_ENV = "BENCH_NORMALISATION"
DEFAULT_NORMALISATION = "minmax"
NORMALISATIONS: Mapping[str, str] = {
    "minmax": "per-band min-max over the whole scene to [0, 1] (constant bands -> 0)",
    "zscore": "per-band z-score over the whole scene (mean 0, std 1; constant bands -> 0)",
}
"""Method name -> the description recorded in the scene metadata and the run params."""


def resolve_normalisation(method: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The method to use: ``method`` if given, else ``$BENCH_NORMALISATION``, else ``minmax``."""
    env = os.environ if env is None else env
    source = "argument"
    if method is None:
        method, source = env.get(NORMALISATION_ENV) or DEFAULT_NORMALISATION, NORMALISATION_ENV
    value = method.strip().lower().replace("-", "")
    if value not in NORMALISATIONS:
        raise ConfigError(
            f"normalisation {method!r} (from {source}) is unknown; expected one of "
            f"{sorted(NORMALISATIONS)}, e.g. {NORMALISATION_ENV}=zscore"
        )
    return value


def describe_normalisation(method: str, modalities: tuple[str, ...] = ()) -> str:
    """The text recorded as ``metadata["normalisation"]``: ``"minmax: per-band ... (hsi, sar)"``."""
    method = resolve_normalisation(method)
    where = f" [{', '.join(modalities)}]" if modalities else ""
    return f"{method}: {NORMALISATIONS[method]}{where}"


def normalise_bands(array: np.ndarray, method: str = DEFAULT_NORMALISATION, band_axis: int = 0) -> np.ndarray:
    """Normalise each band of ``array`` over all its pixels; returns (C, H, W) float32.

    ``array`` is (C, H, W) with ``band_axis=0`` or (H, W, C) with ``band_axis=-1`` (a 2-D
    array is one band). Statistics are taken in float64 band by band, so a large scene
    never needs a float64 copy of the whole cube.
    """
    method = resolve_normalisation(method)
    data = np.asarray(array)
    if data.ndim == 2:
        data = data[None]
    elif data.ndim == 3:
        data = np.moveaxis(data, band_axis, 0)
    else:
        raise ConfigError(f"normalise_bands: array of shape {data.shape}; expected (C, H, W) or (H, W)")
    out = np.empty(data.shape, dtype=np.float32)
    for b in range(data.shape[0]):
        band = data[b].astype(np.float64)
        if method == "minmax":
            lo, hi = band.min(), band.max()
            shift, scale = lo, hi - lo
        else:
            shift, scale = band.mean(), band.std()
        if scale > 0 and np.isfinite(scale):
            out[b] = (band - shift) / scale
        else:
            out[b] = 0.0
    return out


def normalise_modalities(
    modalities: Mapping[str, np.ndarray], method: str = DEFAULT_NORMALISATION
) -> tuple[dict[str, np.ndarray], str]:
    """Normalise every (C, H, W) modality; returns the arrays and the description to record."""
    method = resolve_normalisation(method)
    out = {name: normalise_bands(arr, method, band_axis=0) for name, arr in modalities.items()}
    return out, describe_normalisation(method, tuple(modalities))
