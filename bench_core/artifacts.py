"""Files written for every cell: confusion matrix, per-class table, classification map, predictions.

Figures use matplotlib's object API with the Agg canvas (no pyplot global state, no display).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Fallback palette (tab20-like) for datasets that ship none.
_DEFAULT_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]


def palette_for(num_classes: int, palette: Sequence[Sequence[int]] | None) -> np.ndarray:
    """(K, 3) uint8 colours: the dataset's palette or a fixed default."""
    if palette is not None:
        return np.asarray(palette, dtype=np.uint8).reshape(num_classes, 3)
    return np.asarray([_DEFAULT_PALETTE[i % len(_DEFAULT_PALETTE)] for i in range(num_classes)], np.uint8)


def write_confusion_csv(path: Path, confusion: np.ndarray, class_names: Sequence[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, confusion):
            writer.writerow([name, *[int(v) for v in row]])


def write_per_class_csv(
    path: Path,
    class_names: Sequence[str],
    accuracy: np.ndarray,
    f1: np.ndarray,
    support: np.ndarray,
    train_counts: np.ndarray | None = None,
) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        header = ["class", "label", "test_pixels", "accuracy_pct", "f1_pct"]
        if train_counts is not None:
            header.insert(2, "train_pixels")
        writer.writerow(header)
        for k, name in enumerate(class_names):
            row: list[Any] = [
                name,
                k + 1,
                int(support[k]),
                _pct(accuracy[k]),
                _pct(f1[k]),
            ]
            if train_counts is not None:
                row.insert(2, int(train_counts[k]))
            writer.writerow(row)


def _pct(value: float) -> str:
    return "" if not np.isfinite(value) else f"{100.0 * float(value):.4f}"


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _figure(width: float, height: float):  # type: ignore[no-untyped-def]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion(path: Path, confusion: np.ndarray, class_names: Sequence[str], title: str) -> None:
    k = len(class_names)
    size = max(4.0, 0.55 * k + 2.0)
    fig = _figure(size, size)
    ax = fig.add_subplot(1, 1, 1)
    rows = confusion.sum(axis=1, keepdims=True)
    norm = np.divide(confusion, rows, out=np.zeros(confusion.shape, float), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k), labels=class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels=class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=6, color=colour)
    fig.tight_layout()
    fig.savefig(path)


def plot_classification_map(
    path: Path,
    prediction: np.ndarray,
    labels: np.ndarray | None,
    class_names: Sequence[str],
    palette: np.ndarray,
    title: str,
) -> None:
    """Whole-scene map of predicted classes (0-based) beside the ground truth (0 = unlabelled)."""
    from matplotlib.patches import Patch

    height, width = prediction.shape
    panels = 2 if labels is not None else 1
    aspect = width / max(height, 1)
    fig_w = min(16.0, 3.0 + panels * 4.0 * max(aspect, 0.4))
    fig = _figure(fig_w, 4.8)
    rgb = palette[np.clip(prediction, 0, len(class_names) - 1)]
    ax = fig.add_subplot(1, panels, 1)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    if labels is not None:
        gt = np.zeros((height, width, 3), np.uint8)
        mask = labels > 0
        gt[mask] = palette[labels[mask] - 1]
        ax2 = fig.add_subplot(1, panels, 2)
        ax2.imshow(gt, interpolation="nearest")
        ax2.set_title("ground truth (all labelled pixels)", fontsize=9)
        ax2.set_axis_off()
    handles = [Patch(color=palette[k] / 255.0, label=name) for k, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(class_names), 6), fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.18, top=0.9, left=0.02, right=0.98, wspace=0.05)
    fig.savefig(path)


def save_predictions(path: Path, test_index: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> None:
    """Per-pixel test predictions (0-based), for paired significance tests between methods."""
    np.savez_compressed(
        path,
        test_index=np.asarray(test_index, np.int64),
        predicted=np.asarray(predicted, np.int16),
        truth=np.asarray(truth, np.int16),
    )
