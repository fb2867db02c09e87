"""rs-fusion-bench: a benchmark harness for multimodal remote-sensing fusion methods.

Public API for plugin authors and Python users. Importing this package touches no
device, network or disk, and does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench_core.cells import Cell, CellResult
from bench_core.config import model_options, option
from bench_core.errors import (
    BenchError,
    ConfigError,
    DatasetError,
    MetricError,
    MissingModalityError,
    ModelOutputError,
    NonFiniteLossError,
    NonFiniteOutputError,
    PluginLoadError,
    RegistryError,
    SamplingError,
    SplitError,
    TimingError,
)
from bench_core.hookspecs import hookimpl
from bench_core.plugins import PluginHost, PluginInfo, load_plugins, make_plugin_manager
from bench_core.scene import AUX, IGNORE_INDEX, Scene, SceneInfo
from bench_core.specs import (
    DataFile,
    DatasetContext,
    DatasetSpec,
    MethodSpec,
    PixelEstimator,
    ResolvedConfig,
    SplitProtocol,
    SplitSpec,
    Stage,
    TrainConfig,
)
from bench_core._version import __version__
from bench_core.splits import choose_blocks, round_half_up, window_cover

if TYPE_CHECKING:
    from bench_core.training import StageContext
    from bench_core.tuning.space import suggest_optimizer


__all__ = [
    "AUX",
    "IGNORE_INDEX",
    "BenchError",
    "Cell",
    "CellResult",
    "ConfigError",
    "DataFile",
    "DatasetContext",
    "DatasetError",
    "DatasetSpec",
    "MethodSpec",
    "MetricError",
    "MissingModalityError",
    "ModelOutputError",
    "NonFiniteLossError",
    "NonFiniteOutputError",
    "PixelEstimator",
    "PluginHost",
    "PluginInfo",
    "PluginLoadError",
    "RegistryError",
    "ResolvedConfig",
    "SamplingError",
    "Scene",
    "SceneInfo",
    "SplitError",
    "SplitProtocol",
    "SplitSpec",
    "Stage",
    "StageContext",
    "TimingError",
    "TrainConfig",
    "__version__",
    "choose_blocks",
    "hookimpl",
    "load_plugins",
    "make_plugin_manager",
    "model_options",
    "option",
    "round_half_up",
    "suggest_optimizer",
    "window_cover",
]

# Exported lazily: ``bench_core.training`` imports torch, which ``import bench_core`` must not;
# ``bench_core.tuning`` is loaded on first use, not by ``import bench_core``.
_LAZY = {"StageContext": "bench_core.training", "suggest_optimizer": "bench_core.tuning.space"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bench_core' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
