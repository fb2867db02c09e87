"""The Trainer on tiny hand-written methods (patch CNN, dense 1x1 conv, sklearn pixel model)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from bench_core.errors import ConfigError, MissingModalityError, NonFiniteLossError
from bench_core.errors import ModelOutputError, SamplingError
from bench_core.scene import SceneInfo
from bench_core.specs import MethodSpec, ResolvedConfig, Stage
from bench_core.sampling import PatchSampler
from bench_core.training import (
    FitResult,
    StageContext,
    TrainData,
    Trainer,
    describe_optimizer,
    make_optimizer,
    make_scheduler,
)
from bench_core.training.data import patch_batches

H = W = 16
K = 3


# --------------------------------------------------------------------------- toy problem


def _toy(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Separable scene: class = vertical band of columns; HSI = class mean + noise."""
    rng = np.random.default_rng(seed)
    classes = np.broadcast_to((np.arange(W) * K) // W, (H, W))
    means = np.eye(K, 4, dtype=np.float32) * 2.0
    hsi = means[classes].transpose(2, 0, 1) + 0.2 * rng.normal(size=(4, H, W))
    x = classes[None].astype(np.float32) + 0.2 * rng.normal(size=(1, H, W))
    return {"hsi": hsi.astype(np.float32), "x": x.astype(np.float32)}, classes.reshape(-1).astype(np.int64)


def _data(val: bool = True, seed: int = 0) -> TrainData:
    inputs, classes = _toy()
    order = np.random.default_rng(seed).permutation(H * W)
    train, rest = order[:150], order[150:]
    val_index = rest[:50] if val else np.zeros(0, dtype=np.int64)
    return TrainData(
        inputs=inputs,
        train_index=train,
        train_targets=classes[train],
        val_index=val_index,
        val_targets=classes[val_index],
        num_classes=K,
    )


def _info(patch: int) -> SceneInfo:
    return SceneInfo(
        dataset="toy", bands={"hsi": 4, "x": 1}, num_classes=K, class_names=("a", "b", "c"),
        image_shape=(H, W), patch_size=patch,
    )


class PatchNet(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(5, width, 3, padding=1)
        self.head = nn.Linear(width, K)

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        z = torch.relu(self.conv(torch.cat([x["hsi"], x["x"]], dim=1)))
        return self.head(z.mean(dim=(2, 3)))


class DenseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(5, K, 1)

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.conv(torch.cat([x["hsi"], x["x"]], dim=1))


def _spec(kind: str, build: Any = None, stages: tuple[Stage, ...] = (), name: str | None = None) -> MethodSpec:
    default_build = {
        "patch": lambda cfg, info: PatchNet(**cfg),
        "dense": lambda cfg, info: DenseNet(),
        "pixel": lambda cfg, info: LogisticRegression(max_iter=500),
    }[kind]
    return MethodSpec(
        name=name or f"toy-{kind}",
        build=build or default_build,
        input_kind=kind,  # type: ignore[arg-type]
        modalities=("hsi", "x"),
        profiles={"paper": {}, "fast": {}},
        patch_size={"patch": 3, "dense": 7, "pixel": 1}[kind],
        stages=stages,
    )


def _config(spec: MethodSpec, **train: Any) -> ResolvedConfig:
    return spec.resolve("fast", {"train": train})


def _fit(kind: str, seed: int = 0, data: TrainData | None = None, spec: MethodSpec | None = None,
         trainer_kwargs: Mapping[str, Any] | None = None, **train: Any) -> tuple[Trainer, Any, FitResult]:
    spec = spec or _spec(kind)
    config = _config(spec, **train)
    trainer = Trainer(device="cpu", seed=seed, **(trainer_kwargs or {}))
    model = trainer.build(spec, config, _info(spec.patch_size))
    result = trainer.fit(spec, model, config, data or _data())
    return trainer, model, result


# --------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_patch_training_reduces_loss_and_fits_the_toy_problem() -> None:
    data = _data()
    trainer, model, result = _fit("patch", data=data, epochs=12, batch_size=16, lr=0.02)
    spec = _spec("patch")
    config = _config(spec, epochs=12, batch_size=16, lr=0.02)
    losses = [h["train_loss"] for h in result.history]
    assert result.stop_reason == "completed" and result.epochs_run == 12
    assert losses[-1] < 0.5 * losses[0]
    predicted = trainer.predict(spec, model, config, data.inputs, data.train_index)
    assert np.mean(predicted == data.train_targets) >= 0.95
    assert result.final_val_oa is not None and result.final_val_oa >= 0.9
    assert result.steps == 12 * math.ceil(150 / 16)


@pytest.mark.slow
def test_dense_training_reduces_loss_and_fits_the_toy_problem() -> None:
    data = _data()
    trainer, model, result = _fit("dense", data=data, epochs=30, batch_size=4, lr=0.05, steps_per_epoch=3)
    spec = _spec("dense")
    config = _config(spec, epochs=30, batch_size=4)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.steps == 90
    predicted = trainer.predict(spec, model, config, data.inputs, data.train_index)
    assert np.mean(predicted == data.train_targets) >= 0.95


def test_dense_default_steps_per_epoch() -> None:
    _, _, result = _fit("dense", epochs=2, batch_size=2)
    assert result.steps == 2 * math.ceil(150 / (2 * 64))


def test_pixel_estimator_fit_once_on_concatenated_bands() -> None:
    seen: dict[str, np.ndarray] = {}

    class Recording(LogisticRegression):
        def fit(self, features: np.ndarray, targets: np.ndarray, sample_weight: Any = None) -> Any:
            seen["features"], seen["targets"] = features, targets
            return super().fit(features, targets)

    data = _data()
    spec = _spec("pixel", build=lambda cfg, info: Recording(max_iter=500))
    trainer, model, result = _fit("pixel", data=data, spec=spec)
    expected = np.concatenate(
        [data.inputs["hsi"].reshape(4, -1)[:, data.train_index], data.inputs["x"].reshape(1, -1)[:, data.train_index]]
    ).T
    np.testing.assert_array_equal(seen["features"], expected)
    np.testing.assert_array_equal(seen["targets"], data.train_targets)
    assert result.stop_reason == "estimator_fit" and result.epochs_run == 0 and result.history == []
    val_pred = trainer.predict(spec, model, _config(spec), data.inputs, data.val_index)
    assert result.final_val_oa == pytest.approx(float(np.mean(val_pred == data.val_targets)))
    assert result.final_val_oa >= 0.9


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", ["patch", "dense"])
def test_same_seed_gives_identical_predictions_other_seed_other_weights(kind: str) -> None:
    data = _data()
    spec = _spec(kind)
    config = _config(spec, epochs=2, batch_size=8, steps_per_epoch=4)
    runs = []
    for seed in (5, 5, 6):
        trainer, model, _ = _fit(kind, seed=seed, data=data, epochs=2, batch_size=8, steps_per_epoch=4)
        runs.append((trainer.predict_scene(spec, model, config, data.inputs), model.state_dict()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    assert not all(torch.equal(runs[0][1][k], runs[2][1][k]) for k in runs[0][1])


def test_seed_everything_seeds_python_numpy_and_torch() -> None:
    import random

    trainer = Trainer(device="cpu", seed=9)
    trainer.seed_everything()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    trainer.seed_everything()
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


# --------------------------------------------------------------------------- optimizer and scheduler


def _lrs(result: FitResult) -> list[float]:
    return [h["lr"] for h in result.history]


def test_scheduler_steps_once_per_epoch_after_the_optimizer() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, result = _fit("patch", epochs=4, lr=0.1, scheduler="step", step_size=1, gamma=0.5,
                            steps_per_epoch=2)
    assert _lrs(result) == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    # The rates actually applied: plain SGD on loss = w moves w by lr once per epoch.
    model, _ = _flip_fit(epochs=3, lr=0.1, scheduler="step", step_size=1, gamma=0.5)
    assert float(model.w.detach()) == pytest.approx(1 - 0.1 - 0.05 - 0.025)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ({"scheduler": "none"}, lambda e: 0.1),
        ({"scheduler": "multistep", "milestones": (2, 3), "gamma": 0.1}, lambda e: 0.1 * 0.1 ** ((e > 2) + (e > 3))),
        ({"scheduler": "exponential", "gamma": 0.9}, lambda e: 0.1 * 0.9 ** (e - 1)),
        ({"scheduler": "cosine"}, lambda e: 0.05 * (1 + math.cos(math.pi * (e - 1) / 4))),
        ({"scheduler": "poly", "power": 2.0}, lambda e: 0.1 * (1 - (e - 1) / 4) ** 2),
    ],
)
def test_scheduler_kinds_give_the_epoch_learning_rates(train: dict[str, Any], expected: Any) -> None:
    _, _, result = _fit("patch", epochs=4, lr=0.1, steps_per_epoch=1, optimizer="sgd", **train)
    assert _lrs(result) == pytest.approx([expected(e) for e in range(1, 5)])


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                           ("sgd", torch.optim.SGD)])
def test_optimizer_from_config(name: str, cls: type, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench_core.training import trainer as trainer_module

    made: list[torch.optim.Optimizer] = []
    original = trainer_module.make_optimizer

    def spy(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(trainer_module, "make_optimizer", spy)  # where the Trainer looks it up
    _fit("patch", epochs=1, steps_per_epoch=1, optimizer=name, lr=0.01, weight_decay=0.001, momentum=0.5)
    assert type(made[0]) is cls
    group = made[0].param_groups[0]
    assert group["weight_decay"] == 0.001
    if name == "sgd":
        assert group["momentum"] == 0.5


def test_optimizer_and_scheduler_tables_cover_exactly_the_config_choices() -> None:
    """The names TrainConfig accepts (its Literal types) and the factory tables must not diverge."""
    from typing import get_args, get_type_hints

    from bench_core.specs import OPTIMIZERS, SCHEDULERS, TrainConfig
    from bench_core.training.optim import OPTIMIZER_FACTORIES, SCHEDULER_FACTORIES

    hints = get_type_hints(TrainConfig)
    assert get_args(hints["optimizer"]) == OPTIMIZERS
    assert get_args(hints["scheduler"]) == SCHEDULERS
    assert sorted(OPTIMIZER_FACTORIES) == sorted(OPTIMIZERS), "add the optimizer to both, or to neither"
    assert sorted(SCHEDULER_FACTORIES) == sorted(SCHEDULERS), "add the scheduler to both, or to neither"
    model = nn.Linear(2, 2)
    for name in OPTIMIZERS:
        assert isinstance(make_optimizer(model, TrainConfig(optimizer=name)), torch.optim.Optimizer)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for name in SCHEDULERS:
        scheduler = make_scheduler(optimizer, TrainConfig(scheduler=name, milestones=(2,)))
        assert (scheduler is None) == (name == "none")


def test_an_unknown_optimizer_or_scheduler_names_the_choices() -> None:
    from bench_core.specs import TrainConfig

    with pytest.raises(ConfigError, match=r"train.optimizer = 'lamb': expected one of \('adam', 'adamw', 'sgd'\)"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ConfigError, match=r"train.scheduler = 'warmup': expected one of \('none', 'step'"):
        TrainConfig(scheduler="warmup")
    # Past the config's own check (a config built around validation), the factories say the same.
    train = TrainConfig()
    object.__setattr__(train, "optimizer", "lamb")
    object.__setattr__(train, "scheduler", "warmup")
    with pytest.raises(ConfigError, match=r"train.optimizer = 'lamb': expected 'adam', 'adamw' or 'sgd'"):
        make_optimizer(nn.Linear(2, 2), train)
    with pytest.raises(ConfigError, match=r"train.scheduler = 'warmup': expected 'none', 'step', .* or 'poly'"):
        make_scheduler(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), train)


def test_grad_clip_limits_the_gradient_norm() -> None:
    class Steep(PatchNet):
        def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return 1e4 * nn.functional.cross_entropy(output, targets)

    def moved(**train: Any) -> float:
        spec = _spec("patch", build=lambda cfg, info: Steep())
        config = _config(spec, epochs=1, steps_per_epoch=2, optimizer="sgd", lr=1.0, momentum=0.0, **train)
        trainer = Trainer(device="cpu", seed=0)
        model = trainer.build(spec, config, _info(3))
        before = [p.detach().clone() for p in model.parameters()]
        trainer.fit(spec, model, config, _data())
        return float(torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before))))

    # Plain SGD with lr 1: each of the 2 steps moves the weights by the clipped gradient.
    assert moved(grad_clip=0.5) <= 2 * 0.5 + 1e-5
    assert moved() > 10.0


