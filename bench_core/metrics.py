"""The metric protocol: one confusion matrix over the test pixels, and the scores from it.

Conventions (the project's answer to known bugs in the field; each is tested against
scikit-learn to 1e-12):

* Labels are 0-based class indices ``0..K-1`` (scene label ``k`` is class ``k - 1``;
  unlabelled pixels are dropped before scoring). The confusion matrix is always
  ``K x K`` from ``num_classes``, never from the labels that happen to occur; rows are
  the true class, columns the predicted class.
* **OA** (overall accuracy) = trace / total = ``sklearn.metrics.accuracy_score``.
* **AA** (average accuracy) = mean recall over the classes *present in y_true* =
  ``sklearn.metrics.balanced_accuracy_score``. A class absent from the test labels has
  no recall (0/0) and is left out, not counted as 0 (the bug of the widely copied
  ``aa_and_each_accuracy`` helper).
* **kappa** = Cohen's kappa = ``sklearn.metrics.cohen_kappa_score``:
  ``(n * trace - sum_k true_k * pred_k) / (n**2 - sum_k true_k * pred_k)``. When chance
  agreement is 1 (one class in both labels and predictions, so every pixel is right)
  kappa is undefined and is NaN, exactly as scikit-learn returns.
* **macro F1** = mean F1 over the classes present in y_true = ``sklearn.metrics.f1_score(
  y_true, y_pred, labels=<classes present in y_true>, average="macro", zero_division=0)``.
  Per class ``F1 = 2 TP / (support + predicted)``, which is 0 for a present class never
  predicted. (scikit-learn's default label set is the union of true and predicted
  labels, which would average in a predicted-only class; we do not.)
* A class that is only predicted lowers OA and the precision (hence F1) of the classes
  it steals pixels from, but is not itself averaged into AA or macro F1.
* Per-class accuracy and F1 are NaN for classes absent from y_true.
* Scores are fractions in [0, 1] (kappa in [-1, 1]); :meth:`Scores.as_metrics` reports
  percent, as the papers do.

Empty input raises :class:`MetricError`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench_core.errors import MetricError

__all__ = [
    "MetricError",
    "Scores",
    "compute_scores",
    "confusion_matrix",
    "metric_key",
    "scores_from_confusion",
]

_PREFIX_OK = re.compile(r"[A-Za-z0-9_\-./ ]*")


def _check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise MetricError(
            f"num_classes={num_classes!r}; expected a positive integer K (the number of "
            f"classes of the scene, len(scene.class_names))"
        )
    return int(num_classes)


def _as_labels(values: object, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size and array.dtype.kind not in "iub":
        raise MetricError(
            f"{name} has dtype {array.dtype}; expected integer class indices 0..K-1 "
            f"(convert with .astype(np.int64), or take argmax of the logits)"
        )
    return array


def _check_range(array: np.ndarray, name: str, num_classes: int) -> None:
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        where = np.flatnonzero(bad.reshape(-1))
        first = int(where[0])
        raise MetricError(
            f"{name} has {where.size} value(s) outside 0..{num_classes - 1} (e.g. "
            f"{array.reshape(-1)[first]} at index {first}); expected 0-based class indices for "
            f"num_classes={num_classes}: map scene labels 1..K to label - 1 and drop "
            f"unlabelled (0) pixels first"
        )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts, rows = true class, columns = predicted class, K = ``num_classes``.

    ``y_true`` and ``y_pred`` are integer arrays of 0-based class indices of the same
    shape (any shape; pixels are matched by position).
    """
    k = _check_num_classes(num_classes)
    true = _as_labels(y_true, "y_true")
    pred = _as_labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise MetricError(
            f"y_true has shape {true.shape} ({true.size} labels) but y_pred has shape "
            f"{pred.shape} ({pred.size} predictions); expected one prediction per test pixel, "
            f"in the same order"
        )
    if true.size == 0:
        raise MetricError(
            "y_true and y_pred are empty; expected at least one scored pixel (is the test "
            "split empty, or were all pixels masked as unlabelled?)"
        )
    _check_range(true, "y_true", k)
    _check_range(pred, "y_pred", k)
    flat = true.reshape(-1).astype(np.int64) * k + pred.reshape(-1).astype(np.int64)
    return np.bincount(flat, minlength=k * k).reshape(k, k)


def metric_key(name: str) -> str:
    """An MLflow-safe key part for a class name: lowercase ``[a-z0-9_]`` ("Low plants" -> "low_plants")."""
    if not isinstance(name, str):
        raise MetricError(f"class name {name!r} is a {type(name).__name__}; expected a string")
    # Accents become their base letter ("Forêt" -> "foret") instead of vanishing.
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    key = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    if not key:
        raise MetricError(
            f"class name {name!r} has no letters or digits, so it gives an empty metric key; "
            f"rename the class in the dataset spec (e.g. 'class_3')"
        )
    return key


