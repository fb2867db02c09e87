"""Helpers for writing a method's search space (``MethodSpec.search_space``).

A search space is ``search_space(trial) -> {"train": {...}, "model": {...}}``; the ``train`` part
of almost every method is the optimizer's learning rate and weight decay on a log scale, which
:func:`suggest_optimizer` draws under fixed Optuna parameter names (``lr``, ``weight_decay``), so
studies of different methods name them alike::

    def search_space(trial):
        return {
            "train": suggest_optimizer(trial, lr=(1e-4, 1e-2), weight_decay=(1e-6, 1e-2)),
            "model": {"dropout": trial.suggest_float("dropout", 0.0, 0.5)},
        }

Imports no Optuna: the trial is the caller's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench_core.config import is_number
from bench_core.errors import ConfigError

if TYPE_CHECKING:
    import optuna


def _log_range(name: str, bounds: tuple[float, float]) -> tuple[float, float]:
    if (
        not isinstance(bounds, (tuple, list))
        or len(bounds) != 2
        or not all(is_number(b) for b in bounds)
        or not 0 < bounds[0] <= bounds[1]
    ):
        raise ConfigError(
            f"suggest_optimizer {name} = {bounds!r}: expected (low, high) with 0 < low <= high "
            f"(it is sampled on a log scale), e.g. {name}=(1e-4, 1e-2)"
        )
    return float(bounds[0]), float(bounds[1])


def suggest_optimizer(
    trial: optuna.Trial,
    *,
    lr: tuple[float, float],
    weight_decay: tuple[float, float] | None = None,
) -> dict[str, float]:
    """The ``train`` overrides of one trial: ``lr`` and, if a range is given, ``weight_decay``.

    Each is drawn with ``trial.suggest_float(name, low, high, log=True)`` under the Optuna
    parameter name ``"lr"`` / ``"weight_decay"``, in that order.

    Args:
        trial: the Optuna trial (or anything with ``suggest_float``).
        lr: (low, high) of the learning rate, 0 < low <= high.
        weight_decay: (low, high) of the weight decay, or ``None`` to leave it to the profile.

    Raises:
        ConfigError: a range that is not (low, high) with 0 < low <= high.
    """
    ranges = {"lr": _log_range("lr", lr)}
    if weight_decay is not None:
        ranges["weight_decay"] = _log_range("weight_decay", weight_decay)
    return {name: trial.suggest_float(name, low, high, log=True) for name, (low, high) in ranges.items()}


__all__ = ["suggest_optimizer"]
