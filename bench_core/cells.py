"""The hook argument types of a benchmark cell: :class:`Cell` and :class:`CellResult`.

They live apart from :mod:`bench_core.runner` so that :mod:`bench_core.hookspecs` and
plugins can name them without importing the runner (which imports the plugin loader,
which imports the hook specs). :mod:`bench_core.runner` re-exports both.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from bench_core._version import __version__
from bench_core.specs import ResolvedConfig, SplitSpec

__all__ = ["Cell", "CellResult"]


@dataclass(frozen=True)
class Cell:
    """One unit of work of a benchmark grid."""

    method: str
    profile: str
    dataset: str
    split: SplitSpec
    seed: int
    plugin: str
    plugin_dist: str | None = None
    plugin_version: str | None = None
    config: ResolvedConfig | None = None
    profile_source: str = "cli"
    dataset_fingerprint: str = ""
    load_error: str | None = None

    @property
    def display_id(self) -> str:
        """``<method>.<profile>/<dataset>/<split>/s<seed>``: the MLflow run name."""
        return f"{self.method}.{self.profile}/{self.dataset}/{self.split.display}/s{self.seed}"

    @property
    def key(self) -> str:
        """Stable hash of everything that defines the cell's result (resume key)."""
        payload = {
            "method": self.method,
            "profile": self.profile,
            "config": self.config.to_dict() if self.config is not None else None,
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
            "split": self.split.display,
            "val_fraction": self.split.val_fraction,
            "val_carve": self.split.val_carve,
            "seed": self.seed,
            "plugin_dist": self.plugin_dist,
            "plugin_version": self.plugin_version,
            "bench_version": __version__,
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def train_seed(self) -> int:
        """Seed applied to Python, NumPy and torch for this cell, derived from the cell id.

        Different cells get unrelated seeds; the same cell always gets the same one.
        """
        digest = hashlib.sha256(f"train/{self.display_id}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class CellResult:
    """What happened to a cell (passed to ``bench_cell_finished``)."""

    status: str
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    skipped: bool = False
