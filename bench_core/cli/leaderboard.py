"""``bench leaderboard``: a table of what was run, aggregated over seeds."""

from __future__ import annotations

from pathlib import Path

import click

from bench_core.cli.options import experiment, tracking_uri


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write to a file instead of stdout.")
@tracking_uri
@experiment
def leaderboard(fmt: str, as_json: bool, output: Path | None, tracking_uri: str | None, experiment: str) -> int:
    """Mean ± std over seeds of test OA/AA/kappa with params, FLOPs and train/infer time.

    One row per method x profile x dataset x split, built from FINISHED runs in the store.
    """
    from bench_core.leaderboard import build_board, finished_runs, format_board
    from bench_core.tracking import MLflowTracker

    tracker = MLflowTracker(tracking_uri, experiment)
    board = build_board(finished_runs(tracker))
    if board.empty:
        click.echo(f"No FINISHED runs in experiment {experiment!r} at {tracker.uri}; "
                   f"run `bench run` first.", err=True)
    text = format_board(board, "json" if as_json else fmt)
    if output is not None:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text)
    return 0
