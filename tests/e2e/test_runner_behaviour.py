"""The grid runner against a real MLflow store: failure isolation, Ctrl-C, determinism, test-split hygiene."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench_core import DatasetContext, MethodSpec, hookimpl, load_plugins
from bench_core.runner import GridRequest, run_grid
from bench_core.tracking import MLflowTracker

pytestmark = pytest.mark.slow  # whole grid runs against a real MLflow store

FAST = {"train": {"epochs": 2, "steps_per_epoch": 3}}


class TinyPatchNet(nn.Module):
    def __init__(self, config, info, events=None, explode=None):
        super().__init__()
        self.conv = nn.Conv2d(info.bands["hsi"] + info.bands["x"], info.num_classes, 1)
        self.events = events
        self.explode = explode

    def forward(self, inputs):
        if self.explode is not None:
            raise self.explode
        if self.events is not None and self.training:
            self.events.append("train_forward")
        x = torch.cat([inputs["hsi"], inputs["x"]], 1)
        centre = x.shape[-1] // 2
        return self.conv(x)[:, :, centre, centre]


def method_plugin(name: str, build) -> object:
    """An in-process plugin registering one patch method built by ``build``."""

    @hookimpl
    def bench_register_methods(register):
        register(
            MethodSpec(
                name=name, build=build, input_kind="patch", patch_size=3, modalities=("hsi", "x"),
                profiles={"paper": FAST, "fast": FAST}, description="test method",
            )
        )

    return types.SimpleNamespace(bench_register_methods=bench_register_methods, __name__=name)


def host_with(**extra: object):
    return load_plugins(only=["protocols", "synthetic", "two-branch-cnn"], extra=extra)


def tracker(tmp_path: Path) -> MLflowTracker:
    return MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "test")


def runs_by_method(t: MLflowTracker) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in t.runs():
        out.setdefault(r.data.params["method"], []).append(r)
    return out


def test_a_plugin_whose_build_raises_fails_only_its_cells(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    def build(config, info):
        raise RuntimeError("boom: this method cannot be built")

    host = host_with(broken_build=method_plugin("broken-build", build))
    t = tracker(tmp_path)
    request = GridRequest(plugins=["two-branch-cnn", "broken-build"], overrides=FAST)
    outcome = run_grid(host, request, t)
    assert outcome.exit_code == 1
    runs = runs_by_method(t)
    assert [r.info.status for r in runs["broken-build"]] == ["FAILED"]
    assert [r.info.status for r in runs["two-branch-cnn"]] == ["FINISHED"]
    failed = runs["broken-build"][0]
    assert "boom: this method cannot be built" in failed.data.tags["bench.error"]
    client = MlflowClient(t.uri)
    path = client.download_artifacts(failed.info.run_id, "traceback.txt", str(tmp_path))
    text = Path(path).read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text


def test_ctrl_c_marks_the_running_cell_killed(tmp_path: Path) -> None:
    def build(config, info):
        return TinyPatchNet(config, info, explode=KeyboardInterrupt())

    host = host_with(interrupted=method_plugin("interrupted", build))
    t = tracker(tmp_path)
    outcome = run_grid(host, GridRequest(plugins=["interrupted"], seeds=[0, 1]), t)
    assert outcome.interrupted and outcome.exit_code == 130
    runs = runs_by_method(t)["interrupted"]
    assert [r.info.status for r in runs] == ["KILLED"]  # the second seed never started
    # The next run resumes: the KILLED cell is not FINISHED, so it runs again.
    assert t.finished_cell_keys() == set()


def test_non_finite_loss_fails_the_cell_with_that_reason(tmp_path: Path) -> None:
    class NaNLoss(TinyPatchNet):
        def loss(self, output, targets):
            return output.sum() * float("nan")

    host = host_with(nan=method_plugin("nan-loss", lambda c, i: NaNLoss(c, i)))
    t = tracker(tmp_path)
    outcome = run_grid(host, GridRequest(plugins=["nan-loss"]), t)
    assert outcome.exit_code == 1
    (run,) = runs_by_method(t)["nan-loss"]
    assert run.info.status == "FAILED"
    assert "NonFiniteLossError" in run.data.tags["bench.error"]


def test_same_seed_twice_gives_identical_results(tmp_path: Path) -> None:
    host = host_with()
    t = tracker(tmp_path)
    request = GridRequest(plugins=["two-branch-cnn"], overrides=FAST, rerun=True)
    run_grid(host, request, t)
    run_grid(host, request, t)
    runs = runs_by_method(t)["two-branch-cnn"]
    assert len(runs) == 2
    a, b = (r.data.metrics for r in runs)
    assert a["test_oa"] == b["test_oa"] and a["test_kappa"] == b["test_kappa"]
    assert runs[0].data.tags["bench.cell_key"] == runs[1].data.tags["bench.cell_key"]
    other = run_grid(host, GridRequest(plugins=["two-branch-cnn"], overrides=FAST, seeds=[1]), t)
    assert other.exit_code == 0


def test_test_split_is_opened_once_and_only_after_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sentinel: record every training forward pass and every opening of the test split."""
    import bench_core.splits as splits
    import bench_core.training as training

    events: list[str] = []
    seen_indices: list[np.ndarray] = []
    original_open = splits.Split.open_test
    original_fit = training.Trainer.fit

    def spy_open(self):
        events.append("open_test")
        return original_open(self)

    def spy_fit(self, spec, model, config, data):
        seen_indices.extend([np.asarray(data.train_index), np.asarray(data.val_index)])
        events.append("fit_start")
        result = original_fit(self, spec, model, config, data)
        events.append("fit_end")
        return result

    monkeypatch.setattr(splits.Split, "open_test", spy_open)
    monkeypatch.setattr(training.Trainer, "fit", spy_fit)
    host = host_with(sentinel=method_plugin("sentinel", lambda c, i: TinyPatchNet(c, i, events=events)))
    outcome = run_grid(host, GridRequest(plugins=["sentinel"]), tracker(tmp_path))
    assert outcome.exit_code == 0
    assert events.count("open_test") == 1
    opened = events.index("open_test")
    assert events.index("fit_end") < opened
    assert "train_forward" in events and max(i for i, e in enumerate(events) if e == "train_forward") < opened

    # And the pixels the trainer saw never include a test pixel.
    scene = host.datasets.get("synthetic").load(DatasetContext())
    test_pixels = np.flatnonzero(np.asarray(scene.official_test).ravel() > 0)
    assert not np.intersect1d(np.concatenate(seen_indices), test_pixels).size


