"""Leaderboards: aggregation over seeds, one board per dataset x split x profile, significance
marks, reported numbers, sorting, exports, board specs, and the CLI on a real MLflow store."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bench_core.artifacts import save_predictions
from bench_core.errors import ConfigError, MetricError
from bench_core.leaderboard import (
    BoardKey,
    ReportedNumber,
    Selection,
    build_board_set,
    builtin_folder,
    default_paper_numbers,
    display_rows,
    find_board_spec,
    format_board_set,
    load_board_spec,
    load_paper_numbers,
    pareto_front,
    parse_patterns,
    runs_frame,
)
from bench_core.leaderboard.formatting import (
    format_count,
    format_mean_std,
    format_number,
    format_p,
    format_sci,
)
from bench_core.stats import combine_seeds, holm, mcnemar

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["grass", "tree", "low plants"]


# ----------------------------------------------------------------------------- fakes


class FakeArtifacts:
    """Artifacts kept in a folder: (run_id, name) -> file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, run_id: str, name: str) -> Path:
        folder = self.root / run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def fetch(self, run_id: str, path: str) -> Path | None:
        p = self.root / run_id / path
        return p if p.is_file() else None


def fake_run(
    method: str,
    seed: int,
    *,
    dataset: str = "synthetic",
    split: str = "official",
    profile: str = "fast",
    metrics: dict[str, float] | None = None,
    config: dict[str, str] | None = None,
    start: int = 0,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> Any:
    params = {"method": method, "profile": profile, "dataset": dataset, "split": split, "seed": str(seed),
              "val_fraction": "0.1", "train.epochs": "2", **(config or {})}
    m = {"test_oa": 80.0, "test_aa": 70.0, "test_kappa": 60.0, "test_f1_macro": 65.0, "params_total": 1000.0,
         "flops_per_sample": 5e4, "time_train_s": 1.0, "time_infer_s": 0.1, "throughput_infer": 1e4,
         "mem_peak_bytes": 2**20, "split_leakage": 3.0, **(metrics or {})}
    rid = run_id or f"{method}-{dataset}-{split}-{profile}-{seed}-{start}"
    tags = {"bench.device": "cpu", "bench.env.cpu_model": "Test CPU", "bench.env.torch_threads": "2",
            "bench.plugin_version": "0.1.0", "bench.cell_key": f"key-{rid}", **(tags or {})}
    return SimpleNamespace(
        info=SimpleNamespace(run_id=rid, run_name=f"{method}.{profile}/{dataset}/{split}/s{seed}", start_time=start),
        data=SimpleNamespace(params=params, metrics=m, tags=tags),
    )


def with_predictions(arts: FakeArtifacts, run: Any, index: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> Any:
    """Store predictions for ``run`` and make its test_oa agree with them."""
    save_predictions(arts.path(run.info.run_id, "predictions_test.npz"), index, predicted, truth)
    run.data.metrics["test_oa"] = 100.0 * float(np.mean(predicted == truth))
    for k in np.unique(truth):
        run.data.metrics[f"test_acc_class_{k}"] = 100.0 * float(np.mean(predicted[truth == k] == k))
    return run


# ----------------------------------------------------------------------------- aggregation


def test_rows_are_mean_std_and_n_over_seeds() -> None:
    rng = np.random.default_rng(0)
    oa = {m: rng.uniform(60, 95, 5) for m in ("a", "b")}
    runs = [fake_run(m, s, metrics={"test_oa": oa[m][s], "time_train_s": 2.0 + s}) for m in oa for s in range(5)]
    board_set = build_board_set(runs_frame(runs), significance=False)
    assert len(board_set.boards) == 1
    rows = board_set.boards[0].rows.set_index("method")
    for m in oa:
        assert rows.loc[m, "n"] == 5
        assert rows.loc[m, "test_oa_mean"] == pytest.approx(np.mean(oa[m]))
        assert rows.loc[m, "test_oa_std"] == pytest.approx(np.std(oa[m], ddof=1))
        assert rows.loc[m, "time_train_s"] == pytest.approx(4.0)
    best = max(oa, key=lambda m: np.mean(oa[m]))
    assert rows.loc[best, "rank"] == 1
    assert rows.loc[best, "device"] == "cpu (Test CPU, 2 threads)"


def test_one_board_per_dataset_split_and_profile_never_mixed() -> None:
    runs = [
        fake_run("a", 0, split=sp, profile=pr, metrics={"test_oa": oa})
        for sp, pr, oa in [("official", "fast", 90.0), ("official", "paper", 70.0),
                           ("per-class:20", "fast", 50.0), ("per-class:20", "paper", 30.0)]
    ]
    board_set = build_board_set(runs_frame(runs), significance=False)
    keys = {(b.key.split, b.key.profile): b for b in board_set.boards}
    assert set(keys) == {("official", "fast"), ("official", "paper"), ("per-class:20", "fast"), ("per-class:20", "paper")}
    for (split, profile), board in keys.items():
        assert set(board.runs["split"]) == {split} and set(board.runs["profile"]) == {profile}
        assert len(board.rows) == 1
    assert keys[("official", "paper")].rows["test_oa_mean"].item() == 70.0


def test_cli_filters_select_boards_and_methods() -> None:
    runs = [fake_run(m, 0, dataset=d) for m in ("svm", "two-branch-cnn", "mft") for d in ("synthetic", "augsburg")]
    sel = Selection(datasets=parse_patterns(["synthetic"]), methods=parse_patterns(["svm,two-*"]))
    board_set = build_board_set(runs_frame(runs), sel, significance=False)
    assert [b.key.dataset for b in board_set.boards] == ["synthetic"]
    assert sorted(board_set.boards[0].rows["method"]) == ["svm", "two-branch-cnn"]


def test_only_benchmark_cells_count_not_tuning_trials_or_foreign_runs() -> None:
    cell = fake_run("a", 0, metrics={"test_oa": 70.0})
    trial = fake_run("a", 1, metrics={"test_oa": 99.0})
    trial.data.tags["mlflow.parentRunId"] = "study"
    foreign = fake_run("a", 2, metrics={"test_oa": 1.0})
    del foreign.data.tags["bench.cell_key"]
    frame = runs_frame([cell, trial, foreign])
    assert frame["run_id"].tolist() == [cell.info.run_id]


def test_a_rerun_replaces_its_seed_instead_of_adding_one() -> None:
    runs = [fake_run("a", 0, metrics={"test_oa": 50.0}, start=1), fake_run("a", 0, metrics={"test_oa": 70.0}, start=2),
            fake_run("a", 1, metrics={"test_oa": 80.0}, start=1)]
    board = build_board_set(runs_frame(runs), significance=False).boards[0]
    row = board.rows.iloc[0]
    assert row["n"] == 2
    assert row["test_oa_mean"] == pytest.approx(75.0)
    assert any("superseded" in n for n in board.notes)


def test_two_configurations_of_a_method_are_two_rows_labelled_by_what_differs() -> None:
    runs = [fake_run("a", s, config={"train.epochs": e}, metrics={"test_oa": float(e)}) for s in (0, 1) for e in ("2", "50")]
    board = build_board_set(runs_frame(runs), significance=False).boards[0]
    assert sorted(board.rows["variant"]) == ["train.epochs=2", "train.epochs=50"]
    assert board.rows.iloc[0]["variant"] == "train.epochs=50"  # the more accurate one ranks first
    assert (board.rows["n"] == 2).all()


def test_per_class_columns_follow_the_label_order_of_per_class_csv(tmp_path: Path) -> None:
    arts = FakeArtifacts(tmp_path)
    runs = [fake_run("a", s, metrics={"test_acc_grass": 90.0 + s, "test_acc_tree": 50.0, "test_acc_low_plants": 10.0})
            for s in range(2)]
    with arts.path(runs[0].info.run_id, "per_class.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["class", "label", "test_pixels", "accuracy_pct", "f1_pct"])
        for k, name in enumerate(CLASSES):
            w.writerow([name, k + 1, 10, 0, 0])
    board = build_board_set(runs_frame(runs), artifacts=arts, significance=False).boards[0]
    assert board.class_names == CLASSES
    assert board.class_keys == ["grass", "tree", "low_plants"]
    assert board.rows.iloc[0]["test_acc_grass_mean"] == pytest.approx(90.5)


# ----------------------------------------------------------------------------- significance


def _significance_store(tmp_path: Path) -> tuple[FakeArtifacts, list[Any], dict[str, dict[int, np.ndarray]]]:
    """Method 'best' right on ~95% of 400 pixels, 'close' differs from it on 2 pixels, 'worse' ~60%."""
    arts = FakeArtifacts(tmp_path)
    rng = np.random.default_rng(1)
    index = np.arange(400) * 3
    truth = rng.integers(0, 3, index.size)
    runs, correct = [], {"best": {}, "close": {}, "worse": {}}
    for seed in range(5):
        preds = {}
        best = np.where(rng.random(index.size) < 0.95, truth, (truth + 1) % 3)
        close = best.copy()
        flip = rng.choice(index.size, 2, replace=False)
        close[flip] = (truth[flip] + 1 + seed % 2) % 3
        preds["best"], preds["close"] = best, close
        preds["worse"] = np.where(rng.random(index.size) < 0.6, truth, (truth + 2) % 3)
        for m, p in preds.items():
            runs.append(with_predictions(arts, fake_run(m, seed), index, p, truth))
            correct[m][seed] = p == truth
    return arts, runs, correct


def test_methods_not_significantly_worse_than_the_best_are_marked(tmp_path: Path) -> None:
    arts, runs, correct = _significance_store(tmp_path)
    board = build_board_set(runs_frame(runs), artifacts=arts).boards[0]
    rows = board.rows.set_index("method")
    assert rows.loc["best", "rank"] == 1 and rows.loc["best", "vs_best"] == "best"
    assert rows.loc["worse", "vs_best"] == "<" and rows.loc["worse", "test"] == "McNemar"
    assert rows.loc["close", "vs_best"] == "≈" and rows.loc["close", "test"] == "McNemar"
    # The wiring: per-seed McNemar, combined over seeds, Holm over the two comparisons.
    raw = {m: combine_seeds({s: mcnemar(correct["best"][s], correct[m][s]) for s in range(5)}).p_value
           for m in ("close", "worse")}
    adjusted = dict(zip(raw, holm(list(raw.values()))))
    for m in raw:
        assert rows.loc[m, "p_mcnemar"] == pytest.approx(raw[m])
        assert rows.loc[m, "p_holm"] == pytest.approx(adjusted[m])
    assert rows.loc["worse", "p_wilcoxon"] == pytest.approx(2 / 32)  # 5 seeds, all in one direction
    assert "McNemar" in board.significance and "Holm" in board.significance


def test_different_test_pixels_are_refused_for_mcnemar_and_said_so(tmp_path: Path) -> None:
    arts, runs, _ = _significance_store(tmp_path)
    rng = np.random.default_rng(5)
    for seed in range(5):
        index = np.arange(400) * 3 + 1  # other pixels
        truth = rng.integers(0, 3, 400)
        runs.append(with_predictions(arts, fake_run("elsewhere", seed), index, truth.copy(), truth))
    board = build_board_set(runs_frame(runs), artifacts=arts).boards[0]
    row = board.rows.set_index("method").loc["elsewhere"]
    assert row["test"] != "McNemar" and row["p_mcnemar"] != row["p_mcnemar"]  # NaN: not tested
    assert any("elsewhere" in n and "test pixels" in n and "differ" in n for n in board.notes)


def test_without_predictions_the_wilcoxon_test_is_used_from_five_seeds() -> None:
    runs = [fake_run("a", s, metrics={"test_oa": 90.0 + s}) for s in range(6)]
    runs += [fake_run("b", s, metrics={"test_oa": 80.0 + 0.5 * s}) for s in range(6)]
    runs += [fake_run("c", s, metrics={"test_oa": 85.0}) for s in range(3)]
    rows = build_board_set(runs_frame(runs)).boards[0].rows.set_index("method")
    assert rows.loc["b", "test"] == "Wilcoxon"
    assert rows.loc["b", "p_wilcoxon"] == pytest.approx(2 / 64)  # 6 seeds, all favour a
    assert rows.loc["b", "vs_best"] == "<"
    assert rows.loc["c", "vs_best"] == "untested"  # 3 seeds: below Wilcoxon's minimum


def test_a_method_better_on_every_shared_seed_is_not_marked_lower() -> None:
    # 'a' ranks first on the mean of its 7 seeds, but 'b' beats it on each of the 6 seeds both have.
    runs = [fake_run("a", s, metrics={"test_oa": 100.0 if s == 6 else 80.0}) for s in range(7)]
    runs += [fake_run("b", s, metrics={"test_oa": 81.0 + 0.5 * s}) for s in range(6)]
    rows = build_board_set(runs_frame(runs)).boards[0].rows.set_index("method")
    assert rows.loc["a", "rank"] == 1
    assert rows.loc["b", "p_wilcoxon"] == pytest.approx(2 / 64)
    assert rows.loc["b", "vs_best"] == ">"


# ----------------------------------------------------------------------------- mixing is refused


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_an_explicit_board_that_would_mix_profiles_is_refused(tmp_path: Path) -> None:
    spec = load_board_spec(_write(tmp_path / "mixed.toml", '[[board]]\ndataset = "synthetic"\nsplit = "official"\nprofile = "*"\n'))
    runs = runs_frame([fake_run("a", 0, profile="fast"), fake_run("a", 0, profile="paper")])
    with pytest.raises(ConfigError, match=r"would rank runs of 2 profiles \(fast, paper\) in one table"):
        build_board_set(runs, spec=spec, significance=False)
    # Narrowed by a CLI filter, the same board is fine.
    board_set = build_board_set(runs, Selection(profiles=("paper",)), spec=spec, significance=False)
    assert [b.key.profile for b in board_set.boards] == ["paper"]


def test_a_board_naming_two_splits_is_refused_when_the_spec_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "two.toml", '[[board]]\ndataset = "x"\nsplit = ["official", "per-class:20"]\nprofile = "fast"\n')
    with pytest.raises(ConfigError, match=r"names 2 values for one board.*one \[\[board\]\] table per value"):
        load_board_spec(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('titel = "x"\n', r"unknown key\(s\) \['titel'\]"),
        ('datasets = ["a"]\n[[board]]\ndataset = "a"\nsplit = "official"\nprofile = "fast"\n', "use one form"),
        ('[[board]]\ndataset = "a"\nsplit = "official"\n', "profile = None; expected one profile name"),
        ('datasets = [1]\n', "expected a string or a list"),
        ('sort = "oa:up"\n', "expected COLUMN, COLUMN:asc or COLUMN:desc"),
        ('title = \n', "cannot be read as TOML"),
        ('[[board]]\ndataset = "a"\nsplit = "official"\nprofile = "fast"\n'
         '[[board]]\ndataset = "a"\nsplit = "official"\nprofile = "fast"\nmethod = "m"\n',
         r"board #2: unknown key\(s\) \['method'\]"),
    ],
)
def test_bad_board_specs_name_the_file_the_key_and_the_fix(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError, match=match) as info:
        load_board_spec(path)
    assert str(path) in str(info.value)


def test_committed_board_specs_load_and_are_found_by_name() -> None:
    specs = sorted(p for p in builtin_folder().glob("*.toml") if p.name != "paper_numbers.toml")
    assert specs, "the package ships board specs"
    for path in specs:
        spec = load_board_spec(path)
        assert spec.title and (spec.grid is not None or spec.boards)
        assert find_board_spec(path.stem, cwd=Path("/nonexistent")) == path
    with pytest.raises(ConfigError, match="known boards: .*synthetic"):
        find_board_spec("no-such-board", cwd=Path("/nonexistent"))


def test_grid_spec_selects_its_boards() -> None:
    spec = load_board_spec(builtin_folder() / "synthetic.toml")
    runs = runs_frame([fake_run("a", 0), fake_run("a", 0, profile="paper"), fake_run("a", 0, dataset="augsburg")])
    board_set = build_board_set(runs, spec=spec, significance=False)
    assert [b.key for b in board_set.boards] == [BoardKey("synthetic", "official", "fast")]
    assert board_set.title == spec.title


# ----------------------------------------------------------------------------- sorting


def test_sort_reorders_rows_but_rank_stays_by_oa() -> None:
    runs = [fake_run(m, 0, metrics={"test_oa": oa, "params_total": p})
            for m, oa, p in [("a", 90.0, 3e6), ("b", 80.0, 1e3), ("c", 85.0, 5e4)]]
    frame = runs_frame(runs)
    by_params = build_board_set(frame, sort="params", significance=False).boards[0].rows
    assert by_params["method"].tolist() == ["b", "c", "a"]
    assert by_params["rank"].tolist() == [3, 2, 1]
    by_method = build_board_set(frame, sort="method:desc", significance=False).boards[0].rows
    assert by_method["method"].tolist() == ["c", "b", "a"]
    default = build_board_set(frame, significance=False).boards[0].rows
    assert default["method"].tolist() == ["a", "c", "b"]
    with pytest.raises(ConfigError, match="--sort 'bogus': no column 'bogus'; expected one of rank, method"):
        build_board_set(frame, sort="bogus", significance=False)


# ----------------------------------------------------------------------------- reported numbers


def test_committed_paper_numbers_load_with_their_protocol_caveats() -> None:
    path = default_paper_numbers(cwd=Path("/nonexistent"))
    assert path == REPO / "bench_core" / "leaderboard" / "builtin" / "paper_numbers.toml"
    entries = load_paper_numbers(path)
    by = {(e.method, e.dataset, e.source): e for e in entries}
    m3 = by[("m3amba", "houston2013", "M3amba, Table II")]
    assert (m3.oa, m3.aa, m3.kappa) == (97.31, 97.32, 97.11)
    assert any("training pixels" in c for c in m3.caveats)
    assert any("overlapping crop" in c for c in by[("m3amba", "augsburg", "M3amba, Table II")].caveats)
    assert any("test accuracy" in c for c in by[("mft", "houston2013", "MFT paper, Table II")].caveats)
    assert by[("bdgf", "augsburg", "BDGF, Table III")].split == "per-class:100"
    # One primary entry at most per (method, dataset).
    primaries = [(e.method, e.dataset) for e in entries if e.primary]
    assert len(primaries) == len(set(primaries))


def test_reported_numbers_sit_beside_the_ranking_and_say_when_the_protocol_differs() -> None:
    reported = [
        ReportedNumber("a", "augsburg", "Paper A, Table 2", "official", 99.0, 95.0, 98.0, caveats=("crop-weighted",), primary=True),
        ReportedNumber("a", "augsburg", "Paper B, Table 4", "per-class:100", 91.0, 90.0, 89.0),
        ReportedNumber("b", "augsburg", "Paper B, Table 4", "official", 70.0, 60.0, 65.0, primary=True),
        ReportedNumber("a", "houston2013", "Paper A, Table 1", "official", 97.0, 97.0, 97.0, primary=True),
    ]
    runs = [fake_run("a", 0, dataset="augsburg", metrics={"test_oa": 80.0}),
            fake_run("b", 0, dataset="augsburg", metrics={"test_oa": 85.0})]
    board = build_board_set(runs_frame(runs), reported=reported, significance=False).boards[0]
    rows = board.rows.set_index("method")
    assert rows["rank"].to_dict() == {"b": 1, "a": 2}  # 99% reported for a does not lift it
    assert rows.loc["a", "reported_oa"] == 99.0 and rows.loc["a", "reported_source"] == "Paper A, Table 2"
    assert rows.loc["a", "reported_protocol"] == "differs: crop-weighted"
    assert rows.loc["b", "reported_protocol"].startswith("same split")
    assert len(board.reported) == 3  # houston2013 is another dataset
    md = format_board_set(build_board_set(runs_frame(runs), reported=reported, significance=False), "md")
    assert "| 99.00 (protocol differs) |" in md
    assert "split per-class:100 (board: official)" in md
    assert "reported by the papers (not ranked" in md


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ('method = "a"\ndataset = "b"\nsource = "c"\nsplit = "official"\noa = 101\n', r"oa = 101; expected percent"),
        ('method = "a"\ndataset = "b"\nsplit = "official"\n', "source = None; expected a non-empty string"),
        ('method = "a"\ndataset = "b"\nsource = "c"\nsplit = "x"\ncaveat = []\n',
         r"entry #1: unknown key\(s\) \['caveat'\]"),
        ('method = \n', "cannot be read as TOML"),
    ],
)
def test_bad_paper_numbers_are_refused(tmp_path: Path, entry: str, match: str) -> None:
    path = _write(tmp_path / "p.toml", "[[reported]]\n" + entry)
    with pytest.raises(ConfigError, match=match):
        load_paper_numbers(path)


