"""The boards as rows of display strings (column name -> cell), shared by every renderer.

Every displayed number goes through :mod:`bench_core.leaderboard.formatting`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench_core.leaderboard.boards import Board
from bench_core.leaderboard.formatting import (
    MISSING,
    format_count,
    format_mean_std,
    format_number,
    format_p,
    format_sci,
    method_label,
)
from bench_core.leaderboard.frame import PER_CLASS_PREFIX


def display_rows(board: Board) -> list[dict[str, str]]:
    """The main table as strings, column name -> cell, in display order."""
    out = []
    for _, r in board.rows.iterrows():
        vs = r.get("vs_best", "")
        p = r.get("p_holm", math.nan)
        shown = format_p(p)
        sig = vs if vs in ("best", "untested", "") else f"{vs} (p{'' if shown.startswith('<') else '='}{shown}, {r['test']})"
        out.append(
            {
                "rank": str(r["rank"]),
                "method": method_label(r),
                "n": str(r["n"]),
                "OA (%)": format_mean_std(r["test_oa_mean"], r["test_oa_std"]),
                "AA (%)": format_mean_std(r["test_aa_mean"], r["test_aa_std"]),
                "kappa (%)": format_mean_std(r["test_kappa_mean"], r["test_kappa_std"]),
                "vs best": sig,
                "p Wilcoxon": format_p(r.get("p_wilcoxon_holm", math.nan)),
                "params": format_count(r.get("params_total")),
                "FLOPs/sample": format_sci(r.get("flops_per_sample")),
                "train (s)": format_number(r.get("time_train_s"), 1),
                "infer (s)": format_number(r.get("time_infer_s"), 2),
                "px/s": format_count(r.get("throughput_infer")),
                "leakage test / val (%)": f"{format_number(r.get('split_leakage'), 1)} / {format_number(r.get('split_val_leakage'), 1)}",
                "device": str(r.get("device", "")),
                "reported OA (paper, not ranked)": _reported_cell(r),
            }
        )
    return out


def _reported_cell(r: Mapping[str, Any]) -> str:
    oa = format_number(r.get("reported_oa"))
    if oa == MISSING:
        return oa
    protocol = str(r.get("reported_protocol", ""))
    flag = " (protocol differs)" if protocol.startswith("differs") else ""
    return oa + flag


def per_class_rows(board: Board) -> list[dict[str, str]]:
    """Per-class accuracy (%) mean ± std over seeds, one row per method."""
    out = []
    for _, r in board.rows.iterrows():
        row = {"method": method_label(r), "n": str(r["n"])}
        for name, key in zip(board.class_names, board.class_keys):
            row[name] = format_mean_std(r.get(f"{PER_CLASS_PREFIX}{key}_mean"), r.get(f"{PER_CLASS_PREFIX}{key}_std"))
        out.append(row)
    return out


def reported_rows(board: Board) -> list[dict[str, str]]:
    """The papers' numbers matched to this board, with what differs from its protocol."""
    out = []
    fractions = sorted({float(v) for v in board.rows.get("val_fraction", []) if v == v and v > 0})
    trained_on = [
        f"the harness trains on {100 * (1 - v):g} % of the split's training pixels and validates on the rest "
        f"(val_fraction {v:g}; --val-fraction 0 trains on all of them, as the papers do)"
        for v in fractions
    ]
    for e in board.reported:
        diffs = e.differences(board.key.split) + trained_on
        out.append(
            {
                "method": e.method,
                "source": e.source,
                "modalities": e.modalities or "-",
                "split": e.split,
                "OA (%)": format_number(e.oa, 2),
                "AA (%)": format_number(e.aa, 2),
                "kappa (%)": format_number(e.kappa, 2),
                "protocol": e.protocol or "-",
                "differs from this board": "; ".join(diffs) if diffs else "no known difference",
            }
        )
    return out
