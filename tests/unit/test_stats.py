"""Significance tests: McNemar (exact and chi-square forms) by hand, Wilcoxon against its definition
(enumerated sign patterns, the normal formula, a table value), Holm by hand."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from bench_core.artifacts import save_predictions
from bench_core.errors import MetricError
from bench_core.stats import (
    Comparison,
    McNemarResult,
    Predictions,
    WilcoxonResult,
    combine_seeds,
    discordant_counts,
    holm,
    judge_against_reference,
    load_predictions,
    mcnemar,
    mcnemar_chi2,
    mcnemar_counts,
    mcnemar_exact,
    paired_correctness,
    wilcoxon_signed_rank,
)

# ----------------------------------------------------------------------------- McNemar, by hand


def test_mcnemar_exact_hand_computed() -> None:
    # b=1, c=7: P(X <= 1) for X ~ Bin(8, 1/2) = (C(8,0) + C(8,1)) / 2^8 = 9/256; two-sided doubles it.
    r = mcnemar_exact(1, 7)
    assert r.p_value == pytest.approx(18 / 256, abs=1e-15)
    assert (r.b, r.c, r.statistic, r.method) == (1, 7, 1.0, "exact")
    # b=0, c=5: 2 * (1/32).
    assert mcnemar_exact(0, 5).p_value == pytest.approx(2 / 32, abs=1e-15)
    # Symmetric in b and c.
    assert mcnemar_exact(7, 1).p_value == pytest.approx(18 / 256, abs=1e-15)


@pytest.mark.parametrize(("b", "c"), [(0, 1), (2, 9), (11, 3), (40, 60), (17, 17), (0, 24)])
def test_mcnemar_exact_equals_the_binomial_tail_summed_term_by_term(b: int, c: int) -> None:
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    assert mcnemar_exact(b, c).p_value == pytest.approx(min(1.0, 2 * tail), rel=1e-12)


def test_mcnemar_exact_caps_at_one_and_handles_no_discordance() -> None:
    # b=c=3: 2 * P(X <= 3), X ~ Bin(6, 1/2) = 2 * 42/64 > 1 -> 1.
    assert mcnemar_exact(3, 3).p_value == 1.0
    assert mcnemar_exact(0, 0).p_value == 1.0


def test_mcnemar_chi2_continuity_corrected_hand_computed() -> None:
    # b=10, c=30: (|10-30| - 1)^2 / 40 = 361/40; chi2(1) survival = erfc(sqrt(x/2)).
    r = mcnemar_chi2(10, 30)
    assert r.statistic == pytest.approx(361 / 40, abs=1e-12)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(361 / 80)), rel=1e-12)
    assert r.method == "chi2-cc"
    # |b - c| <= 1: the corrected statistic is 0 and p = 1.
    assert mcnemar_chi2(12, 13).statistic == 0.0
    assert mcnemar_chi2(12, 13).p_value == pytest.approx(1.0)
    assert mcnemar_chi2(0, 0).p_value == 1.0


def test_auto_uses_exact_below_25_discordant_pixels_and_says_so() -> None:
    assert mcnemar_counts(4, 20).method == "exact"  # 24 discordant
    assert mcnemar_counts(5, 20).method == "chi2-cc"  # 25 discordant
    assert mcnemar_counts(5, 20, method="exact").p_value == mcnemar_exact(5, 20).p_value
    assert mcnemar_counts(4, 20, exact_below=10).method == "chi2-cc"


def test_mcnemar_from_correctness_vectors_counts_discordant_pixels() -> None:
    # 3 pixels only A right, 1 pixel only B right, 4 both right, 2 both wrong.
    a = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 0], bool)
    b = np.array([0, 0, 0, 1, 1, 1, 1, 1, 0, 0], bool)
    assert discordant_counts(a, b) == (3, 1)
    r = mcnemar(a, b)
    assert (r.b, r.c, r.method) == (3, 1, "exact")
    assert r.p_value == pytest.approx(2 * (1 + 4) / 16)
    assert r.favours == "a" and mcnemar(b, a).favours == "b"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mcnemar_exact(-1, 3), "non-negative integer"),
        (lambda: mcnemar_chi2(2.5, 3), "non-negative integer"),
        (lambda: mcnemar_counts(1, 2, method="fisher"), "'auto', 'exact' or 'chi2-cc'"),
        (lambda: mcnemar(np.ones(3, bool), np.ones(4, bool)), "same test pixels"),
    ],
)
def test_mcnemar_rejects_bad_input_with_a_clear_message(call, match: str) -> None:  # noqa: ANN001
    with pytest.raises(MetricError, match=match):
        call()


# ----------------------------------------------------------------------------- pairing predictions


def _pred(index: list[int], predicted: list[int], truth: list[int]) -> Predictions:
    return Predictions(np.array(index), np.array(predicted), np.array(truth))


def test_paired_correctness_requires_identical_test_pixels() -> None:
    a = _pred([5, 7, 9], [0, 1, 1], [0, 1, 2])
    b = _pred([5, 7, 9], [0, 0, 2], [0, 1, 2])
    ca, cb = paired_correctness(a, b)
    assert ca.tolist() == [True, True, False] and cb.tolist() == [True, False, True]
    with pytest.raises(MetricError, match="test pixels of .* differ .*2 of 3 positions"):
        paired_correctness(a, _pred([5, 9, 7], [0, 1, 1], [0, 2, 1]))
    with pytest.raises(MetricError, match="3 vs 2 pixels"):
        paired_correctness(a, _pred([5, 7], [0, 1], [0, 1]))
    with pytest.raises(MetricError, match="ground truth"):
        paired_correctness(a, _pred([5, 7, 9], [0, 1, 1], [0, 1, 1]))


def test_predictions_artifact_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "predictions_test.npz"
    save_predictions(path, np.array([3, 1, 2]), np.array([0, 2, 1]), np.array([0, 2, 2]))
    p = load_predictions(path)
    assert p.test_index.tolist() == [3, 1, 2]
    assert p.correct.tolist() == [True, True, False]
    np.savez(tmp_path / "bad.npz", test_index=np.arange(3), predicted=np.arange(3))
    with pytest.raises(MetricError, match="lacks array 'truth'"):
        load_predictions(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MetricError, match="not a readable"):
        load_predictions(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------- combining seeds


def _r(b: int, c: int, p: float) -> McNemarResult:
    return McNemarResult(b, c, 0.0, p, "exact")


def test_combine_seeds_takes_the_largest_p_when_all_seeds_agree() -> None:
    combined = combine_seeds({0: _r(30, 2, 1e-6), 1: _r(25, 5, 0.002), 2: _r(40, 1, 1e-9)})
    assert combined.p_value == 0.002
    assert combined.favours == "a"
    assert combined.methods == ("exact",)


def test_combine_seeds_gives_p_one_when_seeds_disagree_or_tie() -> None:
    mixed = combine_seeds({0: _r(30, 2, 1e-6), 1: _r(2, 30, 1e-6)})
    assert (mixed.p_value, mixed.favours) == (1.0, "mixed")
    tie = combine_seeds({0: _r(30, 2, 1e-6), 1: _r(5, 5, 1.0)})
    assert tie.p_value == 1.0
    with pytest.raises(MetricError, match="no seeds"):
        combine_seeds({})


# ----------------------------------------------------------------------------- Wilcoxon vs its definition


def _wilcoxon_by_enumeration(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact p by definition: every one of the 2**n sign patterns of the (mid-)ranks
    is equally likely; p = share of patterns whose W+ is at least as far from n(n+1)/4."""
    d = x - y
    d = d[d != 0]
    ranks = scipy.stats.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    mean = ranks.sum() / 2
    extreme = sum(
        abs(sum(r for r, s in zip(ranks, signs) if s) - mean) >= abs(w_plus - mean) - 1e-9
        for signs in itertools.product((False, True), repeat=d.size)
    )
    return extreme / 2**d.size


