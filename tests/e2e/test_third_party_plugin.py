"""A separate package with an entry point in group `bench` is found and benchmarked unchanged.

The fixture packages are installed with a real `pip install` into a private folder put on
PYTHONPATH, so this environment stays clean for the other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, subprocess_env

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--target", str(target),
        str(FIXTURES / "bench-example-plugin"), str(FIXTURES / "bench-broken-plugin"),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    return target


def bench(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "bench"
    # Keep the caller's PYTHONPATH (a checkout under test) after the installed fixture packages.
    pythonpath = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = subprocess_env(PYTHONPATH=pythonpath, CI="true", BENCH_HOME=str(cwd / "home"))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_installed_plugins_are_listed_with_distribution_and_errors(site: Path, tmp_path: Path) -> None:
    result = bench(site, "plugins", "--json", cwd=tmp_path)
    infos = {p["name"]: p for p in json.loads(result.stdout)}
    example = infos["example"]
    assert (example["distribution"], example["version"]) == ("bench-example", "0.3.1")
    assert example["registered"]["methods"] == ["spectral-mlp"]
    assert example["error"] is None
    broken = infos["broken"]
    assert broken["distribution"] == "bench-broken"
    assert "a_dependency_that_is_not_installed" in broken["error"]
    # Built-ins are there too, from this distribution, through the same entry-point group.
    for name in ("svm", "two-branch-cnn", "fusion-fcn", "synthetic"):
        assert infos[name]["distribution"] == "rs-fusion-bench" and infos[name]["error"] is None
    assert result.returncode == 1  # a plugin failed to load


def test_third_party_method_runs_and_broken_plugin_fails_its_cells(site: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = bench(site, "run", "--plugins", "example,broken", "--datasets", "synthetic",
                   "--tracking-uri", uri, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    status = {r.data.params["method"]: r.info.status for r in runs}
    assert status == {"spectral-mlp": "FINISHED", "broken": "FAILED"}
    finished = next(r for r in runs if r.data.params["method"] == "spectral-mlp")
    assert finished.data.tags["bench.plugin_dist"] == "bench-example"
    assert finished.data.tags["bench.plugin_version"] == "0.3.1"
    assert finished.data.metrics["test_oa"] > 0
