"""`bench tune` end to end: the real CLI, the built-in methods, a real MLflow and Optuna store."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench_core.cli import main
from bench_core.tracking import MLflowTracker
from bench_core.tuning import (
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    TAG_PARENT,
    TAG_STATE,
    TAG_TRIAL,
    best_config,
    default_storage_url,
)

pytestmark = pytest.mark.slow

CNN_STUDY = "tune/two-branch-cnn.fast/synthetic/official"
SVM_STUDY = "tune/svm.fast/synthetic/official"


def study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_storage_url())


def test_tune_two_branch_cnn_8_trials_nested_in_mlflow_then_run_the_best(
    one_torch_thread: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench_core.splits as splits

    opened: list[str] = []
    original = splits.Split.open_test
    monkeypatch.setattr(splits.Split, "open_test", lambda self: opened.append("open_test") or original(self))
    code = main([
        "tune", "--plugin", "two-branch-cnn", "--dataset", "synthetic", "--trials", "8", "--profile", "fast",
        "--set", "train.epochs=3", "--val-fraction", "0.3", "--export", "best.json",
    ])
    assert code == 0, capsys.readouterr().err
    assert opened == []  # tuning never reads the test split

    s = study(CNN_STUDY)
    assert len(s.trials) == 8
    assert {t.state for t in s.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    tracker = MLflowTracker(None, "bench-tune")
    runs = {r.info.run_id: r for r in tracker.runs()}
    parent = runs.pop(s.user_attrs[ATTR_PARENT_RUN])
    assert parent.info.status == "FINISHED" and parent.data.tags["bench.kind"] == "tune-study"
    counts = {k: int(v) for k, v in parent.data.metrics.items() if k.startswith("trials_")}
    assert sum(counts.values()) == 8
    assert counts.get("trials_pruned", 0) == sum(t.state == TrialState.PRUNED for t in s.trials)
    assert len(runs) == 8 and {r.data.tags[TAG_TRIAL] for r in runs.values()} == {str(n) for n in range(8)}
    for t in s.trials:
        run = runs[t.user_attrs[ATTR_RUN_ID]]
        assert run.data.tags[TAG_PARENT] == parent.info.run_id  # nested in the MLflow UI
        assert run.data.params["optuna.lr"] == str(t.params["lr"])
        assert run.data.params["train.lr"] == str(t.params["lr"]) and run.data.params["train.epochs"] == "3"
        history = tracker.client.get_metric_history(run.info.run_id, "val_oa")
        reported = {m.step: m.value for m in history if m.step > 0}
        assert reported == pytest.approx(dict(t.intermediate_values))  # per-epoch val_oa = what Optuna saw
        if t.state == TrialState.PRUNED:
            assert run.info.status == "KILLED" and run.data.tags[TAG_STATE] == "PRUNED"
            assert len(t.intermediate_values) <= 3  # pruned after its first, second or last report
        else:
            assert run.info.status == "FINISHED" and run.data.tags[TAG_STATE] == "COMPLETE"
            assert run.data.metrics["val_oa"] == pytest.approx(t.value)
        assert not any(k.startswith("test_") for k in run.data.metrics)
    exported = json.loads(Path("best.json").read_text())
    assert exported == json.loads(json.dumps(best_config(s)))

    # The best config, applied by `bench run --config-from-study`, is what the run records.
    code = main(["run", "--plugins", "two-branch-cnn", "--datasets", "synthetic", "--config-from-study", CNN_STUDY,
                 "--storage", default_storage_url()])
    assert code == 0
    (cell,) = MLflowTracker(None, "bench").runs()
    best = s.best_trial
    assert cell.info.status == "FINISHED" and cell.data.params["profile"] == "fast"
    assert cell.data.params["train.lr"] == str(best.params["lr"])
    assert cell.data.params["model.dropout"] == str(best.params["dropout"])
    assert cell.data.params["model.spectral_width"] == str(best.params["width"])
    assert cell.data.params["train.epochs"] == "3"
    assert cell.data.tags["bench.config_from_study"] == CNN_STUDY
    assert cell.data.tags["bench.config_from_trial"] == str(best.number)
    assert opened == ["open_test"]  # the benchmark run opens it, once


def test_tune_errors_and_export(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune"]) == 2
    assert "--plugin NAME and --dataset NAME" in capsys.readouterr().err

    assert main(["tune", "export", "--study", "missing"]) == 2
    err = capsys.readouterr().err
    assert "no study 'missing'" in err and "studies there" in err

    assert main(["tune", "--plugin", "svm", "--dataset", "synthetic", "--trials", "1"]) == 0
    capsys.readouterr()
    assert main(["tune", "--plugin", "svm", "--dataset", "synthetic", "--trials", "1", "--seed", "1"]) == 2
    assert "made with other settings (seed: study has 0, asked 1)" in capsys.readouterr().err

    assert main(["tune", "export", "--study", SVM_STUDY]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["method"] == "svm" and printed["trial"] == 0
    assert set(printed["overrides"]["model"]) == {"C", "gamma"}
    assert printed["value"] == pytest.approx(study(SVM_STUDY).best_value)


def test_bdgf_trials_reuse_the_cached_ddpm(one_torch_thread: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The pretrain stage trains the DDPM in the first trial only; later trials load it from the stage cache."""
    code = main([
        "tune", "--plugin", "bdgf", "--dataset", "synthetic", "--trials", "2", "--profile", "fast",
        "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "model.ddpm_epochs=4",
    ])
    assert code == 0, capsys.readouterr().err
    s = study("tune/bdgf.fast/synthetic/official")
    runs = {r.info.run_id: r for r in MLflowTracker(None, "bench-tune").runs()}
    first, second = (runs[t.user_attrs[ATTR_RUN_ID]] for t in sorted(s.trials, key=lambda t: t.number))
    assert first.data.tags["bench.stage_cache.ddpm"] == "miss" and first.data.tags["bench.method.ddpm"] == "trained"
    assert second.data.tags["bench.stage_cache.ddpm"] == "hit" and second.data.tags["bench.method.ddpm"] == "reused"
    # Features are re-extracted only when the trial sampled another timestep or layer.
    same_features = s.trials[0].params == {**s.trials[1].params, "lr": s.trials[0].params["lr"]}
    assert second.data.tags["bench.stage_cache.features"] == ("hit" if same_features else "miss")
    assert second.data.metrics["time_stage_pretrain_s"] < first.data.metrics["time_stage_pretrain_s"]