# --------------------------------------------------------------------------- failures


def test_non_finite_loss_raises_with_epoch_step_and_value() -> None:
    class NanLoss(PatchNet):
        def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return output.sum() * float("nan")

    spec = _spec("patch", build=lambda cfg, info: NanLoss())
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 1, step 1.*lower train\.lr"):
        _fit("patch", spec=spec, epochs=2)


def test_on_epoch_end_gets_metrics_and_its_exception_propagates() -> None:
    calls: list[tuple[int, dict[str, float]]] = []

    class Prune(Exception):
        pass

    def callback(epoch: int, metrics: dict[str, float]) -> None:
        calls.append((epoch, metrics))
        if epoch == 2:
            raise Prune

    with pytest.raises(Prune):
        _fit("patch", epochs=5, steps_per_epoch=1, trainer_kwargs={"on_epoch_end": callback})
    assert [e for e, _ in calls] == [1, 2]
    assert set(calls[0][1]) == {"epoch", "train_loss", "lr", "val_oa", "val_loss"}


def test_build_rejects_the_wrong_kind_of_model() -> None:
    spec = _spec("pixel", build=lambda cfg, info: DenseNet())
    with pytest.raises(ModelOutputError, match="fit\\(features, targets\\)"):
        Trainer(device="cpu").build(spec, _config(spec), _info(1))
    spec = _spec("patch", build=lambda cfg, info: LogisticRegression())
    with pytest.raises(ModelOutputError, match="torch.nn.Module"):
        Trainer(device="cpu").build(spec, _config(spec), _info(3))


