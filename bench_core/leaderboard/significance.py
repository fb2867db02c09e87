"""Significance marks of a board: every row against rank 1, on the seeds both have.

The statistics are pure functions of :mod:`bench_core.stats`; this module only gathers
their inputs from a board's runs (the predictions of each common seed, or the test OA per
seed) and writes the results into the board's rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench_core.errors import MetricError
from bench_core.leaderboard.formatting import method_label
from bench_core.stats import (
    WILCOXON_MIN_N,
    Comparison,
    combine_seeds,
    judge_against_reference,
    mcnemar,
    paired_correctness,
    wilcoxon_signed_rank,
)

if TYPE_CHECKING:
    import pandas as pd

    from bench_core.stats import Predictions

PredictionLoader = Callable[[str], "Predictions | None"]
"""Run id -> its ``predictions_test.npz`` (None when the run has none)."""

P_COLUMNS = ("p_mcnemar", "p_mcnemar_holm", "p_wilcoxon", "p_wilcoxon_holm", "p_holm")


def _seed_runs(rows: pd.DataFrame, runs: pd.DataFrame, i: int) -> dict[int, pd.Series]:
    """Seed -> run of row ``i`` (its method and configuration)."""
    r = rows.iloc[i]
    g = runs[(runs["method"] == r["method"]) & (runs["config_id"] == r["config_id"])]
    return {int(s): g.iloc[j] for j, s in enumerate(g["seed"])}


def _compare(
    best: dict[int, pd.Series], mine: dict[int, pd.Series], common: list[int], load: PredictionLoader | None,
    best_label: str, label: str,
) -> tuple[Comparison, list[str]]:
    """The tests that apply to one pair (rank 1 = A, this row = B), and notes on those that do not."""
    notes: list[str] = []
    combined = None
    if load is not None:
        per_seed = {}
        for s in common:
            pa, pb = load(str(best[s]["run_id"])), load(str(mine[s]["run_id"]))
            if pa is None or pb is None:
                notes.append(f"{label}: seed {s} has no predictions_test.npz artifact; McNemar not used")
                per_seed = {}
                break
            try:
                ca, cb = paired_correctness(pa, pb, f"{best_label} and {label} at seed {s}")
            except MetricError as exc:
                notes.append(f"{label}: {exc}")
                per_seed = {}
                break
            per_seed[s] = mcnemar(ca, cb)
        combined = combine_seeds(per_seed) if per_seed else None
    wilcoxon = None
    if len(common) >= WILCOXON_MIN_N:
        x = [float(best[s]["test_oa"]) for s in common]
        y = [float(mine[s]["test_oa"]) for s in common]
        if all(map(math.isfinite, x + y)):
            wilcoxon = wilcoxon_signed_rank(x, y)
    return Comparison(combined, wilcoxon), notes


def significance_marks(
    rows: pd.DataFrame, runs: pd.DataFrame, load: PredictionLoader | None, alpha: float
) -> tuple[pd.DataFrame, str, list[str]]:
    """Rows (ranked, rank 1 first) with p-value columns and the ``vs_best`` mark; the legend; notes."""
    rows = rows.copy()
    for col in P_COLUMNS:
        rows[col] = math.nan
    rows["mcnemar_form"] = ""
    rows["test"] = ""
    rows["n_paired"] = 0
    rows["vs_best"] = ""
    notes: list[str] = []
    if rows.empty:
        return rows, "", notes
    best_label = method_label(rows.iloc[0])
    rows.loc[0, "vs_best"] = "best"
    others = list(range(1, len(rows)))
    if not others:
        return rows, "Only one method on this board: nothing to test.", notes

    best_runs = _seed_runs(rows, runs, 0)
    comparisons = []
    for i in others:
        label = method_label(rows.iloc[i])
        mine = _seed_runs(rows, runs, i)
        common = sorted(set(best_runs) & set(mine))
        rows.loc[i, "n_paired"] = len(common)
        if not common:
            notes.append(f"{label}: no seed in common with {best_label}; not tested")
            comparisons.append(Comparison())
            continue
        comparison, pair_notes = _compare(best_runs, mine, common, load, best_label, label)
        notes.extend(pair_notes)
        comparisons.append(comparison)
        if comparison.mcnemar is not None:
            rows.loc[i, "p_mcnemar"] = comparison.mcnemar.p_value
            rows.loc[i, "mcnemar_form"] = "/".join(comparison.mcnemar.methods)
        if comparison.wilcoxon is not None:
            rows.loc[i, "p_wilcoxon"] = comparison.wilcoxon.p_value
    for i, verdict in zip(others, judge_against_reference(comparisons, alpha)):
        rows.loc[i, ["p_mcnemar_holm", "p_wilcoxon_holm", "p_holm"]] = [
            verdict.p_mcnemar_holm, verdict.p_wilcoxon_holm, verdict.p_holm,
        ]
        rows.loc[i, "test"] = verdict.test
        rows.loc[i, "vs_best"] = verdict.mark
    k_m = int(rows["p_mcnemar"].notna().sum())
    k_w = int(rows["p_wilcoxon"].notna().sum())
    legend = (
        f"vs best: each method against rank 1 ({best_label}); ≈ = not significantly different at "
        f"α = {alpha:g} after Holm correction, < = significantly lower (> = significantly higher on the "
        f"seeds both have). Test used: McNemar on the "
        f"per-pixel correctness of the same test pixels, one test per seed (exact binomial form when "
        f"fewer than 25 pixels are discordant, else chi-square with continuity correction), a pair's p "
        f"being the largest per-seed p if every seed favours the same method (else 1), Holm-corrected "
        f"over the {k_m} McNemar comparison(s). Where no predictions are stored: a paired Wilcoxon "
        f"signed-rank test on test OA over seeds (n ≥ {WILCOXON_MIN_N}; shown as p Wilcoxon, Holm over "
        f"{k_w}); with 5 seeds its smallest possible p is 0.0625."
    )
    return rows, legend, notes
