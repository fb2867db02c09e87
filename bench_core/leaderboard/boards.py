"""Boards: runs grouped per (dataset, split, profile), aggregated over seeds, ranked and tested.

This is the data layer of ``bench leaderboard``: it builds :class:`BoardSet` objects and
imports no renderer (those live in :mod:`bench_core.leaderboard.render` and
:mod:`bench_core.leaderboard.html`; the CLI picks one).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench_core.errors import ConfigError, MetricError
from bench_core.leaderboard.frame import (
    ACCURACY,
    COST,
    PER_CLASS_PREFIX,
    TAG_CLASSES_WITHOUT_TRAINING,
    ArtifactSource,
)
from bench_core.leaderboard.significance import significance_marks
from bench_core.leaderboard.specs import (
    SORT_COLUMNS,
    BoardSpec,
    ReportedNumber,
    Selection,
    parse_sort,
)

if TYPE_CHECKING:
    import pandas as pd

    from bench_core.stats import Predictions

BOARD_KEY = ["dataset", "split", "profile"]
ALPHA = 0.05


@dataclass(frozen=True)
class BoardKey:
    """What one board ranks: one dataset, one split protocol, one profile."""

    dataset: str
    split: str
    profile: str

    @property
    def title(self) -> str:
        return f"{self.dataset} · split {self.split} · profile {self.profile}"

    @property
    def slug(self) -> str:
        return "-".join("".join(ch if ch.isalnum() else "_" for ch in v) for v in (self.dataset, self.split, self.profile))

    @property
    def mlflow_filter(self) -> str:
        """The MLflow search filter that lists this board's runs in the MLflow UI."""
        return (
            f"params.dataset = '{self.dataset}' and params.split = '{self.split}' and "
            f"params.profile = '{self.profile}' and attributes.status = 'FINISHED'"
        )


@dataclass
class Board:
    """One ranked table plus its per-class table, reported numbers and notes."""

    key: BoardKey
    rows: pd.DataFrame
    class_names: list[str]
    class_keys: list[str]
    reported: list[ReportedNumber]
    runs: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    significance: str = ""
    title: str = ""


@dataclass
class BoardSet:
    """Everything one ``bench leaderboard`` call shows."""

    title: str
    boards: list[Board]
    store: str = ""
    experiment: str = ""
    description: str = ""
    generated: str = ""
    alpha: float = ALPHA
    sort: str | None = None


def sort_rows(rows: pd.DataFrame, sort: str | None) -> pd.DataFrame:
    """Rows reordered for display by ``sort`` (default: rank). The rank itself stays by test OA."""
    if rows.empty:
        return rows
    name, descending = parse_sort(sort or "rank")
    column, default_desc = SORT_COLUMNS.get(name, (name, False))
    if column not in rows.columns:
        raise ConfigError(
            f"--sort {sort!r}: no column {name!r}; expected one of {', '.join(SORT_COLUMNS)} "
            f"or a column of the JSON rows (e.g. test_acc_<class>_mean)"
        )
    desc = default_desc if descending is None else descending
    return rows.sort_values([column, "rank"], ascending=[not desc, True], na_position="last", kind="stable").reset_index(drop=True)