def test_wrong_logits_shape_is_reported() -> None:
    spec = _spec("patch", build=lambda cfg, info: DenseNet())  # (N, K, 3, 3) instead of (N, K)
    with pytest.raises(ModelOutputError, match=r"returned logits \(64, 3, 3, 3\); expected \(64, 3\)"):
        _fit("patch", spec=spec, epochs=1)


def test_train_data_is_validated() -> None:
    inputs, classes = _toy()
    with pytest.raises(SamplingError, match="train_targets range"):
        TrainData(inputs, np.arange(4), np.array([0, 1, 2, 3]), np.zeros(0), np.zeros(0), K)
    with pytest.raises(SamplingError, match="256 pixels"):
        TrainData(inputs, np.array([256]), np.array([0]), np.zeros(0), np.zeros(0), K)
    with pytest.raises(SamplingError, match="one target per pixel"):
        TrainData(inputs, np.arange(3), np.zeros(2), np.zeros(0), np.zeros(0), K)
    spec = _spec("patch")
    with pytest.raises(MissingModalityError, match="'x'"):
        Trainer(device="cpu").predict(spec, PatchNet(), _config(spec), {"hsi": inputs["hsi"]}, np.arange(3))


# --------------------------------------------------------------------------- validation, early stopping


class Flip(nn.Module):
    """Right while w > 0, wrong once w < 0; the loss w pushes w down by lr per SGD step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        truth = x["cls"][:, 0, 0, 0].long()
        return self.w * nn.functional.one_hot(truth, K).float()

    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.w * 1.0


def _flip_data() -> TrainData:
    classes = np.arange(H * W) % K
    inputs = {"cls": classes.reshape(1, H, W).astype(np.float32)}
    return TrainData(inputs, np.arange(0, 200), classes[:200], np.arange(200, 256), classes[200:], K)


def _flip_fit(**train: Any) -> tuple[Flip, FitResult]:
    spec = MethodSpec(name="flip", build=lambda cfg, info: Flip(), input_kind="patch", modalities=("cls",),
                      profiles={"paper": {}, "fast": {}}, patch_size=1)
    config = spec.resolve("fast", {"train": {"optimizer": "sgd", "momentum": 0.0, "lr": 0.6,
                                             "steps_per_epoch": 1, "epochs": 10, **train}})
    trainer = Trainer(device="cpu", seed=0)
    model = trainer.build(spec, config, _info(1))
    return model, trainer.fit(spec, model, config, _flip_data())


def test_early_stopping_stops_after_patience_checks_without_gain() -> None:
    model, result = _flip_fit(early_stopping_patience=2)
    # w: 1 -> 0.4 (right) -> -0.2 (wrong) -> -0.8 (wrong): best epoch 1, stop at epoch 3.
    assert [h["val_oa"] for h in result.history] == [1.0, 0.0, 0.0]
    assert result.stop_reason == "early_stopping" and result.epochs_run == 3
    assert result.best_epoch == 1 and result.best_val_oa == 1.0
    assert result.final_val_oa == 0.0
    assert float(model.w.detach()) == pytest.approx(-0.8)


def test_restore_best_reloads_the_best_weights() -> None:
    model, result = _flip_fit(early_stopping_patience=2, restore_best=True)
    assert float(model.w.detach()) == pytest.approx(0.4)
    assert result.final_val_oa == 1.0 and result.best_epoch == 1


def test_val_every_and_last_epoch_are_validated() -> None:
    _, result = _flip_fit(epochs=5, val_every=2)
    assert [("val_oa" in h) for h in result.history] == [False, True, False, True, True]
    assert result.time_val_s >= 0.0 and result.time_train_s > 0.0


def test_no_validation_without_val_pixels() -> None:
    _, _, result = _fit("patch", data=_data(val=False), epochs=2, steps_per_epoch=1, restore_best=True)
    assert all("val_oa" not in h for h in result.history)
    assert result.best_val_oa is None and result.final_val_oa is None and result.stop_reason == "completed"


# --------------------------------------------------------------------------- stages, custom loss, batching


def test_stages_run_first_in_order_and_are_timed() -> None:
    log: list[tuple[str, Any]] = []

    def stage(name: str) -> Stage:
        def run(context: StageContext) -> None:
            weights = [p.detach().clone() for p in context.model.parameters()]
            log.append((name, (context, weights)))

        return Stage(name=name, run=run)

    data = _data()
    spec = _spec("patch", stages=(stage("pretrain"), stage("warmup")))
    trainer, model, result = _fit("patch", spec=spec, data=data, epochs=1)
    assert [name for name, _ in log] == ["pretrain", "warmup"]
    assert list(result.stage_times) == ["pretrain", "warmup"]
    assert all(t >= 0.0 for t in result.stage_times.values())
    context, weights = log[0][1]
    assert context.model is model and context.data is data and context.device == trainer.device
    assert isinstance(context.generator, torch.Generator)
    # The stages saw the untrained weights: training came after them.
    assert any(not torch.equal(w, p) for w, p in zip(weights, model.parameters()))


def test_custom_loss_gets_the_full_output_and_is_used() -> None:
    calls: list[tuple[set[str], torch.Tensor]] = []

    class WithAux(PatchNet):
        def forward(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            logits = super().forward(x)
            return {"logits": logits, "aux": logits.pow(2).mean()}

        def loss(self, output: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
            calls.append((set(output), targets))
            return nn.functional.cross_entropy(output["logits"], targets) + 0.0 * output["aux"] + 7.0

    spec = _spec("patch", build=lambda cfg, info: WithAux())
    _, _, result = _fit("patch", spec=spec, epochs=2, steps_per_epoch=3)
    assert result.steps == 6
    assert len(calls) == 1 + result.steps  # the untimed warm-up step computes the loss too
    assert calls[0][0] == {"logits", "aux"}
    assert all(h["train_loss"] > 7.0 for h in result.history)


def test_patch_batches_cover_each_pixel_once_per_epoch() -> None:
    seen: list[torch.Tensor] = []

    class Ids(PatchNet):
        def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            seen.append(self.ids)
            return nn.functional.cross_entropy(output, targets)

        def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
            self.ids = x["x"][:, 0, 1, 1].round().long()  # centre pixel id
            return super().forward({"hsi": x["hsi"], "x": x["x"] * 0})

    inputs, classes = _toy()
    inputs = {"hsi": inputs["hsi"], "x": np.arange(H * W, dtype=np.float32).reshape(1, H, W)}
    train = np.arange(0, 201, 10)  # 21 pixels: batches of 10 and 11 (no batch of one)
    data = TrainData(inputs, train, classes[train], np.zeros(0), np.zeros(0), K)
    spec = _spec("patch", build=lambda cfg, info: Ids())
    _, _, result = _fit("patch", spec=spec, data=data, epochs=2, batch_size=10)
    assert result.steps == 4
    seen = seen[1:]  # the first batch is the untimed warm-up step's (its own seed stream)
    assert [t.numel() for t in seen] == [10, 11, 10, 11]
    for epoch in (seen[:2], seen[2:]):
        assert sorted(torch.cat(epoch).tolist()) == train.tolist()
    assert torch.cat(seen[:2]).tolist() != torch.cat(seen[2:]).tolist()  # reshuffled


def test_dense_training_only_sees_training_targets() -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    class Spy(DenseNet):
        def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
            self.ids = x["x"][:, 0].round().long()  # flat pixel id at each crop position
            return super().forward({"hsi": x["hsi"], "x": x["x"] * 0})

        def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            if self.training:
                seen.append((self.ids, targets))
            return nn.functional.cross_entropy(output, targets, ignore_index=-1)

    inputs, _ = _toy()
    inputs = {"hsi": inputs["hsi"], "x": np.arange(H * W, dtype=np.float32).reshape(1, H, W)}
    rng = np.random.default_rng(0)
    order = rng.permutation(H * W)
    train, val = order[:40], order[40:120]
    train_targets = rng.integers(0, 2, size=40)  # classes 0-1 only
    data = TrainData(inputs, train, train_targets, val, np.full(80, 2), K)  # sentinel: val = class 2
    spec = _spec("dense", build=lambda cfg, info: Spy())
    _fit("dense", spec=spec, data=data, epochs=3, batch_size=4, steps_per_epoch=2)
    lookup = dict(zip(train.tolist(), train_targets.tolist()))
    labelled = 0
    for ids, targets in seen:
        mask = targets != -1
        assert not bool((targets == 2).any())
        for pid, t in zip(ids[mask].tolist(), targets[mask].tolist()):
            assert lookup[pid] == t
        labelled += int(mask.sum())
    assert labelled > 0 and len(seen) == 1 + 6  # the warm-up step's batch, then 3 epochs x 2 steps


# --------------------------------------------------------------------------- prediction


@pytest.mark.parametrize("kind", ["patch", "dense", "pixel"])
def test_predict_keeps_index_order_and_matches_the_scene_map(kind: str) -> None:
    data = _data()
    spec = _spec(kind)
    config = _config(spec, epochs=2, steps_per_epoch=2, eval_batch_size=7)
    trainer, model, _ = _fit(kind, data=data, epochs=2, steps_per_epoch=2, eval_batch_size=7)
    scene_map = trainer.predict_scene(spec, model, config, data.inputs)
    assert scene_map.shape == (H, W) and scene_map.dtype == np.int64
    index = np.array([255, 3, 3, 17, 0, 128])
    predicted = trainer.predict(spec, model, config, data.inputs, index)
    assert predicted.shape == (6,)
    np.testing.assert_array_equal(predicted, scene_map.reshape(-1)[index])
    np.testing.assert_array_equal(trainer.predict(spec, model, config, data.inputs, index[::-1]), predicted[::-1])
    if isinstance(model, nn.Module):
        assert model.training  # the mode is restored after prediction


def test_predict_on_empty_index() -> None:
    trainer, model, _ = _fit("patch", epochs=1, steps_per_epoch=1)
    spec = _spec("patch")
    out = trainer.predict(spec, model, _config(spec), _data().inputs, np.zeros(0, dtype=np.int64))
    assert out.shape == (0,)


@pytest.mark.parametrize("kind", ["patch", "pixel"])
def test_scene_map_takes_known_predictions_and_predicts_only_the_other_pixels(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data()
    spec = _spec(kind)
    config = _config(spec, epochs=1, steps_per_epoch=1)
    trainer, model, _ = _fit(kind, data=data, epochs=1, steps_per_epoch=1)
    plain = trainer.predict_scene(spec, model, config, data.inputs)
    known = np.array([7, 0, 200, 31])
    marked = (plain.reshape(-1)[known] + 1) % K  # not what the model predicts: must show in the map
    asked: list[np.ndarray] = []
    predict = type(trainer).predict

    def spy(self, spec, model, config, inputs, index, **kw):  # type: ignore[no-untyped-def]
        asked.append(np.asarray(index))
        return predict(self, spec, model, config, inputs, index, **kw)

    monkeypatch.setattr(type(trainer), "predict", spy)
    scene_map = trainer.predict_scene(spec, model, config, data.inputs, known=(known, marked))
    expected = plain.reshape(-1).copy()
    expected[known] = marked
    np.testing.assert_array_equal(scene_map.reshape(-1), expected)
    (index,) = asked
    assert index.size == H * W - known.size and not np.isin(known, index).any()
    with pytest.raises(SamplingError, match="3 predictions for 4 pixels"):
        trainer.predict_scene(spec, model, config, data.inputs, known=(known, marked[:3]))


def test_dense_scene_map_shows_the_known_predictions() -> None:
    data = _data()
    spec = _spec("dense")
    config = _config(spec, epochs=1, steps_per_epoch=1)
    trainer, model, _ = _fit("dense", data=data, epochs=1, steps_per_epoch=1)
    plain = trainer.predict_scene(spec, model, config, data.inputs).reshape(-1)
    known = np.array([5, 9, 5])  # a repeated pixel keeps its first prediction
    marked = (plain[known] + 1) % K
    expected = plain.copy()
    expected[[5, 9]] = marked[:2]
    again = trainer.predict_scene(spec, model, config, data.inputs, known=(known, marked))
    np.testing.assert_array_equal(again.reshape(-1), expected)


def test_build_places_the_module_on_the_trainer_device() -> None:
    trainer = Trainer(device="cpu", seed=0)
    spec = _spec("patch")
    model = trainer.build(spec, _config(spec), _info(3))
    assert all(p.device == trainer.device for p in model.parameters())
    assert Trainer(device="auto").device.type in ("cpu", "cuda")


def test_pregathered_and_per_batch_patch_gathers_train_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small training sets are gathered once per fit; larger ones per batch: same result."""
    from bench_core.training import data as training_data

    data = _data()
    spec = _spec("patch")
    config = _config(spec, epochs=2, batch_size=8, steps_per_epoch=4)
    states = []
    for budget in (training_data._PREGATHER_BYTES, 0):  # 0 forces the per-batch gather
        monkeypatch.setattr(training_data, "_PREGATHER_BYTES", budget)
        trainer, model, _ = _fit("patch", seed=3, data=data, epochs=2, batch_size=8, steps_per_epoch=4)
        states.append((trainer.predict_scene(spec, model, config, data.inputs), model.state_dict()))
    np.testing.assert_array_equal(states[0][0], states[1][0])
    assert all(torch.equal(states[0][1][k], states[1][1][k]) for k in states[0][1])


