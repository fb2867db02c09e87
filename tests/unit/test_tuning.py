"""Tuning in-process: storage helpers, the objective, pruning, the MLflow bridge and stale-trial
handling (no subprocesses here); the cell descriptions Ray tasks rebuild cells from."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import click
import numpy as np
import optuna
import pytest
import torch
from click.testing import CliRunner
from optuna.trial import TrialState
from torch import nn

from bench_core import ConfigError, DatasetContext, MethodSpec, hookimpl, load_plugins
from bench_core.config import deep_merge
from bench_core.ray_executor import CellKeyMismatch, cell_payload, cell_resources, close_batch_runs, rebuild_cell
from bench_core.runner import GridRequest, expand_grid
from bench_core.tracking import MLflowTracker, bench_home, default_tracking_uri, env_or_home_sqlite
from bench_core.tuning import (
    ATTR_CELL_KEY,
    ATTR_EXPERIMENT,
    ATTR_KIND,
    ATTR_PARENT_RUN,
    ATTR_RUN_ID,
    ATTR_TRACKING_URI,
    TAG_PARENT,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
    Heartbeat,
    StaleTrialHandler,
    StudyError,
    StudyRecipe,
    TaggingTracker,
    TuneRequest,
    apply_study_config,
    best_config,
    config_from_study,
    create_tune_study,
    default_storage_url,
    export_best,
    has_heartbeat,
    open_storage,
    resolve_recipe,
    run_tuning,
    storage_label,
    trials_used,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ----------------------------------------------------------------------------- fixtures


class ConstantClass(nn.Module):
    """Predicts class ``cls`` for every pixel, so its validation OA is known without training.

    A zero-weighted parameter gives the Trainer's optimizer something to step.
    """

    def __init__(self, config, info):
        super().__init__()
        logits = torch.full((info.num_classes,), -10.0)
        logits[int(config["cls"]) % info.num_classes] = 10.0
        self.register_buffer("logits", logits)
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, inputs):
        n = inputs["hsi"].shape[0]
        return self.logits.expand(n, -1) + 0.0 * self.w


def constant_plugin(name: str = "constant", searchable: bool = True) -> object:
    profile = {"train": {"epochs": 2, "steps_per_epoch": 1, "batch_size": 8}, "model": {"cls": 0}}

    def space(trial):
        return {"model": {"cls": trial.suggest_int("cls", 0, 5)}}

    @hookimpl
    def bench_register_methods(register):
        register(
            MethodSpec(
                name=name, build=ConstantClass, input_kind="patch", patch_size=1, modalities=("hsi", "x"),
                profiles={"paper": profile, "fast": profile},
                search_space=space if searchable else None,
                description="test method",
            )
        )

    return types.SimpleNamespace(bench_register_methods=bench_register_methods, __name__=name)


@pytest.fixture
def host():
    return load_plugins(only=["protocols", "synthetic"], extra={"constant": constant_plugin()})


@pytest.fixture
def tracker(tmp_path: Path, empty_store: Path) -> MLflowTracker:
    db = tmp_path / "mlflow.db"
    shutil.copy(empty_store, db)
    return MLflowTracker(f"sqlite:///{db}", "tune-test")


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def val_oa_of_class(host, cls: int, seed: int = 0, val_fraction: float = 0.1) -> float:
    """Share of validation pixels of class ``cls`` (0-based): what ConstantClass scores."""
    from bench_core.specs import SplitSpec
    from bench_core.splits import make_split

    scene = host.datasets.get("synthetic").load(DatasetContext(cache_dir=bench_home() / "cache"))
    split = make_split(scene, SplitSpec("official", None, val_fraction), host.splits.get("official"), seed)
    labels = np.asarray(scene.labels).reshape(-1)[split.val] - 1
    return 100.0 * float(np.mean(labels == cls % scene.num_classes))


# ----------------------------------------------------------------------------- storage


def test_default_storage_is_a_sqlite_file_next_to_the_mlflow_store(monkeypatch: pytest.MonkeyPatch) -> None:
    url = default_storage_url()
    assert url == f"sqlite:///{bench_home() / 'optuna.db'}"
    assert Path(url[len("sqlite:///"):]).parent == bench_home()
    monkeypatch.setenv("BENCH_OPTUNA_STORAGE", "postgresql://u@db/x")
    assert default_storage_url() == "postgresql://u@db/x"


def test_a_store_defaults_to_a_sqlite_file_in_bench_home_unless_its_variable_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("BENCH_TEST_STORE", raising=False)
    in_home = f"sqlite:///{tmp_path.resolve() / 'x.db'}"
    assert env_or_home_sqlite("BENCH_TEST_STORE", "x.db") == in_home
    monkeypatch.setenv("BENCH_TEST_STORE", "")  # an empty variable counts as unset
    assert env_or_home_sqlite("BENCH_TEST_STORE", "x.db") == in_home
    monkeypatch.setenv("BENCH_TEST_STORE", "postgresql://u@db/x")
    assert env_or_home_sqlite("BENCH_TEST_STORE", "x.db") == "postgresql://u@db/x"
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_storage_label_hides_the_password() -> None:
    label = storage_label("postgresql+psycopg2://bench:s3cret@db.example:5432/optuna")
    assert "s3cret" not in label and "db.example:5432/optuna" in label


def test_a_storage_that_is_not_a_url_is_refused_with_the_accepted_forms(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="journal:PATH") as info:
        open_storage(str(tmp_path / "optuna.db"))
    assert "optuna.db" in str(info.value) and "sqlite:///" in str(info.value)


def test_journal_storage_works_for_tuning_but_has_no_heartbeat(tmp_path: Path) -> None:
    storage = open_storage(f"journal:{tmp_path / 'j' / 'optuna.log'}", Heartbeat(1, 3))
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2
    assert (tmp_path / "j" / "optuna.log").exists()
    assert not has_heartbeat(storage)


@pytest.mark.slow
def test_sqlite_storage_with_a_heartbeat_detects_dead_workers(storage_url: str) -> None:
    assert has_heartbeat(open_storage(storage_url, Heartbeat(1, 3)))
    assert not has_heartbeat(open_storage(storage_url))


@pytest.mark.parametrize(("interval", "grace"), [(0, 5), (5, 5), (5, 2)])
def test_heartbeat_grace_must_exceed_the_interval(interval: int, grace: int) -> None:
    with pytest.raises(ConfigError, match="grace period|heartbeat interval"):
        Heartbeat(interval, grace)


def test_heartbeat_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("BENCH_GRACE_PERIOD", "9")
    assert Heartbeat.from_env() == Heartbeat(2, 9)
    monkeypatch.setenv("BENCH_GRACE_PERIOD", "soon")
    with pytest.raises(ConfigError, match="BENCH_GRACE_PERIOD"):
        Heartbeat.from_env()


# ----------------------------------------------------------------------------- requests and configs


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("metric", "test_oa", "--metric"), ("pruner", "asha", "--pruner"), ("trials", 0, "--trials"),
     ("val_fraction", 0.0, "validation pixels"), ("timeout", -1.0, "--timeout")],
)
def test_tune_request_names_the_bad_option(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TuneRequest(method="constant", **{field: value})


def test_a_method_without_search_space_cannot_be_tuned() -> None:
    host = load_plugins(only=["protocols", "synthetic"], extra={"fixed": constant_plugin("fixed", searchable=False)})
    with pytest.raises(ConfigError, match="no search space"):
        resolve_recipe(host, TuneRequest(method="fixed"))


def test_overrides_merge_by_section_and_the_second_wins() -> None:
    """One merge (bench_core.config.deep_merge) layers profiles, study overrides, trials and --set."""
    base = {"train": {"epochs": 3, "lr": 0.1}, "model": {"a": {"x": 1, "y": 2}}}
    extra = {"train": {"lr": 0.01}, "model": {"a": {"y": 5}, "b": 1}}
    expected = {"train": {"epochs": 3, "lr": 0.01}, "model": {"a": {"x": 1, "y": 5}, "b": 1}}
    assert deep_merge(base, extra) == expected
    assert base["train"]["lr"] == 0.1  # inputs untouched


def test_recipe_differences_name_each_field() -> None:
    a = StudyRecipe("m", "d", "official", "fast", "val_oa", 0, 0.1, {"train": {"epochs": 3}})
    b = StudyRecipe("m", "d", "official", "fast", "val_oa", 1, 0.1, {"train": {"epochs": 4}}, pruner="none", trials=9)
    diff = a.differences(b)
    assert len(diff) == 2 and any(d.startswith("seed:") for d in diff) and any(d.startswith("overrides:") for d in diff)
    assert StudyRecipe.from_attr(json.loads(json.dumps(a.to_attr()))) == a


def test_apply_study_config_narrows_plugins_and_lets_set_win() -> None:
    tuned = {"study": "s", "trial": 3, "method": "svm", "profile": "fast",
             "overrides": {"model": {"C": 10.0, "gamma": 0.5}}}
    plugins, profile, overrides = apply_study_config(tuned, ["all"], None, {"model": {"gamma": 0.1}})
    assert plugins == ["svm"] and profile == "fast"
    assert overrides == {"model": {"C": 10.0, "gamma": 0.1}}
    assert apply_study_config(tuned, ["svm"], "paper", {})[1] == "paper"
    with pytest.raises(ConfigError, match="--plugins svm"):
        apply_study_config(tuned, ["two-branch-cnn"], None, {})


# ----------------------------------------------------------------------------- the objective


@pytest.mark.slow
def test_tuning_reads_only_train_and_val_pixels_and_nests_one_run_per_trial(
    host, tracker: MLflowTracker, storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench_core.splits as splits

    opened: list[int] = []
    original = splits.Split.open_test
    monkeypatch.setattr(splits.Split, "open_test", lambda self: opened.append(1) or original(self))
    request = TuneRequest(method="constant", trials=3, pruner="none")
    outcome = run_tuning(host, request, tracker, storage_url, echo=lambda _m: None)

    assert opened == []  # the test split is never read while tuning
    study = optuna.load_study(study_name=outcome.study, storage=storage_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in study.trials:  # the objective is the validation OA of the sampled class
        assert t.value == pytest.approx(val_oa_of_class(host, t.params["cls"]))
    parent_id = study.user_attrs[ATTR_PARENT_RUN]
    runs = {r.info.run_id: r for r in tracker.runs()}
    parent = runs.pop(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_complete"] == 3
    assert parent.data.metrics["best_val_oa"] == pytest.approx(max(t.value for t in study.trials))
    assert len(runs) == 3
    for t in study.trials:
        run = runs[t.user_attrs[ATTR_RUN_ID]]
        assert run.data.tags[TAG_PARENT] == parent_id
        assert run.data.tags[TAG_TRIAL] == str(t.number) and run.data.tags[TAG_STUDY] == outcome.study
        assert run.data.params["optuna.cls"] == str(t.params["cls"])
        assert run.data.params["model.cls"] == str(t.params["cls"])
        assert run.data.metrics["val_oa"] == pytest.approx(t.value)
        assert run.info.status == "FINISHED" and run.data.tags[TAG_STATE] == "COMPLETE"
        assert "test_oa" not in run.data.metrics


@pytest.mark.slow
def test_a_pruned_trial_is_marked_in_optuna_and_mlflow(host, tracker: MLflowTracker, storage_url: str) -> None:
    study, recipe = create_tune_study(host, TuneRequest(method="constant", trials=1), tracker, storage_url)
    study.pruner = AlwaysPrune()
    from bench_core.tuning import TuneObjective, tune_in_process

    objective = TuneObjective(host, recipe, study.study_name, tracker, study.user_attrs[ATTR_PARENT_RUN])
    tune_in_process(study, objective, budget=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    run = tracker.client.get_run(trial.user_attrs[ATTR_RUN_ID])
    assert run.info.status == "KILLED" and run.data.tags[TAG_STATE] == "PRUNED"
    assert run.data.metrics["pruned_at_epoch"] == 1.0
    assert run.data.tags[TAG_PARENT] == study.user_attrs[ATTR_PARENT_RUN]


@pytest.mark.slow
def test_median_pruner_stops_trials_below_the_median_of_earlier_ones(
    host, tracker: MLflowTracker, storage_url: str
) -> None:
    outcome = run_tuning(host, TuneRequest(method="constant", trials=12, seed=3), tracker, storage_url,
                         echo=lambda _m: None)
    study = optuna.load_study(study_name=outcome.study, storage=storage_url)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "12 trials over 6 classes of unequal size: the median pruner must stop some"
    for t in pruned:
        earlier = [o.intermediate_values[1] for o in study.trials
                   if o.number < t.number and o.state == TrialState.COMPLETE]
        assert len(earlier) >= 4 and t.intermediate_values[1] < np.median(earlier)
        assert tracker.client.get_run(t.user_attrs[ATTR_RUN_ID]).data.tags[TAG_STATE] == "PRUNED"


@pytest.mark.slow
def test_a_study_made_with_other_settings_is_refused(host, tracker: MLflowTracker, storage_url: str) -> None:
    create_tune_study(host, TuneRequest(method="constant", trials=1), tracker, storage_url)
    with pytest.raises(StudyError, match="seed: study has 0, asked 1"):
        create_tune_study(host, TuneRequest(method="constant", trials=1, seed=1), tracker, storage_url)
    # A larger budget is not a different study.
    study, recipe = create_tune_study(host, TuneRequest(method="constant", trials=5), tracker, storage_url)
    assert recipe.trials == 5


@pytest.mark.slow
def test_best_config_exports_what_bench_run_applies(
    host, tracker: MLflowTracker, storage_url: str, tmp_path: Path
) -> None:
    outcome = run_tuning(host, TuneRequest(method="constant", trials=3, pruner="none",
                                           overrides={"train": {"epochs": 1}}),
                         tracker, storage_url, echo=lambda _m: None)
    study = optuna.load_study(study_name=outcome.study, storage=storage_url)
    exported = export_best(study, tmp_path / "out" / "best.json")
    assert exported == json.loads((tmp_path / "out" / "best.json").read_text())
    assert exported["trial"] == study.best_trial.number and exported["value"] == study.best_value
    assert exported["overrides"] == {"train": {"epochs": 1}, "model": {"cls": study.best_params["cls"]}}
    assert config_from_study(str(tmp_path / "out" / "best.json")) == exported
    assert config_from_study(outcome.study, storage_url) == exported
    spec = host.methods.get("constant")
    resolved = spec.resolve(exported["profile"], exported["overrides"])
    assert resolved.model["cls"] == study.best_params["cls"] and resolved.train.epochs == 1


def test_best_config_of_a_missing_or_empty_study_says_why(storage_url: str) -> None:
    with pytest.raises(StudyError, match="no study 'nope'"):
        config_from_study("nope", storage_url)
    study = optuna.create_study(study_name="empty", storage=storage_url)
    study.set_user_attr(ATTR_KIND, "tune")
    study.set_user_attr("bench.recipe", StudyRecipe("m", "d", "official", "fast", "val_oa", 0, 0.1, {}).to_attr())
    with pytest.raises(StudyError, match="no complete trial"):
        best_config(study)


# ----------------------------------------------------------------------------- stale trials


def _grid_trial(study: optuna.Study, tracker: MLflowTracker, key: str) -> optuna.trial.FrozenTrial:
    study.enqueue_trial({}, user_attrs={ATTR_CELL_KEY: key, ATTR_TRACKING_URI: tracker.uri,
                                        ATTR_EXPERIMENT: tracker.experiment})
    trial = study.ask()  # pops the queued trial: RUNNING
    return study.trials[trial.number]


@pytest.mark.slow
def test_a_stale_trial_closes_its_runs_and_is_requeued_once(tracker: MLflowTracker, storage_url: str) -> None:
    study = optuna.create_study(study_name="grid", storage=storage_url)
    trial = _grid_trial(study, tracker, "k1")
    dead = tracker.start_run("cell", {TAG_STUDY: "grid", TAG_TRIAL: str(trial.number)})
    other = tracker.start_run("cell", {TAG_STUDY: "grid", TAG_TRIAL: "99"})
    study.tell(trial.number, state=TrialState.FAIL)  # what fail_stale_trials does first

    handler = StaleTrialHandler(max_retry=1)
    handler(study, study.trials[trial.number])
    closed = tracker.client.get_run(dead.run_id)
    assert closed.info.status == "FAILED" and "worker lost" in closed.data.tags["bench.error"]
    assert closed.data.tags[TAG_STATE] == "STALE"
    assert tracker.client.get_run(other.run_id).info.status == "RUNNING"  # another trial's run
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs[ATTR_CELL_KEY] == "k1"
    assert waiting[0].system_attrs["retry_history"] == [trial.number]

    # The retry dies too: max_retry=1 is spent, so it is not queued a third time.
    retry = study.ask()
    study.tell(retry, state=TrialState.FAIL)
    handler(study, study.trials[retry.number])
    assert not study.get_trials(states=(TrialState.WAITING,))


@pytest.mark.slow
def test_a_stale_trial_is_not_requeued_when_its_cell_is_already_queued(
    tracker: MLflowTracker, storage_url: str
) -> None:
    study = optuna.create_study(study_name="grid", storage=storage_url)
    trial = _grid_trial(study, tracker, "k1")
    study.enqueue_trial({}, user_attrs={ATTR_CELL_KEY: "k1"})
    study.tell(trial.number, state=TrialState.FAIL)
    StaleTrialHandler()(study, study.trials[trial.number])
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1


def test_trials_used_does_not_count_failures_that_were_retried(storage_url: str) -> None:
    study = optuna.create_study(study_name="s", storage=storage_url)
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # trial 0, retried as 2
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))  # trial 1, a real failure
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"retry_history": [0]}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, value=None))
    assert trials_used(study) == 2


@pytest.mark.slow
def test_tagging_tracker_adds_tags_and_reports_the_run_id(tracker: MLflowTracker) -> None:
    seen: list[str] = []
    wrapped = TaggingTracker(tracker, {"bench.x": "1"}, seen.append)
    run = wrapped.start_run("r", {"bench.y": "2"})
    tags = tracker.client.get_run(run.run_id).data.tags
    assert tags["bench.x"] == "1" and tags["bench.y"] == "2" and seen == [run.run_id]
    assert wrapped.uri == tracker.uri and wrapped.finished_cell_keys() == set()


# ----------------------------------------------------------------------------- Ray executor (no cluster)


def test_rebuild_cell_refuses_a_cell_described_by_other_versions(host) -> None:
    request = GridRequest(plugins=["constant"], seeds=[4], overrides={"train": {"epochs": 1}},
                          method_overrides={"constant": {"train": {"lr": 0.5}}})
    (cell,) = expand_grid(host, request)
    assert (cell.config.train.epochs, cell.config.train.lr) == (1, 0.5)
    payload = json.loads(json.dumps(cell_payload(cell, request)))  # what travels to the Ray task
    assert payload["overrides"] == {"train": {"epochs": 1, "lr": 0.5}}  # the grid's and the method's own
    rebuilt, _ = rebuild_cell(host, payload, cell.key)
    assert rebuilt == cell
    with pytest.raises(CellKeyMismatch, match="Install the same versions on every node"):
        rebuild_cell(host, payload, "0" * 20)


@pytest.mark.parametrize(
    ("device", "gpus_per_cell", "cluster_gpus", "expected"),
    [
        ("auto", None, 0, (1.0, 0.0, "cpu")),
        ("auto", None, 8, (1.0, 1.0, "auto")),  # one cell per GPU
        ("cuda", None, 4, (1.0, 1.0, "cuda")),
        ("cuda:3", None, 4, (1.0, 1.0, "cuda")),  # Ray picks the GPU; the task sees it as cuda
        ("cpu", None, 4, (1.0, 0.0, "cpu")),
        ("auto", 0.5, 2, (1.0, 0.5, "auto")),  # two cells share a GPU
    ],
)
def test_cell_resources_ask_for_a_gpu_per_cell_on_gpu_clusters(device, gpus_per_cell, cluster_gpus, expected) -> None:
    from bench_core.ray_executor import RayOptions

    options = RayOptions(gpus_per_cell=gpus_per_cell)
    assert cell_resources(GridRequest(device=device), options, {"CPU": 16, "GPU": cluster_gpus}) == expected


def test_cell_resources_refuse_what_the_cluster_cannot_give() -> None:
    from bench_core.ray_executor import RayOptions

    with pytest.raises(ConfigError, match="has 0"):
        cell_resources(GridRequest(device="cuda"), RayOptions(gpus_per_cell=1), {"CPU": 4})
    with pytest.raises(ConfigError, match="did not reserve"):
        cell_resources(GridRequest(device="cuda"), RayOptions(gpus_per_cell=0), {"CPU": 4, "GPU": 1})
    with pytest.raises(ConfigError, match="CPU"):
        cell_resources(GridRequest(), RayOptions(cpus_per_cell=8), {"CPU": 4})


@pytest.mark.slow
def test_close_batch_runs_closes_only_the_runs_of_that_batch_and_cell(tracker: MLflowTracker) -> None:
    lost = tracker.start_run("a", {"bench.grid.batch": "b1", "bench.cell_key": "k1"})
    other_cell = tracker.start_run("b", {"bench.grid.batch": "b1", "bench.cell_key": "k2"})
    other_batch = tracker.start_run("c", {"bench.grid.batch": "b2", "bench.cell_key": "k1"})
    assert close_batch_runs(tracker, "b1", "FAILED", "process lost: retried", "k1") == ["a"]
    closed = tracker.client.get_run(lost.run_id)
    assert closed.info.status == "FAILED" and "retried" in closed.data.tags["bench.error"]
    assert tracker.client.get_run(other_cell.run_id).info.status == "RUNNING"
    assert tracker.client.get_run(other_batch.run_id).info.status == "RUNNING"
    assert close_batch_runs(tracker, "b1", "KILLED", "interrupted") == ["b"]
    assert tracker.client.get_run(other_cell.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_resuming_a_study_samples_new_points(host, tracker: MLflowTracker, storage_url: str) -> None:
    def tune(trials: int) -> list[dict]:
        request = TuneRequest(method="constant", trials=trials, pruner="none")
        outcome = run_tuning(host, request, tracker, storage_url, echo=lambda _m: None)
        return [t.params for t in optuna.load_study(study_name=outcome.study, storage=storage_url).trials]

    first = tune(2)
    resumed = tune(4)
    assert len(resumed) == 4 and resumed[:2] == first
    assert resumed[2:] != first  # a sampler seeded as at the start would replay the same points


def test_address_without_the_ray_executor_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from bench_core.cli import main

    assert main(["run", "--plugins", "svm", "--address", "auto"]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err


def test_run_and_tune_declare_their_common_options_once() -> None:
    from bench_core.cli.run import run
    from bench_core.cli.tune import tune

    def options(command: click.Command) -> dict[str, tuple[object, ...]]:
        return {p.name: (p.default, repr(p.type), p.envvar, getattr(p, "help", None)) for p in command.params}

    run_options, tune_options = options(run), options(tune)
    for name in ("val_carve", "device", "data_dir", "tracking_uri"):
        assert run_options[name] == tune_options[name], name
    for resource in ("cpus", "gpus"):
        cell, trial = run_options[f"{resource}_per_cell"], tune_options[f"{resource}_per_trial"]
        assert cell[:3] == trial[:3]  # default, range, no variable; the help names the task
        assert "each cell " in str(cell[3]) and "each trial task " in str(trial[3])
    assert CliRunner().invoke(tune, ["--cpus-per-trial", "0"]).exit_code == 2  # x > 0
