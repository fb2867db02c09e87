"""Plots of the HTML leaderboard, drawn with matplotlib's object API on the Agg canvas (no pyplot
state, no display needed) and returned as PNG bytes."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bench_core.leaderboard.boards import Board, pareto_front
from bench_core.leaderboard.formatting import method_label
from bench_core.leaderboard.frame import PER_CLASS_PREFIX

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an inline ``<img>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_accuracy_vs_cost(
    labels: Sequence[str],
    cost: Sequence[float],
    oa_mean: Sequence[float],
    oa_std: Sequence[float],
    xlabel: str,
    title: str,
    pareto: bool = True,
) -> bytes:
    """Scatter of test OA against a cost (error bars = std over seeds), Pareto front marked."""
    c = np.asarray(cost, dtype=float)
    a = np.asarray(oa_mean, dtype=float)
    s = np.nan_to_num(np.asarray(oa_std, dtype=float), nan=0.0)
    ok = np.isfinite(c) & np.isfinite(a) & (c > 0)
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    if ok.any():
        ax.errorbar(c[ok], a[ok], yerr=s[ok], fmt="o", color="#2f6db5", ecolor="#9bb7dc", capsize=3,
                    label="method (mean ± std over seeds)")
        for i in np.flatnonzero(ok):
            ax.annotate(labels[i], (c[i], a[i]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if pareto:
            front = pareto_front(np.where(ok, c, np.nan), np.where(ok, a, np.nan))
            order = np.flatnonzero(front)[np.argsort(c[front])]
            ax.step(c[order], a[order], where="post", color="#d9822b", lw=1.5, zorder=1)
            ax.scatter(c[order], a[order], s=140, facecolors="none", edgecolors="#d9822b", lw=2,
                       label="Pareto front (nothing cheaper is more accurate)", zorder=3)
        if c[ok].max() / c[ok].min() > 20:
            ax.set_xscale("log")
        ax.margins(x=0.2, y=0.12)  # room for the method labels beside the points
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no finite values to plot", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test OA (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_per_class(board: Board) -> bytes:
    """Grouped bars: per-class test accuracy (mean over seeds, std as error bars) for each method."""
    rows = board.rows
    k = len(board.class_keys)
    m = max(len(rows), 1)
    fig = _figure(min(16.0, max(6.4, 0.5 * k * (1 + 0.3 * m) + 2)), 4.6)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / m
    x = np.arange(k)
    for j, (_, r) in enumerate(rows.iterrows()):
        means = [float(r.get(f"{PER_CLASS_PREFIX}{key}_mean", math.nan)) for key in board.class_keys]
        stds = np.nan_to_num([float(r.get(f"{PER_CLASS_PREFIX}{key}_std", math.nan)) for key in board.class_keys])
        ax.bar(x - 0.4 + width * (j + 0.5), np.nan_to_num(means), width, yerr=stds, capsize=2,
               label=method_label(r), error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, labels=board.class_names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"Per-class accuracy, {board.key.title}", fontsize=10)
    ax.legend(fontsize=8, ncol=min(m, 4), loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)
