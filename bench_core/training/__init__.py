"""The Trainer: the only epoch loop in the project.

Methods give ``build`` (a module or a scikit-learn-style estimator), optionally a
``loss`` on the module and :class:`~bench_core.specs.Stage` hooks; the Trainer owns
seeding, the device, batching (through :mod:`bench_core.sampling`), the optimizer and
scheduler, validation, early stopping and the timing of training.

It only ever sees training and validation pixels (:class:`TrainData`); the test split
is opened by the caller after :meth:`Trainer.fit` returns.

The modules:

* :mod:`~bench_core.training.trainer`: :class:`Trainer` (build, stages, the epoch loop) and :class:`FitResult`;
* :mod:`~bench_core.training.predict`: :class:`~bench_core.training.predict.Predictor`, the
  chunked prediction the Trainer inherits, and :data:`PREDICT_CHUNK`;
* :mod:`~bench_core.training.data`: :class:`TrainData` and the batches of an epoch;
* :mod:`~bench_core.training.optim`: optimizers and schedulers, one table each;
* :mod:`~bench_core.training.stages`: :class:`StageContext` and derived inputs;
* :mod:`~bench_core.training.outputs`: checks on logits and predicted labels.

Constants such as :data:`PREDICT_CHUNK` are read where they are used: to change one in a
test, patch it in that submodule (``bench_core.training.predict.PREDICT_CHUNK``).
"""

from __future__ import annotations

from bench_core.training.data import TrainData
from bench_core.training.optim import describe_optimizer, make_optimizer, make_scheduler, no_decay
from bench_core.training.predict import PREDICT_CHUNK, Predictor
from bench_core.training.stages import StageContext, add_derived_input, derived_inputs
from bench_core.training.trainer import FitResult, Trainer

__all__ = [
    "PREDICT_CHUNK",
    "FitResult",
    "Predictor",
    "StageContext",
    "TrainData",
    "Trainer",
    "add_derived_input",
    "derived_inputs",
    "describe_optimizer",
    "make_optimizer",
    "make_scheduler",
    "no_decay",
]
