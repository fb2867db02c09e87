"""``bench leaderboard``: boards per dataset x split x profile, built from the tracking store."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from bench_core.cli.options import experiment, tracking_uri

_PATTERN_HELP = "shell patterns, comma-separated or repeated"


@click.command()
@click.option("--board", default=None, metavar="NAME|PATH",
              help="Board spec: NAME.toml from ./leaderboards or the built-in boards (synthetic, "
                   "official-splits, bdgf-protocol; an unknown NAME lists them all), or a path to a .toml file.")
@click.option("--dataset", "datasets", multiple=True, metavar="PATTERNS", help=f"Datasets ({_PATTERN_HELP}).")
@click.option("--split", "splits", multiple=True, metavar="PATTERNS", help=f"Split protocols ({_PATTERN_HELP}).")
@click.option("--profile", "profiles", multiple=True, metavar="PATTERNS", help=f"Profiles ({_PATTERN_HELP}).")
@click.option("--method", "methods", multiple=True, metavar="PATTERNS", help=f"Methods ({_PATTERN_HELP}).")
@click.option("--sort", default=None, metavar="COLUMN[:asc|:desc]",
              help="Display order within each board: rank (default), method, n, oa, aa, kappa, f1, params, "
                   "flops, train_time, infer_time, throughput, memory, leakage, p, device, reported_oa, or any "
                   "JSON row column. The rank column always ranks by test OA.")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "html"]), default="table",
              show_default=True, help="Output format; html is one self-contained page with plots and maps.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write to a file instead of stdout.")
@click.option("--paper-numbers", type=click.Path(path_type=Path), default=None,
              help="Reported numbers to show beside ours (default: ./leaderboards/paper_numbers.toml if present, "
                   "else the built-in one).")
@click.option("--no-paper-numbers", is_flag=True, help="Do not show reported numbers.")
@click.option("--no-significance", is_flag=True,
              help="Skip the McNemar/Wilcoxon tests (they download every run's predictions).")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level (after Holm correction).")
@tracking_uri
@experiment
def leaderboard(
    board: str | None,
    datasets: tuple[str, ...],
    splits: tuple[str, ...],
    profiles: tuple[str, ...],
    methods: tuple[str, ...],
    sort: str | None,
    fmt: str,
    as_json: bool,
    output: Path | None,
    paper_numbers: Path | None,
    no_paper_numbers: bool,
    no_significance: bool,
    alpha: float,
    tracking_uri: str | None,
    experiment: str,
) -> int:
    """Rank methods per dataset, split protocol and profile from the FINISHED runs in the store.

    Each board: test OA/AA/kappa as mean ± std over seeds with n, significance against
    rank 1 (McNemar on the same test pixels, Wilcoxon over seeds; Holm-corrected),
    params, FLOPs per sample, train/inference time, throughput, device, per-class
    accuracy, and the numbers papers report in a separate, unranked column group.
    A board never ranks two splits or profiles together.
    """
    from bench_core.errors import ConfigError
    from bench_core.leaderboard import (
        MLflowArtifacts,
        Selection,
        build_board_set,
        default_paper_numbers,
        find_board_spec,
        finished_runs,
        format_board_set,
        load_board_spec,
        load_paper_numbers,
        parse_patterns,
    )
    from bench_core.tracking import MLflowTracker

    if output is not None:
        _check_output(output)  # before any work, and no folder is ever created
    spec = load_board_spec(find_board_spec(board)) if board else None
    selection = Selection(
        parse_patterns(datasets), parse_patterns(splits), parse_patterns(profiles), parse_patterns(methods)
    )
    reported = []
    if not no_paper_numbers:
        path = paper_numbers or default_paper_numbers()
        if path is not None:
            reported = load_paper_numbers(path)
    tracker = MLflowTracker(tracking_uri, experiment, create=False)  # reads; creates no store or folder
    for name, reason in tracker.close_lost_runs():
        click.echo(f"run {name!r} was RUNNING, now FAILED: {reason}", err=True)
    artifacts = MLflowArtifacts(tracker)
    fmt = "json" if as_json else fmt
    try:
        board_set = build_board_set(
            finished_runs(tracker), selection, spec, artifacts, reported, sort, not no_significance, alpha
        )
        board_set.store, board_set.experiment = tracker.uri, experiment
        if not board_set.boards:
            click.echo(f"No FINISHED runs match in experiment {experiment!r} at {tracker.uri}; "
                       f"run `bench run` first (or loosen --dataset/--split/--profile/--method).", err=True)
        # A terminal gets tables fitted to its width; a pipe or a file gets them whole.
        width = shutil.get_terminal_size().columns if output is None and sys.stdout.isatty() else None
        text = format_board_set(board_set, fmt, artifacts, width)
    finally:
        artifacts.close()
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"--output {str(output)!r}: cannot write it ({exc.strerror or exc}); expected a writable file "
                f"path: choose another --output or fix the folder's permissions"
            ) from None
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
    return 0


def _check_output(output: Path) -> None:
    """ConfigError (exit 2) for an --output the board could not be written to; creates nothing."""
    import os

    from bench_core.errors import ConfigError

    folder = output.parent if str(output.parent) else Path(".")
    fix = "create the folder first or choose another --output"
    if output.is_dir():
        raise ConfigError(f"--output {str(output)!r} is a folder; expected a file path, e.g. {output / 'board.html'}")
    if not folder.exists():
        raise ConfigError(f"--output {str(output)!r}: folder {str(folder)!r} does not exist; {fix}")
    if not folder.is_dir():
        raise ConfigError(f"--output {str(output)!r}: {str(folder)!r} is a file, not a folder; {fix}")
    target = output if output.exists() else folder
    if not os.access(target, os.W_OK):
        raise ConfigError(
            f"--output {str(output)!r}: {str(target)!r} is not writable; expected a writable file path: choose "
            f"another --output or fix the permissions"
        )
