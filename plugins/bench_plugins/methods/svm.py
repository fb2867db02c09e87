"""Pixel-wise RBF support vector machine on the band-stacked HSI + X spectra.

This is the "SVM" row of the CoMiX comparison tables (Zhang et al., CoMiX, citing
Cortes & Vapnik 1995): a pixel-level classifier fed the raw spectra of both
modalities concatenated band-wise, with no spatial context. The inputs are
standardised per band (zero mean, unit variance over the training pixels) so that
one RBF width suits HSI reflectances and LiDAR heights alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bench_core import ConfigError, MethodSpec, SceneInfo, hookimpl, model_options, option

if TYPE_CHECKING:
    import optuna
    from sklearn.pipeline import Pipeline

NAME = "svm"


@dataclass(frozen=True)
class SvmOptions:
    """``model.*`` of the SVM (see :class:`RbfSvmEstimator`)."""

    C: float = option(1.0, gt=0)
    gamma: float | Literal["scale"] = option("scale", gt=0)
    seed: int | None = option(None, ge=0, hint="null: the cell's seed")
    max_train_samples: int | None = option(None, ge=1, hint="null: every training pixel")
    cache_mb: float = option(200, gt=0, hint="megabytes of kernel cache")


class RbfSvmEstimator:
    """A standardise + RBF-SVC pipeline with honest size and cost figures.

    Args:
        C: SVC penalty.
        gamma: RBF width, a positive float or ``"scale"`` (``1 / (features * X.var())``,
            which is ``1 / features`` after standardisation).
        seed: ``random_state`` of the SVC and of the optional training subsample.
        max_train_samples: if set, fit on at most this many training pixels (but at
            least one per class), drawn per class in proportion to its share (SVC
            training is quadratic in N).
        cache_mb: libsvm kernel cache size.
    """

    def __init__(
        self,
        C: float = 1.0,
        gamma: float | str = "scale",
        seed: int = 0,
        max_train_samples: int | None = None,
        cache_mb: float = 200,
    ) -> None:
        self.C = C
        self.gamma = gamma
        self.seed = seed
        self.max_train_samples = max_train_samples
        self.cache_mb = cache_mb
        self.pipeline_: Pipeline | None = None
        # Import scikit-learn at build time, so that the training clock measures fitting only.
        import sklearn.pipeline  # noqa: F401
        import sklearn.preprocessing  # noqa: F401
        import sklearn.svm  # noqa: F401

    def fit(self, features: np.ndarray, targets: np.ndarray) -> RbfSvmEstimator:
        """Fit on (N, F) spectra and (N,) 0-based class targets; returns ``self``."""
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        features = np.asarray(features, dtype=np.float64)
        targets = np.asarray(targets)
        if features.ndim != 2 or targets.shape != (features.shape[0],):
            raise ConfigError(
                f"svm.fit: features {features.shape} and targets {targets.shape}; expected "
                f"(N, bands) spectra and (N,) targets for the same N pixels"
            )
        features, targets = self._subsample(features, targets)
        self.pipeline_ = Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "svc",
                    SVC(
                        C=self.C,
                        kernel="rbf",
                        gamma=self.gamma,
                        decision_function_shape="ovo",
                        cache_size=self.cache_mb,
                        random_state=self.seed,
                    ),
                ),
            ]
        )
        self.pipeline_.fit(features, targets)
        return self

    def _subsample(self, features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        limit = self.max_train_samples
        if limit is None or features.shape[0] <= limit:
            return features, targets
        rng = np.random.default_rng(self.seed)
        keep: list[np.ndarray] = []
        classes, counts = np.unique(targets, return_counts=True)
        for cls, count in zip(classes, counts):
            # Proportional share rounded down (the total stays within the limit), but at
            # least one pixel so no class disappears.
            take = max(1, int(limit * count // targets.size))
            members = np.flatnonzero(targets == cls)
            keep.append(rng.choice(members, size=min(take, members.size), replace=False))
        index = np.sort(np.concatenate(keep))
        return features[index], targets[index]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """0-based class of each of the (N, F) spectra, shape (N,), int64."""
        svc = self._fitted()
        return np.asarray(svc.predict(np.asarray(features, dtype=np.float64)), dtype=np.int64)

    def _fitted(self) -> Pipeline:
        if self.pipeline_ is None:
            raise ConfigError("svm estimator is not fitted; call fit(features, targets) first")
        return self.pipeline_

    def _shape(self) -> tuple[int, int, int]:
        svc = self._fitted().named_steps["svc"]
        n_sv, n_features = svc.support_vectors_.shape
        return int(n_sv), int(n_features), int(len(svc.classes_))

    def n_parameters(self) -> int:
        """Stored numbers the fitted model needs to predict.

        ``n_SV * F`` (support vectors) + ``n_SV * (K - 1)`` (dual coefficients) +
        ``K (K - 1) / 2`` (one-vs-one intercepts) + ``2 F`` (the scaler's means and
        scales), with F features and K classes.
        """
        n_sv, f, k = self._shape()
        return n_sv * f + n_sv * (k - 1) + k * (k - 1) // 2 + 2 * f

    def flops_per_sample(self) -> int:
        """Analytic floating-point operations to classify one pixel.

        ``2 F`` (standardise) + ``n_SV (3 F + 2)`` (RBF kernel: F subtractions, F
        squares, F additions, the scaling by -gamma and the exponential) +
        ``2 n_SV (K - 1)`` (each support vector's kernel value is multiplied and added
        into the K - 1 one-vs-one decisions its class takes part in) + ``K (K - 1)``
        (intercepts and votes).
        """
        n_sv, f, k = self._shape()
        return 2 * f + n_sv * (3 * f + 2) + 2 * n_sv * (k - 1) + k * (k - 1)


def validate_model(config: Mapping[str, Any]) -> SvmOptions:
    """The ``model`` config with defaults filled in; ConfigError for unknown keys or bad values."""
    return model_options(SvmOptions, config, method=NAME)


def build(config: Mapping[str, Any], info: SceneInfo) -> RbfSvmEstimator:
    """Build the estimator from the ``model`` config (keys: C, gamma, seed, max_train_samples, cache_mb).

    ``seed: null`` (the default) takes the cell's seed (``info.seed``), so seeds of a grid
    draw different training subsamples; an integer pins it.
    """
    options = validate_model(config)
    gamma, seed = options.gamma, options.seed
    return RbfSvmEstimator(
        C=float(options.C),
        gamma=gamma if gamma == "scale" else float(gamma),
        seed=info.seed if seed is None else seed,
        max_train_samples=options.max_train_samples,
        cache_mb=float(options.cache_mb),
    )


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    """The usual log-scale grid of HSI SVM studies, as continuous ranges."""
    return {
        "model": {
            "C": trial.suggest_float("C", 1e-2, 1e4, log=True),
            "gamma": trial.suggest_float("gamma", 1e-4, 1e1, log=True),
        }
    }


def method_spec() -> MethodSpec:
    """The ``svm`` method spec (built on demand, nothing happens at import)."""
    return MethodSpec(
        name=NAME,
        build=build,
        input_kind="pixel",
        modalities=("hsi", "x"),
        profiles={
            # One "epoch" = one SVC fit; the train section is only there for uniform configs.
            "paper": {"train": {"epochs": 1}, "model": {"C": 1.0, "gamma": "scale"}},
            "fast": {
                "train": {"epochs": 1},
                "model": {"C": 1.0, "gamma": "scale", "max_train_samples": 5000},
            },
        },
        patch_size=1,
        search_space=search_space,
        validate_model=validate_model,
        deterministic=True,
        paper=(
            "SVM rows of Zhang et al., 'CoMiX: Cross-Modal Fusion with Deformable Convolutions for "
            "HSI-X Semantic Segmentation' (IEEE TGRS), after Cortes & Vapnik, 'Support-vector "
            "networks', Machine Learning 20, 1995"
        ),
        url="https://doi.org/10.1007/BF00994018",
        licence="MIT (this implementation; scikit-learn SVC, BSD-3-Clause)",
        description=(
            "Pixel-wise RBF SVM on the band-wise concatenation of HSI and X, standardised per "
            "band. CoMiX does not report C or gamma, so the paper profile uses scikit-learn's "
            "defaults (C=1, gamma='scale' = 1/bands after standardisation); tune them with "
            "`bench tune` (search space: C in [1e-2, 1e4], gamma in [1e-4, 10], log scale). "
            "The fast profile is the same model fitted on at most 5000 training pixels "
            "(class-proportional, seeded by the cell's seed unless model.seed is set). n_parameters and flops_per_sample are analytic; "
            "see their docstrings."
        ),
    )


@hookimpl
def bench_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register the ``svm`` baseline."""
    register(method_spec())
