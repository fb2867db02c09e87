"""Leaderboards read from the tracking store (never from logs).

A *board* ranks methods on one dataset, one split protocol and one profile: numbers from
different splits or profiles are never ranked together, and a request that would do so
is refused (:class:`~bench_core.errors.ConfigError`). A *board set* is what one
``bench leaderboard`` call prints: one board per (dataset, split, profile) selected.

Each row is a method (one row per distinct configuration when a method was run with
several) with test OA/AA/kappa as mean ± std over seeds and n, significance against the
rank-1 method (:mod:`bench_core.stats`), cost beside accuracy (params, FLOPs per sample,
train/inference time, throughput, device), per-class accuracy, and, in a separate group
that is never ranked, the numbers the papers report (the built-in ``paper_numbers.toml``).

Modules; the data layer (the first five) imports no renderer, and the CLI picks the renderer:

* :mod:`~bench_core.leaderboard.specs`: board-spec and paper-numbers TOML files;
* :mod:`~bench_core.leaderboard.frame`: the MLflow store as a pandas frame, artifacts;
* :mod:`~bench_core.leaderboard.formatting`: the display formatters every renderer uses;
* :mod:`~bench_core.leaderboard.significance`: rows against rank 1 (:mod:`bench_core.stats`);
* :mod:`~bench_core.leaderboard.boards`: aggregation, ranking, sorting, Pareto front;
* :mod:`~bench_core.leaderboard.render`: terminal (rich), Markdown, CSV, JSON, ``--format`` dispatch;
* :mod:`~bench_core.leaderboard.plots` and :mod:`~bench_core.leaderboard.html`: the HTML page
  (a Jinja2 template in ``templates/``).

Importing this package loads neither pandas, rich, jinja2 nor matplotlib: they are imported
where they are used.
"""

from bench_core.leaderboard.boards import (
    ALPHA,
    BOARD_KEY,
    Board,
    BoardKey,
    BoardSet,
    build_board_set,
    pareto_front,
    sort_rows,
)
from bench_core.leaderboard.formatting import format_p, method_label
from bench_core.leaderboard.frame import (
    ACCURACY,
    COST,
    PER_CLASS_PREFIX,
    TAG_CLASSES_WITHOUT_TRAINING,
    TAG_CLASSES_WITHOUT_TRAINING_NAMES,
    TAG_METHOD_STATUS,
    ArtifactSource,
    MLflowArtifacts,
    config_of,
    finished_runs,
    runs_frame,
)
from bench_core.leaderboard.rows import display_rows, per_class_rows, reported_rows
from bench_core.leaderboard.render import (
    FORMATS,
    board_records,
    format_board_set,
    to_csv,
    to_json,
    to_markdown,
    to_text,
)
from bench_core.leaderboard.specs import (
    SORT_COLUMNS,
    BoardSpec,
    ReportedNumber,
    Selection,
    board_search_paths,
    builtin_folder,
    default_paper_numbers,
    find_board_spec,
    load_board_spec,
    load_paper_numbers,
    parse_patterns,
    parse_sort,
)

__all__ = [
    "ACCURACY", "ALPHA", "BOARD_KEY", "COST", "FORMATS", "PER_CLASS_PREFIX", "SORT_COLUMNS",
    "TAG_CLASSES_WITHOUT_TRAINING", "TAG_CLASSES_WITHOUT_TRAINING_NAMES", "TAG_METHOD_STATUS",
    "ArtifactSource", "Board", "BoardKey", "BoardSet", "BoardSpec", "MLflowArtifacts", "ReportedNumber", "Selection",
    "board_records", "board_search_paths", "build_board_set", "builtin_folder", "config_of", "default_paper_numbers",
    "display_rows", "find_board_spec", "finished_runs", "format_board_set", "format_p", "load_board_spec",
    "load_paper_numbers", "method_label", "pareto_front", "parse_patterns", "parse_sort", "per_class_rows",
    "reported_rows", "runs_frame", "sort_rows", "to_csv", "to_json", "to_markdown", "to_text",
]