def _dedupe(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the latest run per (board, method, config, seed): a re-run replaces, never adds a seed."""
    if runs.empty:
        return runs, 0
    ordered = runs.sort_values("start_time", kind="stable")
    kept = ordered.drop_duplicates(BOARD_KEY + ["method", "config_id", "seed"], keep="last")
    return kept.sort_index(), len(runs) - len(kept)


def _variant_labels(runs: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Per (method, config_id): '' when the method has one config on the board, else the differing settings."""
    labels: dict[tuple[str, str], str] = {}
    for method, group in runs.groupby("method", sort=True):
        configs = {cid: json.loads(text) for cid, text in zip(group["config_id"], group["config_json"])}
        if len(configs) == 1:
            labels[(method, next(iter(configs)))] = ""
            continue
        keys = sorted({k for c in configs.values() for k in c})
        differing = [k for k in keys if len({c.get(k) for c in configs.values()}) > 1]
        for cid, cfg in configs.items():
            text = ", ".join(f"{k}={cfg.get(k, '-')}" for k in differing)
            labels[(method, cid)] = text if len(text) <= 80 else text[:77] + "..."
    return labels


def _class_order(runs: pd.DataFrame, artifacts: ArtifactSource | None) -> tuple[list[str], list[str]]:
    """Class display names and metric keys, in label order (from a run's ``per_class.csv``)."""
    from bench_core.metrics import metric_key

    present = sorted({c[len(PER_CLASS_PREFIX):] for c in runs.columns if c.startswith(PER_CLASS_PREFIX)
                      and runs[c].notna().any()})
    if artifacts is not None and not runs.empty:
        path = artifacts.fetch(str(runs["run_id"].iloc[0]), "per_class.csv")
        if path is not None:
            import csv

            with Path(path).open(newline="") as fh:
                names = [row["class"] for row in csv.DictReader(fh) if row.get("class")]
            keys = [metric_key(n) for n in names]
            if set(keys) >= set(present):
                return names, keys
    return list(present), list(present)


def _aggregate(runs: pd.DataFrame, class_keys: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    labels = _variant_labels(runs)
    records = []
    for (method, cid), g in runs.groupby(["method", "config_id"], sort=True):
        rec: dict[str, Any] = {
            "dataset": g["dataset"].iloc[0], "split": g["split"].iloc[0], "profile": g["profile"].iloc[0],
            "method": method, "variant": labels[(method, cid)], "config_id": cid,
            "n": int(g["seed"].nunique()), "seeds": sorted(int(s) for s in g["seed"]),
        }
        for col in ACCURACY:
            vals = g[col].astype(float)
            rec[f"{col}_mean"] = float(vals.mean())
            rec[f"{col}_std"] = float(vals.std(ddof=1)) if vals.notna().sum() > 1 else math.nan
        for col in COST:
            rec[col] = float(g[col].astype(float).mean())
        for key in class_keys:
            col = PER_CLASS_PREFIX + key
            vals = g[col].astype(float) if col in g else pd.Series([math.nan])
            rec[f"{col}_mean"] = float(vals.mean())
            rec[f"{col}_std"] = float(vals.std(ddof=1)) if vals.notna().sum() > 1 else math.nan
        rec["val_fraction"] = float(g["val_fraction"].astype(float).iloc[0])  # part of the config id
        rec["device"] = ", ".join(sorted(set(map(str, g["device"]))))
        rec["method_status"] = "; ".join(sorted({str(v) for v in g["method_status"] if isinstance(v, str) and v}))
        untrained = [str(v) for v in g.get("classes_without_training", []) if isinstance(v, str) and v]
        rec["classes_without_training"] = "; ".join(sorted(set(untrained)))
        rec["seeds_without_training"] = len(untrained)
        best = g.loc[g["test_oa"].astype(float).idxmax()] if g["test_oa"].notna().any() else g.iloc[0]
        rec["best_run_id"] = str(best["run_id"])
        rec["best_seed"] = int(best["seed"])
        rec["best_run_name"] = str(best["run_name"])
        records.append(rec)
    rows = pd.DataFrame(records)
    order = rows["test_oa_mean"].rank(ascending=False, method="min", na_option="bottom")
    rows["rank"] = order.astype(int)
    return rows.sort_values(["rank", "method", "variant"], kind="stable").reset_index(drop=True)


def _attach_reported(rows: pd.DataFrame, reported: Sequence[ReportedNumber], key: BoardKey) -> pd.DataFrame:
    rows = rows.copy()
    for col in ("reported_oa", "reported_aa", "reported_kappa"):
        rows[col] = math.nan
    rows["reported_source"] = ""
    rows["reported_protocol"] = ""
    for i, r in rows.iterrows():
        mine = [e for e in reported if e.method == r["method"] and e.dataset == key.dataset]
        if not mine:
            continue
        entry = sorted(mine, key=lambda e: (not e.primary, e.split != key.split))[0]
        rows.loc[i, ["reported_oa", "reported_aa", "reported_kappa"]] = [
            math.nan if v is None else v for v in (entry.oa, entry.aa, entry.kappa)
        ]
        rows.loc[i, "reported_source"] = entry.source
        diffs = entry.differences(key.split)
        rows.loc[i, "reported_protocol"] = "differs: " + "; ".join(diffs) if diffs else "same split, no known caveat"
    return rows


def build_board_set(
    runs: pd.DataFrame,
    selection: Selection | None = None,
    spec: BoardSpec | None = None,
    artifacts: ArtifactSource | None = None,
    reported: Sequence[ReportedNumber] = (),
    sort: str | None = None,
    significance: bool = True,
    alpha: float = ALPHA,
) -> BoardSet:
    """Boards from a frame of FINISHED runs (:func:`finished_runs`).

    ``selection`` (CLI filters) narrows ``spec``'s boards. Raises ConfigError when an
    explicit board of ``spec`` would mix datasets, splits or profiles in one ranking.
    """
    from bench_core.stats import load_predictions

    selection = selection or Selection()
    sort = sort if sort is not None else (spec.sort if spec else None)
    if sort is not None:
        parse_sort(sort)
    cli_mask = selection.mask(runs)
    groups: list[tuple[BoardKey | None, pd.DataFrame, Selection]] = []
    if spec is not None and spec.boards:
        for i, sel in enumerate(spec.boards, start=1):
            chosen = runs[sel.mask(runs) & cli_mask]
            keys = sorted({tuple(k) for k in chosen[BOARD_KEY].astype(str).itertuples(index=False)})
            if len(keys) > 1:
                _refuse_mix(keys, f"board #{i} of {spec.path or spec.name}")
            groups.append((BoardKey(*keys[0]) if keys else None, chosen, sel))
    else:
        sel = spec.grid if spec is not None and spec.grid is not None else selection
        chosen = runs[sel.mask(runs) & cli_mask]
        if not chosen.empty:
            for key_values, g in chosen.groupby(BOARD_KEY, sort=True):
                groups.append((BoardKey(*map(str, key_values)), g, sel))

    predictions: dict[str, Predictions | None] = {}

    def load(run_id: str) -> Predictions | None:
        if run_id not in predictions:
            path = artifacts.fetch(run_id, "predictions_test.npz") if artifacts is not None else None
            try:
                predictions[run_id] = load_predictions(path) if path is not None else None
            except MetricError:
                predictions[run_id] = None
        return predictions[run_id]

    boards = []
    for key, g, sel in groups:
        if key is None:
            empty_key = BoardKey(*("|".join(p) or "*" for p in (sel.datasets, sel.splits, sel.profiles)))
            boards.append(Board(empty_key, _empty_rows(), [], [], [], g, ["no FINISHED run matches this board"]))
            continue
        g, superseded = _dedupe(g)
        names, keys = _class_order(g, artifacts)
        rows = _aggregate(g, keys)
        notes = []
        if superseded:
            notes.append(f"{superseded} older run(s) of the same cell and seed were superseded by re-runs")
        if (rows["variant"] != "").any():
            notes.append("a method run with several configurations has one row per configuration (variant)")
        for _, r in rows.iterrows():
            if r.get("classes_without_training"):
                notes.append(
                    f"{r['method']}{' [' + r['variant'] + ']' if r.get('variant') else ''}: class(es) "
                    f"{r['classes_without_training']} had no training pixels in "
                    f"{r['seeds_without_training']} of {r['n']} seed(s) (run tag {TAG_CLASSES_WITHOUT_TRAINING}); "
                    f"the model never learned them, so its scores are not comparable to a split that has them"
                )
        legend = ""
        if significance:
            rows, legend, sig_notes = significance_marks(rows, g, load if artifacts is not None else None, alpha)
            notes.extend(sig_notes)
        mine = [e for e in reported if e.dataset == key.dataset and e.method in set(rows["method"])]
        rows = _attach_reported(rows, reported, key)
        boards.append(Board(key, sort_rows(rows, sort), names, keys, mine, g, notes, legend))
    title = spec.title if spec is not None else "Leaderboard"
    return BoardSet(
        title=title, boards=boards, description=spec.description if spec else "",
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), alpha=alpha, sort=sort,
    )


def _refuse_mix(keys: Sequence[tuple[str, ...]], where: str) -> None:
    parts = []
    for i, name in enumerate(BOARD_KEY):
        values = sorted({k[i] for k in keys})
        if len(values) > 1:
            parts.append(f"{len(values)} {name}s ({', '.join(values)})")
    raise ConfigError(
        f"{where} would rank runs of {' and '.join(parts)} in one table; a board ranks one dataset, one "
        f"split protocol and one profile. Narrow it (e.g. --profile {keys[0][2]} --split {keys[0][1]}, or "
        f"set dataset/split/profile in the spec) or drop the [[board]] form to get one board per combination"
    )


def _empty_rows() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=["rank", "method", "variant", "n"] + [f"{c}_mean" for c in ACCURACY])


# ----------------------------------------------------------------------------- Pareto


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """Mask of points no other point beats: lower-or-equal cost and higher-or-equal accuracy, one strictly.

    Points with a NaN coordinate are never on the front.
    """
    c = np.asarray(cost, dtype=np.float64)
    a = np.asarray(accuracy, dtype=np.float64)
    if c.shape != a.shape or c.ndim != 1:
        raise MetricError(f"cost and accuracy have shapes {c.shape} and {a.shape}; expected two 1-D vectors of one length")
    ok = np.isfinite(c) & np.isfinite(a)
    front = np.zeros(c.size, dtype=bool)
    for i in np.flatnonzero(ok):
        dominated = ok & (c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))
        front[i] = not dominated.any()
    return front