def test_method_tags_seed_and_x_modalities_reach_the_run(tmp_path: Path) -> None:
    seen = []

    class Tagged(TinyPatchNet):
        def bench_tags(self):
            return {"guidance": "stand-in", "weights_sha256": "ab" * 32}

    def build(config, info):
        seen.append(info)
        return Tagged(config, info)

    host = host_with(tagged=method_plugin("tagged", build))
    t = tracker(tmp_path)
    assert run_grid(host, GridRequest(plugins=["tagged"]), t).exit_code == 0
    (run,) = runs_by_method(t)["tagged"]
    assert run.data.tags["bench.method.guidance"] == "stand-in"
    assert run.data.tags["bench.method.weights_sha256"] == "ab" * 32
    assert seen[0].seed == int(run.data.params["seed_train"])  # the cell's training seed
    assert seen[0].x_modalities == ("lidar",)
    assert run.data.params["optimizer.no_decay_tensors"] == "0"
    assert run.data.metrics["time_warmup_s"] > 0


def test_a_run_whose_artifacts_cannot_be_stored_is_failed_not_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_core.tracking import MLflowRun

    def disk_full(self, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MLflowRun, "log_artifacts", disk_full)
    t = tracker(tmp_path)
    outcome = run_grid(host_with(), GridRequest(plugins=["two-branch-cnn"], overrides=FAST), t)
    assert outcome.exit_code == 1
    (run,) = runs_by_method(t)["two-branch-cnn"]
    assert run.info.status == "FAILED"
    assert "artifacts not stored" in run.data.tags["bench.error"] and "No space left" in run.data.tags["bench.error"]
    assert t.finished_cell_keys() == set()  # the next run does the cell again
