"""Non-finite model outputs at validation and test time stop the cell (NonFiniteOutputError), never
become class 0; a pixel estimator's labels must be classes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
import torch

import bench_core
from bench_core.errors import ModelOutputError, NonFiniteOutputError
from bench_core.training import Trainer
from tests.unit.test_training import (
    DenseNet,
    K,
    PatchNet,
    _config,
    _data,
    _fit,
    _info,
    _spec,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _poisoned(base: type, value: float, rows: slice = slice(None)) -> type:
    """A module that trains normally but outputs ``value`` in eval mode (prediction, validation)."""

    class Poisoned(base):  # type: ignore[misc, valid-type]
        def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
            out = super().forward(x)
            if not self.training:
                out = out.clone()
                out[rows] = value
            return out

    return Poisoned


def test_error_is_exported_like_the_loss_error() -> None:
    assert bench_core.NonFiniteOutputError is NonFiniteOutputError
    assert issubclass(NonFiniteOutputError, (bench_core.BenchError, FloatingPointError))


@pytest.mark.parametrize("kind, base", [("patch", PatchNet), ("dense", DenseNet)])
def test_nan_logits_at_validation_fail_naming_the_epoch(kind: str, base: type) -> None:
    spec = _spec(kind, build=lambda cfg, info: _poisoned(base, float("nan"))())
    with pytest.raises(NonFiniteOutputError) as info:
        _fit(kind, spec=spec, epochs=2, steps_per_epoch=1, batch_size=4)
    text = str(info.value)
    assert f"method 'toy-{kind}'" in text and "at validation epoch 1" in text
    assert f"{50 * K} non-finite logit value(s)" in text and "in 50 of 50 pixel(s)" in text
    assert "lower train.lr" in text


@pytest.mark.parametrize("kind, base", [("patch", PatchNet), ("dense", DenseNet)])
def test_inf_logits_at_test_prediction_fail_and_say_where(kind: str, base: type) -> None:
    spec = _spec(kind, build=lambda cfg, info: _poisoned(base, float("inf"), rows=slice(0, 1))())
    trainer, model, _ = _fit(kind, spec=spec, data=_data(val=False), epochs=1, steps_per_epoch=1, batch_size=4)
    data = _data(val=False)
    with pytest.raises(NonFiniteOutputError, match=r"at test prediction, in \d+ of \d+ pixel\(s\)"):
        trainer.predict(spec, model, _config(spec, epochs=1), data.inputs, np.arange(20), where="test prediction")


def test_finite_outputs_predict_as_before() -> None:
    trainer, model, result = _fit("patch", epochs=1, steps_per_epoch=1)
    spec = _spec("patch")
    predicted = trainer.predict(spec, model, _config(spec), _data().inputs, np.arange(10), where="test prediction")
    assert predicted.dtype == np.int64 and predicted.shape == (10,) and result.final_val_oa is not None


class _Labels:
    """A pixel estimator that predicts fixed labels."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def fit(self, features: np.ndarray, targets: np.ndarray) -> None:
        pass

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.resize(self.labels, features.shape[0])


def test_pixel_estimator_nan_labels_fail_at_validation() -> None:
    spec = _spec("pixel", build=lambda cfg, info: _Labels(np.array([0.0, np.nan])))
    with pytest.raises(NonFiniteOutputError, match=r"predict\(\) returned 25 non-finite label\(s\).*at validation"):
        _fit("pixel", spec=spec)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, K]), rf"25 label\(s\) outside 0\.\.{K - 1} at test prediction"),
    (np.array([0.0, 0.5]), r"non-integer label\(s\) \(e\.g\. 0\.5\) at test prediction"),
])
def test_pixel_estimator_labels_must_be_classes(labels: np.ndarray, message: str) -> None:
    spec = _spec("pixel", build=lambda cfg, info: _Labels(labels))
    trainer = Trainer(device="cpu")
    config = _config(spec)
    model = trainer.build(spec, config, _info(1))
    data = _data()
    with pytest.raises(ModelOutputError, match=message):
        trainer.predict(spec, model, config, data.inputs, np.arange(50), where="test prediction", num_classes=K)
