"""A study's best config: exported as JSON, and applied by ``bench run --config-from-study``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_core.config import deep_merge
from bench_core.errors import ConfigError, StudyError
from bench_core.tuning.attrs import ATTR_OVERRIDES
from bench_core.tuning.recipe import jsonable, recipe_of
from bench_core.tuning.storage import default_storage_url, open_storage, storage_label
from bench_core.tuning.trials import best_trial_or_none, trial_counts

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("bench.tuning")


def load_study(name: str, storage_url: str | None = None) -> optuna.Study:
    """Open an existing study; StudyError naming the studies that exist when it is missing."""
    import optuna

    url = storage_url or default_storage_url()
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise StudyError(
            f"no study {name!r} in {storage_label(url)}; studies there: {names or 'none'} "
            f"(pass --storage URL if it lives elsewhere)"
        ) from None


def best_config(study: optuna.Study) -> dict[str, Any]:
    """The study's best trial as an exportable config (``bench run --config-from-study`` reads it)."""
    recipe = recipe_of(study)
    best = best_trial_or_none(study)
    if best is None:
        raise StudyError(
            f"study {study.study_name!r} has no complete trial yet (counts: {trial_counts(study)}); "
            f"run `bench tune` (or workers) until one completes"
        )
    overrides = best.user_attrs.get(ATTR_OVERRIDES)
    if overrides is None:
        raise StudyError(
            f"best trial {best.number} of study {study.study_name!r} has no {ATTR_OVERRIDES!r} user attribute; "
            f"expected a trial run by bench's objective"
        )
    return {
        "study": study.study_name,
        "method": recipe.method,
        "dataset": recipe.dataset,
        "split": recipe.split,
        "profile": recipe.profile,
        "seed": recipe.seed,
        "metric": recipe.metric,
        "value": best.value,
        "trial": best.number,
        "params": dict(best.params),
        "overrides": overrides,
    }


def export_best(study: optuna.Study, path: Path) -> dict[str, Any]:
    """Write :func:`best_config` as JSON to ``path``; returns it."""
    config = best_config(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    return config


def config_from_study(name: str, storage_url: str | None = None) -> dict[str, Any]:
    """The best config of study ``name``, or of an exported ``best.json`` when ``name`` is such a file."""
    if name.endswith(".json"):  # a file: never looked up as a study name
        return _read_best_json(Path(name))
    return best_config(load_study(name, storage_url))


def _read_best_json(path: Path) -> dict[str, Any]:
    """An exported ``best.json``, checked: ConfigError naming the file and what is wrong."""
    fix = "expected a file written by `bench tune --export` or `bench tune export --output`"
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"--config-from-study {str(path)!r}: the file {what}; {fix} (or pass a study name)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config-from-study {str(path)!r}: cannot read it ({exc}); {fix}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--config-from-study {str(path)!r}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            f"{fix}"
        ) from None
    if not isinstance(config, dict):
        raise ConfigError(
            f"--config-from-study {str(path)!r}: holds a JSON {type(config).__name__}; expected an object with "
            f"keys method, profile, overrides ({fix})"
        )
    missing = [k for k in ("method", "profile", "overrides") if k not in config]
    if missing:
        raise ConfigError(f"--config-from-study {str(path)!r}: keys {missing} missing; {fix}")
    for key in ("method", "profile"):
        if not isinstance(config[key], str) or not config[key]:
            raise ConfigError(
                f"--config-from-study {str(path)!r}: {key} = {config[key]!r}; expected a {key} name (a string), {fix}"
            )
    overrides = config["overrides"]
    if not isinstance(overrides, dict) or any(
        k not in ("train", "model") or not isinstance(v, dict) for k, v in overrides.items()
    ):
        raise ConfigError(
            f"--config-from-study {str(path)!r}: overrides = {overrides!r}; expected an object "
            f'{{"train": {{...}}, "model": {{...}}}}, {fix}'
        )
    config.setdefault("study", str(path))
    config.setdefault("trial", "?")
    return config


def apply_study_config(
    config: Mapping[str, Any],
    plugins: Sequence[str],
    profile: str | None,
    overrides: Mapping[str, Any],
) -> tuple[list[str], str, dict[str, Any]]:
    """``bench run --config-from-study``: (plugins, profile, overrides) with the tuned values applied.

    The study tuned one method, so ``--plugins`` must be ``all`` (narrowed to it) or name it;
    ``--set`` values win over tuned ones; ``--profile`` defaults to the study's.
    """
    method = str(config["method"])
    chosen = [p for p in plugins if p != "all"]
    if chosen and chosen != [method]:
        raise ConfigError(
            f"--config-from-study {config.get('study', '?')!r} holds a tuned config of method {method!r} "
            f"but --plugins is {','.join(plugins)!r}; use --plugins {method}"
        )
    if profile is not None and profile != config["profile"]:
        log.warning("--profile %s differs from the study's profile %s; tuned values go on top of %s",
                    profile, config["profile"], profile)
    merged = deep_merge(jsonable(config["overrides"]), overrides)
    return [method], profile or str(config["profile"]), merged


__all__ = ["apply_study_config", "best_config", "config_from_study", "export_best", "load_study"]