def _wilcoxon_normal_by_formula(x: np.ndarray, y: np.ndarray) -> float:
    """z = (W+ - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - sum(t^3 - t)/48), p = erfc(|z|/sqrt 2)."""
    d = x - y
    d = d[d != 0]
    n = d.size
    w_plus = scipy.stats.rankdata(np.abs(d))[d > 0].sum()
    _, t = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float(np.sum(t**3 - t)) / 48
    return math.erfc(abs(w_plus - n * (n + 1) / 4) / math.sqrt(var) / math.sqrt(2))


def test_wilcoxon_five_positive_differences_by_hand() -> None:
    # All 5 differences positive: W+ = 15 is the most extreme of 2^5 sign patterns -> p = 2/32.
    r = wilcoxon_signed_rank([91.0, 92.0, 93.5, 90.2, 95.0], [90.0, 90.5, 90.0, 90.1, 90.0])
    assert (r.n, r.w_plus, r.statistic, r.method, r.favours) == (5, 15.0, 0.0, "exact", "a")
    assert r.p_value == pytest.approx(2 / 32)


def test_wilcoxon_textbook_table_value() -> None:
    # Ranks 1..8 with signs - - + + + + + +: W- = 3, so W+ = 33. Tables of the signed-rank
    # null for n = 8 give P(W <= 3) = 5/256 (sign patterns with W- in {0, 1, 2, 3}: 1+1+1+2).
    d = np.array([-1.0, -2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    r = wilcoxon_signed_rank(d, np.zeros(8))
    assert (r.statistic, r.w_plus) == (3.0, 33.0)
    assert r.p_value == pytest.approx(2 * 5 / 256, rel=1e-12)
    assert wilcoxon_signed_rank(np.zeros(8), d).favours == "b"


@pytest.mark.parametrize("seed", range(6))
def test_wilcoxon_exact_equals_the_enumeration_of_sign_patterns(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 12))
    x = rng.normal(90, 2, n)
    y = x - rng.normal(0.5 * (seed % 3), 1.0, n)  # continuous: no ties, no zeros
    mine = wilcoxon_signed_rank(x, y, method="exact")
    assert mine.method == "exact"
    assert mine.p_value == pytest.approx(_wilcoxon_by_enumeration(x, y), rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_wilcoxon_exact_with_ties_equals_the_enumeration_of_mid_rank_sign_patterns(seed: int) -> None:
    # OA of a few hundred test pixels is a multiple of a small step, so tied differences
    # are common; the exact test must then use the permutation distribution of the mid-ranks.
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(5, 11))
    x = np.round(rng.normal(90, 1, n) * 4) / 4
    y = np.round((x - rng.normal(0.3, 0.6, n)) * 4) / 4
    mine = wilcoxon_signed_rank(x, y)
    assert mine.method == "exact"
    assert mine.p_value == pytest.approx(_wilcoxon_by_enumeration(x, y), rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_wilcoxon_normal_approximation_with_ties_matches_the_formula(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 12
    x = np.round(rng.normal(90, 2, n), 0)
    y = np.round(x - rng.normal(0.7, 1.5, n), 0)  # rounded: tied |d| and some zeros
    mine = wilcoxon_signed_rank(x, y, method="normal")
    assert mine.method == "normal"
    assert mine.p_value == pytest.approx(_wilcoxon_normal_by_formula(x, y), rel=1e-10)


def test_wilcoxon_auto_with_many_tied_pairs_uses_the_normal_form() -> None:
    d = np.repeat([1.0, 2.0, -1.0], 6)  # 18 pairs with ties: 2**18 patterns is past the exact limit
    assert wilcoxon_signed_rank(d, np.zeros(18)).method == "normal"
    assert wilcoxon_signed_rank(np.arange(1.0, 19.0), np.zeros(18)).method == "exact"  # no ties
    with pytest.raises(MetricError, match="2\\*\\*18 sign patterns.*method='normal' or 'auto'"):
        wilcoxon_signed_rank(d, np.zeros(18), method="exact")


def test_wilcoxon_five_seeds_with_ties_cannot_reach_5_percent() -> None:
    # Ties or not, 5 pairs give at best 2/32 under the exact test (a normal approximation
    # would claim p < 0.05 here).
    r = wilcoxon_signed_rank([90.5, 90.5, 91.0, 91.0, 92.0], [90.0, 90.0, 90.0, 90.0, 90.0])
    assert r.p_value == pytest.approx(2 / 32)
    assert wilcoxon_signed_rank([90.5, 90.5, 91.0, 91.0, 92.0], [90.0] * 5, method="normal").p_value < 0.05


def test_wilcoxon_edge_cases() -> None:
    same = wilcoxon_signed_rank([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert (same.p_value, same.n, same.favours) == (1.0, 0, "none")
    with pytest.raises(MetricError, match="'auto', 'exact' or 'normal'"):
        wilcoxon_signed_rank([1, 2, 3, 4, 5], [0, 1, 2, 3, 4], method="permutation")
    with pytest.raises(MetricError, match="shapes"):
        wilcoxon_signed_rank([1, 2, 3], [1, 2])
    with pytest.raises(MetricError, match="NaN"):
        wilcoxon_signed_rank([1, float("nan")], [1, 2])


# ----------------------------------------------------------------------------- Holm


def test_holm_hand_example() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> monotone 0.06.
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]
    assert holm([0.2]).tolist() == [0.2]
    assert holm([]).tolist() == []
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def _holm_rejections_step_down(p: list[float], alpha: float) -> set[int]:
    """Holm's procedure as a textbook loop: reject while p_(i) <= alpha / (m - i)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected: set[int] = set()
    for rank, i in enumerate(order):
        if p[i] <= alpha / (len(p) - rank):
            rejected.add(i)
        else:
            break
    return rejected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12), st.sampled_from([0.01, 0.05, 0.1]))
def test_holm_adjusted_p_values_reject_what_the_step_down_procedure_rejects(p: list[float], alpha: float) -> None:
    adjusted = holm(p)
    assert np.all(adjusted >= np.asarray(p) - 1e-15) and np.all(adjusted <= 1.0)
    mine = {i for i, a in enumerate(adjusted) if a <= alpha * (1 + 1e-12)}
    assert mine == _holm_rejections_step_down(p, alpha)


# ----------------------------------------------------------------------------- verdicts against rank 1


def _w(p: float, w_plus: float, n: int = 6) -> WilcoxonResult:
    return WilcoxonResult(n, w_plus, min(w_plus, n * (n + 1) / 2 - w_plus), p, "exact")


def test_verdicts_holm_correct_each_family_and_prefer_mcnemar() -> None:
    a_better, b_better = combine_seeds({0: _r(30, 2, 0.001)}), combine_seeds({0: _r(2, 30, 0.004)})
    comparisons = [
        Comparison(mcnemar=a_better, wilcoxon=_w(0.5, 12.0)),  # McNemar wins over Wilcoxon
        Comparison(mcnemar=b_better),  # the other method is better on the paired pixels
        Comparison(wilcoxon=_w(0.03, 21.0)),  # no predictions: Wilcoxon, alone in its family
        Comparison(mcnemar=combine_seeds({0: _r(9, 8, 0.2)})),
        Comparison(),
    ]
    verdicts = judge_against_reference(comparisons, 0.05)
    # McNemar family: 0.001, 0.004, 0.2 -> Holm 0.003, 0.008, 0.2.
    assert [v.p_mcnemar_holm for v in verdicts][:4] == pytest.approx([0.003, 0.008, math.nan, 0.2], nan_ok=True)
    # Wilcoxon family: 0.5, 0.03 -> Holm 0.5, 0.06.
    assert verdicts[0].p_wilcoxon_holm == pytest.approx(0.5) and verdicts[2].p_wilcoxon_holm == pytest.approx(0.06)
    assert [(v.mark, v.test) for v in verdicts] == [
        ("<", "McNemar"), (">", "McNemar"), ("≈", "Wilcoxon"), ("≈", "McNemar"), ("untested", ""),
    ]
    assert verdicts[2].p_holm == pytest.approx(0.06) and math.isnan(verdicts[4].p_holm)
    with pytest.raises(MetricError, match="alpha = 1.5; expected a significance level in"):
        judge_against_reference(comparisons, 1.5)
