"""BDGF plugin: parameter counts through ``build`` at the paper's shapes, the pretrain stage (no labels,
deterministic, cached and reused, keyed by config/seed/data), the derived ``dif`` input, the on-the-fly
feature path against the cached one, the temperature curve, run tags and config errors
(seed-methods.md 5g). The network and the diffusion pieces have their own test files; the
conformance suite runs on ``bdgf`` in tests/conformance/test_builtin_methods.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bench_plugins.methods.bdgf as bdgf
import bench_plugins.methods.bdgf.model as bdgf_model
import numpy as np
import pytest
import torch

from bench_core import ConfigError, SceneInfo
from bench_core.stage_cache import StageCache
from bench_core.training import StageContext, TrainData, Trainer, derived_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DDPM_PAPER_PARAMS = 4_299_633
NET_PAPER_PARAMS = 16.38e6
H = W = 16
TINY: dict[str, Any] = {  # a stage of a few hundred milliseconds
    "embed_dim": 16, "heads": 2, "ddpm_channels": [2, 4, 8, 16], "ddpm_depth": 16, "ddpm_tile": 8,
    "ddpm_epochs": 2, "ddpm_batch": 4, "ddpm_lr": 1e-3, "dif_timestep": 10,
}


def _info(hsi: int = 6, x: int = 2, classes: int = 3, shape: tuple[int, int] = (H, W), patch: int = 9,
          x_modalities: tuple[str, ...] = ("sar",)) -> SceneInfo:
    return SceneInfo(dataset="tiny", bands={"hsi": hsi, "x": x}, num_classes=classes,
                     class_names=tuple(f"c{k}" for k in range(classes)), image_shape=shape, patch_size=patch,
                     x_modalities=x_modalities)


def _data(seed: int = 0, shape: tuple[int, int] = (H, W), labels_seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    h, w = shape
    inputs = {"hsi": rng.random((6, h, w), dtype=np.float32), "x": rng.random((2, h, w), dtype=np.float32)}
    pick = np.random.default_rng(labels_seed)
    order = pick.permutation(h * w)
    train, val = order[: h * w // 2], order[h * w // 2: h * w // 2 + 10]
    return TrainData(inputs, train, pick.integers(0, 3, train.size), val, pick.integers(0, 3, val.size), 3)


def _model(seed: int = 0, info: dict[str, Any] | None = None, **overrides: Any) -> bdgf_model.BDGF:
    torch.manual_seed(seed)
    return bdgf.build({**TINY, **overrides}, _info(**(info or {})))


def _run_stage(model: bdgf_model.BDGF, data: Any, seed: int = 0, cache_dir: Path | None = None, **config: Any) -> StageCache | None:
    spec = bdgf.method_spec()
    resolved = spec.resolve("fast", {"model": {**TINY, **config}})
    cache = StageCache(cache_dir / "bdgf", data.inputs) if cache_dir is not None else None
    generator = torch.Generator().manual_seed(seed)
    bdgf.pretrain(StageContext(model, resolved, data, torch.device("cpu"), generator, seed, cache))
    return cache


class InputsOnly:
    """What the stage may read: the scene inputs. Anything else (pixels, labels) fails the test."""

    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        self.inputs = inputs
        self.image_shape = next(iter(inputs.values())).shape[1:]

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the pretrain stage read data.{name}; it may read only data.inputs")


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("hsi", "classes"), [(180, 7), (244, 8)], ids=["augsburg", "berlin"])
def test_paper_profile_sizes_at_augsburg_and_berlin_shapes(hsi: int, classes: int) -> None:
    config = bdgf.method_spec().resolve("paper").model
    with torch.device("meta"):
        model = bdgf.build(config, _info(hsi=hsi, x=4, classes=classes, shape=(332, 485)))
    assert model.depth == 256 and model.dif_channels == 8192  # S = next power of two >= 184 / 248
    assert sum(p.numel() for p in model.ddpm.parameters()) == DDPM_PAPER_PARAMS
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(trainable / NET_PAPER_PARAMS - 1) < 0.03, f"{trainable:,} vs the paper's 16.38 M"
    assert not any(p.requires_grad for p in model.ddpm.parameters())  # frozen outside its stage


def test_paper_ddpm_widths_are_the_ops_constant() -> None:
    from bench_core.ops import DDPM_PAPER_CHANNELS

    assert bdgf.DDPM_PAPER_CHANNELS == DDPM_PAPER_CHANNELS == bdgf.BDGFOptions().ddpm_channels


def test_x_noise_follows_the_x_modality() -> None:
    assert _model().x_noise == "speckle"
    assert bdgf.build(TINY, _info(x_modalities=("lidar",))).x_noise == "gaussian"
    assert bdgf.build({**TINY, "x_noise": "speckle"}, _info(x_modalities=("lidar",))).x_noise == "speckle"


# --------------------------------------------------------------------------- the stage


def test_the_stage_reads_only_the_scene_inputs_never_pixels_or_labels() -> None:
    model = _model()
    _run_stage(model, InputsOnly(dict(_data().inputs)))
    dif = derived_inputs(model)["dif"]
    assert dif.shape == (model.dif_channels, H, W) and np.isfinite(dif.astype(np.float32)).all()
    assert model.ddpm_state == "trained" and model.ddpm_steps == 2  # 4 tiles in batches of 4, 2 epochs


def test_the_stage_is_deterministic_under_its_seed_and_ignores_the_split() -> None:
    runs = []
    for seed, labels in ((3, 0), (3, 1), (4, 0)):
        model = _model()
        _run_stage(model, _data(labels_seed=labels), seed=seed)
        runs.append((_state(model.ddpm), derived_inputs(model)["dif"].astype(np.float32)))
    assert _same(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])  # other split: same
    assert not _same(runs[0][0], runs[2][0]) and not np.array_equal(runs[0][1], runs[2][1])  # other seed


def test_a_second_run_reuses_the_cached_ddpm_and_features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _model()
    cache = _run_stage(first, _data(), cache_dir=tmp_path)
    assert cache is not None and cache.events == {"ddpm": "miss", "features": "miss"}
    assert first.bench_tags()["dif_cache"] == "miss" and first.bench_tags()["ddpm"] == "trained"

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the DDPM was trained again although the cache holds it")

    monkeypatch.setattr(bdgf_model, "pretrain_ddpm", no_training)
    second = _model(seed=9)  # other initial weights: everything must come from the cache
    cache = _run_stage(second, _data(), cache_dir=tmp_path)
    assert cache is not None and cache.events == {"ddpm": "hit", "features": "hit"}
    assert second.bench_tags()["ddpm"] == "reused" and second.bench_tags()["ddpm_steps"] == "2"
    assert _same(_state(first.ddpm), _state(second.ddpm))
    dif = derived_inputs(second)["dif"]
    assert isinstance(dif.base, np.memmap) and dif.dtype == np.float16  # memory-mapped, not loaded
    assert np.array_equal(dif, derived_inputs(first)["dif"])

    third = _model(dif_timestep=20)
    cache = _run_stage(third, _data(), cache_dir=tmp_path, dif_timestep=20)  # a tuning trial's other timestep
    assert cache is not None and cache.events == {"ddpm": "hit", "features": "miss"}


@pytest.mark.parametrize(
    ("change", "ddpm_entry_changes"),
    [({"ddpm_epochs": 3}, True), ({"mask": "none"}, True), ({"seed": 1}, True), ({"data": 1}, True),
     ({"dif_layer": 1}, False), ({"dif_timestep": 20}, False)],
)
def test_cache_keys_follow_config_seed_and_data(tmp_path: Path, change: dict[str, Any], ddpm_entry_changes: bool) -> None:
    config = dict(change)
    seed, data = config.pop("seed", 0), config.pop("data", 0)
    _run_stage(_model(), _data(), cache_dir=tmp_path)
    _run_stage(_model(**config), _data(seed=data), seed=seed, cache_dir=tmp_path, **config)
    names = [p.name for p in (tmp_path / "bdgf").iterdir()]
    counts = {kind: sum(n.startswith(kind + "-") for n in names) for kind in ("ddpm", "features")}
    assert counts == {"ddpm": 2 if ddpm_entry_changes else 1, "features": 2}


# --------------------------------------------------------------------------- feature paths


def test_on_the_fly_features_equal_the_cached_map_for_a_scene_of_one_tile() -> None:
    side = 9
    config = {"ddpm_tile": side, "dif_dtype": "float32"}
    model = _model(**config, info={"shape": (side, side)})
    data = _data(shape=(side, side))
    _run_stage(model, data, seed=2, **config)
    model.eval()
    centre = torch.tensor([side // 2 * side + side // 2])
    from bench_core.sampling import PatchSampler

    patch = PatchSampler({**data.inputs, **derived_inputs(model)}, side).patches(centre)
    with torch.no_grad():
        on_the_fly = model.features_on_the_fly(patch["hsi"], patch["x"])
        assert torch.allclose(on_the_fly, patch["dif"], atol=1e-5)
        cached = model(patch)["logits"]
        computed = model({"hsi": patch["hsi"], "x": patch["x"]})["logits"]
    assert torch.allclose(cached, computed, atol=1e-5)


def test_dif_source_on_the_fly_ignores_a_given_map() -> None:
    model = _model(dif_source="on-the-fly").eval()
    rng = torch.Generator().manual_seed(0)
    batch = {"hsi": torch.rand(2, 6, 9, 9, generator=rng), "x": torch.rand(2, 2, 9, 9, generator=rng)}
    with torch.no_grad():
        plain = model(batch)["logits"]
        given = model({**batch, "dif": torch.zeros(2, model.dif_channels, 9, 9)})["logits"]
    assert torch.equal(plain, given)


# --------------------------------------------------------------------------- training


@pytest.mark.slow
def test_training_samples_the_cached_map_and_logs_the_temperature(tmp_path: Path) -> None:
    spec = bdgf.method_spec()
    config = spec.resolve("fast", {"model": TINY, "train": {"epochs": 2, "steps_per_epoch": 2, "batch_size": 8}})
    epochs: list[dict[str, float]] = []
    trainer = Trainer(device="cpu", seed=5, stage_seed=0, stage_cache_dir=tmp_path,
                      on_epoch_end=lambda epoch, values: epochs.append(values))
    model = trainer.build(spec, config, _info())
    seen: list[tuple[str, ...]] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(tuple(sorted(args[0]))))
    result = trainer.fit(spec, model, config, _data())
    assert set(seen) == {("dif", "hsi", "x")}  # warm-up, training and validation all got the cached map
    assert result.stage_cache == {"ddpm": "miss", "features": "miss"}
    assert "pretrain" in result.stage_times
    assert [sorted(e) for e in epochs] == [["epoch", "lr", "temperature_mean", "train_loss", "val_loss", "val_oa"]] * 2
    assert all(e["temperature_mean"] > 0 for e in epochs)


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"colour": 1}, r"unknown key\(s\) \['colour'\]"),
        ({"mask": "half"}, r"model.mask = 'half'"),
        ({"sar_target": "sar"}, r"model.sar_target = 'sar'"),
        ({"x_noise": "poisson"}, r"model.x_noise = 'poisson'"),
        ({"dif_layer": 3}, r"model.dif_layer = 3"),
        ({"dif_timestep": 500}, r"model.dif_timestep = 500: expected an integer in \[0, 500\)"),
        ({"dif_source": "disk"}, r"model.dif_source = 'disk'"),
        ({"ddpm_channels": [4, 8]}, r"model.ddpm_channels = \[4, 8\]"),
        ({"ddpm_beta": [0.02, 1e-4]}, r"model.ddpm_beta"),
        ({"ddpm_epochs": 0}, r"model.ddpm_epochs = 0"),
        ({"ddpm_depth": 4}, r"model.ddpm_depth"),  # fewer rows than the 8 bands
        ({"temperature": "hot"}, r"model.temperature"),
    ],
)
def test_bad_model_config_names_the_key(config: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        bdgf.build({**TINY, **config}, _info())