# ----------------------------------------------------------------------------- exports


@pytest.fixture
def sig_board_set(tmp_path: Path):  # noqa: ANN201
    arts, runs, _ = _significance_store(tmp_path)
    for run in runs:
        with arts.path(run.info.run_id, "classification_map.png").open("wb") as fh:
            fh.write(_tiny_png())
    return build_board_set(runs_frame(runs), artifacts=arts), arts


def _tiny_png() -> bytes:
    from bench_core.leaderboard.plots import _figure, _png

    fig = _figure(1, 1)
    fig.add_subplot(1, 1, 1).imshow(np.eye(3))
    return _png(fig)


@pytest.mark.slow
def test_markdown_export(sig_board_set) -> None:  # noqa: ANN001
    md = format_board_set(sig_board_set[0], "md")
    assert "## synthetic · split official · profile fast" in md
    header = next(line for line in md.splitlines() if line.startswith("| rank |"))
    for col in ("OA (%)", "AA (%)", "kappa (%)", "vs best", "params", "FLOPs/sample", "train (s)", "infer (s)", "px/s", "device"):
        assert f"| {col} |" in header
    assert re.search(r"\| 1 \| best \| 5 \| \d+\.\d\d ± \d+\.\d\d \|", md)
    assert "| ≈ (p=" in md and "| < (p" in md
    assert "params.dataset = 'synthetic' and params.split = 'official'" in md


