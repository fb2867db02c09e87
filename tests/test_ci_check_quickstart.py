"""ci/check_quickstart.py: what CI concludes from the quick start's store."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from bench_core.plugins import load_plugins
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # an MLflow store


def _check_main():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("check_quickstart", REPO / "ci" / "check_quickstart.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _store(home: Path, empty_store: Path, oa: dict[str, float], status: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    home.mkdir()
    shutil.copy(empty_store, home / "mlflow.db")
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.create_experiment("bench", artifact_location=str(home / "artifacts"))
    for method, value in oa.items():
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "method", method)
        client.log_metric(run.info.run_id, "test_oa", value)
        client.set_terminated(run.info.run_id, status.get(method, "FINISHED"))


def test_every_method_finished_above_chance_passes_and_each_shortfall_is_named(
    tmp_path: Path, empty_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check = _check_main()
    methods = load_plugins().methods.names()
    chance = 100.0 / len(load_plugins().datasets.get("synthetic").class_names)
    _store(tmp_path / "good", empty_store, {m: 90.0 for m in methods}, {})
    assert check([str(tmp_path / "good")]) == 0
    assert f"svm              test_oa  90.00  (chance {chance:.2f})" in capsys.readouterr().out

    low, failed, missing = methods[0], methods[1], methods[2]
    oa = {m: 90.0 for m in methods if m != missing}
    oa[low] = chance
    _store(tmp_path / "bad", empty_store, {**oa, "gone-method": 50.0}, {failed: "FAILED"})
    assert check([str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {low}: test_oa {chance:.2f} is not above chance" in err
    assert f"FAILED {failed}: 0 FINISHED run(s) of 1; expected exactly one" in err
    assert f"FAILED {missing}: 0 FINISHED run(s) of 0" in err
    assert "FAILED gone-method: a run of a method that is not registered" in err
    assert check([str(tmp_path / "nowhere")]) == 2
