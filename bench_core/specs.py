"""What plugins register: method, dataset and split specs (frozen dataclasses).

A spec is data plus a few callables. Provenance fields (paper, url, licence) travel
with every spec into the MLflow runs and the leaderboards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from bench_core.config import deep_merge, is_int, is_number, reject_unknown_keys
from bench_core.errors import ConfigError, RegistryError

if TYPE_CHECKING:  # heavy imports only for type checkers
    import optuna

    from bench_core.scene import Scene, SceneInfo

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
REQUIRED_PROFILES = ("paper", "fast")
InputKind = Literal["pixel", "patch", "dense"]

# The one list of each: TrainConfig validates against these, the Trainer builds from a table keyed
# by them (bench_core.training.optim) and a test fails when the two differ.
OptimizerName = Literal["adam", "adamw", "sgd"]
SchedulerName = Literal["none", "step", "multistep", "exponential", "cosine", "poly"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)


def check_name(kind: str, name: str) -> None:
    """Names are lowercase ``[a-z0-9_-]`` so they work in CLIs, files and MLflow keys."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise RegistryError(
            f"{kind} name {name!r} is invalid; expected lowercase letters, digits, '_' or '-' "
            f"(e.g. 'two-branch-cnn'), starting with a letter or digit"
        )


# --------------------------------------------------------------------------- training config


@dataclass(frozen=True)
class TrainConfig:
    """The harness-owned part of a method's config: how the Trainer trains it.

    Every field can be set in a profile under ``"train"``; unknown keys are an error.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: OptimizerName = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: SchedulerName = "none"
    step_size: int = 50
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    power: float = 0.9
    steps_per_epoch: int | None = None
    """Optimizer steps per epoch; ``None`` = one pass over the training pixels (patch/pixel)
    or, for dense methods, as ``crops_per_epoch`` says. When both are set, this caps the
    steps of a ``crops_per_epoch`` epoch."""
    crops_per_epoch: int | str | None = None
    """Dense methods: what one epoch is. ``None`` = ``ceil(train pixels / (batch_size * 64))``
    batches of random crops around training pixels; an int N = N random crops
    (``ceil(N / batch_size)`` steps); ``"grid:K"`` = every crop centred on a stride-K grid
    that holds a training pixel, in a shuffled order (the M3amba reference's epoch)."""
    patch_size: int | None = None
    """Patch side (patch methods, odd) or crop side (dense methods); ``None`` = the spec's default."""
    val_every: int = 1
    early_stopping_patience: int | None = None
    """Stop after this many validation checks without a better ``val_oa``; ``None`` = never."""
    restore_best: bool = False
    """Restore the weights of the best validation epoch before the final evaluation."""
    grad_clip: float | None = None
    eval_batch_size: int = 256
    no_decay_1d: bool = False
    """Give weight decay 0 to every 1-D parameter (biases, norm scales), as timm and many
    transformer recipes do. Parameters flagged ``_no_weight_decay = True`` always get 0."""

    def __post_init__(self) -> None:
        positive_ints = ("epochs", "batch_size", "step_size", "val_every", "eval_batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ConfigError(
                    f"train.{name} = {value!r}: expected a positive integer (e.g. --set train.{name}=10)"
                )
        for name in ("steps_per_epoch", "patch_size", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise ConfigError(
                    f"train.{name} = {value!r}: expected a positive integer or null (e.g. --set train.{name}=10)"
                )
        numbers = {  # name: (lowest allowed, lowest excluded?, example)
            "lr": (0.0, True, "0.001"), "weight_decay": (0.0, False, "0.0001"), "momentum": (0.0, False, "0.9"),
            "gamma": (0.0, True, "0.1"), "power": (0.0, False, "0.9"),
        }
        for name, (low, open_low, example) in numbers.items():
            value = getattr(self, name)
            if not is_number(value) or value < low or (open_low and value == low):
                kind = "a positive number" if open_low else "a number >= 0"
                raise ConfigError(f"train.{name} = {value!r}: expected {kind} (e.g. --set train.{name}={example})")
        if self.grad_clip is not None and (not is_number(self.grad_clip) or self.grad_clip <= 0):
            raise ConfigError(
                f"train.grad_clip = {self.grad_clip!r}: expected a positive number (the largest gradient norm) "
                f"or null (e.g. --set train.grad_clip=1.0)"
            )
        for name in ("restore_best", "no_decay_1d"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"train.{name} = {getattr(self, name)!r}: expected true or false (e.g. --set train.{name}=true)"
                )
        milestones = self.milestones
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, (list, tuple)) or not all(
            is_int(m) and m >= 1 for m in milestones
        ):
            raise ConfigError(
                f"train.milestones = {milestones!r}: expected a list of positive epoch numbers, e.g. "
                f"--set train.milestones=[100,150] (one epoch: --set train.milestones=[5])"
            )
        crops = self.crops_per_epoch
        if crops is not None and crop_grid_stride(crops) is None and (
            not isinstance(crops, int) or isinstance(crops, bool) or crops < 1
        ):
            raise ConfigError(
                f"train.crops_per_epoch = {crops!r}: expected null, a positive integer (random crops "
                f"per epoch) or 'grid:K' with K a positive integer (every stride-K crop holding a "
                f"training pixel), e.g. 'grid:8'"
            )
        for name, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"train.{name} = {getattr(self, name)!r}: expected one of {allowed} "
                    f"(e.g. --set train.{name}={allowed[1]})"
                )
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        reject_unknown_keys("train config", values, [f.name for f in fields(cls)])
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def crop_grid_stride(value: object) -> int | None:
    """K of a ``"grid:K"`` ``crops_per_epoch`` value; ``None`` for anything else."""
    if not isinstance(value, str) or not value.startswith("grid:"):
        return None
    text = value[len("grid:"):]
    return int(text) if text.isdigit() and int(text) > 0 else None


