"""A run's dataset is its MLflow dataset input: the run table's Dataset column is filled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench_core import DatasetContext
from bench_core.cli import main
from bench_core.plugins import load_plugins
from bench_core.runner import dataset_fingerprint

pytestmark = pytest.mark.slow


def test_a_run_logs_its_dataset_once_with_the_cell_key_digest(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("CI", "true")
    uri = f"sqlite:///{tmp_path / 'bench-home' / 'mlflow.db'}"
    assert main(["run", "--plugins", "svm", "--datasets", "synthetic", "--tracking-uri", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    (summary,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    run = client.get_run(summary.info.run_id)
    (logged,) = run.inputs.dataset_inputs  # once per run
    host = load_plugins()
    spec = host.datasets.get("synthetic")
    digest = dataset_fingerprint(host, spec)
    assert logged.dataset.name == "synthetic"
    assert logged.dataset.digest == digest == run.data.tags["bench.dataset_fingerprint"]
    scene = spec.load(DatasetContext())
    assert logged.dataset.source == f"generated:{scene.metadata['seed']}"
    assert logged.dataset.source_type == "generated"
    assert {t.key: t.value for t in logged.tags} == {"mlflow.data.context": "official"}
    assert json.loads(logged.dataset.profile) == {"rows": 80, "cols": 80, "bands": scene.bands,
                                                  "num_classes": scene.num_classes}
