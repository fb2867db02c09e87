"""Significance tests for leaderboards: McNemar, Wilcoxon signed-rank, Holm.

Two methods are compared on the *same* test pixels of the same cell (dataset, split,
seed): McNemar's test on per-pixel correctness answers "is one classifier more accurate
than the other on these pixels?". Over seeds, a paired Wilcoxon signed-rank test on test
OA answers "is the difference consistent across seeds?" (only from 5 seeds on; note that
with exactly 5 seeds its smallest two-sided p is 2/32 = 0.0625, so it cannot reach 0.05
before 6 seeds).

Conventions (see docs/leaderboards.md):

* McNemar: ``b`` = pixels A got right and B got wrong, ``c`` = the reverse. The exact
  form is the two-sided binomial test of ``b`` against Binomial(b + c, 1/2); the
  asymptotic form is the chi-square statistic with continuity correction
  ``(|b - c| - 1)^2 / (b + c)`` on 1 degree of freedom. ``method="auto"`` takes the exact
  form when ``b + c < 25`` (the usual rule of thumb) and says which one it used.
* Several seeds: one McNemar test per seed; the pair's p-value is the largest per-seed p
  when every seed favours the same method, else 1 (an intersection-union test: "A beats
  B on every seed", valid at level alpha without a multiplicity correction).
* Holm's step-down correction over the comparisons of one board, and the verdict of each
  comparison against the board's rank 1 (:func:`judge_against_reference`).

The p-values themselves are scipy's (``scipy.stats.binomtest``, ``chi2``, ``wilcoxon``);
what is ours is the choice of form, the seed combination, Holm and the verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench_core.errors import MetricError

#: ``method="auto"`` uses the exact McNemar test below this many discordant pixels.
EXACT_BELOW = 25

MCNEMAR_EXACT = "exact"
MCNEMAR_CHI2 = "chi2-cc"


# ----------------------------------------------------------------------------- McNemar


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on one pair of prediction vectors.

    ``b``: pixels A classified correctly and B did not; ``c``: the reverse.
    ``method``: ``"exact"`` (binomial) or ``"chi2-cc"`` (chi-square with continuity
    correction). ``statistic`` is ``min(b, c)`` for the exact form and the chi-square
    value for the other.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    method: str

    @property
    def discordant(self) -> int:
        """Pixels on which exactly one of the two methods is right."""
        return self.b + self.c

    @property
    def favours(self) -> str:
        """``"a"``, ``"b"`` or ``"none"``: which method was right more often on the discordant pixels."""
        return "a" if self.b > self.c else "b" if self.c > self.b else "none"


def _check_counts(b: int, c: int) -> tuple[int, int]:
    for name, value in (("b", b), ("c", c)):
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise MetricError(
                f"McNemar count {name}={value!r} is not a non-negative integer; pass the numbers "
                f"of discordant pixels (A right/B wrong and A wrong/B right)"
            )
    return int(b), int(c)


def mcnemar_exact(b: int, c: int) -> McNemarResult:
    """Exact McNemar test: two-sided binomial test of ``b`` successes in ``b + c`` trials at p = 1/2.

    ``p = min(1, 2 * P(X <= min(b, c)))`` with X ~ Binomial(b + c, 1/2) (what
    ``scipy.stats.binomtest`` gives for p = 1/2); ``p = 1`` when no pixel is discordant.
    """
    from scipy.stats import binomtest

    b, c = _check_counts(b, c)
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, MCNEMAR_EXACT)
    p = float(binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(b, c, float(min(b, c)), min(1.0, p), MCNEMAR_EXACT)


def mcnemar_chi2(b: int, c: int) -> McNemarResult:
    """Asymptotic McNemar test with continuity correction: ``(|b - c| - 1)^2 / (b + c)`` ~ chi2(1).

    The corrected difference is floored at 0 (``b == c`` gives statistic 0, p 1).
    """
    from scipy.stats import chi2

    b, c = _check_counts(b, c)
    n = b + c
    if n == 0:
        return McNemarResult(b, c, 0.0, 1.0, MCNEMAR_CHI2)
    stat = max(abs(b - c) - 1.0, 0.0) ** 2 / n
    return McNemarResult(b, c, float(stat), float(chi2.sf(stat, 1)), MCNEMAR_CHI2)


def discordant_counts(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """``(b, c)`` from two boolean per-pixel correctness vectors of the same pixels."""
    a = np.asarray(correct_a)
    bb = np.asarray(correct_b)
    if a.shape != bb.shape or a.ndim != 1:
        raise MetricError(
            f"correctness vectors have shapes {a.shape} and {bb.shape}; expected two 1-D vectors "
            f"over the same test pixels"
        )
    a = a.astype(bool)
    bb = bb.astype(bool)
    return int(np.count_nonzero(a & ~bb)), int(np.count_nonzero(~a & bb))


def mcnemar(
    correct_a: np.ndarray, correct_b: np.ndarray, method: str = "auto", exact_below: int = EXACT_BELOW
) -> McNemarResult:
    """McNemar's test on per-pixel correctness of methods A and B on the same pixels.

    ``method``: ``"exact"``, ``"chi2-cc"`` or ``"auto"`` (exact when fewer than
    ``exact_below`` pixels are discordant). The result's ``method`` says which was used.
    """
    b, c = discordant_counts(correct_a, correct_b)
    return mcnemar_counts(b, c, method, exact_below)


def mcnemar_counts(b: int, c: int, method: str = "auto", exact_below: int = EXACT_BELOW) -> McNemarResult:
    """:func:`mcnemar` from the discordant counts directly."""
    if method == "auto":
        method = MCNEMAR_EXACT if b + c < exact_below else MCNEMAR_CHI2
    if method == MCNEMAR_EXACT:
        return mcnemar_exact(b, c)
    if method == MCNEMAR_CHI2:
        return mcnemar_chi2(b, c)
    raise MetricError(f"McNemar method {method!r} is unknown; expected 'auto', 'exact' or 'chi2-cc'")


# ----------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Predictions:
    """Per-pixel test predictions of one run (the ``predictions_test.npz`` artifact).

    ``test_index``: flat pixel indices in scoring order; ``predicted`` and ``truth``:
    0-based class indices of the same pixels.
    """

    test_index: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """Boolean per-pixel correctness."""
        return np.asarray(self.predicted) == np.asarray(self.truth)


def load_predictions(path: Path) -> Predictions:
    """Read a ``predictions_test.npz`` artifact (arrays ``test_index``, ``predicted``, ``truth``)."""
    wanted = ("test_index", "predicted", "truth")
    try:
        with np.load(path) as z:
            missing = [k for k in wanted if k not in z.files]
            if missing:
                raise MetricError(
                    f"{path} lacks array {missing[0]!r}; expected test_index, predicted and truth "
                    f"(written by bench_core.artifacts.save_predictions)"
                )
            arrays = {k: np.asarray(z[k]) for k in wanted}
    except (OSError, ValueError) as exc:
        raise MetricError(f"{path} is not a readable .npz predictions file ({exc}); re-run the cell") from None
    sizes = {k: v.shape for k, v in arrays.items()}
    if len({s for s in sizes.values()}) != 1 or arrays["test_index"].ndim != 1:
        raise MetricError(f"{path} has arrays of shapes {sizes}; expected three 1-D arrays of one length")
    return Predictions(**arrays)


def paired_correctness(a: Predictions, b: Predictions, what: str = "the two runs") -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors of ``a`` and ``b`` after checking they score the very same pixels.

    Refuses (MetricError) unless ``test_index`` and ``truth`` are identical, element by
    element: a paired test on different pixels would be meaningless.
    """
    ia, ib = np.asarray(a.test_index), np.asarray(b.test_index)
    if ia.shape != ib.shape or not np.array_equal(ia, ib):
        detail = (
            f"{ia.size} vs {ib.size} pixels" if ia.size != ib.size
            else f"{int(np.count_nonzero(ia != ib))} of {ia.size} positions differ"
        )
        raise MetricError(
            f"test pixels of {what} differ ({detail}); a paired test needs identical test_index "
            f"arrays: compare runs of the same dataset, split and seed"
        )
    if not np.array_equal(np.asarray(a.truth), np.asarray(b.truth)):
        raise MetricError(
            f"ground truth of {what} differs on the same test pixels; the runs used different "
            f"label versions of the dataset: re-run both with the same dataset"
        )
    return a.correct, b.correct


