"""Reading real datasets: .mat files, locating files, the scene cache, normalisation, cards.

Dataset plugins build on :class:`RealDataset` and register ``RealDataset(...).spec(...)``;
see :mod:`bench_core.data.loader` for the flow. Importing this package reads no file and
imports neither scipy nor h5py (they are imported when a file is read).

Environment variables read at load time:

* ``BENCH_DATA_DIR``: a folder searched for dataset files (after ``--data-dir``).
* ``BENCH_NORMALISATION``: ``minmax`` (default) or ``zscore``.
* ``BENCH_VERIFY_CHECKSUMS``: ``0`` to use files whose sha256 differs from the published
  one (the mismatch is recorded in the scene metadata); checked when the cache is made.
"""

from __future__ import annotations

from bench_core.data.cache import CACHE_FORMAT, CachedScene, SceneCache, sha256_file
from bench_core.data.cards import card_for, card_toml, export_cards
from bench_core.data.loader import (
    VERIFY_ENV,
    DataFingerprint,
    OfficialCounts,
    Raster,
    RawScene,
    RealDataset,
    label_map,
    maps_from_index,
    read_raster,
)
from bench_core.data.locate import CACHE_SCENES_DIR, DATA_DIR_ENV, Layout, Located, SearchRoot, locate, search_roots
from bench_core.data.matfile import list_variables, mat_version, read_mat, save_mat
from bench_core.data.normalise import (
    DEFAULT_NORMALISATION,
    NORMALISATION_ENV,
    NORMALISATIONS,
    describe_normalisation,
    normalise_bands,
    normalise_modalities,
    resolve_normalisation,
)

__all__ = [
    "CACHE_FORMAT",
    "CACHE_SCENES_DIR",
    "DATA_DIR_ENV",
    "DEFAULT_NORMALISATION",
    "NORMALISATIONS",
    "NORMALISATION_ENV",
    "VERIFY_ENV",
    "CachedScene",
    "DataFingerprint",
    "Layout",
    "Located",
    "OfficialCounts",
    "Raster",
    "RawScene",
    "RealDataset",
    "SceneCache",
    "SearchRoot",
    "card_for",
    "card_toml",
    "describe_normalisation",
    "export_cards",
    "label_map",
    "list_variables",
    "locate",
    "maps_from_index",
    "mat_version",
    "normalise_bands",
    "normalise_modalities",
    "read_mat",
    "read_raster",
    "resolve_normalisation",
    "save_mat",
    "search_roots",
    "sha256_file",
]