@dataclass(frozen=True)
class ResolvedConfig:
    """A method's config after profile + overrides: ``train`` for the Trainer, ``model`` for build."""

    profile: str
    train: TrainConfig
    model: Mapping[str, Any]

    def to_params(self) -> dict[str, str]:
        """Flat ``{"train.lr": "0.001", "model.width": "32"}`` form for MLflow params."""
        out = {f"train.{k}": _param_str(v) for k, v in self.train.to_dict().items()}
        out.update({f"model.{k}": _param_str(v) for k, v in _flatten(self.model).items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "train": self.train.to_dict(), "model": dict(self.model)}


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _param_str(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return repr(value) if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------- methods


@runtime_checkable
class PixelEstimator(Protocol):
    """What ``build`` returns for ``input_kind="pixel"`` methods (scikit-learn style)."""

    def fit(self, features: np.ndarray, targets: np.ndarray) -> Any: ...

    def predict(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Stage:
    """An optional training stage a method declares (e.g. BDGF's diffusion pre-training).

    The Trainer calls ``run(context)`` before the main training and times it apart as
    ``time_stage_<name>_s``. ``context`` is a :class:`bench_core.training.StageContext`.
    """

    name: str
    run: Callable[[Any], None]


@dataclass(frozen=True)
class MethodSpec:
    """A method a plugin registers.

    Attributes:
        name: registry name, e.g. ``"two-branch-cnn"``.
        build: ``build(model_config, scene_info) -> torch.nn.Module`` (patch and dense
            methods) or a :class:`PixelEstimator` (pixel methods). Build on the CPU; the
            Trainer moves the module to the device.
        input_kind: ``"pixel"`` ((N, C) vectors per input), ``"patch"`` ((N, C, p, p)
            patches centred on labelled pixels, logits (N, K)) or ``"dense"`` ((N, C, s, s)
            crops, logits (N, K, s, s), loss masked to training pixels).
        modalities: inputs the method takes, e.g. ``("hsi", "x")``; ``"x"`` means every
            non-HSI modality of the scene stacked along bands.
        profiles: ``{"paper": {...}, "fast": {...}}`` each with optional ``"train"``
            (:class:`TrainConfig` fields) and ``"model"`` (passed to ``build``) sections.
        patch_size: default patch side (patch), crop side (dense); 1 for pixel methods.
        search_space: ``search_space(trial) -> {"train": {...}, "model": {...}}`` overrides
            sampled by Optuna, or ``None``; :func:`bench_core.tuning.space.suggest_optimizer`
            gives the usual ``train`` part (log-scale ``lr`` and ``weight_decay``).
        stages: optional :class:`Stage` hooks run before the main training.
        deterministic: whether two runs under one seed on the CPU give identical results.
        paper, url, licence, description: provenance shown in listings and runs.
        validate_model: ``validate_model(model_config)`` raises
            :class:`~bench_core.errors.ConfigError` for unknown keys or invalid values of the
            resolved ``model`` section, without building anything; the harness calls it when
            it expands a grid, so a typo in ``--set model.KEY=...`` stops ``bench run`` (exit 2)
            before any cell runs. ``None``: keys are only checked by ``build``, in the cell.
            Declare the keys as a dataclass and check them with
            :func:`bench_core.config.model_options` (unknown keys, types, bounds); add the
            checks that relate one key to another after it.

    The module's ``forward(inputs)`` takes ``{name: tensor}`` (names as in
    ``modalities``) and returns logits, or a mapping with ``"logits"`` plus auxiliaries.
    If the module defines ``loss(output, targets)``, the Trainer uses it; otherwise
    cross-entropy with ``ignore_index=-1``.
    """

    name: str
    build: Callable[[Mapping[str, Any], SceneInfo], Any]
    input_kind: InputKind
    modalities: tuple[str, ...]
    profiles: Mapping[str, Mapping[str, Any]]
    patch_size: int = 1
    search_space: Callable[[optuna.Trial], Mapping[str, Any]] | None = None
    stages: tuple[Stage, ...] = ()
    deterministic: bool = True
    paper: str = ""
    url: str = ""
    licence: str = ""
    description: str = ""
    validate_model: Callable[[Mapping[str, Any]], object] | None = None

    def __post_init__(self) -> None:
        check_name("method", self.name)
        if self.input_kind not in ("pixel", "patch", "dense"):
            raise RegistryError(
                f"method {self.name!r}: input_kind {self.input_kind!r}; expected 'pixel', 'patch' or 'dense'"
            )
        if not callable(self.build):
            raise RegistryError(f"method {self.name!r}: build must be callable, got {self.build!r}")
        if not self.modalities:
            raise RegistryError(f"method {self.name!r}: modalities is empty; e.g. ('hsi', 'x')")
        object.__setattr__(self, "modalities", tuple(self.modalities))
        missing = [p for p in REQUIRED_PROFILES if p not in self.profiles]
        if missing:
            raise RegistryError(
                f"method {self.name!r}: profiles {missing} missing; every method needs "
                f"{list(REQUIRED_PROFILES)} (the paper's settings and a CPU-friendly one)"
            )
        if self.patch_size < 1 or (self.input_kind == "patch" and self.patch_size % 2 == 0):
            raise RegistryError(
                f"method {self.name!r}: patch_size {self.patch_size}; expected a positive size, "
                f"odd for patch methods (the patch is centred on the labelled pixel)"
            )
        for pname, profile in self.profiles.items():
            check_name("profile", pname)
            extra = sorted(set(profile) - {"train", "model"})
            if extra:
                raise RegistryError(
                    f"method {self.name!r} profile {pname!r}: unknown section(s) {extra}; "
                    f"expected 'train' and/or 'model'"
                )
            TrainConfig.from_mapping(profile.get("train", {}))  # validate early

    def resolve(self, profile: str, overrides: Mapping[str, Any] | None = None) -> ResolvedConfig:
        """Config for ``profile`` with ``overrides`` (``{"train": {...}, "model": {...}}``) on top."""
        if profile not in self.profiles:
            raise ConfigError(
                f"method {self.name!r} has no profile {profile!r}; available: {sorted(self.profiles)}"
            )
        base = self.profiles[profile]
        overrides = overrides or {}
        extra = sorted(set(overrides) - {"train", "model"})
        if extra:
            raise ConfigError(f"config override section(s) {extra} unknown; expected 'train', 'model'")
        train = {**base.get("train", {}), **overrides.get("train", {})}
        model = deep_merge(base.get("model", {}), overrides.get("model", {}))
        resolved = TrainConfig.from_mapping(train)
        # The patch/crop size is resolved here, once; every later step reads train.patch_size.
        resolved = replace(resolved, patch_size=self.effective_patch_size(resolved))
        if self.validate_model is not None:
            self.validate_model(model)  # unknown keys and bad values, before any cell runs
        return ResolvedConfig(profile=profile, train=resolved, model=model)

    def leakage_window(self, train: TrainConfig) -> int:
        """Side of the neighbourhood a prediction at one pixel depends on, for leakage and guard bands.

        The patch side for patch methods; ``2s - 1`` for dense methods with crop side s (the
        prediction at a pixel averages every sliding window that covers it, and those reach
        s - 1 pixels away); 1 for pixel methods.
        """
        size = self.effective_patch_size(train)
        return 2 * size - 1 if self.input_kind == "dense" else size

    def effective_patch_size(self, train: TrainConfig) -> int:
        """Patch side (patch methods), crop side (dense methods), 1 for pixel methods."""
        if self.input_kind == "pixel":
            return 1
        size = train.patch_size or self.patch_size
        if self.input_kind == "patch" and size % 2 == 0:
            raise ConfigError(
                f"train.patch_size = {size} for patch method {self.name!r}: expected an odd "
                f"number so that the patch has a centre pixel"
            )
        return size


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetContext:
    """Where a dataset may look for and cache its files."""

    data_dir: Path | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class DataFile:
    """One source file of a dataset: name, sha256, and the mirrors that serve it."""

    name: str
    sha256: str
    urls: tuple[str, ...] = ()
    size: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a plugin registers.

    Attributes:
        name: registry name, e.g. ``"augsburg"``.
        load: ``load(context) -> Scene``; must not download (fetching is explicit).
        modalities: modality names the scene provides, e.g. ``("hsi", "sar")``.
        class_names: the K class names, label ``k`` -> ``class_names[k-1]``.
        shape: (H, W) of the scene, if fixed.
        recommended_profile: the profile ``bench run`` uses when none is given.
        files: source files with sha256 and mirrors (empty for generated data).
    """

    name: str
    load: Callable[[DatasetContext], Scene]
    modalities: tuple[str, ...]
    class_names: tuple[str, ...]
    shape: tuple[int, int] | None = None
    recommended_profile: str = "paper"
    files: tuple[DataFile, ...] = ()
    paper: str = ""
    url: str = ""
    licence: str = ""
    citation: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        check_name("dataset", self.name)
        if not callable(self.load):
            raise RegistryError(f"dataset {self.name!r}: load must be callable")
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class SplitProtocol:
    """A split protocol a plugin registers.

    ``make(scene, argument, rng) -> (train_index, test_index)``: flat pixel indices
    (into ``H * W``, row-major) of labelled pixels. The harness carves validation
    pixels from ``train_index`` and computes leakage; ``make`` only partitions.
    ``argument`` is the text after ``:`` on the command line (``None`` if absent).

    A protocol that declares ``uses_patch_size=True`` is called as
    ``make(scene, argument, rng, patch_size=p)`` with the cell's patch (or crop) side,
    e.g. to keep a guard band of the patch radius between train and test.
    """

    name: str
    make: Callable[..., tuple[np.ndarray, np.ndarray]]
    takes_argument: bool = False
    argument_help: str = ""
    description: str = ""
    paper: str = ""
    url: str = ""
    licence: str = ""
    uses_patch_size: bool = False  # last ones, so positional construction keeps working
    validation: str = "random"
    """How ``--val-carve auto`` carves validation for this protocol: ``"random"`` pixels or
    ``"spatial"`` blocks with a guard band (:func:`bench_core.splits.carve_validation_spatial`)."""
    check_argument: Callable[[str | None], object] | None = None
    """``check_argument(argument)`` raises :class:`~bench_core.errors.SplitError` for an argument
    ``make`` would refuse (e.g. ``per-class:-3``); the harness calls it when it expands a grid, so
    ``bench run`` stops (exit 2) before any cell runs. ``None``: only ``make`` checks it."""

    def __post_init__(self) -> None:
        check_name("split", self.name)
        if self.validation not in ("random", "spatial"):
            raise RegistryError(
                f"split protocol {self.name!r}: validation = {self.validation!r}; expected 'random' or 'spatial'"
            )


@dataclass(frozen=True)
class SplitSpec:
    """A split as asked for on the command line: ``official``, ``per-class:20``, ``fraction:0.05``."""

    protocol: str
    argument: str | None = None
    val_fraction: float = 0.1
    val_carve: str = "auto"
    """``"random"``, ``"spatial"`` or ``"auto"`` (the protocol's choice); see ``bench_core.splits``."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(
                f"val_fraction = {self.val_fraction!r}: expected 0 <= value < 1 "
                f"(the share of each class's training pixels held out for validation)"
            )
        if self.val_carve not in ("auto", "random", "spatial"):
            raise ConfigError(
                f"val_carve = {self.val_carve!r}: expected 'auto' (the protocol's choice), 'random' (pixels) "
                f"or 'spatial' (blocks with a guard band, validation leakage 0)"
            )

    @classmethod
    def parse(cls, text: str, val_fraction: float = 0.1, val_carve: str = "auto") -> SplitSpec:
        protocol, _, argument = text.strip().partition(":")
        return cls(protocol=protocol, argument=argument or None, val_fraction=val_fraction, val_carve=val_carve)

    @property
    def display(self) -> str:
        return self.protocol if self.argument is None else f"{self.protocol}:{self.argument}"


__all__ = [
    "DataFile",
    "DatasetContext",
    "DatasetSpec",
    "InputKind",
    "MethodSpec",
    "OPTIMIZERS",
    "OptimizerName",
    "PixelEstimator",
    "ResolvedConfig",
    "SCHEDULERS",
    "SchedulerName",
    "SplitProtocol",
    "SplitSpec",
    "Stage",
    "TrainConfig",
    "check_name",
]