@pytest.mark.slow
def test_json_and_csv_exports(sig_board_set) -> None:  # noqa: ANN001
    import pandas as pd

    doc = json.loads(format_board_set(sig_board_set[0], "json"))
    board = doc["boards"][0]
    assert (board["dataset"], board["split"], board["profile"]) == ("synthetic", "official", "fast")
    rows = {r["method"]: r for r in board["rows"]}
    assert rows["best"]["n"] == 5 and rows["best"]["seeds"] == [0, 1, 2, 3, 4]
    assert rows["best"]["p_holm"] is None and rows["worse"]["vs_best"] == "<"
    frame = pd.read_csv(io.StringIO(format_board_set(sig_board_set[0], "csv")))
    assert list(frame.columns[:7]) == ["dataset", "split", "profile", "rank", "method", "variant", "n"]
    assert set(frame["method"]) == {"best", "close", "worse"}
    assert frame.set_index("method").loc["best", "test_oa_mean"] == pytest.approx(rows["best"]["test_oa_mean"])


@pytest.mark.slow
def test_html_is_one_self_contained_page(sig_board_set) -> None:  # noqa: ANN001
    board_set, arts = sig_board_set
    page = format_board_set(board_set, "html", arts)
    assert page.startswith("<!DOCTYPE html>")
    # Nothing loads from elsewhere: no external URLs in src/href, only data: images.
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert len(srcs) == 3 + 3  # three plots (accuracy vs time, vs params, per class) + one map per method
    assert page.count('class="sortable"') == 2  # main board + per-class table
    assert "Pareto front" in page and "default-src 'none'" in page


