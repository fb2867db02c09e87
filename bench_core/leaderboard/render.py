"""Renderers of a :class:`~bench_core.leaderboard.boards.BoardSet`: terminal (rich), Markdown,
CSV, JSON, and the dispatch by ``--format`` (the HTML page is :mod:`bench_core.leaderboard.html`).

Every displayed number goes through :mod:`bench_core.leaderboard.formatting`; CSV and JSON
carry the raw numbers.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench_core.errors import ConfigError
from bench_core.leaderboard.boards import Board, BoardSet
from bench_core.leaderboard.frame import ArtifactSource
from bench_core.leaderboard.rows import display_rows, per_class_rows, reported_rows

FORMATS = ("table", "md", "csv", "json", "html")


def _md_table(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return "_(no rows)_\n"
    cols = list(rows[0])
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _board_header(board: Board) -> list[str]:
    seeds = sorted({s for ss in board.rows.get("seeds", []) for s in ss}) if not board.rows.empty else []
    return [f"Ranked by test OA, mean ± std over seeds (n per row; seeds {seeds or '-'}). "
            f"Cost columns are means over the same runs."]


_TEXT_COLUMNS = {
    "method", "vs best", "device", "reported OA (paper, not ranked)", "source", "modalities", "protocol",
    "differs from this board",
}


def _rich_table(rows: Sequence[Mapping[str, str]], title: str | None = None) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    cols = list(rows[0]) if rows else ["(no rows)"]
    for col in cols:
        # Numbers never wrap; in a narrow terminal the text columns fold instead.
        text = col in _TEXT_COLUMNS
        widest = max([len(col)] + [len(str(r[col])) for r in rows])
        table.add_column(col, no_wrap=not text, overflow="fold" if text else "ellipsis",
                         min_width=min(widest, 16) if text else None)
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    return table


#: In a terminal the main table is split (accuracy, cost, provenance) so that each part fits its width.
_SPLITS = ("params", "device")
_ROW_KEYS = ("rank", "method")


def _main_tables(rows: Sequence[Mapping[str, str]], width: int | None) -> list[Any]:
    if width is None or not rows:
        return [_rich_table(rows)]
    cols = list(rows[0])
    cuts = [0, *(cols.index(c) for c in _SPLITS), len(cols)]
    parts = [cols[a:b] for a, b in zip(cuts, cuts[1:])]
    parts = [parts[0]] + [[*_ROW_KEYS, *p] for p in parts[1:]]
    return [_rich_table([{c: r[c] for c in part} for r in rows]) for part in parts]


def to_text(board_set: BoardSet, width: int | None = None) -> str:
    """Terminal tables drawn by rich, as text (no colour codes).

    ``width``: the terminal's width; the main table is then split into accuracy, cost and
    provenance tables, and rich fits each to the width (folding long text cells). None renders
    every table whole at its natural width, for a pipe or a file.
    """
    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 10_000, color_system=None, force_terminal=False,
                      highlight=False, emoji=False)
    console.print(Text(f"{board_set.title}\n{'=' * len(board_set.title)}"))
    if not board_set.boards:
        console.print(Text("No FINISHED runs match; run `bench run` first."))
    for b in board_set.boards:
        console.print(Text(f"\n{b.key.title}\n{'-' * len(b.key.title)}"))
        for line in _board_header(b):
            console.print(Text(line))
        for table in _main_tables(display_rows(b), width):
            console.print(table)
        if b.significance:
            console.print(Text(b.significance))
        for n in b.notes:
            console.print(Text(f"note: {n}"))
        if b.class_names:
            console.print(_rich_table(per_class_rows(b), "per-class accuracy (%)"))
        if b.reported:
            console.print(_rich_table(reported_rows(b), "reported by the papers (not ranked)"))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


# ----------------------------------------------------------------------------- Markdown


def to_markdown(board_set: BoardSet) -> str:
    """All boards as Markdown: main table, per-class table, reported numbers, legend."""
    parts = [f"# {board_set.title}\n"]
    if board_set.description:
        parts.append(board_set.description.strip() + "\n")
    if board_set.store:
        parts.append(f"Store: `{board_set.store}`, experiment `{board_set.experiment}`; generated {board_set.generated}.\n")
    if not board_set.boards:
        parts.append("_No FINISHED runs match; run `bench run` first._\n")
    for b in board_set.boards:
        parts.append(f"## {b.key.title}\n")
        parts.extend(line + "\n" for line in _board_header(b))
        parts.append(_md_table(display_rows(b)))
        if b.significance:
            parts.append(f"_{b.significance}_\n")
        parts.extend(f"- note: {n}\n" for n in b.notes)
        parts.append(f"\nMLflow UI filter for these runs: `{b.key.mlflow_filter}`\n")
        if b.class_names:
            parts.append(f"### {b.key.dataset}: per-class accuracy (%), mean ± std over seeds\n")
            parts.append(_md_table(per_class_rows(b)))
        parts.append(f"### {b.key.dataset}: reported by the papers (not ranked; not comparable unless the protocol matches)\n")
        parts.append(_md_table(reported_rows(b)) if b.reported else "_No paper reports numbers for these methods on this dataset._\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- JSON, CSV


_JSON_DROP = {"config_json"}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _clean(value.item())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def board_records(board: Board) -> list[dict[str, Any]]:
    """The board's rows as plain dicts (raw numbers, NaN -> None)."""
    return [{k: _clean(v) for k, v in r.items() if k not in _JSON_DROP} for r in board.rows.to_dict("records")]


