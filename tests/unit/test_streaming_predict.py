"""Whole-scene prediction streams: pixel and patch methods in chunks, dense methods in strips.

A 2404 x 8344 scene (DFC2018) must never need all its features, logits or a padded copy at
once; each streamed path gives exactly the predictions of the one-pass path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench_core import MethodSpec
from bench_core import sampling as sampling_module
from bench_core.sampling import sliding_window_logits, sliding_window_predict
from bench_core.training import Trainer
from bench_core.training import predict as predict_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(seed: int = 0, shape: tuple[int, int] = (37, 29)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"hsi": rng.random((5, *shape), dtype=np.float32).astype(np.float16),
            "x": rng.random((2, *shape), dtype=np.float32)}


def _window_dependent(k: int = 4):
    weights = torch.linspace(-1.0, 1.0, 7 * k).reshape(k, 7)

    def forward(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([batch["hsi"], batch["x"]], dim=1)  # (B, 7, s, s)
        local = torch.einsum("kc,bchw->bkhw", weights, x)
        return local + x.mean(dim=(1, 2, 3))[:, None, None, None] * torch.arange(k)[None, :, None, None]

    return forward


@pytest.mark.parametrize("strip_bytes", [1, 7 * 29 * 4 * 12, 7 * 29 * 4 * 20])
def test_dense_strips_equal_the_whole_scene(strip_bytes: int) -> None:
    inputs = _inputs()
    whole, _ = sliding_window_logits(_window_dependent(), inputs, 8, 4, batch_size=5)
    seen: list[tuple[int, ...]] = []
    streamed = sliding_window_predict(_window_dependent(), inputs, 8, 4, batch_size=3, strip_bytes=strip_bytes,
                                      check=lambda logits: seen.append(tuple(logits.shape)))
    np.testing.assert_array_equal(streamed, whole.argmax(dim=0).numpy())
    assert len(seen) > 1 and sum(s[1] for s in seen) == 37  # strips, covering every row once


def test_small_scenes_take_one_pass() -> None:
    seen: list[tuple[int, ...]] = []
    sliding_window_predict(_window_dependent(), _inputs(shape=(6, 9)), 8, 4, check=lambda t: seen.append(t.shape))
    assert seen == [(4, 6, 9)]


class _PixelMean:
    """A pixel 'estimator' that records the chunk sizes it is asked to predict."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def fit(self, features: np.ndarray, targets: np.ndarray) -> _PixelMean:
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        self.calls.append(features.shape[0])
        return (features.sum(axis=1) > features.shape[1] / 2).astype(np.int64)


class _Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.forward_fn = _window_dependent(2)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_fn(inputs)


class _Patch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(7, 3)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([inputs["hsi"], inputs["x"]], dim=1).mean(dim=(2, 3))
        return self.linear(x)


def _spec(kind: str, build) -> MethodSpec:
    profiles = {"fast": {"train": {"batch_size": 4, "eval_batch_size": 5}}, "paper": {}}
    size = {"pixel": 1, "patch": 3, "dense": 8}[kind]
    return MethodSpec(name=f"t-{kind}", build=build, input_kind=kind, modalities=("hsi", "x"), profiles=profiles,
                      patch_size=size)


@pytest.mark.parametrize("kind", ["pixel", "patch", "dense"])
def test_trainer_predict_scene_streams_and_gives_the_one_pass_result(kind: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _inputs()
    torch.manual_seed(0)
    model = {"pixel": _PixelMean(), "patch": _Patch(), "dense": _Dense()}[kind]
    spec = _spec(kind, lambda config, info: model)
    config = spec.resolve("fast")
    trainer = Trainer(device="cpu")
    one_pass = trainer.predict_scene(spec, model, config, inputs)
    monkeypatch.setattr(predict_module, "PREDICT_CHUNK", 100)
    monkeypatch.setattr(sampling_module, "DENSE_STRIP_BYTES", 7 * 29 * 4 * 12)
    streamed = trainer.predict_scene(spec, model, config, inputs)
    np.testing.assert_array_equal(streamed, one_pass)
    assert streamed.shape == (37, 29) and streamed.dtype == np.int64
    if kind == "pixel":
        assert model.calls[-11:] == [100] * 10 + [73]  # 1073 pixels in chunks of 100
