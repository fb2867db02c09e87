"""Derived inputs, the stage cache and the no-copy patch gather (harness parts BDGF needs).

A toy patch method whose stage computes a per-pixel map from the scene (the class signal the
HSI hides behind noise, smoothed) and adds it as the derived input ``aux``; its forward reads
only ``aux``, so it can train and predict only if the Trainer samples the derived input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench_core.errors import ConfigError, SamplingError
from bench_core.pipeline import CellData, example_input
from bench_core.sampling import PAD_MODES, PatchSampler, border_index
from bench_core.scene import SceneInfo
from bench_core.specs import MethodSpec, Stage
from bench_core.stage_cache import StageCache, inputs_fingerprint
from bench_core.training import (
    StageContext,
    TrainData,
    Trainer,
    add_derived_input,
    derived_inputs,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W, K = 12, 14, 3


def _data(seed: int = 0) -> TrainData:
    rng = np.random.default_rng(seed)
    classes = (np.arange(W)[None, :].repeat(H, 0) * K) // W
    hsi = (np.eye(K, 4)[classes].transpose(2, 0, 1) + 0.1 * rng.normal(size=(4, H, W))).astype(np.float32)
    x = rng.normal(size=(1, H, W)).astype(np.float32)
    order = rng.permutation(H * W)
    flat = classes.reshape(-1)
    train, val = order[:80], order[80:120]
    return TrainData({"hsi": hsi, "x": x}, train, flat[train], val, flat[val], K)


class AuxNet(nn.Module):
    """Reads only the derived input ``aux`` (3 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, K)
        self.seen: list[tuple[str, ...]] = []

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        self.seen.append(tuple(sorted(inputs)))
        return self.head(inputs["aux"].mean(dim=(2, 3)))


class Counter:
    def __init__(self) -> None:
        self.computed = 0
        self.seeds: list[int] = []


def _aux_stage(counter: Counter, dtype: type = np.float32, memmap: bool = False) -> Stage:
    def run(context: StageContext) -> None:
        counter.seeds.append(context.seed)
        assert context.dataset_fingerprint == inputs_fingerprint(context.data.inputs)
        assert context.cache_dir is None or context.cache_dir.name == "toy-aux"
        hsi = context.data.inputs["hsi"]
        entry = None if context.cache is None else context.cache.entry("aux", {"version": 1, "seed": context.seed})
        found = entry.open() if entry is not None else None
        if found is None:
            counter.computed += 1
            noise = torch.rand(1, generator=context.generator).item() * 1e-3
            values = (hsi[:3] + noise).astype(dtype)
            if entry is None:
                context.add_input("aux", values)
                return
            with entry.write() as folder:
                np.save(folder / "aux.npy", np.moveaxis(values, 0, -1))  # channel-last on disk
            found = entry.path
        stored = np.load(found / "aux.npy", mmap_mode="r" if memmap else None)
        context.add_input("aux", np.moveaxis(stored, -1, 0))

    return Stage("features", run)


def _spec(stage: Stage) -> MethodSpec:
    return MethodSpec(
        name="toy-aux", build=lambda cfg, info: AuxNet(), input_kind="patch", modalities=("hsi", "x"),
        profiles={"paper": {}, "fast": {"train": {"epochs": 10, "batch_size": 16, "lr": 0.05}}}, patch_size=3, stages=(stage,),
    )


def _info() -> SceneInfo:
    return SceneInfo(dataset="toy", bands={"hsi": 4, "x": 1}, num_classes=K, class_names=("a", "b", "c"),
                     image_shape=(H, W), patch_size=3)


def _fit(spec: MethodSpec, cache_dir: Path | None = None, seed: int = 0, stage_seed: int | None = None,
         data: TrainData | None = None) -> tuple[Trainer, AuxNet, Any]:
    config = spec.resolve("fast")
    trainer = Trainer(device="cpu", seed=seed, stage_seed=stage_seed, stage_cache_dir=cache_dir)
    model = trainer.build(spec, config, _info())
    return trainer, model, trainer.fit(spec, model, config, data or _data())


# --------------------------------------------------------------------------- derived inputs


