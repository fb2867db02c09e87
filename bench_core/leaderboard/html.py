"""The leaderboard as one self-contained static HTML page.

The markup is a Jinja2 template shipped as package data (``templates/leaderboard.html.j2``,
with ``leaderboard.css`` and ``sort-tables.js`` inlined into it); this module only prepares
what it shows: cells as (display text, raw sort value, CSS class), plots as base64 PNGs
(:mod:`bench_core.leaderboard.plots`), classification maps from the runs' artifacts. The page
makes no network request, so it can be mailed, committed or served from anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench_core.leaderboard.boards import Board, BoardSet
from bench_core.leaderboard.formatting import (
    format_count,
    format_mean_std,
    format_number,
    format_p,
    format_sci,
    method_label,
    sort_value,
)
from bench_core.leaderboard.frame import ArtifactSource
from bench_core.leaderboard.plots import (
    plot_accuracy_vs_cost,
    plot_per_class,
    png_data_uri,
)
from bench_core.leaderboard.rows import per_class_rows, reported_rows

TEMPLATE = "leaderboard.html.j2"

# (header, css class) of the main table, under its column groups (label, span, css class).
_MAIN_HEADERS = [
    ("rank", ""), ("method", "text"), ("n", ""),
    ("OA (%)", ""), ("AA (%)", ""), ("kappa (%)", ""), ("vs best", "text"), ("p (Holm)", ""), ("test", "text"),
    ("p Wilcoxon (Holm)", ""),
    ("params", ""), ("FLOPs/sample", ""), ("train (s)", ""), ("infer (s)", ""), ("px/s", ""),
    ("peak mem (MB)", ""), ("device", "text"),
    ("paper OA", "reported"), ("paper AA", "reported"), ("paper kappa", "reported"),
    ("source", "text reported"), ("protocol", "text reported"),
]
_MAIN_GROUPS = [("", 3, ""), ("reproduced here: test pixels, mean ± std over seeds", 7, ""),
                ("cost (mean over the same runs)", 7, ""),
                ("reported by the papers (not ranked; see protocol)", 5, "reported")]


def _cell(text: str, raw: Any, cls: str = "") -> dict[str, str]:
    return {"text": text, "raw": sort_value(raw), "cls": cls}


def _text(value: Any, cls: str = "text") -> dict[str, str]:
    """A text cell: shown as is ('-' when empty), sorted on the text."""
    shown = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return _cell(shown or "-", shown, cls)


def _table(table_id: str, headers: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]],
           groups: Sequence[tuple[str, int, str]] = ()) -> dict[str, Any]:
    return {
        "id": table_id,
        "headers": [{"label": h, "cls": c} for h, c in headers],
        "groups": [{"label": g, "span": s, "cls": c} for g, s, c in groups],
        "rows": rows,
    }


def _main_table(board: Board) -> dict[str, Any]:
    rows = []
    for _, r in board.rows.iterrows():
        vs = str(r.get("vs_best", "") or "")
        mem = r.get("mem_peak_bytes", math.nan)
        mem_mb = mem / 2**20 if isinstance(mem, (int, float)) else mem
        cells = [
            _cell(str(r["rank"]), r["rank"]),
            _text(method_label(r)),
            _cell(str(r["n"]), r["n"]),
            _cell(format_mean_std(r["test_oa_mean"], r["test_oa_std"]), r["test_oa_mean"]),
            _cell(format_mean_std(r["test_aa_mean"], r["test_aa_std"]), r["test_aa_mean"]),
            _cell(format_mean_std(r["test_kappa_mean"], r["test_kappa_std"]), r["test_kappa_mean"]),
            _text(vs, "text sig-ns" if vs == "≈" else "text sig-s" if vs == "<" else "text"),
            _cell(format_p(r.get("p_holm")), r.get("p_holm")),
            _text(r.get("test", "")),
            _cell(format_p(r.get("p_wilcoxon_holm")), r.get("p_wilcoxon_holm")),
            _cell(format_count(r.get("params_total")), r.get("params_total")),
            _cell(format_sci(r.get("flops_per_sample")), r.get("flops_per_sample")),
            _cell(format_number(r.get("time_train_s"), 1), r.get("time_train_s")),
            _cell(format_number(r.get("time_infer_s"), 2), r.get("time_infer_s")),
            _cell(format_count(r.get("throughput_infer")), r.get("throughput_infer")),
            _cell(format_number(mem_mb, 0), mem),
            _text(r.get("device", "")),
            _cell(format_number(r.get("reported_oa")), r.get("reported_oa"), "reported"),
            _cell(format_number(r.get("reported_aa")), r.get("reported_aa"), "reported"),
            _cell(format_number(r.get("reported_kappa")), r.get("reported_kappa"), "reported"),
            _text(r.get("reported_source", ""), "text reported"),
            _text(r.get("reported_protocol", ""), "text reported"),
        ]
        rows.append({"cells": cells, "cls": "best" if r["rank"] == 1 else ""})
    return _table(f"board-{board.key.slug}", _MAIN_HEADERS, rows, _MAIN_GROUPS)


def _simple_table(rows: Sequence[Mapping[str, str]], table_id: str, text_cols: Sequence[str] = ()) -> dict[str, Any] | None:
    """A sortable table of already formatted cells; numeric columns sort on the mean of ``mean ± std``."""
    if not rows:
        return None
    cols = list(rows[0])
    headers = [(c, "text" if c in text_cols else "") for c in cols]
    body = [{"cells": [{"text": r[c], "raw": r[c] if c in text_cols else _leading_number(r[c]),
                        "cls": "text" if c in text_cols else ""} for c in cols], "cls": ""} for r in rows]
    return _table(table_id, headers, body)


def _leading_number(text: str) -> str:
    """``"91.20 ± 0.50"`` -> ``"91.20"``, ``"inf"`` -> ``"Infinity"``, ``"-"`` -> ``""`` (missing)."""
    head = text.split(" ± ")[0]
    return {"-": "", "inf": "Infinity", "-inf": "-Infinity"}.get(head, head)


def _plots(board: Board) -> list[dict[str, str]]:
    rows, title = board.rows, board.key.title
    labels = [method_label(r) for _, r in rows.iterrows()]
    plots = [
        {"src": png_data_uri(plot_accuracy_vs_cost(
            labels, rows["time_train_s"], rows["test_oa_mean"], rows["test_oa_std"],
            "training time (s, mean over seeds)", f"Accuracy vs training time, {title}")),
         "alt": "accuracy vs training time", "cls": "plot accuracy-vs-time",
         "caption": "Test OA against training time. Circled points form the Pareto front: no other method is "
                    "both faster to train and more accurate."},
        {"src": png_data_uri(plot_accuracy_vs_cost(
            labels, rows["params_total"], rows["test_oa_mean"], rows["test_oa_std"],
            "parameters", f"Accuracy vs parameters, {title}")),
         "alt": "accuracy vs parameters", "cls": "plot accuracy-vs-params",
         "caption": "Test OA against the number of parameters (Pareto front circled)."},
    ]
    if board.class_keys:
        plots.append({"src": png_data_uri(plot_per_class(board)), "alt": "per-class accuracy",
                      "cls": "plot per-class",
                      "caption": "Per-class test accuracy per method (mean over seeds, std as error bars)."})
    return plots


def _maps(board: Board, artifacts: ArtifactSource | None) -> list[dict[str, Any]]:
    out = []
    for _, r in board.rows.iterrows():
        path = artifacts.fetch(str(r["best_run_id"]), "classification_map.png") if artifacts is not None else None
        out.append({"label": method_label(r), "run_name": r["best_run_name"], "seed": r["best_seed"], "n": r["n"],
                    "src": png_data_uri(path.read_bytes()) if path is not None else ""})
    return out


def _board_view(board: Board, artifacts: ArtifactSource | None) -> dict[str, Any]:
    rows, k = board.rows, board.key
    seeds = sorted({s for ss in rows.get("seeds", []) for s in ss}) if not rows.empty else []
    view: dict[str, Any] = {"slug": k.slug, "title": k.title, "n_rows": len(rows), "seeds": seeds or "-",
                            "mlflow_filter": k.mlflow_filter, "main": None}
    if rows.empty:
        return view
    view.update(
        main=_main_table(board), significance=board.significance, notes=board.notes, plots=_plots(board),
        per_class=_simple_table(per_class_rows(board), f"perclass-{k.slug}", ("method",)) if board.class_names else None,
        reported=_simple_table(reported_rows(board), f"reported-{k.slug}",
                               ("method", "source", "modalities", "split", "protocol", "differs from this board")),
        maps=_maps(board, artifacts),
    )
    return view


def render_html(board_set: BoardSet, artifacts: ArtifactSource | None = None) -> str:
    """One self-contained page for every board of ``board_set`` (no external resources)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("bench_core.leaderboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a missing value is a bug in this module, not an empty cell
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE).render(
        title=board_set.title, store=board_set.store, experiment=board_set.experiment,
        generated=board_set.generated, description=board_set.description,
        boards=[_board_view(b, artifacts) for b in board_set.boards],
    )
