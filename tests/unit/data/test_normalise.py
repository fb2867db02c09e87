"""Declared normalisation: per-band min-max (default) or z-score, recorded by name."""

from __future__ import annotations

import numpy as np
import pytest

from bench_core import ConfigError
from bench_core.data import (
    NORMALISATION_ENV,
    describe_normalisation,
    normalise_bands,
    normalise_modalities,
    resolve_normalisation,
)


@pytest.fixture
def cube() -> np.ndarray:
    rng = np.random.default_rng(3)
    scale = np.array([1.0, 100.0, 1e4])[:, None, None]
    return (rng.standard_normal((3, 6, 5)) * scale + 7.0).astype(np.float64)


def test_minmax_maps_every_band_to_0_1(cube: np.ndarray) -> None:
    out = normalise_bands(cube, "minmax")
    assert out.dtype == np.float32 and out.shape == cube.shape
    for b in range(cube.shape[0]):
        expected = (cube[b] - cube[b].min()) / (cube[b].max() - cube[b].min())
        np.testing.assert_allclose(out[b], expected, rtol=1e-6, atol=1e-7)
        assert out[b].min() == 0.0 and out[b].max() == pytest.approx(1.0)


def test_zscore_gives_zero_mean_unit_std_per_band(cube: np.ndarray) -> None:
    out = normalise_bands(cube, "zscore").astype(np.float64)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, rtol=1e-5)


def test_bands_last_and_bands_first_agree(cube: np.ndarray) -> None:
    hwc = np.moveaxis(cube, 0, -1)  # MATLAB's (rows, cols, bands)
    np.testing.assert_array_equal(normalise_bands(hwc, "minmax", band_axis=-1), normalise_bands(cube, "minmax"))


def test_constant_band_becomes_zero_not_nan() -> None:
    flat = np.full((2, 3, 3), 5.0)
    for method in ("minmax", "zscore"):
        out = normalise_bands(flat, method)
        assert np.isfinite(out).all() and not out.any()


def test_integer_input_is_normalised_in_float() -> None:
    raw = np.array([[[0, 65535], [32768, 100]]], dtype=np.uint16)
    out = normalise_bands(raw, "minmax")
    assert out[0, 0, 1] == 1.0 and out[0, 0, 0] == 0.0


def test_choice_from_argument_then_environment_then_default() -> None:
    assert resolve_normalisation(None, env={}) == "minmax"
    assert resolve_normalisation(None, env={NORMALISATION_ENV: "zscore"}) == "zscore"
    assert resolve_normalisation("Min-Max", env={NORMALISATION_ENV: "zscore"}) == "minmax"


def test_unknown_method_names_value_source_and_choices() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_normalisation(None, env={NORMALISATION_ENV: "robust"})
    text = str(err.value)
    assert "'robust'" in text and NORMALISATION_ENV in text and "minmax" in text and "zscore" in text


def test_description_names_method_and_modalities(cube: np.ndarray) -> None:
    arrays, text = normalise_modalities({"hsi": cube, "sar": cube[:1]}, "zscore")
    assert set(arrays) == {"hsi", "sar"}
    assert text == describe_normalisation("zscore", ("hsi", "sar"))
    assert text.startswith("zscore: per-band z-score") and text.endswith("[hsi, sar]")
    assert describe_normalisation("minmax") != describe_normalisation("zscore")