# --------------------------------------------------------------------------- epochs of crops, warm-up, groups, seed


def test_crops_per_epoch_random_and_grid() -> None:
    _, _, random_crops = _fit("dense", epochs=2, batch_size=4, crops_per_epoch=10)
    assert random_crops.steps == 2 * 3  # batches of 4, 4, 2
    _, _, capped = _fit("dense", epochs=2, batch_size=4, crops_per_epoch=10, steps_per_epoch=2)
    assert capped.steps == 2 * 2

    sizes: list[int] = []

    class Count(DenseNet):
        def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            sizes.append(int(targets.shape[0]))
            return nn.functional.cross_entropy(output, targets, ignore_index=-1)

    data = _data()
    spec = _spec("dense", build=lambda cfg, info: Count())
    _, _, grid = _fit("dense", spec=spec, data=data, epochs=1, batch_size=8, crops_per_epoch="grid:4")
    # 16 x 16 scene, centres every 4 px: 4 x 4 = 16 crops of 7 x 7; each holds a training pixel
    # (150 of 256 pixels train), so one epoch is all 16 crops in two batches of 8.
    assert sum(sizes[1:]) == 16 and grid.steps == 2


def test_crops_per_epoch_is_checked() -> None:
    with pytest.raises(ConfigError, match="crops_per_epoch"):
        _config(_spec("dense"), crops_per_epoch="grid:0")
    with pytest.raises(ConfigError, match="crops_per_epoch"):
        _config(_spec("dense"), crops_per_epoch=-3)
    with pytest.raises(ConfigError, match="dense methods only"):
        _fit("patch", crops_per_epoch=10)


class WithNormAndDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(5, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(6, K)

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        z = self.drop(torch.relu(self.norm(self.conv(torch.cat([x["hsi"], x["x"]], dim=1)))))
        return self.head(z.mean(dim=(2, 3)))


def test_warm_up_step_leaves_no_trace() -> None:
    spec = _spec("patch", build=lambda cfg, info: WithNormAndDropout())
    config = _config(spec)
    trainer = Trainer(device="cpu", seed=5)
    model = trainer.build(spec, config, _info(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _data()
    batches = patch_batches(PatchSampler(data.inputs, 3), data, config.train, trainer.device)
    rng_before = torch.get_rng_state()
    seconds = trainer._warm_up(model, batches, lambda out, y: nn.functional.cross_entropy(out, y))
    assert seconds > 0
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout's draws do not shift training
    assert all(p.grad is None for p in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name  # weights and BatchNorm statistics


def test_warm_up_time_is_reported_apart_from_training_time() -> None:
    _, _, result = _fit("patch", epochs=1)
    assert result.time_warmup_s > 0 and result.time_train_s > 0


class Flagged(PatchNet):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3, 3))
        self.scale._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(x) @ self.scale


def test_flagged_and_optionally_1d_parameters_get_no_weight_decay() -> None:
    model = Flagged()
    spec = _spec("patch")
    optimizer = make_optimizer(model, _config(spec, optimizer="adamw", weight_decay=0.05).train)
    decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert decay[0.0] == {id(model.scale)}
    assert id(model.conv.weight) in decay[0.05] and id(model.conv.bias) in decay[0.05]
    with_1d = _config(spec, optimizer="adamw", weight_decay=0.05, no_decay_1d=True).train
    optimizer = make_optimizer(model, with_1d)
    decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in optimizer.param_groups}
    assert decay[0.0] == {id(model.scale), id(model.conv.bias), id(model.head.bias)}
    assert describe_optimizer(model, with_1d) == {
        "optimizer.no_decay_tensors": "3",
        "optimizer.no_decay_values": str(9 + 8 + 3),
    }


def test_build_gets_the_trainer_seed_and_the_x_modalities() -> None:
    seen: list[SceneInfo] = []

    def build(cfg: Any, info: SceneInfo) -> PatchNet:
        seen.append(info)
        return PatchNet()

    spec = _spec("patch", build=build)
    Trainer(device="cpu", seed=1234).build(spec, _config(spec), _info(3))
    assert seen[-1].seed == 1234


def test_dense_validation_predicts_only_windows_around_validation_pixels() -> None:
    windows: list[int] = []

    class Counting(DenseNet):
        def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
            if not self.training:
                windows.append(int(x["hsi"].shape[0]))
            return super().forward(x)

    inputs, classes = _toy()
    big = {k: np.tile(v, (1, 4, 4)) for k, v in inputs.items()}  # 64 x 64
    labels = np.tile(classes.reshape(H, W), (4, 4)).reshape(-1)
    order = np.random.default_rng(0).permutation(64 * 64)
    train, val = order[:300], np.sort(order[300:306])
    data = TrainData(big, train, labels[train], val, labels[val], K)
    spec = _spec("dense", build=lambda cfg, info: Counting())
    trainer, model, result = _fit("dense", spec=spec, data=data, epochs=1, batch_size=4, steps_per_epoch=2)
    config = _config(spec, epochs=1, batch_size=4, steps_per_epoch=2)
    validation_windows = sum(windows)
    windows.clear()
    scene_map = trainer.predict_scene(spec, model, config, big)
    assert validation_windows < sum(windows) / 4  # 6 pixels need far fewer windows than the scene
    assert result.final_val_oa == pytest.approx(float(np.mean(scene_map.reshape(-1)[val] == labels[val])))


def test_ties_in_validation_oa_are_broken_by_validation_loss() -> None:
    # The toy problem is solved within an epoch or two; OA then stays at 1.0 while the loss falls.
    _, _, result = _fit("patch", epochs=6, lr=0.05, restore_best=True)
    oas = [h["val_oa"] for h in result.history]
    assert oas.count(1.0) >= 3
    perfect = [h for h in result.history if h["val_oa"] == 1.0]
    lowest = min(perfect, key=lambda h: h["val_loss"])
    assert result.best_epoch == int(lowest["epoch"])
    assert result.best_epoch != int(perfect[0]["epoch"])  # the first perfect epoch is not the best one