def test_a_derived_input_is_sampled_in_training_validation_and_prediction() -> None:
    counter = Counter()
    spec = _spec(_aux_stage(counter))
    trainer, model, result = _fit(spec)
    assert counter.computed == 1
    assert set(model.seen) == {("aux", "hsi", "x")}  # every forward (warm-up, training, validation) got it
    assert result.final_val_oa is not None and result.final_val_oa > 0.8  # aux carries the class
    model.seen.clear()
    data = _data()
    predicted = trainer.predict(spec, model, spec.resolve("fast"), data.inputs, data.val_index)
    assert predicted.shape == data.val_index.shape
    assert set(model.seen) == {("aux", "hsi", "x")}
    assert trainer.predict_scene(spec, model, spec.resolve("fast"), data.inputs).shape == (H, W)


def test_the_flop_example_includes_derived_inputs() -> None:
    spec = _spec(_aux_stage(Counter()))
    trainer, model, _ = _fit(spec)
    cell = CellData(spec=spec, config=spec.resolve("fast"), scene=None, inputs=_data().inputs,  # type: ignore[arg-type]
                    info=_info(), data=_data())
    example = example_input(cell, trainer.device, model)
    assert {k: tuple(v.shape) for k, v in example.items()} == {
        "hsi": (1, 4, 3, 3), "x": (1, 1, 3, 3), "aux": (1, 3, 3, 3)}
    with FlopCounterMode(display=False) as counter:
        model(example)
    assert counter.get_total_flops() == 2 * 3 * K  # the head reads the 3 aux channels
    assert "aux" not in example_input(cell, trainer.device)  # without the model: scene inputs only


