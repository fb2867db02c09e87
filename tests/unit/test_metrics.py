"""The metric protocol agrees with scikit-learn and follows the documented conventions."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from bench_core.errors import BenchError
from bench_core.metrics import (
    MetricError,
    Scores,
    compute_scores,
    confusion_matrix,
    metric_key,
    scores_from_confusion,
)

TOL = 1e-12


def _sklearn_reference(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, object]:
    """The scores as scikit-learn computes them, with the label sets our convention names."""
    present = np.unique(y_true)
    with warnings.catch_warnings():
        # sklearn warns about predicted-only classes and undefined kappa; both are cases we test.
        warnings.simplefilter("ignore")
        return {
            "confusion": skm.confusion_matrix(y_true, y_pred, labels=np.arange(k)),
            "oa": skm.accuracy_score(y_true, y_pred),
            "aa": skm.balanced_accuracy_score(y_true, y_pred),
            "kappa": skm.cohen_kappa_score(y_true, y_pred),
            "f1_macro": skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
            "recall": skm.recall_score(y_true, y_pred, labels=present, average=None, zero_division=0),
            "f1": skm.f1_score(y_true, y_pred, labels=present, average=None, zero_division=0),
            "present": present,
        }


def _assert_matches_sklearn(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> Scores:
    ours = compute_scores(y_true, y_pred, k)
    ref = _sklearn_reference(y_true, y_pred, k)
    np.testing.assert_array_equal(ours.confusion, ref["confusion"])
    assert ours.oa == pytest.approx(ref["oa"], abs=TOL)
    assert ours.aa == pytest.approx(ref["aa"], abs=TOL)
    assert ours.f1_macro == pytest.approx(ref["f1_macro"], abs=TOL)
    if np.isnan(ref["kappa"]):
        assert np.isnan(ours.kappa)
    else:
        assert ours.kappa == pytest.approx(ref["kappa"], abs=TOL)
    present = ref["present"]
    np.testing.assert_allclose(ours.per_class_accuracy[present], ref["recall"], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.per_class_f1[present], ref["f1"], rtol=0, atol=TOL)
    absent = np.setdiff1d(np.arange(k), present)
    assert np.isnan(ours.per_class_accuracy[absent]).all()
    assert np.isnan(ours.per_class_f1[absent]).all()
    np.testing.assert_array_equal(ours.support, np.bincount(y_true, minlength=k))
    return ours


# --------------------------------------------------------------------------- vs scikit-learn


@pytest.mark.slow
def test_random_cases_match_sklearn_including_absent_and_predicted_only_classes() -> None:
    rng = np.random.default_rng(20240611)
    saw_absent = saw_predicted_only = 0
    for _ in range(100):  # each sklearn reference costs about 0.1 s
        k = int(rng.integers(2, 12))
        n = int(rng.integers(1, 400))
        # Draw true labels from a random subset of classes so some are absent from the test set.
        true_pool = rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)
        y_true = rng.choice(true_pool, size=n)
        accuracy = rng.uniform(0.0, 1.0)
        noise = rng.integers(0, k, size=n)  # may hit classes absent from y_true
        y_pred = np.where(rng.uniform(size=n) < accuracy, y_true, noise)
        absent = set(range(k)) - set(y_true.tolist())
        saw_absent += bool(absent)
        saw_predicted_only += bool(absent & set(y_pred.tolist()))
        _assert_matches_sklearn(y_true, y_pred, k)
    # The seeded draw must really exercise both conventions.
    assert saw_absent > 30 and saw_predicted_only > 30


@pytest.mark.slow
@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=60),
        )
    )
)
def test_any_labelling_matches_sklearn(case: tuple[int, list[tuple[int, int]]]) -> None:
    k, pairs = case
    y_true = np.array([t for t, _ in pairs], dtype=np.int64)
    y_pred = np.array([p for _, p in pairs], dtype=np.int64)
    _assert_matches_sklearn(y_true, y_pred, k)


def test_single_class_all_correct_kappa_is_nan_like_sklearn() -> None:
    y = np.full(10, 2)
    scores = _assert_matches_sklearn(y, y, 4)
    assert np.isnan(scores.kappa)  # chance agreement is 1: kappa undefined
    assert scores.oa == 1.0 and scores.aa == 1.0 and scores.f1_macro == 1.0
    assert np.isnan(scores.as_metrics(["a", "b", "c", "d"])["test_kappa"])


# --------------------------------------------------------------------------- by hand


def test_hand_computed_case() -> None:
    # cm = [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    scores = compute_scores(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 3)
    np.testing.assert_array_equal(scores.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert scores.oa == pytest.approx(3 / 5)
    np.testing.assert_allclose(scores.per_class_accuracy, [1 / 2, 1.0, 0.0])
    assert scores.aa == pytest.approx(1 / 2)
    # F1 = 2TP / (support + predicted): 2/4, 4/5, 0/1
    np.testing.assert_allclose(scores.per_class_f1, [0.5, 0.8, 0.0])
    assert scores.f1_macro == pytest.approx(1.3 / 3)
    # n=5, trace=3, sum(true_k * pred_k) = 2*2 + 2*3 + 1*0 = 10 -> (15-10)/(25-10)
    assert scores.kappa == pytest.approx(1 / 3)
    np.testing.assert_array_equal(scores.support, [2, 2, 1])


def test_class_absent_from_test_set_is_not_averaged_as_zero() -> None:
    scores = compute_scores(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]), 3)
    assert scores.aa == pytest.approx((1.0 + 0.5) / 2)  # not (1 + 0.5 + 0) / 3
    assert scores.f1_macro == pytest.approx((2 * 2 / 5 + 2 * 1 / 3) / 2)
    assert np.isnan(scores.per_class_accuracy[2]) and np.isnan(scores.per_class_f1[2])
    assert scores.confusion.shape == (3, 3)


def test_predicted_only_class_lowers_oa_but_is_not_averaged() -> None:
    scores = compute_scores(np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1]), 3)
    assert scores.oa == pytest.approx(3 / 4)
    assert scores.aa == pytest.approx((0.5 + 1.0) / 2)
    # class 0: 2*1/(2+1); class 1: 2*2/(2+2); class 2 (only predicted) is not averaged in
    assert scores.f1_macro == pytest.approx((2 / 3 + 1.0) / 2)
    assert scores.confusion[0, 2] == 1


def test_confusion_matrix_is_always_k_by_k() -> None:
    cm = confusion_matrix(np.array([1, 1, 0]), np.array([1, 0, 0]), 6)
    assert cm.shape == (6, 6) and cm.dtype == np.int64
    expected = np.zeros((6, 6), dtype=np.int64)
    expected[1, 1] = expected[1, 0] = expected[0, 0] = 1
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_accepts_maps_and_unsigned_labels() -> None:
    truth = np.array([[0, 1], [2, 2]], dtype=np.uint8)
    pred = np.array([[0, 2], [2, 1]], dtype=np.int32)
    cm = confusion_matrix(truth, pred, 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])


def test_scores_from_confusion_equals_compute_scores() -> None:
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    direct = compute_scores(y_true, y_pred, 5)
    via_cm = scores_from_confusion(confusion_matrix(y_true, y_pred, 5).astype(np.float64))
    assert (direct.oa, direct.aa, direct.kappa, direct.f1_macro) == (
        via_cm.oa, via_cm.aa, via_cm.kappa, via_cm.f1_macro,
    )
    assert via_cm.confusion.dtype == np.int64


def test_scores_are_immutable() -> None:
    scores = compute_scores(np.array([0, 1]), np.array([0, 0]), 2)
    for array in (scores.confusion, scores.per_class_accuracy, scores.per_class_f1, scores.support):
        with pytest.raises(ValueError):
            array[0] = 7
    with pytest.raises(AttributeError):
        scores.oa = 1.0  # type: ignore[misc]


def test_scores_do_not_alias_the_callers_matrix() -> None:
    cm = np.array([[3, 1], [0, 2]])
    scores = scores_from_confusion(cm)
    cm[0, 0] = 100
    assert scores.confusion[0, 0] == 3 and cm.flags.writeable


# --------------------------------------------------------------------------- as_metrics / keys


def test_as_metrics_keys_and_percent_scaling() -> None:
    scores = compute_scores(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 4)
    names = ["Low plants", "Commercial-Area", "Water", "Snow"]  # "Snow" absent from y_true
    got = scores.as_metrics(names)
    assert set(got) == {
        "test_oa", "test_aa", "test_kappa", "test_f1_macro",
        "test_acc_low_plants", "test_acc_commercial_area", "test_acc_water",
    }
    assert got["test_oa"] == pytest.approx(100 * scores.oa)
    assert got["test_aa"] == pytest.approx(100 * scores.aa)
    assert got["test_kappa"] == pytest.approx(100 * scores.kappa)
    assert got["test_f1_macro"] == pytest.approx(100 * scores.f1_macro)
    assert got["test_acc_low_plants"] == pytest.approx(50.0)
    assert got["test_acc_commercial_area"] == pytest.approx(100.0)
    assert got["test_acc_water"] == pytest.approx(0.0)
    assert all(isinstance(v, float) for v in got.values())


def test_as_metrics_prefix() -> None:
    scores = compute_scores(np.array([0, 1]), np.array([0, 1]), 2)
    got = scores.as_metrics(("a", "b"), prefix="val_")
    assert set(got) == {"val_oa", "val_aa", "val_kappa", "val_f1_macro", "val_acc_a", "val_acc_b"}
    assert got["val_oa"] == 100.0


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Low plants", "low_plants"),
        ("Commercial-Area", "commercial_area"),
        ("  Water  ", "water"),
        ("Allotment (urban)", "allotment_urban"),
        ("Class 1/2", "class_1_2"),
        ("Forêt", "foret"),
        ("C3", "c3"),
    ],
)
def test_metric_key_examples(name: str, key: str) -> None:
    assert metric_key(name) == key


@pytest.mark.slow
@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda s: any(c.isascii() and c.isalnum() for c in s)))
def test_metric_key_is_lowercase_alnum_underscore(name: str) -> None:
    key = metric_key(name)
    assert key and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in key)
    assert not key.startswith("_") and not key.endswith("_") and "__" not in key


# --------------------------------------------------------------------------- errors


def test_errors_are_bench_value_errors() -> None:
    assert issubclass(MetricError, BenchError) and issubclass(MetricError, ValueError)


@pytest.mark.parametrize(
    ("y_true", "y_pred", "k", "needles"),
    [
        ([0, 1, 3], [0, 1, 1], 3, ["y_true", "3", "0..2", "label - 1"]),
        ([0, 1, 2], [0, -1, 1], 3, ["y_pred", "-1", "index 1"]),
        ([0, 1, 2], [0, 1], 3, ["3 labels", "2 predictions"]),
        ([], [], 3, ["empty"]),
        ([0.0, 1.0], [0, 1], 2, ["float64", "astype"]),
        ([0, 1], [0, 1], 0, ["num_classes=0", "positive integer"]),
        ([0, 1], [0, 1], True, ["num_classes=True"]),
    ],
)
def test_bad_inputs_raise_clear_errors(y_true: list, y_pred: list, k: int, needles: list[str]) -> None:
    with pytest.raises(MetricError) as info:
        compute_scores(np.asarray(y_true), np.asarray(y_pred), k)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    ("cm", "needle"),
    [
        (np.zeros((2, 3), dtype=int), "(2, 3)"),
        (np.zeros((0, 0), dtype=int), "(0, 0)"),
        (np.array([[1, -1], [0, 1]]), "negative"),
        (np.array([[1.5, 0], [0, 1]]), "fractional"),
        (np.array([[np.nan, 0], [0, 1]]), "non-finite"),
        (np.zeros((3, 3), dtype=int), "all zeros"),
    ],
)
def test_bad_confusion_matrix_raises(cm: np.ndarray, needle: str) -> None:
    with pytest.raises(MetricError) as info:
        scores_from_confusion(cm)
    assert needle in str(info.value)


def test_as_metrics_rejects_wrong_names() -> None:
    scores = compute_scores(np.array([0, 1]), np.array([0, 1]), 2)
    with pytest.raises(MetricError, match="1 class names"):
        scores.as_metrics(["only one"])
    with pytest.raises(MetricError, match="'Low plants' and 'low-plants'.*'low_plants'"):
        scores.as_metrics(["Low plants", "low-plants"])
    with pytest.raises(MetricError, match="prefix"):
        scores.as_metrics(["a", "b"], prefix="test:")


def test_metric_key_rejects_names_without_letters() -> None:
    with pytest.raises(MetricError, match="'\\?\\?'"):
        metric_key("??")


def test_metrics_module_does_not_import_torch() -> None:
    code = "import sys, bench_core.metrics; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
