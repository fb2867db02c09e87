"""Data and output faults through `bench run` (``bench_core.cli.main``) into a real MLflow store.

* stale reuse: the cell key holds the fingerprint of the files actually found for --data-dir,
  so other files (or a zero-byte copy) run again, an empty folder fails its cell, and the
  same files in another folder are still "already FINISHED";
* a scene of another shape than the dataset declares is refused, not ranked;
* NaN/inf logits at validation or test time fail the cell (NonFiniteOutputError), no test metrics;
* a class with no training pixel warns, is tagged, and is marked on the leaderboard.

The fake Trento files have the real format and the real 600 x 166 shape (seeded values), and
fail the published sha256 (BENCH_VERIFY_CHECKSUMS=0).
"""

from __future__ import annotations

import shutil
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench_core import MethodSpec, SplitProtocol, hookimpl
from bench_core.plugins import load_plugins
from bench_core.tracking import MLflowTracker
from tests.data.trento import make_fake as trento_fake

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

TRENTO_SHAPE = (600, 166)
TRENTO_RUN = ["run", "--plugins", "svm", "--datasets", "trento", "--splits", "per-class:5", "--profile", "fast"]




def _runs(bench: Callable[..., tuple[int, str]]) -> list:
    runs = MLflowTracker(bench.uri, "bench").runs()  # type: ignore[attr-defined]
    return sorted(runs, key=lambda r: r.info.start_time)


def _with_extra_plugins(monkeypatch: pytest.MonkeyPatch, **extra: object) -> None:
    """`bench run` in this process loads the built-ins it needs plus in-process test plugins."""
    original = load_plugins
    monkeypatch.setattr(
        "bench_core.plugins.load_plugins",
        lambda *a, **k: original(only=["protocols", "synthetic", "svm"], extra=extra),
    )


# ----------------------------------------------------------------------------- stale reuse


