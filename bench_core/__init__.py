"""rs-fusion-bench: a benchmark harness for multimodal remote-sensing fusion methods.

Public API for plugin authors and Python users. Importing this package touches no
device, network or disk, and does not import torch.
"""

from __future__ import annotations

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

# The one place the version is written: pyproject.toml reads it (dynamic version), and it is
# part of every cell key, so runs of another release are never taken for finished cells.
__version__ = "0.1.0"

__all__ = [
    "AUX",
    "IGNORE_INDEX",
    "BenchError",
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
    "TimingError",
    "TrainConfig",
    "__version__",
    "hookimpl",
    "load_plugins",
    "make_plugin_manager",
]
