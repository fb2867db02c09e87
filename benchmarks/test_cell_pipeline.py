"""Costs the cell pipeline takes off heavy dense methods, measured side by side.

* Dense validation: predicting only the sliding windows that cover the validation pixels
  vs predicting the whole scene and picking them (what validation did before), for a
  32x32-crop dense method (``fusion-fcn`` at crop 32) on the Augsburg-shaped preset.
* Warm-up: ``time_train_s`` of the first and the second identical cell of one fresh
  process, with the Trainer's untimed warm-up step and with it switched off. Target:
  first and second within 20 % with the warm-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_core import SplitSpec, load_plugins
from bench_core.pipeline import load_scene, make_cell_split, prepare
from bench_core.training import Trainer
from benchmarks.conftest import paired_best_of


@pytest.mark.benchmark(group="cell-pipeline")
def test_dense_validation_on_windows_vs_whole_scene(benchmark, record) -> None:
    host = load_plugins()
    spec = host.methods.get("fusion-fcn")
    config = spec.resolve("fast", {"train": {"patch_size": 32, "batch_size": 16}})
    scene = load_scene(host.datasets.get("synthetic-augsburg"))
    split = make_cell_split(scene, SplitSpec.parse("official", 0.1), host.splits.get("official"), 0, 32)
    cell = prepare(spec, config, scene, split.train, split.val, 0)
    trainer = Trainer(device="cpu", seed=0)
    model = trainer.build(spec, config, cell.info)
    val = cell.data.val_index

    def whole_scene() -> np.ndarray:
        return trainer.predict_scene(spec, model, config, cell.inputs).reshape(-1)[val]

    def windows() -> np.ndarray:
        return trainer.predict_dense_at(spec, model, config, cell.inputs, val)

    assert np.array_equal(whole_scene(), windows())  # same predictions, or the timing means nothing
    scene_s, windows_s = paired_best_of(whole_scene, windows, repeats=3)
    benchmark.extra_info.update({"whole_scene_s": scene_s, "windows_s": windows_s, "speedup": scene_s / windows_s})
    benchmark.pedantic(windows, rounds=1, iterations=1)
    record("dense_validation_windows", {
        "dataset": "synthetic-augsburg", "method": "fusion-fcn (fast architecture)", "crop": 32,
        "validation_pixels": int(val.size), "scene_pixels": int(np.prod(scene.shape)),
        "whole_scene_s": scene_s, "windows_s": windows_s, "speedup": scene_s / windows_s,
    })


_TWO_CELLS = r"""
import json, sys, tempfile, os
import bench_core.training as training
from bench_core import load_plugins
from bench_core.runner import GridRequest, run_grid
from bench_core.tracking import MLflowTracker
if sys.argv[1] == "off":
    training.Trainer._warm_up = lambda self, model, batches, loss_of: 0.0
home = tempfile.mkdtemp()
tracker = MLflowTracker(f"sqlite:///{home}/mlflow.db", "warmup")
host = load_plugins(only=["protocols", "synthetic", sys.argv[2]])
request = GridRequest(plugins=[sys.argv[2]], rerun=True)
times = []
for _ in range(2):
    outcome = run_grid(host, request, tracker)
    times.append(next(iter(outcome.results.values())).metrics["time_train_s"])
print(json.dumps(times))
"""


def _two_cells(warm_up: str, method: str) -> list[float]:
    env = {**os.environ, "BENCH_HOME": str(Path.cwd() / "bench-home")}
    out = subprocess.run(
        [sys.executable, "-c", _TWO_CELLS, warm_up, method],
        capture_output=True, text=True, check=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="cell-pipeline")
@pytest.mark.parametrize("method", ["two-branch-cnn", "fusion-fcn"])
def test_first_and_second_cell_of_a_process_train_alike(benchmark, record, method: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = {}
    for mode in ("on", "off"):
        first, second = _two_cells(mode, method)
        results[mode] = {"first_s": first, "second_s": second, "first_over_second": first / second}
    benchmark.extra_info.update(results)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    record(f"warm_up_first_vs_second_cell_{method}", {
        "method": f"{method} (fast profile, synthetic)", "torch_threads": torch.get_num_threads(),
        "with_warm_up": results["on"], "without_warm_up": results["off"],
    })