def test_another_data_dir_is_not_reused_and_an_empty_one_fails(bench, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    trento_fake.make_fake(a / "trento", seed=0, shape=TRENTO_SHAPE)
    trento_fake.make_fake(b / "trento", seed=1, shape=TRENTO_SHAPE)  # same names and sizes, other values
    moved = tmp_path / "moved"
    shutil.copytree(a, moved)
    (tmp_path / "empty").mkdir()
    zero = tmp_path / "zero" / "trento"
    zero.mkdir(parents=True)
    for name in ("Italy_hsi.mat", "Italy_lidar.mat", "allgrd.mat"):
        (zero / name).write_bytes(b"")

    code, out = bench(*TRENTO_RUN, "--data-dir", str(a))
    assert code == 0 and "1 to run, 0 already FINISHED" in out and "FINISHED test_oa=" in out

    code, out = bench(*TRENTO_RUN, "--data-dir", str(b))  # other files: a new cell, not "already FINISHED"
    assert code == 0 and "1 to run, 0 already FINISHED" in out, out

    code, out = bench(*TRENTO_RUN, "--data-dir", str(tmp_path / "empty"))
    assert code == 1 and "1 to run, 0 already FINISHED" in out, out
    assert "FAILED" in out

    code, out = bench(*TRENTO_RUN, "--data-dir", str(zero.parent))
    assert code == 1 and "1 to run, 0 already FINISHED" in out, out

    # Resume still works, and is path-independent: the same files elsewhere are the same cell.
    for folder in (a, moved):
        code, out = bench(*TRENTO_RUN, "--data-dir", str(folder))
        assert code == 0 and "0 to run, 1 already FINISHED" in out, out

    first, second, empty, zeroed = _runs(bench)
    assert [r.info.status for r in (first, second, empty, zeroed)] == ["FINISHED", "FINISHED", "FAILED", "FAILED"]
    tags = [r.data.tags for r in (first, second, empty, zeroed)]
    assert len({t["bench.cell_key"] for t in tags}) == 4
    assert len({t["bench.dataset_fingerprint"] for t in tags}) == 4
    assert tags[0]["bench.data_sha256.Italy_hsi.mat"] == trento_fake.fakes.sha256(a / "trento" / "Italy_hsi.mat")
    assert tags[1]["bench.data_sha256.Italy_hsi.mat"] == trento_fake.fakes.sha256(b / "trento" / "Italy_hsi.mat")
    assert tags[0]["bench.data_source_dir"] == str(a / "trento")
    assert tags[2]["bench.dataset_fingerprint"] == "missing"
    error = tags[2]["bench.error"]
    assert "DatasetError: dataset 'trento': no complete set of its files was found" in error
    assert f"{tmp_path / 'empty'} (--data-dir)" in error
    assert "DatasetError" in tags[3]["bench.error"] and str(zero) in tags[3]["bench.error"]
    assert not any(k.startswith("test_") for k in zeroed.data.metrics)


def test_a_scene_of_another_shape_than_declared_is_refused(bench, tmp_path: Path) -> None:
    trento_fake.make_fake(tmp_path / "small" / "trento", seed=0, shape=(48, 24))
    code, out = bench(*TRENTO_RUN, "--data-dir", str(tmp_path / "small"))
    assert code == 1 and "FAILED" in out
    (run,) = _runs(bench)
    assert run.info.status == "FAILED"
    error = run.data.tags["bench.error"]
    assert error.startswith("DatasetError: dataset 'trento'")
    assert "is 48 x 24 pixels (rows x cols); expected 600 x 166" in error
    assert str(tmp_path / "small" / "trento") in error
    assert not any(k.startswith("test_") for k in run.data.metrics)
    code, out = bench("leaderboard", "--format", "md")
    assert "trento" not in out  # never ranked


# ----------------------------------------------------------------------------- non-finite outputs


class NaNAtEval(nn.Module):
    """Trains normally (finite loss) but outputs NaN logits in eval mode: validation and prediction."""

    def __init__(self, config, info) -> None:
        super().__init__()
        self.conv = nn.Conv2d(info.bands["hsi"] + info.bands["x"], info.num_classes, 1)

    def forward(self, inputs):
        x = torch.cat([inputs["hsi"], inputs["x"]], 1)
        centre = x.shape[-1] // 2
        logits = self.conv(x)[:, :, centre, centre]
        return logits if self.training else torch.full_like(logits, float("nan"))


def _method_plugin(name: str, build) -> object:
    fast = {"train": {"epochs": 2, "steps_per_epoch": 2}}

    @hookimpl
    def bench_register_methods(register):
        register(MethodSpec(name=name, build=build, input_kind="patch", patch_size=3, modalities=("hsi", "x"),
                            profiles={"paper": fast, "fast": fast}, description="test method"))

    return types.SimpleNamespace(bench_register_methods=bench_register_methods, __name__=name)


def test_nan_logits_fail_the_cell_at_test_prediction_and_at_validation(
    bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_extra_plugins(monkeypatch, nan_logits=_method_plugin("nan-logits", NaNAtEval))
    code, out = bench("run", "--plugins", "nan-logits", "--datasets", "synthetic", "--val-fraction", "0")
    failed = [line for line in out.splitlines() if line.startswith("[1/1] nan-logits") and " FAILED " in line]
    assert code == 1 and len(failed) == 1 and "(NonFiniteOutputError: method 'nan-logits'" in failed[0], out
    code, out = bench("run", "--plugins", "nan-logits", "--datasets", "synthetic", "--val-fraction", "0.1")
    assert code == 1 and "FAILED" in out
    at_test, at_val = _runs(bench)
    for run in (at_test, at_val):
        assert run.info.status == "FAILED"
        assert run.data.tags["bench.error"].startswith("NonFiniteOutputError: method 'nan-logits': ")
        assert "non-finite logit value(s) (NaN or inf)" in run.data.tags["bench.error"]
        assert not any(k.startswith("test_") for k in run.data.metrics), run.data.metrics
    assert "at test prediction, in " in at_test.data.tags["bench.error"]
    assert "at validation epoch 1, in " in at_val.data.tags["bench.error"]
    code, out = bench("leaderboard", "--format", "md")
    assert "nan-logits" not in out  # a failed cell is never ranked


# ----------------------------------------------------------------------------- class without training pixels


def _drop_class_3(scene, argument, rng):
    """20 training pixels of every class but class 3 (which gets none); the rest is test."""
    labels = np.asarray(scene.labels).reshape(-1)
    train, test = [], []
    for cls in range(1, scene.num_classes + 1):
        members = np.flatnonzero(labels == cls)
        take = 0 if cls == 3 else 20
        train.append(members[:take])
        test.append(members[take:])
    return np.concatenate(train), np.concatenate(test)


def _split_plugin() -> object:
    @hookimpl
    def bench_register_splits(register):
        register(SplitProtocol(name="drop-class-3", make=_drop_class_3, description="class 3 never trained"))

    return types.SimpleNamespace(bench_register_splits=bench_register_splits, __name__="drop-class-3")


def test_a_class_without_training_pixels_warns_is_tagged_and_marked_on_the_board(
    bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_extra_plugins(monkeypatch, drop_class_3=_split_plugin())
    name = load_plugins(only=["synthetic"]).datasets.get("synthetic").class_names[2]
    code, out = bench("run", "--plugins", "svm", "--datasets", "synthetic", "--splits", "drop-class-3,official")
    assert code == 0, out
    warning = [line for line in out.splitlines() if line.startswith("warning: svm.fast/synthetic/drop-class-3/s0")]
    assert len(warning) == 1, out
    assert f"1 class(es) without training pixels after the validation carve: 3 ({name}, " in warning[0]
    assert not any(line.startswith("warning: svm.fast/synthetic/official") for line in out.splitlines())
    dropped, official = sorted(_runs(bench), key=lambda r: r.data.params["split"])
    assert dropped.data.params["split"] == "drop-class-3" and dropped.info.status == "FINISHED"
    assert dropped.data.tags["bench.classes_without_training"] == "3"
    assert dropped.data.tags["bench.classes_without_training_names"] == name
    assert "bench.classes_without_training" not in official.data.tags
    log_path = MLflowTracker(bench.uri, "bench").client.download_artifacts(  # type: ignore[attr-defined]
        dropped.info.run_id, "log.txt", str(Path.cwd()))
    assert "without training pixels" in Path(log_path).read_text()

    code, board = bench("leaderboard", "--format", "md")
    assert code == 0
    drop_board = board.split("split drop-class-3")[1].split("split official")[0]
    assert f"svm (!no training pixels: class 3 {name})" in drop_board
    assert f"svm: class(es) 3 {name} had no training pixels in 1 of 1 seed(s)" in drop_board
    official_board = board.split("split official")[1]
    assert "no training pixels" not in official_board