def to_json(board_set: BoardSet) -> str:
    """Structured JSON: ``{"title", "store", ..., "boards": [{"dataset", "split", "profile", "rows", ...}]}``."""
    doc = {
        "title": board_set.title,
        "description": board_set.description,
        "store": board_set.store,
        "experiment": board_set.experiment,
        "generated": board_set.generated,
        "alpha": board_set.alpha,
        "boards": [
            {
                "dataset": b.key.dataset,
                "split": b.key.split,
                "profile": b.key.profile,
                "mlflow_filter": b.key.mlflow_filter,
                "significance": b.significance,
                "notes": b.notes,
                "classes": b.class_names,
                "rows": board_records(b),
                "reported": [
                    {**{k: _clean(v) for k, v in e.__dict__.items()}, "differences": e.differences(b.key.split)}
                    for e in b.reported
                ],
            }
            for b in board_set.boards
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def to_csv(board_set: BoardSet) -> str:
    """One flat CSV of every board's rows (raw numbers; the board is named by dataset, split, profile)."""
    import pandas as pd

    frames = [pd.DataFrame(board_records(b)) for b in board_set.boards if not b.rows.empty]
    if not frames:
        return ",".join(["dataset", "split", "profile", "rank", "method", "n"]) + "\n"
    frame = pd.concat(frames, ignore_index=True)
    frame["seeds"] = frame["seeds"].map(lambda s: " ".join(map(str, s)) if isinstance(s, list) else s)
    first = ["dataset", "split", "profile", "rank", "method", "variant", "n"]
    return frame[first + [c for c in frame.columns if c not in first]].to_csv(index=False)


def format_board_set(
    board_set: BoardSet, fmt: str, artifacts: ArtifactSource | None = None, width: int | None = None
) -> str:
    """Render as ``table``, ``md``, ``csv``, ``json`` or ``html`` (one self-contained page).

    ``artifacts`` feeds the HTML page's classification maps; ``width`` the terminal table.
    """
    if fmt == "md":
        return to_markdown(board_set)
    if fmt == "csv":
        return to_csv(board_set)
    if fmt == "json":
        return to_json(board_set)
    if fmt == "html":
        from bench_core.leaderboard.html import render_html

        return render_html(board_set, artifacts)
    if fmt == "table":
        return to_text(board_set, width)
    raise ConfigError(f"--format {fmt!r}; expected one of {', '.join(FORMATS)}")
