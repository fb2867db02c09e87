"""Checks on what a model returns: logits of the right shape, finite values, labels that are classes.

Each failure raises an error naming the method, what it returned, what was expected and
the usual fix, instead of letting a wrong output be scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench_core.errors import NonFiniteOutputError
from bench_core.metrics import compute_scores
from bench_core.sampling import ModelOutputError
from bench_core.specs import MethodSpec
from bench_core.training.data import TrainData


def logits_of(output: Any, method: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    raise ModelOutputError(
        f"method {method!r}: forward returned {type(output).__name__}; expected a logits tensor "
        f"or a mapping with a 'logits' tensor"
    )


class evaluating:
    """Eval mode inside the block; the module's previous mode afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.was_training = model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def model_epoch_metrics(model: nn.Module, method: str) -> dict[str, float]:
    """What the model reports about the epoch through ``epoch_metrics()`` (e.g. a learned temperature)."""
    report = getattr(model, "epoch_metrics", None)
    if not callable(report):
        return {}
    values = report()
    reserved = {"epoch", "train_loss", "lr", "val_oa"}
    if not isinstance(values, Mapping) or any(not isinstance(k, str) or k in reserved for k in values):
        raise ModelOutputError(
            f"method {method!r}: epoch_metrics() returned {values!r}; expected a dict of str -> float whose "
            f"names are not {sorted(reserved)}"
        )
    return {k: float(v) for k, v in values.items()}


def check_finite_logits(logits: torch.Tensor, method: str, where: str, pixel_dim: int) -> None:
    """Raise :class:`NonFiniteOutputError` if ``logits`` hold NaN or inf (``pixel_dim``: the class axis)."""
    bad = ~torch.isfinite(logits)
    if not bool(bad.any()):
        return
    values = int(bad.sum())
    pixels = int(bad.any(dim=pixel_dim).sum())
    total = int(logits.numel() // max(int(logits.shape[pixel_dim]), 1))
    raise NonFiniteOutputError(
        f"method {method!r}: {values} non-finite logit value(s) (NaN or inf) at {where}, in {pixels} of "
        f"{total} pixel(s); they would be scored as class 0, so the cell stops. The model diverged or its "
        f"forward pass overflows (e.g. log/sqrt of a non-positive value, a division by zero, exp of a large "
        f"value): lower train.lr, set train.grad_clip, or guard the forward pass (clamp, add an epsilon)"
    )


def checked_labels(labels: np.ndarray, method: str, where: str, num_classes: int | None) -> np.ndarray:
    """A pixel estimator's predicted labels as int64, after checking they are classes."""
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels)
        if bad.any():
            raise NonFiniteOutputError(
                f"method {method!r}: predict() returned {int(bad.sum())} non-finite label(s) (NaN or inf) of "
                f"{labels.size} at {where}; expected 0-based class labels. Fix the estimator (its inputs or "
                f"its fit) so that predict() returns classes"
            )
        if not np.array_equal(labels, np.round(labels)):
            wrong = labels[labels != np.round(labels)]
            raise ModelOutputError(
                f"method {method!r}: predict() returned {wrong.size} non-integer label(s) (e.g. {wrong[0].item()!r}) at "
                f"{where}; expected 0-based class labels (return classes, not probabilities)"
            )
    elif labels.dtype.kind not in "iub":
        raise ModelOutputError(
            f"method {method!r}: predict() returned labels of dtype {labels.dtype} at {where}; expected "
            f"0-based integer class labels"
        )
    out = labels.astype(np.int64)
    if num_classes is not None and out.size and (out.min() < 0 or out.max() >= num_classes):
        outside = int(((out < 0) | (out >= num_classes)).sum())
        raise ModelOutputError(
            f"method {method!r}: predict() returned {outside} label(s) outside 0..{num_classes - 1} at {where} "
            f"(range {int(out.min())}..{int(out.max())}); expected 0-based class labels (label - 1), as the "
            f"targets it was fitted on"
        )
    return out


def validation_scores(logits: torch.Tensor, data: TrainData) -> tuple[float, float]:
    """Validation OA in [0, 1] (the metric code of the test scores) and mean cross-entropy."""
    predicted = logits.argmax(dim=1).numpy().astype(np.int64)
    loss = F.cross_entropy(logits.float(), torch.from_numpy(data.val_targets))
    return accuracy(predicted, data), float(loss)


def accuracy(predicted: np.ndarray, data: TrainData) -> float:
    """Validation OA in [0, 1], through the same metric code as the test scores."""
    return float(compute_scores(data.val_targets, predicted, data.num_classes).oa)


def check_logits_shape(
    logits: torch.Tensor, targets: torch.Tensor, spec: MethodSpec, num_classes: int | None = None
) -> None:
    """ModelOutputError naming the method, the shape got and the one expected (K = ``num_classes``)."""
    n = targets.shape[0]
    k = "num_classes" if num_classes is None else str(num_classes)
    if spec.input_kind == "patch":
        ok = logits.ndim == 2 and logits.shape[0] == n
        expected = f"({n}, {k})"
    else:
        ok = logits.ndim == 4 and logits.shape[0] == n and logits.shape[2:] == targets.shape[1:]
        expected = f"({n}, {k}, {targets.shape[1]}, {targets.shape[2]})"
    wide = num_classes is None or (logits.ndim >= 2 and logits.shape[1] == num_classes)
    if not (ok and wide):
        # Right layout but another width: say so, K is the usual mistake (a hard-coded class count).
        what = f" ({logits.shape[1]} class scores, the dataset has K = {num_classes} classes)" if ok else ""
        raise ModelOutputError(
            f"method {spec.name!r} (input_kind {spec.input_kind!r}): forward returned logits "
            f"{tuple(logits.shape)}{what}; expected {expected}: the output layer needs info.num_classes channels"
        )


__all__ = [
    "accuracy",
    "check_finite_logits",
    "check_logits_shape",
    "checked_labels",
    "evaluating",
    "logits_of",
    "model_epoch_metrics",
    "validation_scores",
]
