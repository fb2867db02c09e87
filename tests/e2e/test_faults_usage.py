"""Usage errors: exit status 2, one ``Error:`` line naming the thing, the value, what was expected
and the fix, no traceback, and no cell run (the store holds no run afterwards).

Driven through ``bench_core.cli.main`` in-process (capsys), plus the installed console script for
a few cases, where a traceback printed by the interpreter itself would show. The catalogue of
these cases is docs/reliability.md (tests/test_docs.py keeps it in sync with this file).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from bench_core import DatasetSpec, MethodSpec, hookimpl
from bench_core.cli import main
from bench_core.errors import ConfigError
from bench_core.plugins import load_plugins
from bench_core.runner import GridRequest, expand_grid, run_grid
from bench_core.tracking import MLflowTracker
from tests.conftest import subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SVM = ["run", "--plugins", "svm", "--datasets", "synthetic"]


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def home(tmp_path: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """BENCH_HOME of this test, holding a copy of the initialised store."""
    folder = tmp_path / "bench-home"
    folder.mkdir()
    shutil.copy(empty_store, folder / "mlflow.db")
    monkeypatch.setenv("BENCH_HOME", str(folder))
    monkeypatch.setenv("CI", "true")  # plain progress lines
    return folder


def bench(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def runs_in(db: Path) -> int:
    """Runs recorded in an embedded store (0 when there is no store)."""
    if not db.is_file():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return connection.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0


def assert_usage_error(code: int, out: str, err: str, *fragments: str) -> str:
    """Exit 2, exactly one ``Error:`` line holding every fragment, no traceback; returns that line."""
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "[1/" not in out, "a cell started"
    return lines[0]


def can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` (and what is in it) read-only for this process, for real: a read-only bind
    mount as root (root ignores permission bits), permission bits otherwise; skip if neither works."""
    if os.geteuid() == 0:
        if not can_mount() or subprocess.run(["mount", "--bind", str(folder), str(folder)],
                                             capture_output=True, check=False).returncode:
            pytest.skip("running as root without mount: no way to make a folder read-only here")
        try:
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True,
                              check=False).returncode:
                pytest.skip("cannot remount a bind mount read-only here")
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=False)
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


# ----------------------------------------------------------------------------- bench run arguments

CASES = [
    pytest.param([*SVM, "--set", "train.lr=abc"],
                 ["train.lr = 'abc'", "expected a positive number", "--set train.lr=0.001"], id="set-lr-abc"),
    pytest.param([*SVM, "--set", "train.milestones=5"],
                 ["train.milestones = 5", "expected a list of positive epoch numbers", "--set train.milestones=[100,150]"],
                 id="set-milestones-5"),
    pytest.param([*SVM, "--set", "model.nonsense=3"],
                 ["svm model config", "unknown key(s) ['nonsense']", "expected some of ['C'"], id="svm-unknown-model-key"),
    pytest.param(["run", "--plugins", "two-branch-cnn", "--set", "model.widht=3"],
                 ["two-branch-cnn model config", "['widht']", "'spectral_width'"], id="cnn-unknown-model-key"),
    pytest.param([*SVM, "--set", "bdgf:model.ddpm_epochs=1"],
                 ["--set bdgf:...", "method 'bdgf' is not in this grid (its methods: svm)", "add the method to --plugins"],
                 id="set-for-a-method-outside-the-grid"),
    pytest.param([*SVM, "--set", "svm:model.nonsense=3"],
                 ["svm model config", "unknown key(s) ['nonsense']"], id="set-for-svm-unknown-model-key"),
    pytest.param([*SVM, "--set", "svm,mft:train.epochs=1"],
                 ["--set 'svm,mft:train.epochs=1'", "expected METHOD:SECTION.KEY=VALUE", "bdgf:model.ddpm_epochs=1"],
                 id="set-for-two-methods-at-once"),
    pytest.param([*SVM, "--set", "svm:epochs=1"],
                 ["--set 'svm:epochs=1'", "expected SECTION.KEY=VALUE with SECTION 'train' or 'model'"],
                 id="set-for-svm-without-a-section"),
    pytest.param([*SVM, "--splits", "per-class:-3"],
                 ["split 'per-class:-3'", "not a positive integer", "e.g. per-class:20"], id="split-per-class-negative"),
    pytest.param([*SVM, "--splits", "fraction:1.5"],
                 ["split 'fraction:1.5'", "strictly between 0 and 1", "e.g. fraction:0.05"], id="split-fraction-above-1"),
    pytest.param([*SVM, "--splits", "spatial-blocks:0"],
                 ["split 'spatial-blocks:0'", "block='0'", "B >= 1", "e.g. spatial-blocks:32"], id="split-spatial-blocks-0"),
    pytest.param([*SVM, "--splits", "official,per-class:abc"],
                 ["split 'per-class:abc'", "expected 'per-class:N'"], id="split-per-class-text-after-a-good-one"),
    pytest.param(["tune", "--plugin", "svm", "--dataset", "synthetic", "--split", "per-class:-3"],
                 ["split 'per-class:-3'", "expected 'per-class:N'"], id="tune-split-per-class-negative"),
    pytest.param(["tune", "--plugin", "svm", "--dataset", "synthetic", "--set", "model.nope=1"],
                 ["svm model config", "unknown key(s) ['nope']"], id="tune-unknown-model-key"),
    pytest.param([*SVM, "--seeds", "-1"],
                 ["--seeds", "'-1'", "seed -1 is negative", "integers >= 0, e.g. 0,1,2"], id="seed-negative"),
    pytest.param([*SVM, "--seeds", "0,1.5"], ["--seeds", "'0,1.5'", "expected comma-separated integers"],
                 id="seed-not-an-integer"),
    pytest.param([*SVM, "--device", "tpu"], ["device='tpu'", "expected 'auto', 'cpu', 'cuda'"], id="device-unknown"),
    pytest.param([*SVM, "--tracking-uri", "foo://bar"],
                 ["--tracking-uri 'foo://bar'", "scheme 'foo'", "expected sqlite:///PATH/mlflow.db"], id="tracking-uri-foo"),
    pytest.param([*SVM, "--experiment", ""], ["--experiment", "''", "non-empty", "--experiment bench"],
                 id="experiment-empty"),
]