# ----------------------------------------------------------------------------- combining seeds


@dataclass(frozen=True)
class SeedCombinedMcNemar:
    """McNemar over several seeds of one pair: per-seed results and the combined p-value."""

    per_seed: Mapping[int, McNemarResult]
    p_value: float
    favours: str
    rule: str = "max p over seeds (same direction required, else 1)"

    @property
    def methods(self) -> tuple[str, ...]:
        """The McNemar forms used, e.g. ``("chi2-cc",)``."""
        return tuple(sorted({r.method for r in self.per_seed.values()}))


def combine_seeds(per_seed: Mapping[int, McNemarResult]) -> SeedCombinedMcNemar:
    """Intersection-union combination of per-seed McNemar tests.

    The pair differs significantly only if it does so on every seed, in the same direction:
    combined p = max of the per-seed p-values, or 1 when the seeds disagree on which
    method is better (or a seed has no difference at all).
    """
    if not per_seed:
        raise MetricError("no seeds to combine; pass at least one per-seed McNemar result")
    directions = {r.favours for r in per_seed.values()}
    if len(directions) == 1 and "none" not in directions:
        return SeedCombinedMcNemar(dict(per_seed), max(r.p_value for r in per_seed.values()), directions.pop())
    return SeedCombinedMcNemar(dict(per_seed), 1.0, "mixed" if len(directions) > 1 else "none")