def test_empty_store_still_renders_every_format() -> None:
    board_set = build_board_set(runs_frame([]))
    assert board_set.boards == []
    for fmt in ("table", "md", "csv", "json", "html"):
        assert format_board_set(board_set, fmt)
    with pytest.raises(ConfigError, match="--format 'xml'"):
        format_board_set(board_set, "xml")


# ----------------------------------------------------------------------------- Pareto front


def test_pareto_front_by_hand() -> None:
    # (cost, accuracy): a=(1, 80) b=(2, 90) c=(3, 85: dominated by b) d=(4, 95) e=(2, 70: dominated by a)
    mask = pareto_front([1, 2, 3, 4, 2], [80, 90, 85, 95, 70])
    assert mask.tolist() == [True, True, False, True, False]
    assert pareto_front([1, float("nan")], [50, 99]).tolist() == [True, False]
    assert pareto_front([1, 1], [50, 50]).tolist() == [True, True]  # equal points do not dominate each other
    with pytest.raises(MetricError, match="shapes"):
        pareto_front([1, 2], [3])


# ----------------------------------------------------------------------------- CLI on a real store


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real SQLite MLflow store with FINISHED runs of two profiles (no training; built once)."""
    from bench_core.tracking import MLflowTracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    tracker = MLflowTracker(uri, "bench")
    for profile, base in (("fast", 80.0), ("paper", 90.0)):
        for method, delta in (("svm", 0.0), ("two-branch-cnn", -5.0)):
            for seed in (0, 1):
                fake = fake_run(method, seed, profile=profile, metrics={"test_oa": base + delta + seed})
                run = tracker.start_run(fake.info.run_name, fake.data.tags, "test run")
                run.log_params(fake.data.params)
                run.log_metrics(fake.data.metrics)
                run.end("FINISHED")
    return uri


@pytest.mark.slow
def test_cli_prints_boards_and_refuses_a_mixing_board(small_store: str, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from bench_core.cli import main

    assert main(["leaderboard", "--tracking-uri", small_store, "--format", "md", "--profile", "paper"]) == 0
    md = capsys.readouterr().out
    assert md.count("## synthetic · split official · profile") == 1 and "profile paper" in md
    assert "| 1 | svm | 2 | 90.50 ± 0.71 |" in md
    spec = _write(tmp_path / "mix.toml", '[[board]]\ndataset = "synthetic"\nsplit = "official"\nprofile = "*"\n')
    assert main(["leaderboard", "--tracking-uri", small_store, "--board", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "would rank runs of 2 profiles (fast, paper) in one table" in err
    out = tmp_path / "out" / "board.json"
    out.parent.mkdir()  # bench leaderboard creates no folder (docs/reliability.md)
    assert main(["leaderboard", "--tracking-uri", small_store, "--json", "--output", str(out)]) == 0
    assert len(json.loads(out.read_text())["boards"]) == 2


@pytest.mark.slow
def test_readme_mlflow_filter_strings_are_valid_searches(small_store: str) -> None:
    """Every filter string the README documents for the MLflow UI parses and finds the runs."""
    from bench_core.tracking import MLflowTracker

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Where results go, and how to browse them", 1)[1].split("\n## ", 1)[0]
    filters = [f for f in re.findall(r"`([^`\n]+)`", section) if f.startswith(("params.", "metrics.", "tags.", "attributes."))]
    assert len(filters) >= 3, "the README section documents MLflow filter strings"
    tracker = MLflowTracker(small_store, "bench")
    for f in filters:
        runs = tracker.runs(f)
        assert runs, f"README filter {f!r} finds no run of a synthetic store"


def test_stand_in_and_ablation_status_is_part_of_the_method_label() -> None:
    status = {"bench.method.status": "STAND-IN: random CLIP weights"}
    runs = [fake_run("m3amba", s, tags=status, metrics={"test_oa": 90.0 + s}) for s in range(2)]
    runs += [fake_run("svm", s) for s in range(2)]
    board_set = build_board_set(runs_frame(runs))
    text = format_board_set(board_set, "md")
    assert "m3amba {STAND-IN: random CLIP weights}" in text
    assert re.search(r"\|\s*m3amba\s*\|", text) is None  # never the bare paper name
    records = json.loads(format_board_set(board_set, "json"))["boards"][0]["rows"]
    by_method = {r["method"]: r for r in records}
    assert by_method["m3amba"]["method_status"] == "STAND-IN: random CLIP weights"
    assert by_method["svm"]["method_status"] == ""


def test_rows_show_test_and_validation_leakage_and_the_reported_numbers_say_what_we_train_on() -> None:
    reported = [ReportedNumber("a", "augsburg", "Paper A, Table 2", "official", 99.0, 95.0, 98.0, primary=True)]
    runs = [fake_run("a", s, dataset="augsburg", metrics={"split_leakage": 52.15, "split_val_leakage": 100.0})
            for s in (0, 1)]
    board_set = build_board_set(runs_frame(runs), reported=reported, significance=False)
    (row,) = display_rows(board_set.boards[0])
    assert row["leakage test / val (%)"] == "52.1 / 100.0"
    md = format_board_set(board_set, "md")
    assert "the harness trains on 90 % of the split's training pixels" in md and "--val-fraction 0" in md
    # Runs with --val-fraction 0 train on all training pixels, as the papers do: no such caveat.
    papers_way = [fake_run("a", 0, dataset="augsburg", config={"val_fraction": "0.0"})]
    assert "the harness trains on" not in format_board_set(
        build_board_set(runs_frame(papers_way), reported=reported, significance=False), "md")


# ----------------------------------------------------------------------------- one set of formatters


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda v: format_number(v, 1), {None: "-", math.nan: "-", math.inf: "inf", -math.inf: "-inf", 2.345: "2.3"}),
        (format_count, {None: "-", math.nan: "-", math.inf: "inf", -math.inf: "-inf", 1234567.4: "1,234,567"}),
        (format_sci, {None: "-", math.nan: "-", math.inf: "inf", -math.inf: "-inf", 51234.0: "5.12e+04"}),
        (format_p, {None: "-", math.nan: "-", 0.04567: "0.046", 0.0004: "4.0e-04", 1e-20: "<1e-16"}),
        (lambda v: format_mean_std(v, 0.5), {None: "-", math.nan: "-", math.inf: "inf ± 0.50", 91.234: "91.23 ± 0.50"}),
        (lambda v: format_mean_std(91.0, v), {None: "91.00", math.nan: "91.00", math.inf: "91.00 ± inf"}),
    ],
)
def test_formatters_show_missing_as_dash_and_infinity_as_inf(call, expected: dict) -> None:  # noqa: ANN001
    for value, text in expected.items():
        assert call(value) == text, value
        assert call(np.float64(value) if value is not None else None) == text, value


@pytest.mark.slow
def test_every_renderer_shows_an_infinite_cost_as_inf_and_a_missing_one_as_dash() -> None:
    runs = [fake_run("fast", s, metrics={"throughput_infer": math.inf, "flops_per_sample": math.nan}) for s in (0, 1)]
    board_set = build_board_set(runs_frame(runs), significance=False)
    (row,) = display_rows(board_set.boards[0])
    assert (row["px/s"], row["FLOPs/sample"]) == ("inf", "-")
    assert "| inf |" in format_board_set(board_set, "md")
    table = format_board_set(board_set, "table")
    assert re.search(r"\s10,000\s", table) is None and re.search(r"\sinf\s", table)
    page = format_board_set(board_set, "html")
    assert '<td data-v="Infinity" class="">inf</td>' in page  # sorts as the largest number
    assert json.loads(format_board_set(board_set, "json"))["boards"][0]["rows"][0]["throughput_infer"] is None


@pytest.mark.slow
def test_terminal_table_is_drawn_by_rich_and_split_to_fit_a_narrow_terminal(sig_board_set) -> None:  # noqa: ANN001
    board_set = sig_board_set[0]
    whole = format_board_set(board_set, "table")
    header = next(line for line in whole.splitlines() if line.startswith("rank"))
    assert re.match(r"rank\s+method\s+n\s+OA \(%\)\s+AA \(%\)\s+kappa \(%\)\s+vs best", header)
    assert "reported OA (paper, not ranked)" in header  # one table at natural width for a pipe or file
    assert "─" * 20 in whole  # rich's header rule
    narrow = format_board_set(board_set, "table", width=100)
    assert max(map(len, narrow.splitlines())) <= 100
    headers = [line for line in narrow.splitlines() if line.startswith("rank")]
    assert len(headers) == 3  # accuracy, cost, provenance
    assert "params" in headers[1] and "device" in headers[2]
    for method in ("best", "close", "worse"):
        assert len(re.findall(rf"^\d\s+{method}\s", narrow, flags=re.M)) == 3


# ----------------------------------------------------------------------------- layers and package data


def test_the_board_layer_imports_no_renderer() -> None:
    import ast

    folder = REPO / "bench_core" / "leaderboard"
    renderers = {"bench_core.leaderboard.render", "bench_core.leaderboard.html", "bench_core.leaderboard.plots"}
    for name in ("specs", "frame", "formatting", "significance", "boards"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & (renderers | {"rich", "jinja2", "matplotlib"}), f"{name}.py imports a renderer"
    assert not (REPO / "bench_core" / "report_html.py").exists()


def test_importing_the_package_loads_no_heavy_library() -> None:
    import subprocess
    import sys

    code = ("import sys, bench_core.leaderboard; "
            "print(sorted(m for m in ('pandas', 'rich', 'jinja2', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_user_specs_in_dot_leaderboards_come_first_and_built_ins_stay_listed(tmp_path: Path) -> None:
    (tmp_path / "leaderboards").mkdir()
    mine = _write(tmp_path / "leaderboards" / "synthetic.toml", 'title = "mine"\ndatasets = ["synthetic"]\n')
    _write(tmp_path / "leaderboards" / "extra.toml", 'title = "extra"\n')
    assert find_board_spec("synthetic", cwd=tmp_path) == mine
    assert find_board_spec("bdgf-protocol", cwd=tmp_path) == builtin_folder() / "bdgf-protocol.toml"
    with pytest.raises(ConfigError, match=r"known boards: bdgf-protocol, extra, official-splits, synthetic \("):
        find_board_spec("nope", cwd=tmp_path)
    assert default_paper_numbers(cwd=tmp_path) == builtin_folder() / "paper_numbers.toml"
    own = _write(tmp_path / "leaderboards" / "paper_numbers.toml", "reported = []\n")
    assert default_paper_numbers(cwd=tmp_path) == own