@dataclass(frozen=True, eq=False)
class Scores:
    """Scores of one confusion matrix; fractions (see the module docstring for definitions).

    Attributes:
        confusion: (K, K) int64 counts, rows = true, columns = predicted.
        oa: overall accuracy.
        aa: mean recall over the classes present in y_true.
        kappa: Cohen's kappa (NaN when chance agreement is 1).
        f1_macro: mean F1 over the classes present in y_true.
        per_class_accuracy: (K,) recall per class, NaN for classes absent from y_true.
        per_class_f1: (K,) F1 per class, NaN for classes absent from y_true.
        support: (K,) number of true pixels per class.
    """

    confusion: np.ndarray
    oa: float
    aa: float
    kappa: float
    f1_macro: float
    per_class_accuracy: np.ndarray
    per_class_f1: np.ndarray
    support: np.ndarray

    @property
    def num_classes(self) -> int:
        """K, the number of classes of the confusion matrix."""
        return int(self.confusion.shape[0])

    @property
    def present(self) -> np.ndarray:
        """(K,) bool: which classes occur in y_true (the ones AA and macro F1 average over)."""
        return self.support > 0

    def as_metrics(self, class_names: Sequence[str], prefix: str = "test_") -> dict[str, float]:
        """Percent metrics for a tracker: oa, aa, kappa, f1_macro and acc_<class> per present class.

        Keys are ``prefix + name``; class keys come from :func:`metric_key`. Classes absent
        from y_true get no ``acc_`` key (their recall is undefined).
        """
        names = list(class_names)
        if len(names) != self.num_classes:
            raise MetricError(
                f"{len(names)} class names {names!r} for a {self.num_classes}x{self.num_classes} "
                f"confusion matrix; expected one name per class (scene.class_names)"
            )
        if not isinstance(prefix, str) or not _PREFIX_OK.fullmatch(prefix):
            raise MetricError(
                f"metric prefix {prefix!r}; expected letters, digits, '_', '-', '.', '/' or space "
                f"(MLflow key characters), e.g. 'test_' or 'val_'"
            )
        metrics = {
            f"{prefix}oa": 100.0 * self.oa,
            f"{prefix}aa": 100.0 * self.aa,
            f"{prefix}kappa": 100.0 * self.kappa,
            f"{prefix}f1_macro": 100.0 * self.f1_macro,
        }
        owner: dict[str, str] = {}
        for index, name in enumerate(names):
            key = metric_key(name)
            if key in owner:
                raise MetricError(
                    f"class names {owner[key]!r} and {name!r} both give the metric key {key!r}; "
                    f"expected distinct keys: rename one of the classes"
                )
            owner[key] = name
            if self.support[index] > 0:
                metrics[f"{prefix}acc_{key}"] = 100.0 * float(self.per_class_accuracy[index])
        return metrics


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def scores_from_confusion(cm: np.ndarray) -> Scores:
    """Scores of a (K, K) confusion matrix of counts (rows = true, columns = predicted)."""
    matrix = np.asarray(cm)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise MetricError(
            f"confusion matrix has shape {matrix.shape}; expected a non-empty square (K, K) "
            f"array (rows = true class, columns = predicted class)"
        )
    if matrix.dtype.kind not in "iuf" or (matrix.dtype.kind == "f" and not np.all(np.isfinite(matrix))):
        raise MetricError(
            f"confusion matrix has dtype {matrix.dtype} or non-finite entries; expected counts "
            f"(non-negative integers)"
        )
    if np.any(matrix < 0) or np.any(matrix != np.round(matrix)):
        raise MetricError(
            f"confusion matrix has negative or fractional entries (min {matrix.min()}); "
            f"expected counts (non-negative integers), as confusion_matrix() returns"
        )
    counts = matrix.astype(np.int64)
    total = int(counts.sum())
    if total == 0:
        raise MetricError(
            f"confusion matrix ({counts.shape[0]}x{counts.shape[0]}) is all zeros; expected at "
            f"least one scored pixel (is the test split empty?)"
        )
    tp = np.diag(counts).astype(np.float64)
    support = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    present = support > 0

    per_class_accuracy = np.full(counts.shape[0], np.nan)
    per_class_accuracy[present] = tp[present] / support[present]
    per_class_f1 = np.full(counts.shape[0], np.nan)
    # 2TP / (2TP + FP + FN) = 2TP / (support + predicted); > 0 for every present class.
    per_class_f1[present] = 2.0 * tp[present] / (support[present] + predicted[present])

    # Kappa from exact integer sums (Python ints cannot overflow), divided once.
    trace = int(np.trace(counts))
    chance = sum(int(t) * int(p) for t, p in zip(support.tolist(), predicted.tolist()))
    denominator = total * total - chance
    kappa = (total * trace - chance) / denominator if denominator else float("nan")

    counts.setflags(write=False)
    return Scores(
        confusion=counts,
        oa=trace / total,
        aa=float(per_class_accuracy[present].mean()),
        kappa=float(kappa),
        f1_macro=float(per_class_f1[present].mean()),
        per_class_accuracy=_frozen(per_class_accuracy),
        per_class_f1=_frozen(per_class_f1),
        support=_frozen(support),
    )


def compute_scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> Scores:
    """Scores of predictions against true labels (0-based class indices, K = ``num_classes``)."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, num_classes))
