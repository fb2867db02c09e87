"""Reading a study's trials and running them in this process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def trials_used(study: optuna.Study) -> int:
    """Trials that count against the budget: finished or running, except failures re-queued as retries."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    state = optuna.trial.TrialState
    return sum(
        1
        for t in trials
        if t.state in (state.COMPLETE, state.PRUNED, state.RUNNING)
        or (t.state == state.FAIL and t.number not in retried)
    )


def has_waiting(study: optuna.Study) -> bool:
    """Whether a trial is queued (WAITING), e.g. one re-queued after its worker died."""
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def best_trial_or_none(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial, or ``None`` before the first one completes."""
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def run_one_trial(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """One trial through Optuna (heartbeat, stale-trial check, re-queued trials first).

    A trial whose objective raises is recorded FAIL and the study goes on; Ctrl-C propagates.
    ``on_trial(frozen_trial)`` is called with the finished trial.
    """
    callbacks = [] if on_trial is None else [lambda _study, trial: on_trial(trial)]
    study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False, callbacks=callbacks)


def tune_in_process(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    budget: int,
    timeout: float | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> int:
    """Run trials until the study holds ``budget`` of them (or ``timeout`` s pass); returns how many ran here."""
    start = time.monotonic()
    ran = 0
    while True:
        if timeout is not None and time.monotonic() - start >= timeout:
            break
        if trials_used(study) >= budget and not has_waiting(study):
            break
        run_one_trial(study, objective, on_trial)
        ran += 1
    return ran


__all__ = [
    "best_trial_or_none",
    "has_waiting",
    "run_one_trial",
    "trial_counts",
    "trials_used",
    "tune_in_process",
]