@pytest.mark.parametrize(("argv", "fragments"), CASES)
def test_usage_error_exits_2_before_any_cell(
    argv: list[str], fragments: list[str], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_usage_error(*bench(capsys, *argv), *fragments)
    assert runs_in(home / "mlflow.db") == 0


@pytest.mark.parametrize("argv", [
    pytest.param([*SVM, "--set", "model.nope=1"], id="run"),
    pytest.param(["tune", "--plugin", "svm", "--dataset", "synthetic", "--set", "model.nope=1"], id="tune"),
])
def test_a_config_error_creates_no_store(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The config is checked before the tracking store is opened: a new BENCH_HOME stays without one."""
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "new-home"))
    assert_usage_error(*bench(capsys, *argv), "svm model config", "unknown key(s) ['nope']")
    assert not (tmp_path / "new-home" / "mlflow.db").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda_is_refused_even_when_every_cell_is_finished(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fragments = ("device='cuda'", "CUDA is not available", "--device cpu")
    assert_usage_error(*bench(capsys, *SVM, "--device", "cuda"), *fragments)
    assert runs_in(home / "mlflow.db") == 0
    code, _, _ = bench(capsys, *SVM, "--device", "cpu")
    assert code == 0 and runs_in(home / "mlflow.db") == 1
    # Nothing is left to run, and the device is still checked (a later run would fail otherwise).
    assert_usage_error(*bench(capsys, *SVM, "--device", "cuda"), *fragments)
    assert runs_in(home / "mlflow.db") == 1


def test_every_builtin_method_refuses_unknown_model_keys_at_grid_expansion() -> None:
    """Built-in methods declare ``validate_model``, so a typo stops the grid before any cell (no build)."""
    host = load_plugins()
    names = host.methods.names()
    assert {"svm", "two-branch-cnn", "fusion-fcn", "mft", "s2mamba", "m3amba", "comix", "bdgf"} <= set(names)
    for name in names:
        assert host.methods.get(name).validate_model is not None, name
        for profile in host.methods.get(name).profiles:  # every profile it ships passes its own check
            expand_grid(host, GridRequest(plugins=[name], profile=profile))
        with pytest.raises(ConfigError, match=r"unknown key\(s\) \['no_such_key'\]; expected some of"):
            expand_grid(host, GridRequest(plugins=[name], overrides={"model": {"no_such_key": 1}}))


# ----------------------------------------------------------------------------- --config-from-study

STUDY_FILES = [
    pytest.param("{broken", ["'best.json'", "not valid JSON", "line 1, column 2", "bench tune --export"], id="broken-json"),
    pytest.param("[1, 2]", ["'best.json'", "holds a JSON list", "expected an object"], id="json-list"),
    pytest.param('{"method": 5, "profile": "fast", "overrides": {}}', ["method = 5", "expected a method name"],
                 id="method-not-a-string"),
    pytest.param('{"method": "svm", "profile": "fast", "overrides": [1]}', ["overrides = [1]", '{"train"'],
                 id="overrides-not-an-object"),
    pytest.param('{"method": "svm", "overrides": {}}', ["keys ['profile'] missing", "bench tune --export"],
                 id="profile-missing"),
    pytest.param(None, ["'best.json'", "the file does not exist", "bench tune --export"], id="missing-file"),
]


@pytest.mark.parametrize(("content", "fragments"), STUDY_FILES)
def test_config_from_study_file_errors(
    content: str | None, fragments: list[str], home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if content is not None:
        (tmp_path / "best.json").write_text(content)
    line = assert_usage_error(*bench(capsys, *SVM, "--config-from-study", "best.json"), *fragments)
    assert "no study" not in line
    assert runs_in(home / "mlflow.db") == 0


def test_config_from_study_file_without_study_and_trial_runs(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-written best.json needs method, profile and overrides only (it crashed on 'study')."""
    (tmp_path / "best.json").write_text(json.dumps({"method": "svm", "profile": "fast", "overrides": {"model": {"C": 2}}}))
    code, out, err = bench(capsys, "run", "--datasets", "synthetic", "--config-from-study", "best.json")
    assert code == 0, err
    assert "config from study 'best.json'" in out and runs_in(home / "mlflow.db") == 1


# ----------------------------------------------------------------------------- the store


def test_bench_home_pointing_at_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    monkeypatch.setenv("BENCH_HOME", str(afile))
    for argv in (SVM, ["leaderboard"]):
        assert_usage_error(*bench(capsys, *argv), f"{afile} is a file, not a folder", "set BENCH_HOME to a folder")
    assert afile.read_text() == "x"


def test_corrupt_store(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = home / "mlflow.db"
    db.write_bytes(b"this is not an SQLite file" * 200)
    for argv in (SVM, ["leaderboard"]):
        assert_usage_error(*bench(capsys, *argv), f"store {db} is not an SQLite database", "move it away")
    assert db.read_bytes().startswith(b"this is not")


def test_read_only_store(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = bench(capsys, *SVM)
    assert code == 0, err
    with read_only(home):
        assert_usage_error(*bench(capsys, *SVM, "--rerun"), f"store {home / 'mlflow.db'} is read-only",
                           "fix the permissions")
        code, out, err = bench(capsys, "leaderboard", "--no-significance")
        assert code == 0 and "svm" in out, err  # reading a read-only store works
    assert runs_in(home / "mlflow.db") == 1


# ----------------------------------------------------------------------------- bench leaderboard


def test_leaderboard_creates_no_store_and_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "no-store-yet"
    monkeypatch.setenv("BENCH_HOME", str(home))
    code, _, err = bench(capsys, "leaderboard")
    assert code == 0 and "No FINISHED runs" in err
    assert not home.exists()
    missing = tmp_path / "nonexistent" / "dir" / "board.html"
    assert_usage_error(*bench(capsys, "leaderboard", "--format", "html", "--output", str(missing)),
                       f"folder '{missing.parent}' does not exist", "create the folder first")
    assert not (tmp_path / "nonexistent").exists() and not home.exists()


def test_leaderboard_output_that_cannot_be_written(home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert_usage_error(*bench(capsys, "leaderboard", "--output", str(folder)), "is a folder", "expected a file path")
    afile = tmp_path / "a-file"
    afile.write_text("x")
    assert_usage_error(*bench(capsys, "leaderboard", "--output", str(afile / "board.md")),
                       "is a file, not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        assert_usage_error(*bench(capsys, "leaderboard", "--output", str(locked / "board.md")),
                           f"--output '{locked / 'board.md'}'", "not writable", "choose another --output")
    assert list(locked.iterdir()) == []


# ----------------------------------------------------------------------------- bench ui, datasets info


def test_ui_on_a_busy_port_is_an_error(home: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("bench ui started a server on a busy port")

    monkeypatch.setattr("bench_core.cli.ui.subprocess.Popen", no_server)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        code, out, err = bench(capsys, "ui", "--port", str(port))
    assert_usage_error(code, out, err, f"--port {port}", f"127.0.0.1:{port} is not free", "choose another --port")
    assert f"http://127.0.0.1:{port}" not in out  # not the other service's URL


def _raising_dataset_plugin() -> object:
    def load(context):  # a plugin's loader with a bug
        raise KeyError("hsi_data")

    @hookimpl
    def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
        register(DatasetSpec(name="buggy", load=load, modalities=("hsi", "lidar"), class_names=("a", "b")))

    return types.SimpleNamespace(bench_register_datasets=bench_register_datasets, __name__="buggy-plugin")


def test_datasets_info_when_the_plugin_loader_raises(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    host = load_plugins(only=["synthetic"], extra={"buggy-plugin": _raising_dataset_plugin()})
    monkeypatch.setattr("bench_core.plugins.load_plugins", lambda *a, **k: host)
    assert_usage_error(*bench(capsys, "datasets", "info", "buggy"),
                       "dataset 'buggy'", "plugin 'buggy-plugin'", "raised KeyError: 'hsi_data'", "report it")


# ----------------------------------------------------------------------------- a wrong-width model output


class _Wide(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(1, classes)

    def forward(self, inputs):
        centre = inputs["hsi"].shape[-1] // 2
        return self.head(inputs["hsi"][:, :1, centre, centre])


def _wide_plugin(extra_classes: int) -> object:
    fast = {"train": {"epochs": 1, "steps_per_epoch": 2}}

    @hookimpl
    def bench_register_methods(register: Callable[[MethodSpec], None]) -> None:
        register(MethodSpec(
            name="wide", build=lambda config, info: _Wide(info.num_classes + extra_classes), input_kind="patch",
            patch_size=3, modalities=("hsi", "x"), profiles={"paper": fast, "fast": fast},
        ))

    return types.SimpleNamespace(bench_register_methods=bench_register_methods, __name__="wide")


@pytest.mark.parametrize("extra_classes", [-2, 3], ids=["too-few-classes", "too-many-classes"])
def test_a_wrong_width_model_output_names_method_k_and_shape(extra_classes: int, tmp_path: Path) -> None:
    """Not a usage error (it shows only when the model runs): the cell FAILS with one line naming the
    method, K and the shape got, and the grid goes on (exit 1); before, an IndexError or a metric error."""
    host = load_plugins(only=["protocols", "synthetic"], extra={"wide": _wide_plugin(extra_classes)})
    k = host.datasets.get("synthetic").num_classes
    tracker = MLflowTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "bench")
    outcome = run_grid(host, GridRequest(plugins=["wide"]), tracker)
    assert outcome.exit_code == 1
    (run,) = tracker.runs()
    assert run.info.status == "FAILED"
    error = run.data.tags["bench.error"]
    assert "ModelOutputError: method 'wide'" in error
    assert f", {k + extra_classes}) ({k + extra_classes} class scores, the dataset has K = {k} classes)" in error
    assert f", {k})" in error.split("expected (")[1] and "info.num_classes" in error


# ----------------------------------------------------------------------------- the real console script


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        pytest.param(["--set", "train.lr=abc"], "train.lr = 'abc'", id="set-lr-abc"),
        pytest.param(["--tracking-uri", "foo://bar"], "scheme 'foo'", id="tracking-uri-foo"),
    ],
)
def test_console_script_prints_one_line_and_no_traceback(
    argv: list[str], fragment: str, bench_exe: str, tmp_path: Path
) -> None:
    home = tmp_path / "new-home"  # no store yet: a command that runs nothing must not create one
    proc = subprocess.run([bench_exe, *SVM, *argv], capture_output=True, text=True, timeout=300, check=False,
                          env=subprocess_env(BENCH_HOME=str(home), OMP_NUM_THREADS="1"))
    assert_usage_error(proc.returncode, proc.stdout, proc.stderr, fragment)
    assert not (home / "mlflow.db").exists()
