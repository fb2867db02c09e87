"""Fixtures of the data tests: fake dataset folders and the loaders under test."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from bench_core import DatasetContext
from bench_core.data import RealDataset
from tests.conftest import SHARED, skip_or_fail_in_ci

FAKE_MODULES = {
    "augsburg": "tests.data.augsburg.make_fake",
    "berlin": "tests.data.berlin.make_fake",
    "houston2013": "tests.data.houston2013.make_fake",
    "muufl": "tests.data.muufl.make_fake",
    "trento": "tests.data.trento.make_fake",
    "dfc2018": "tests.data.dfc2018.make_fake",
    "yellow-river": "tests.data.yellow_river.make_fake",
    "lcz-hk": "tests.data.lcz_hk.make_fake",
}
NO_VERIFY = {"BENCH_VERIFY_CHECKSUMS": "0"}
"""Fake files never match the published sha256: load them with verification off."""


def fake_module(dataset: str) -> ModuleType:
    return importlib.import_module(FAKE_MODULES[dataset])


def real_loader(dataset: str) -> RealDataset:
    """The loader the registered spec uses (``augsburg``, ``berlin``, ``houston2013``, ...)."""
    if dataset in ("augsburg", "augsburg-dsm", "berlin"):
        from bench_plugins.datasets.hong2021 import make_loader

        return make_loader(dataset)
    module = importlib.import_module(f"bench_plugins.datasets.{dataset.replace('-', '_')}")
    return module.make_loader()


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's data settings never leak into these tests."""
    for var in ("BENCH_DATA_DIR", "BENCH_NORMALISATION", "BENCH_VERIFY_CHECKSUMS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., tuple[Path, dict[str, str]]]:
    """``make_dataset(name, layout, mat_version="5", seed=0)`` -> (data_dir, {file: sha256}).

    The files land in ``<data_dir>/<name>/`` as `bench datasets fetch` would put them.
    """

    def make(dataset: str, layout: str, mat_version: str = "5", seed: int = 0) -> tuple[Path, dict[str, str]]:
        data_dir = tmp_path / f"data-{dataset}-{layout}-{mat_version}-{seed}"
        sha = fake_module(dataset).make_fake(data_dir / dataset, seed=seed, layout=layout, mat_version=mat_version)
        return data_dir, sha

    return make


@pytest.fixture
def context_for(tmp_path: Path) -> Callable[[Path], DatasetContext]:
    """A DatasetContext reading ``data_dir`` and caching under the test's folder."""

    def make(data_dir: Path, cache: bool = True) -> DatasetContext:
        return DatasetContext(data_dir=data_dir, cache_dir=tmp_path / "cache" if cache else None)

    return make


@pytest.fixture
def shared_data() -> Path:
    """The small real files of ../shared/data (Houston2013 label maps, Trento mirror files)."""
    folder = SHARED / "data"
    if not (folder / "trento-mirror").is_dir():
        skip_or_fail_in_ci(f"real data files not found in {folder} (a checkout without ../shared)")
    return folder
