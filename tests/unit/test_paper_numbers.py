"""The built-in paper_numbers.toml and board specs (bench_core/leaderboard/builtin/) name only registered datasets, methods and splits.

An entry under a name no run can carry would never sit beside a reproduced row.
"""

from __future__ import annotations

import pytest

from bench_core.leaderboard import (
    builtin_folder,
    default_paper_numbers,
    load_board_spec,
    load_paper_numbers,
)
from bench_core.plugins import load_plugins
from bench_core.specs import SplitSpec


@pytest.fixture(scope="module")
def host():
    return load_plugins()


def test_every_reported_entry_names_a_registered_dataset_method_and_split(host) -> None:
    path = default_paper_numbers()
    assert path is not None
    entries = load_paper_numbers(path)
    datasets, methods, splits = set(host.datasets.names()), set(host.methods.names()), set(host.splits.names())
    for e in entries:
        where = f"{e.method} / {e.dataset} ({e.source})"
        assert e.dataset in datasets, f"{where}: dataset {e.dataset!r} is not registered ({sorted(datasets)})"
        assert e.method in methods, f"{where}: method {e.method!r} is not registered"
        assert SplitSpec.parse(e.split).protocol in splits, f"{where}: split {e.split!r} is not registered"
    assert {"dfc2018", "yellow-river", "lcz-hk"} <= {e.dataset for e in entries}


def test_bdgf_board_has_the_new_datasets_with_bdgfs_protocol(host) -> None:
    spec = load_board_spec(builtin_folder() / "bdgf-protocol.toml")
    boards = {(b.datasets[0], b.splits[0], b.profiles[0]) for b in spec.boards}
    assert ("yellow-river", "per-class:100", "paper") in boards
    assert ("lcz-hk", "per-class:50", "paper") in boards
    for dataset, _split, _profile in boards:
        assert dataset in host.datasets.names()
    reported = {(e.dataset, e.split) for e in load_paper_numbers(default_paper_numbers()) if e.method == "bdgf"}
    assert {("yellow-river", "per-class:100"), ("lcz-hk", "per-class:50")} <= reported