# ----------------------------------------------------------------------------- Wilcoxon


#: Paired seeds needed before the Wilcoxon signed-rank test is run at all.
WILCOXON_MIN_N = 5


@dataclass(frozen=True)
class WilcoxonResult:
    """Paired Wilcoxon signed-rank test (two-sided; zero differences dropped).

    ``statistic`` = min(W+, W-) as scipy reports it; ``n`` = pairs left after dropping
    zero differences; ``method``: ``"exact"`` (the exact permutation distribution of the
    signs given the observed ranks, mid-ranks for ties) or ``"normal"`` (normal
    approximation with tie correction, no continuity correction).
    """

    n: int
    w_plus: float
    statistic: float
    p_value: float
    method: str

    @property
    def favours(self) -> str:
        """``"a"`` (x above y), ``"b"`` or ``"none"``: which side of its null mean n(n+1)/4 W+ lies on."""
        mean = self.n * (self.n + 1) / 4.0
        return "a" if self.w_plus > mean else "b" if self.w_plus < mean else "none"


#: ``method="auto"`` uses the exact distribution up to this many non-zero differences.
WILCOXON_EXACT_MAX_N = 50

#: With tied |differences| the exact p enumerates all 2**n sign patterns
#: (``scipy.stats.PermutationMethod``); beyond this n ``"auto"`` falls back to the normal form.
WILCOXON_TIES_EXACT_MAX_N = 16


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float], method: str = "auto") -> WilcoxonResult:
    """Two-sided paired Wilcoxon signed-rank test of ``x - y`` (e.g. test OA per seed), by scipy.

    Zero differences are dropped (Wilcoxon's convention, scipy's default). ``method``:
    ``"exact"`` (the permutation distribution of the signs: scipy's exact form without
    ties, a full enumeration of the 2**n sign patterns with ties, up to
    ``WILCOXON_TIES_EXACT_MAX_N`` pairs), ``"normal"`` or ``"auto"`` (exact up to 50 pairs,
    or up to 16 when |differences| tie). All differences zero gives p = 1.
    """
    from scipy.stats import PermutationMethod, rankdata, wilcoxon

    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise MetricError(f"paired samples have shapes {xa.shape} and {ya.shape}; expected two 1-D vectors of one length")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise MetricError("paired samples contain NaN or infinite values; drop the unfinished seeds first")
    if method not in ("auto", "exact", "normal"):
        raise MetricError(f"Wilcoxon method {method!r} is unknown; expected 'auto', 'exact' or 'normal'")
    d = xa - ya
    d = d[d != 0]
    n = int(d.size)
    ties = np.unique(np.abs(d)).size < n
    if method == "auto":
        exact_max = WILCOXON_TIES_EXACT_MAX_N if ties else WILCOXON_EXACT_MAX_N
        method = "exact" if n <= exact_max else "normal"
    if n == 0:
        return WilcoxonResult(0, 0.0, 0.0, 1.0, method)
    if method == "exact" and ties and n > WILCOXON_TIES_EXACT_MAX_N:
        raise MetricError(
            f"exact Wilcoxon test with tied differences on {n} pairs would enumerate 2**{n} sign patterns; "
            f"expected at most {WILCOXON_TIES_EXACT_MAX_N} pairs: use method='normal' or 'auto'"
        )
    ranks = rankdata(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    if method == "normal":
        res = wilcoxon(d, method="asymptotic", correction=False)
    elif ties:
        # scipy's "exact" table assumes distinct ranks; with mid-ranks the exact null is the
        # permutation distribution, enumerated in full because 2**n <= n_resamples.
        res = wilcoxon(d, method=PermutationMethod(n_resamples=2**n))
    else:
        res = wilcoxon(d, method="exact")
    return WilcoxonResult(n, w_plus, float(res.statistic), float(min(1.0, res.pvalue)), method)


# ----------------------------------------------------------------------------- Holm


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as the input).

    Sorted ascending, the i-th smallest (0-based) is multiplied by ``m - i``, a running
    maximum keeps the adjusted values monotone, and each is capped at 1. Rejecting where
    the adjusted p < alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise MetricError(f"p-values have shape {p.shape}; expected a 1-D sequence")
    if p.size and (np.isnan(p).any() or (p < 0).any() or (p > 1).any()):
        raise MetricError(f"p-values {p.tolist()} must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m, dtype=np.float64)
    out[order] = np.minimum(adjusted_sorted, 1.0)
    return out


# ----------------------------------------------------------------------------- against a reference


@dataclass(frozen=True)
class Comparison:
    """One method (B) against a board's reference method (A, rank 1): the tests that could be run.

    ``mcnemar``: per-seed McNemar tests combined over the common seeds (None when predictions
    are missing or not paired); ``wilcoxon``: the signed-rank test of A's minus B's test OA
    over the common seeds (None below :data:`WILCOXON_MIN_N` seeds).
    """

    mcnemar: SeedCombinedMcNemar | None = None
    wilcoxon: WilcoxonResult | None = None


@dataclass(frozen=True)
class Verdict:
    """What a board shows for one :class:`Comparison` after Holm correction.

    ``mark``: ``"≈"`` (adjusted p ≥ alpha), ``"<"`` (B significantly less accurate than A),
    ``">"`` (B significantly more accurate on the seeds both have) or ``"untested"``;
    ``test``: ``"McNemar"``, ``"Wilcoxon"`` or ``""``; ``p_holm``: the adjusted p of that test.
    """

    mark: str
    test: str
    p_holm: float
    p_mcnemar_holm: float
    p_wilcoxon_holm: float


def judge_against_reference(comparisons: Sequence[Comparison], alpha: float) -> list[Verdict]:
    """Verdicts for the comparisons of one board, in order.

    McNemar and Wilcoxon are two families: each is Holm-corrected over the comparisons it
    applies to. A comparison is judged by McNemar where it applies (the same test pixels),
    else by Wilcoxon, else it is ``untested``.
    """
    if not 0.0 < alpha < 1.0:
        raise MetricError(f"alpha = {alpha!r}; expected a significance level in (0, 1), e.g. 0.05")
    nan = float("nan")
    adjusted: dict[str, list[float]] = {}
    for name, results in (
        ("McNemar", [c.mcnemar for c in comparisons]),
        ("Wilcoxon", [c.wilcoxon for c in comparisons]),
    ):
        tested = [i for i, r in enumerate(results) if r is not None]
        column = [nan] * len(comparisons)
        for i, p in zip(tested, holm([results[i].p_value for i in tested])):  # type: ignore[union-attr]
            column[i] = float(p)
        adjusted[name] = column
    verdicts = []
    for i, c in enumerate(comparisons):
        p_m, p_w = adjusted["McNemar"][i], adjusted["Wilcoxon"][i]
        used = c.mcnemar if c.mcnemar is not None else c.wilcoxon
        if used is None:
            verdicts.append(Verdict("untested", "", nan, p_m, p_w))
            continue
        test, p = ("McNemar", p_m) if c.mcnemar is not None else ("Wilcoxon", p_w)
        # ">" only when the seeds both have favour B: a tie or mixed seeds keep "<" for the reference.
        mark = "≈" if p >= alpha else "<" if used.favours != "b" else ">"
        verdicts.append(Verdict(mark, test, p, p_m, p_w))
    return verdicts