@pytest.mark.parametrize(
    ("name", "values", "error", "pattern"),
    [
        ("hsi", np.zeros((2, H, W), np.float32), ConfigError, "already gives an input"),
        ("aux", np.zeros((2, H, W + 1), np.float32), SamplingError, r"expected \(C, 12, 14\)"),
        ("aux", np.zeros((H, W), np.float32), SamplingError, "expected"),
        ("aux", np.zeros((2, H, W), np.int64), SamplingError, "expected float"),
        ("Bad Name", np.zeros((2, H, W), np.float32), Exception, "invalid"),
    ],
)
def test_bad_derived_inputs_are_refused_with_the_reason(name: str, values: np.ndarray, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        add_derived_input(nn.Linear(1, 1), name, values, (H, W), reserved=("hsi", "x"))


def test_a_model_without_stages_has_no_derived_inputs() -> None:
    assert derived_inputs(nn.Linear(1, 1)) == {}


# --------------------------------------------------------------------------- stage cache


@pytest.mark.slow
def test_second_fit_hits_the_cache_and_gives_the_same_model(tmp_path: Path) -> None:
    counter = Counter()
    spec = _spec(_aux_stage(counter, dtype=np.float16, memmap=True))
    _, first, r1 = _fit(spec, tmp_path, seed=1, stage_seed=7)
    _, second, r2 = _fit(spec, tmp_path, seed=1, stage_seed=7)
    assert counter.computed == 1
    assert (r1.stage_cache, r2.stage_cache) == ({"aux": "miss"}, {"aux": "hit"})
    assert counter.seeds == [7, 7]
    assert isinstance(derived_inputs(second)["aux"].base, np.memmap)  # read from disk, not copied
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    entries = [p.name for p in (tmp_path / "toy-aux").iterdir()]
    assert len(entries) == 1 and entries[0].startswith("aux-")  # no temporary folder left behind


def test_the_key_follows_seed_parts_and_data_but_not_the_training_split(tmp_path: Path) -> None:
    counter = Counter()
    spec = _spec(_aux_stage(counter))
    _fit(spec, tmp_path, stage_seed=0)
    _fit(spec, tmp_path, stage_seed=0, seed=5, data=_data(seed=0))  # other training seed: same stage
    assert counter.computed == 1
    _fit(spec, tmp_path, stage_seed=1)  # other stage seed
    assert counter.computed == 2
    _fit(spec, tmp_path, stage_seed=0, data=_data(seed=3))  # other scene values
    assert counter.computed == 3


def test_entry_keys_and_fingerprints(tmp_path: Path) -> None:
    data = _data()
    cache = StageCache(tmp_path, data.inputs)
    key = cache.entry("ddpm", {"channels": [4, 8], "seed": 0}).key
    assert cache.entry("ddpm", {"seed": 0, "channels": (4, 8)}).key == key  # order and tuple/list do not matter
    assert cache.entry("ddpm", {"channels": [4, 8], "seed": 1}).key != key
    assert cache.entry("features", {"channels": [4, 8], "seed": 0}).key != key
    changed = dict(data.inputs, x=data.inputs["x"] + 1e-6)
    assert StageCache(tmp_path, changed).entry("ddpm", {"channels": [4, 8], "seed": 0}).key != key
    assert inputs_fingerprint(data.inputs) == inputs_fingerprint(dict(data.inputs))
    assert inputs_fingerprint({"hsi": data.inputs["hsi"].astype(np.float16)}) != inputs_fingerprint(
        {"hsi": data.inputs["hsi"]})
    with pytest.raises(ConfigError, match="not JSON-serialisable"):
        cache.entry("ddpm", {"model": object()})


def test_a_failed_write_stores_nothing(tmp_path: Path) -> None:
    cache = StageCache(tmp_path, _data().inputs)
    entry = cache.entry("ddpm", {"seed": 0})
    with pytest.raises(RuntimeError, match="killed"), entry.write() as folder:
        (folder / "half.npy").write_bytes(b"partial")
        raise RuntimeError("killed while writing")
    assert entry.open() is None
    assert list(tmp_path.iterdir()) == []
    assert cache.events == {"ddpm": "miss"}


def test_a_concurrent_writer_keeps_the_first_entry(tmp_path: Path) -> None:
    cache = StageCache(tmp_path, _data().inputs)
    first, second = cache.entry("ddpm", {"seed": 0}), cache.entry("ddpm", {"seed": 0})
    with second.write() as slow:
        (slow / "value.txt").write_text("second")
        with first.write() as fast:
            (fast / "value.txt").write_text("first")
    assert (first.path / "value.txt").read_text() == "first"
    assert first.open() == first.path and cache.events == {"ddpm": "hit"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.path.name]


# --------------------------------------------------------------------------- no-copy patch gather


@pytest.mark.parametrize("mode", PAD_MODES)
def test_border_index_equals_numpy_padding(mode: str) -> None:
    for length in (1, 2, 5):
        index = np.arange(-2 * length - 3, 3 * length + 3)
        if mode == "reflect" and length == 1:
            index = np.arange(-1, 2)
        padded = np.pad(np.arange(length) + 1.0, (-index.min(), index.max() - length + 1),
                        mode="constant" if mode == "zero" else mode)
        inside, outside = border_index(index, length, mode)
        got = (np.arange(length) + 1.0)[inside]
        if outside is not None:
            got[outside] = 0.0
        assert np.array_equal(got, padded[index - index.min()]), (mode, length)


@pytest.mark.parametrize("mode", PAD_MODES)
def test_memory_mapped_float16_input_gives_the_padded_copys_patches(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(H, W, 6)).astype(np.float16)
    np.save(tmp_path / "map.npy", values)
    mapped = np.moveaxis(np.load(tmp_path / "map.npy", mmap_mode="r"), -1, 0)  # (C, H, W) view of (H, W, C)
    in_memory = np.ascontiguousarray(mapped, dtype=np.float32)
    by_source = PatchSampler({"a": mapped}, 5, pad_mode=mode)
    by_copy = PatchSampler({"a": in_memory}, 5, pad_mode=mode)
    assert "a" in by_source.sources and "a" in by_copy.padded
    index = rng.permutation(H * W)
    assert torch.equal(by_source.patches(index)["a"], by_copy.patches(index)["a"])
    assert torch.equal(by_source.pixels(index)["a"], by_copy.pixels(index)["a"])
    assert by_source.patches(index[:4])["a"].dtype == torch.float32


def test_inputs_over_the_copy_budget_are_gathered_from_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench_core.sampling as sampling

    data = _data()
    reference = PatchSampler(data.inputs, 7)
    monkeypatch.setattr(sampling, "PAD_COPY_BYTES", 4 * 18 * 20 * 4 - 1)  # hsi's padded copy is just over
    sampler = PatchSampler(data.inputs, 7)
    assert set(sampler.sources) == {"hsi"} and set(sampler.padded) == {"x"}
    index = np.arange(H * W)
    for name in ("hsi", "x"):
        assert torch.equal(sampler.patches(index)[name], reference.patches(index)[name])
