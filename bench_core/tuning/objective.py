"""The Optuna objective: one trial trains on the training pixels and scores on the validation pixels."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_core.config import deep_merge
from bench_core.errors import ConfigError
from bench_core.specs import SplitSpec
from bench_core.tuning.attrs import (
    ATTR_OVERRIDES,
    ATTR_RUN_ID,
    TAG_KIND,
    TAG_PARENT,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_WORKER,
    worker_id,
)
from bench_core.tuning.recipe import StudyRecipe, jsonable

if TYPE_CHECKING:
    import optuna

    from bench_core.plugins import PluginHost
    from bench_core.scene import Scene
    from bench_core.splits import Split
    from bench_core.tracking import RunHandle, Tracker


class TuneObjective:
    """Optuna objective: train on the training pixels, score on the validation pixels.

    One MLflow run per trial, nested under the study's parent run, with the trial number,
    the sampled params (``optuna.<name>``), the resolved config, per-epoch ``train_loss``,
    ``lr`` and ``val_oa``, and the final ``val_oa/val_aa/val_kappa/val_f1_macro``. A pruned
    trial ends KILLED with tag ``bench.optuna.state = PRUNED``; a failed one FAILED with
    ``bench.error`` and ``traceback.txt``. The test split is never opened.
    """

    def __init__(
        self,
        host: PluginHost,
        recipe: StudyRecipe,
        study_name: str,
        tracker: Tracker,
        parent_run_id: str | None,
        device: str = "auto",
        data_dir: Path | None = None,
    ) -> None:
        self.host = host
        self.recipe = recipe
        self.study_name = study_name
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.device = device
        self.data_dir = data_dir
        self._scene: Scene | None = None
        self._splits: dict[int, Split] = {}

    @property
    def train_seed(self) -> int:
        """One training seed for every trial, so trials differ only by their params."""
        digest = hashlib.sha256(f"tune/{self.study_name}/{self.recipe.seed}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

    def scene(self) -> Scene:
        if self._scene is None:
            from bench_core.pipeline import load_scene

            self._scene = load_scene(self.host.datasets.get(self.recipe.dataset), self.data_dir)
        return self._scene

    def split(self, patch_size: int) -> Split:
        """The study's split (same pixels for every trial; a guard band may depend on the patch)."""
        if patch_size not in self._splits:
            from bench_core.pipeline import make_cell_split

            spec = SplitSpec.parse(self.recipe.split, self.recipe.val_fraction, self.recipe.val_carve)
            split = make_cell_split(
                self.scene(), spec, self.host.splits.get(spec.protocol), self.recipe.seed, patch_size
            )
            if split.val.size == 0:
                raise ConfigError(
                    f"split {spec.display!r} of {self.recipe.dataset!r} with val_fraction {spec.val_fraction} "
                    f"leaves no validation pixels; raise --val-fraction or use a split with more training pixels"
                )
            self._splits[patch_size] = split
        return self._splits[patch_size]

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from bench_core.pipeline import RunLifecycle

        spec = self.host.methods.get(self.recipe.method)
        assert spec.search_space is not None  # checked by resolve_recipe
        tags = {
            TAG_KIND: "tune-trial",
            TAG_STUDY: self.study_name,
            TAG_TRIAL: str(trial.number),
            TAG_WORKER: worker_id(),
            "bench.method": spec.name,
        }
        if self.parent_run_id:
            tags[TAG_PARENT] = self.parent_run_id
        description = (
            f"Trial {trial.number} of study {self.study_name!r}: {spec.name} trained on the training pixels "
            f"of {self.recipe.dataset} ({self.recipe.split}, seed {self.recipe.seed}), scored on validation pixels."
        )

        def optuna_state(life: RunLifecycle) -> None:
            exc = life.exception
            state = {"FINISHED": "COMPLETE", "FAILED": "FAIL"}.get(life.status, "INTERRUPTED")
            if isinstance(exc, optuna.TrialPruned):
                state = "PRUNED"
            life.run.set_tags({TAG_STATE: state})

        with RunLifecycle(
            self.tracker, f"{spec.name} trial {trial.number}", tags, description,
            killed=(optuna.TrialPruned,), capture_logs=False, before_end=optuna_state,
        ) as life:
            trial.set_user_attr(ATTR_RUN_ID, life.run.run_id)
            sampled = spec.search_space(trial)
            overrides = jsonable(deep_merge(self.recipe.overrides, sampled))
            trial.set_user_attr(ATTR_OVERRIDES, overrides)
            config = spec.resolve(self.recipe.profile, overrides)
            params: dict[str, object] = {
                "trial": trial.number, "method": spec.name, "profile": config.profile,
                "dataset": self.recipe.dataset, "split": self.recipe.split, "seed": self.recipe.seed,
                "seed_train": self.train_seed, "val_fraction": self.recipe.val_fraction,
                "val_carve": self.recipe.val_carve,
            }
            params.update({f"optuna.{k}": v for k, v in trial.params.items()})
            params.update(config.to_params())
            life.run.log_params(params)
            value, metrics = self._train(trial, spec, config, life.run)
            life.run.log_metrics(metrics)
            return value

    def _train(self, trial: optuna.Trial, spec: Any, config: Any, run: RunHandle) -> tuple[float, dict[str, float]]:
        """The cell pipeline up to the fit, then the validation scores; the test split stays sealed."""
        import optuna

        from bench_core.pipeline import (
            build_and_fit,
            fitted_tags,
            method_tags,
            prepare,
            score_validation,
            stage_cache_dir,
        )
        from bench_core.training import Trainer

        scene = self.scene()
        split = self.split(spec.leakage_window(config.train))
        cell = prepare(spec, config, scene, split.train, split.val, self.train_seed)

        def on_epoch_end(epoch: int, values: Mapping[str, float]) -> None:
            logged = {k: v for k, v in values.items() if k != "epoch"}
            if "val_oa" in logged:
                logged["val_oa"] = 100.0 * logged["val_oa"]  # percent, like the final metric
            run.log_metrics(logged, step=epoch)
            if "val_oa" in logged:
                trial.report(logged["val_oa"], epoch)
                if trial.should_prune():
                    run.log_metrics({"pruned_at_epoch": float(epoch)})
                    raise optuna.TrialPruned(
                        f"trial {trial.number}: val_oa {logged['val_oa']:.2f} at epoch {epoch} is below "
                        f"what the pruner keeps"
                    )

        # The user seed seeds the stages, so every trial reuses a label-free stage's cached result.
        trainer = Trainer(device=self.device, seed=self.train_seed, on_epoch_end=on_epoch_end,
                          stage_seed=self.recipe.seed, stage_cache_dir=stage_cache_dir())
        fitted = build_and_fit(cell, trainer, on_built=lambda model: run.set_tags(method_tags(model, trainer.device)))
        run.set_tags(fitted_tags(fitted))
        scores = score_validation(fitted, cell)
        metrics = {
            "val_oa": 100.0 * scores.oa,
            "val_aa": 100.0 * scores.aa,
            "val_kappa": 100.0 * scores.kappa,
            "val_f1_macro": 100.0 * scores.f1_macro,
            "time_train_s": fitted.fit.time_train_s,
            "epochs_run": float(fitted.fit.epochs_run),
            "n_train": float(split.train.size),
            "n_val": float(split.val.size),
        }
        metrics.update({f"time_stage_{name}_s": t for name, t in fitted.fit.stage_times.items()})
        value = metrics[self.recipe.metric]
        if not math.isfinite(value):
            raise ConfigError(f"trial {trial.number}: {self.recipe.metric} = {value}; expected a finite score")
        return value, metrics


__all__ = ["TuneObjective"]
