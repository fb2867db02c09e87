"""The optimizer and the learning-rate scheduler a :class:`~bench_core.specs.TrainConfig` names.

Each is built from one table keyed by the names the config accepts
(:data:`bench_core.specs.OPTIMIZERS`, :data:`bench_core.specs.SCHEDULERS`, read from the
``Literal`` types of ``TrainConfig.optimizer`` and ``TrainConfig.scheduler``). Adding an
optimizer is a name in that ``Literal`` and a row here; a unit test fails if the two differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from bench_core.errors import ConfigError
from bench_core.sampling import ModelOutputError
from bench_core.specs import TrainConfig

LRScheduler = torch.optim.lr_scheduler.LRScheduler

OptimizerFactory = Callable[[list[dict[str, Any]], TrainConfig], torch.optim.Optimizer]
"""``(parameter groups, train config) -> optimizer``; every group carries its own weight decay."""

SchedulerFactory = Callable[[torch.optim.Optimizer, TrainConfig], LRScheduler | None]
"""``(optimizer, train config) -> scheduler`` stepped once per epoch, or ``None`` for a constant rate."""

OPTIMIZER_FACTORIES: dict[str, OptimizerFactory] = {
    "adam": lambda groups, train: torch.optim.Adam(groups, lr=train.lr),
    "adamw": lambda groups, train: torch.optim.AdamW(groups, lr=train.lr),
    "sgd": lambda groups, train: torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum),
}


def _poly(optimizer: torch.optim.Optimizer, train: TrainConfig) -> LRScheduler:
    epochs, power = train.epochs, train.power
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(0.0, 1.0 - e / epochs) ** power)


SCHEDULER_FACTORIES: dict[str, SchedulerFactory] = {
    "none": lambda optimizer, train: None,
    "step": lambda optimizer, train: torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=train.step_size, gamma=train.gamma
    ),
    "multistep": lambda optimizer, train: torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(train.milestones), gamma=train.gamma
    ),
    "exponential": lambda optimizer, train: torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=train.gamma),
    "cosine": lambda optimizer, train: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=train.epochs),
    "poly": _poly,
}


def _one_of(names: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``: the choices as an error message lists them."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def no_decay(parameter: nn.Parameter, train: TrainConfig) -> bool:
    """Whether ``parameter`` gets weight decay 0: flagged ``_no_weight_decay``, or 1-D under ``no_decay_1d``."""
    return bool(getattr(parameter, "_no_weight_decay", False)) or (train.no_decay_1d and parameter.ndim <= 1)


def make_optimizer(model: nn.Module, train: TrainConfig, method: str = "the method") -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` over the module's trainable parameters.

    Two parameter groups: ``train.weight_decay`` for most, 0 for those :func:`no_decay`
    picks (SSM ``A_logs``/``Ds``, attention temperatures: the VMamba and UNETR++ convention).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ModelOutputError(
            f"method {method!r}: the built module has no trainable parameters; expected at least one "
            f"parameter with requires_grad=True"
        )
    factory = OPTIMIZER_FACTORIES.get(train.optimizer)
    if factory is None:
        raise ConfigError(f"train.optimizer = {train.optimizer!r}: expected {_one_of(OPTIMIZER_FACTORIES)}")
    decayed: list[nn.Parameter] = []
    exempt: list[nn.Parameter] = []
    for p in params:
        (exempt if no_decay(p, train) else decayed).append(p)
    groups: list[dict[str, Any]] = []
    if decayed:
        groups.append({"params": decayed, "weight_decay": train.weight_decay})
    if exempt:
        groups.append({"params": exempt, "weight_decay": 0.0})
    return factory(groups, train)


def describe_optimizer(model: nn.Module, train: TrainConfig) -> dict[str, str]:
    """Run params saying how many trainable tensors (and values) get weight decay 0."""
    exempt = [p for p in model.parameters() if p.requires_grad and no_decay(p, train)]
    return {
        "optimizer.no_decay_tensors": str(len(exempt)),
        "optimizer.no_decay_values": str(sum(p.numel() for p in exempt)),
    }


def make_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig) -> LRScheduler | None:
    """The per-epoch scheduler ``train.scheduler`` (``None`` for ``"none"``)."""
    factory = SCHEDULER_FACTORIES.get(train.scheduler)
    if factory is None:
        raise ConfigError(f"train.scheduler = {train.scheduler!r}: expected {_one_of(SCHEDULER_FACTORIES)}")
    return factory(optimizer, train)


__all__ = [
    "OPTIMIZER_FACTORIES",
    "SCHEDULER_FACTORIES",
    "OptimizerFactory",
    "SchedulerFactory",
    "describe_optimizer",
    "make_optimizer",
    "make_scheduler",
    "no_decay",
]
