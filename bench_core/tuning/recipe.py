"""What a study is: the request of ``bench tune``, the recipe stored on the study, sampler and pruner."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_core.errors import ConfigError, StudyError
from bench_core.specs import SplitSpec
from bench_core.tuning.attrs import ATTR_KIND, ATTR_RECIPE, KIND_TUNE, METRICS, PRUNERS

if TYPE_CHECKING:
    import optuna

    from bench_core.plugins import PluginHost


@dataclass(frozen=True)
class TuneRequest:
    """What ``bench tune`` was asked to do.

    ``trials`` is the study's total budget: a second ``bench tune`` on the same study
    continues up to it. ``overrides`` (from ``--set``) sit under the sampled values.
    """

    method: str
    dataset: str = "synthetic"
    split: str = "official"
    profile: str | None = None
    metric: str = "val_oa"
    trials: int = 20
    timeout: float | None = None
    seed: int = 0
    pruner: str = "median"
    val_fraction: float = 0.1
    val_carve: str = "auto"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    device: str = "auto"
    data_dir: Path | None = None
    study: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError(f"--metric {self.metric!r}: expected one of {', '.join(METRICS)}")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner {self.pruner!r}: expected one of {', '.join(PRUNERS)}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"--trials {self.trials!r}: expected a positive number of trials")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout {self.timeout!r}: expected a positive number of seconds")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"--val-fraction {self.val_fraction!r}: tuning scores trials on validation pixels carved "
                f"from the training pixels, so expected 0 < value < 1 (e.g. 0.1)"
            )


@dataclass(frozen=True)
class StudyRecipe:
    """What defines a tuning study; stored on the study so workers can rebuild the objective."""

    method: str
    dataset: str
    split: str
    profile: str
    metric: str
    seed: int
    val_fraction: float
    overrides: Mapping[str, Any]
    pruner: str = "median"
    trials: int = 20
    val_carve: str = "auto"

    # A study's trials are comparable only if these agree.
    IDENTITY = ("method", "dataset", "split", "profile", "metric", "seed", "val_fraction", "val_carve", "overrides")

    @property
    def default_study_name(self) -> str:
        """``tune/<method>.<profile>/<dataset>/<split>``: one study per method, dataset, split, profile."""
        return f"tune/{self.method}.{self.profile}/{self.dataset}/{self.split}"

    def to_attr(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=list))

    @classmethod
    def from_attr(cls, value: Mapping[str, Any]) -> StudyRecipe:
        return cls(**{k: value[k] for k in value if k in cls.__dataclass_fields__})

    def to_params(self) -> dict[str, str]:
        out = {k: str(v) for k, v in self.to_attr().items() if k != "overrides"}
        out["overrides"] = json.dumps(self.to_attr()["overrides"], sort_keys=True)
        return out

    def differences(self, other: StudyRecipe) -> list[str]:
        mine, theirs = self.to_attr(), other.to_attr()
        return [f"{k}: study has {theirs[k]!r}, asked {mine[k]!r}" for k in self.IDENTITY if mine[k] != theirs[k]]


def resolve_recipe(host: PluginHost, request: TuneRequest) -> StudyRecipe:
    """Check names and config against the registries; raises RegistryError/ConfigError."""
    spec = host.methods.get(request.method)
    if spec.search_space is None:
        raise ConfigError(
            f"method {spec.name!r} declares no search space, so there is nothing to tune; add "
            f"search_space=... (trial -> {{'train': ..., 'model': ...}}) to its MethodSpec"
        )
    dataset = host.datasets.get(request.dataset)
    profile = request.profile or dataset.recommended_profile
    overrides = jsonable(request.overrides)
    spec.resolve(profile, overrides)  # validates profile and --set values now
    split = SplitSpec.parse(request.split, request.val_fraction, request.val_carve)
    protocol = host.splits.get(split.protocol)
    if protocol.check_argument is not None:
        protocol.check_argument(split.argument)
    return StudyRecipe(
        method=spec.name, dataset=dataset.name, split=split.display, profile=profile, metric=request.metric,
        seed=int(request.seed), val_fraction=float(request.val_fraction), overrides=overrides,
        pruner=request.pruner, trials=request.trials, val_carve=request.val_carve,
    )


def recipe_of(study: optuna.Study) -> StudyRecipe:
    """The recipe stored on a tuning study; StudyError if it is not one."""
    kind = study.user_attrs.get(ATTR_KIND)
    if kind != KIND_TUNE or ATTR_RECIPE not in study.user_attrs:
        raise StudyError(
            f"study {study.study_name!r} is not a bench tuning study (user attribute {ATTR_KIND} = {kind!r}); "
            f"expected one made by `bench tune`"
        )
    return StudyRecipe.from_attr(study.user_attrs[ATTR_RECIPE])


def jsonable(value: Any) -> Any:
    """Tuples to lists, mappings to dicts: what JSON (Optuna attrs, MLflow params) stores."""
    return json.loads(json.dumps(value, default=list))


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (default: stop a trial whose val_oa falls below the median of earlier trials at
    the same epoch, after 4 complete trials), ``hyperband``, ``halving`` or ``none``."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner {name!r}: expected one of {', '.join(PRUNERS)}")


def make_sampler(seed: int, parallel: bool = False) -> optuna.samplers.BaseSampler:
    """TPE under ``seed``; ``parallel`` lets concurrent workers avoid proposing the same point."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)


__all__ = [
    "StudyRecipe",
    "TuneRequest",
    "jsonable",
    "make_pruner",
    "make_sampler",
    "recipe_of",
    "resolve_recipe",
]
