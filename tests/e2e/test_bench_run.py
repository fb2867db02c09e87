"""End to end: `bench run --plugins all --datasets synthetic` into a real MLflow SQLite store.

Every method runs the whole pipeline on a budget of one epoch of two steps (BDGF's DDPM stage
one epoch): what is checked here (the run contract, each test pixel scored once, the
leaderboard, a second run skipping everything, the stage cache) does not depend on how long
a method trains or on its patch size. The main job at its defaults is the README's quick
start: CI runs it (`ci/quickstart.sh`) and checks that every method beats chance
(`ci/check_quickstart.py`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from bench_core import DatasetContext
from bench_core.cli import main
from bench_core.plugins import load_plugins
from tests.e2e.conftest import SHORT_BDGF, SHORT_TRAINING, SMALL_S2MAMBA_PATCHES

pytestmark = pytest.mark.slow

MAIN_JOB = ["run", "--plugins", "all", "--datasets", "synthetic", *SHORT_TRAINING, *SHORT_BDGF, *SMALL_S2MAMBA_PATCHES]
CONTRACT_PARAMS = {"method", "profile", "dataset", "split", "seed"}
CONTRACT_METRICS = {
    "test_oa", "test_aa", "test_kappa", "test_f1_macro", "val_oa", "time_train_s", "time_infer_s",
    "throughput_infer", "params_total", "params_trainable", "flops_per_sample", "mem_peak_bytes",
    "split_leakage",
}
CONTRACT_TAGS = {"bench.cell_key", "bench.plugin_dist", "bench.plugin_version", "bench.version", "bench.device"}
CONTRACT_ARTIFACTS = {
    "confusion_matrix.csv", "confusion_matrix.png", "per_class.csv", "classification_map.png",
    "config.json", "log.txt", "predictions_test.npz",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the grid once for the whole module (it is the expensive part)."""
    from mlflow.tracking import MlflowClient

    home = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        mp.setenv("BENCH_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("CI", "true")
        start = time.perf_counter()
        code = main([*MAIN_JOB, "--tracking-uri", uri])
        seconds = time.perf_counter() - start
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench")
    runs = client.search_runs([exp.experiment_id])
    return {"uri": uri, "home": home, "code": code, "seconds": seconds, "client": client, "runs": runs}


def _methods() -> list[str]:
    return load_plugins().methods.names()


def test_main_job_finishes_with_exit_0(store: dict) -> None:
    assert store["code"] == 0


def test_one_finished_run_per_cell(store: dict) -> None:
    runs = store["runs"]
    methods = _methods()
    assert {"svm", "two-branch-cnn", "fusion-fcn"} <= set(methods)
    by_method = {r.data.params["method"]: r for r in runs}
    assert sorted(by_method) == methods
    assert len(runs) == len(methods)
    for r in runs:
        assert r.info.status == "FINISHED", (r.info.run_name, r.data.tags.get("bench.error"))
        p = r.data.params
        assert r.info.run_name == f"{p['method']}.{p['profile']}/synthetic/official/s0"
        assert p["dataset"] == "synthetic" and p["split"] == "official" and p["seed"] == "0"
        assert p["profile"] == "fast"  # the synthetic dataset's recommended profile
    keys = [r.data.tags["bench.cell_key"] for r in runs]
    assert len(set(keys)) == len(keys)


def test_every_contract_name_is_logged(store: dict) -> None:
    host = load_plugins()
    class_names = host.datasets.get("synthetic").class_names
    from bench_core.metrics import metric_key

    for r in store["runs"]:
        p, m, t = r.data.params, r.data.metrics, r.data.tags
        assert CONTRACT_PARAMS <= set(p)
        config = host.methods.get(p["method"]).resolve(p["profile"]).to_params()
        assert set(config) <= set(p), "the full resolved config is logged as params"
        assert CONTRACT_METRICS <= set(m), CONTRACT_METRICS - set(m)
        per_class = {f"test_acc_{metric_key(n)}" for n in class_names}
        assert per_class <= set(m)
        for key in ("test_oa", "test_aa", "test_f1_macro", "val_oa"):
            assert 0.0 <= m[key] <= 100.0  # percent, like the papers
        assert -100.0 <= m["test_kappa"] <= 100.0
        assert p["train.epochs"] == "1" and m["epochs_run"] == (0 if p["method"] == "svm" else 1)
        assert m["params_total"] > 0 and m["flops_per_sample"] > 0 and m["mem_peak_bytes"] > 0
        assert CONTRACT_TAGS <= set(t)
        assert t["bench.plugin_dist"] == "rs-fusion-bench"
        if (Path(__file__).resolve().parents[2] / ".git").exists():
            assert len(t.get("bench.git_sha", "")) == 40
        names = {a.path for a in store["client"].list_artifacts(r.info.run_id)}
        assert CONTRACT_ARTIFACTS <= names, CONTRACT_ARTIFACTS - names


def _official_test_pixels() -> tuple[np.ndarray, np.ndarray]:
    """The synthetic scene's official test pixels, from its maps (not through the harness's
    split code): labelled pixels outside the official train map (validation is carved from
    the train map, so it holds none of them); and the flat label map."""
    scene = load_plugins().datasets.get("synthetic").load(DatasetContext(data_dir=None, cache_dir=None))
    labels = np.asarray(scene.labels).reshape(-1)
    in_train_map = np.asarray(scene.official_train).reshape(-1) != 0
    expected = np.flatnonzero((labels > 0) & ~in_train_map)
    # The scene's test map marks the same pixels.
    np.testing.assert_array_equal(expected, np.flatnonzero(np.asarray(scene.official_test).reshape(-1) != 0))
    return expected, labels


def test_test_pixels_scored_exactly_once(store: dict, tmp_path: Path) -> None:
    expected, labels = _official_test_pixels()
    assert expected.size > 0
    client = store["client"]
    for r in store["runs"]:
        method = r.data.params["method"]
        path = client.download_artifacts(r.info.run_id, "predictions_test.npz", str(tmp_path))
        with np.load(path) as z:
            index, truth = z["test_index"], z["truth"]
        assert np.unique(index).size == index.size, f"{method}: a test pixel scored twice"
        missing, extra = np.setdiff1d(expected, index), np.setdiff1d(index, expected)
        assert not missing.size and not extra.size, (
            f"{method}: {missing.size} labelled test pixel(s) not scored, {extra.size} scored pixel(s) "
            f"outside the official test set (first: {missing[:5].tolist()}, {extra[:5].tolist()})"
        )
        np.testing.assert_array_equal(truth, labels[index] - 1)
        assert int(r.data.metrics["n_test"]) == expected.size
        conf = client.download_artifacts(r.info.run_id, "confusion_matrix.csv", str(tmp_path))
        rows = Path(conf).read_text().strip().splitlines()[1:]
        total = sum(int(v) for row in rows for v in row.split(",")[1:])
        assert total == expected.size


def test_second_run_skips_everything(store: dict, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(store["runs"])
    code = main([*MAIN_JOB, "--tracking-uri", store["uri"]])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{before} already FINISHED (skipped)" in out
    exp = store["client"].get_experiment_by_name("bench")
    assert len(store["client"].search_runs([exp.experiment_id])) == before


def test_leaderboard_lists_each_method(store: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", "--format", "json", "--tracking-uri", store["uri"]]) == 0
    boards = json.loads(capsys.readouterr().out)["boards"]
    assert [(b["dataset"], b["split"], b["profile"]) for b in boards] == [("synthetic", "official", "fast")]
    rows = boards[0]["rows"]
    assert sorted(r["method"] for r in rows) == _methods()
    assert all(r["n"] == 1 and r["dataset"] == "synthetic" for r in rows)
    assert main(["leaderboard", "--format", "md", "--tracking-uri", store["uri"]]) == 0
    md = capsys.readouterr().out
    assert "\n## synthetic · split official · profile fast\n" in md
    assert any(line.startswith("| rank | method | n |") for line in md.splitlines())
    status = {r["method"]: r["method_status"] for r in rows}
    for name in _methods():
        # A stand-in or ablation carries its status in the label, never the bare paper name.
        label = f"{name} {{{status[name]}}}" if status[name] else name
        assert f"| {label} |" in md
    assert status["m3amba"].startswith("STAND-IN") and status["m3amba-concat"].startswith("ABLATION")


def test_method_tags_say_what_guided_m3amba(store: dict) -> None:
    tags = {r.data.params["method"]: r.data.tags for r in store["runs"]}
    assert tags["m3amba"]["bench.method.guidance"].startswith("clip-random (STAND-IN")
    assert tags["m3amba"]["bench.scan_backend"] in ("pure_torch_fast", "cuda_kernel")
    assert tags["m3amba-concat"]["bench.method.guidance"].startswith("concat (paper ablation A")


def test_bdgf_runs_its_pretrain_stage_into_the_stage_cache(store: dict) -> None:
    (run,) = [r for r in store["runs"] if r.data.params["method"] == "bdgf"]
    assert run.data.params["model.ddpm_epochs"] == "1"  # the method's own --set
    assert run.data.metrics["time_stage_pretrain_s"] > 0
    assert run.data.tags["bench.method.ddpm"] == "trained" and run.data.tags["bench.method.dif_cache"] == "miss"
    assert run.data.tags["bench.stage_cache.ddpm"] == "miss"
    entries = sorted(p.name.split("-")[0] for p in (store["home"] / "cache" / "stages" / "bdgf").iterdir())
    assert entries == ["ddpm", "features"]
