"""bench_core.tuning.space: the optimizer part of a search space, drawn by a real Optuna trial."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from bench_core import ConfigError, suggest_optimizer


def _ask() -> optuna.Trial:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()


def test_lr_and_weight_decay_are_drawn_on_a_log_scale_under_fixed_names() -> None:
    trial = _ask()
    train = suggest_optimizer(trial, lr=(1e-4, 1e-2), weight_decay=(1e-6, 1e-2))
    assert list(train) == ["lr", "weight_decay"]
    assert trial.distributions == {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
        "weight_decay": optuna.distributions.FloatDistribution(1e-6, 1e-2, log=True),
    }
    assert train == trial.params
    assert 1e-4 <= train["lr"] <= 1e-2 and 1e-6 <= train["weight_decay"] <= 1e-2


def test_without_a_weight_decay_range_only_lr_is_drawn() -> None:
    trial = _ask()
    assert list(suggest_optimizer(trial, lr=(1e-4, 1e-3))) == ["lr"]
    assert list(trial.distributions) == ["lr"]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": (0.0, 1e-2)}, "lr"),
        ({"lr": (1e-2, 1e-4)}, "lr"),
        ({"lr": (1e-4,)}, "lr"),
        ({"lr": "1e-3"}, "lr"),
        ({"lr": (1e-4, 1e-2), "weight_decay": (-1.0, 1e-2)}, "weight_decay"),
    ],
)
def test_a_range_that_cannot_be_sampled_on_a_log_scale_is_refused(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^suggest_optimizer {name} = .*: expected \(low, high\) with 0 < low <= high"):
        suggest_optimizer(_ask(), **kwargs)
