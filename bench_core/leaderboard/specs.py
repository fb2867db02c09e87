"""Board specs and the papers' reported numbers: the TOML files a board set is built from.

The built-in specs and ``paper_numbers.toml`` ship inside the package (``builtin/``, package
data read through :mod:`importlib.resources`), so ``bench leaderboard --board NAME`` works
from an installed wheel as from a checkout. A user's own specs go in ``./leaderboards``,
which is searched first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench_core.errors import ConfigError
from bench_core.plugins import select

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    import pandas as pd

USER_FOLDER = "leaderboards"
"""Folder (relative to the working directory) searched for user board specs before the built-in ones."""
PAPER_NUMBERS = "paper_numbers.toml"

#: ``--sort`` names -> (row column, descending by default).
SORT_COLUMNS: dict[str, tuple[str, bool]] = {
    "rank": ("rank", False),
    "method": ("method", False),
    "n": ("n", True),
    "oa": ("test_oa_mean", True),
    "aa": ("test_aa_mean", True),
    "kappa": ("test_kappa_mean", True),
    "f1": ("test_f1_macro_mean", True),
    "params": ("params_total", False),
    "flops": ("flops_per_sample", False),
    "train_time": ("time_train_s", False),
    "infer_time": ("time_infer_s", False),
    "throughput": ("throughput_infer", True),
    "memory": ("mem_peak_bytes", False),
    "leakage": ("split_leakage", False),
    "p": ("p_holm", True),
    "device": ("device", False),
    "reported_oa": ("reported_oa", True),
}


# ----------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Shell-style patterns on dataset, split, profile and method; empty = everything."""

    datasets: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    def mask(self, runs: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the runs this selection keeps."""
        keep = np.ones(len(runs), dtype=bool)
        for column, patterns in (
            ("dataset", self.datasets), ("split", self.splits), ("profile", self.profiles), ("method", self.methods),
        ):
            if patterns and len(runs):
                values = runs[column].astype(str).tolist()
                ok = set(select(values, patterns))
                keep &= np.array([v in ok for v in values], dtype=bool)
        return keep


def parse_patterns(values: Iterable[str]) -> tuple[str, ...]:
    """``["a,b", "c"]`` -> ``("a", "b", "c")``: repeatable, comma-separated CLI patterns."""
    out: list[str] = []
    for value in values:
        out.extend(p.strip() for p in str(value).split(",") if p.strip())
    return tuple(out)


# ----------------------------------------------------------------------------- board specs


@dataclass(frozen=True)
class BoardSpec:
    """A board set read from a ``<name>.toml`` board spec (built in, or in ``./leaderboards``).

    Either a grid (top-level ``datasets``/``splits``/``profiles``/``methods`` patterns:
    one board per (dataset, split, profile) found in the store) or explicit ``[[board]]``
    tables, each of which must resolve to exactly one dataset, split and profile.
    """

    name: str
    title: str
    description: str = ""
    grid: Selection | None = None
    boards: tuple[Selection, ...] = ()
    sort: str | None = None
    path: Path | None = None


_SPEC_KEYS = {"title", "description", "datasets", "splits", "profiles", "methods", "sort", "board"}
_BOARD_KEYS = {"dataset", "split", "profile", "methods", "title"}


def builtin_folder() -> Path:
    """The package's ``builtin/`` folder: the shipped board specs and ``paper_numbers.toml``."""
    # Wheels and editable installs are unpacked on disk, so the resource is a real folder.
    return Path(str(resources.files("bench_core.leaderboard").joinpath("builtin")))


def board_search_paths(cwd: Path | None = None) -> list[Path]:
    """Folders searched for ``<name>.toml``: ``./leaderboards`` (a user's specs), then the built-in ones."""
    return [(cwd or Path.cwd()) / USER_FOLDER, builtin_folder()]


def find_board_spec(name_or_path: str, cwd: Path | None = None) -> Path:
    """Path of a board spec given a file path or a board name."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists() or "/" in name_or_path:
        if candidate.is_file():
            return candidate
        raise ConfigError(f"--board {name_or_path!r}: no such file; give a board name or an existing .toml path")
    searched = board_search_paths(cwd)
    for folder in searched:
        path = folder / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for f in searched if f.is_dir() for p in f.glob("*.toml") if p.name != PAPER_NUMBERS})
    raise ConfigError(
        f"--board {name_or_path!r}: no {name_or_path}.toml in {', '.join(str(f) for f in searched)}; "
        f"known boards: {', '.join(known) or 'none'} (or pass a path to a .toml file)"
    )


def _patterns(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, ())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: {key} = {value!r}; expected a string or a list of non-empty strings")
    return tuple(value)


def _single(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    """A board's dataset/split/profile: one value (a pattern that must match one value in the store)."""
    value = data.get(key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        raise ConfigError(
            f"{where}: {key} = {value!r} names {len(value)} values for one board, but a board ranks "
            f"one dataset, one split protocol and one profile; write one [[board]] table per value, "
            f"or use top-level '{key}s = [...]' to get one board each"
        )
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} = {value!r}; expected one {key} name, e.g. {key} = \"...\"")
    return (value,)


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    """The TOML table of ``path``; a ConfigError naming ``what`` if it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{what}: cannot be read as TOML ({exc}); fix the file") from None


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse keys outside ``allowed``: a misspelt key would otherwise be silently ignored."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _numbered_tables(
    tables: list[Mapping[str, Any]], allowed: set[str], where: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(where #i, table)`` for each table of an array of tables (from 1), its keys checked."""
    for i, table in enumerate(tables, start=1):
        here = f"{where} #{i}"
        _check_keys(table, allowed, here)
        yield here, table


def load_board_spec(path: Path) -> BoardSpec:
    """Read and validate a board spec file."""
    data = _read_toml(path, f"board spec {path}")
    _check_keys(data, _SPEC_KEYS, f"board spec {path}")
    title = data.get("title", path.stem)
    description = data.get("description", "")
    sort = data.get("sort")
    for key, value in (("title", title), ("description", description)):
        if not isinstance(value, str):
            raise ConfigError(f"board spec {path}: {key} = {value!r}; expected a string")
    if sort is not None:
        try:
            parse_sort(str(sort))
        except ConfigError as exc:
            raise ConfigError(f"board spec {path}: sort = {sort!r}: {exc}") from None
    explicit = data.get("board", [])
    grid_keys = {"datasets", "splits", "profiles"} & set(data)
    if explicit and grid_keys:
        raise ConfigError(
            f"board spec {path}: has both [[board]] tables and top-level {sorted(grid_keys)}; "
            f"use one form: a grid (one board per dataset x split x profile) or explicit boards"
        )
    methods = _patterns(data, "methods", f"board spec {path}")
    if explicit:
        if not isinstance(explicit, list):
            raise ConfigError(f"board spec {path}: 'board' must be an array of tables ([[board]])")
        boards = []
        for where, table in _numbered_tables(explicit, _BOARD_KEYS, f"board spec {path}, board"):
            boards.append(
                Selection(
                    datasets=_single(table, "dataset", where),
                    splits=_single(table, "split", where),
                    profiles=_single(table, "profile", where),
                    methods=_patterns(table, "methods", where) or methods,
                )
            )
        return BoardSpec(path.stem, title, description, None, tuple(boards), sort, path)
    grid = Selection(
        datasets=_patterns(data, "datasets", f"board spec {path}"),
        splits=_patterns(data, "splits", f"board spec {path}"),
        profiles=_patterns(data, "profiles", f"board spec {path}"),
        methods=methods,
    )
    return BoardSpec(path.stem, title, description, grid, (), sort, path)


# ----------------------------------------------------------------------------- reported numbers


@dataclass(frozen=True)
class ReportedNumber:
    """What a paper reports for a method on a dataset, with the protocol it used."""

    method: str
    dataset: str
    source: str
    split: str
    oa: float | None
    aa: float | None
    kappa: float | None
    modalities: str = ""
    protocol: str = ""
    caveats: tuple[str, ...] = ()
    primary: bool = False
    runs: int | None = None

    def differences(self, split: str) -> list[str]:
        """Why these numbers are not comparable with a board on ``split`` (empty = same protocol)."""
        out = []
        if self.split != split:
            out.append(f"split {self.split} (board: {split})")
        out.extend(self.caveats)
        return out


_REPORTED_KEYS = {
    "method", "dataset", "source", "split", "oa", "aa", "kappa", "modalities", "protocol", "caveats",
    "primary", "runs",
}


def default_paper_numbers(cwd: Path | None = None) -> Path | None:
    """``paper_numbers.toml`` from ``./leaderboards`` if a user put one there, else the built-in one."""
    for folder in board_search_paths(cwd):
        path = folder / PAPER_NUMBERS
        if path.is_file():
            return path
    return None


def load_paper_numbers(path: Path) -> list[ReportedNumber]:
    """Read and validate ``paper_numbers.toml`` (an array of ``[[reported]]`` tables)."""
    data = _read_toml(path, f"paper numbers {path}")
    entries = data.get("reported")
    if not isinstance(entries, list):
        raise ConfigError(f"paper numbers {path}: expected [[reported]] tables, found keys {sorted(data)}")
    out = []
    for where, e in _numbered_tables(entries, _REPORTED_KEYS, f"paper numbers {path}, entry"):
        for key in ("method", "dataset", "source", "split"):
            if not isinstance(e.get(key), str) or not e[key]:
                raise ConfigError(f"{where}: {key} = {e.get(key)!r}; expected a non-empty string")
        values = {}
        for key in ("oa", "aa", "kappa"):
            v = e.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not -100 <= v <= 100):
                raise ConfigError(f"{where} ({e['method']} on {e['dataset']}): {key} = {v!r}; expected percent in [-100, 100]")
            values[key] = None if v is None else float(v)
        caveats = e.get("caveats", [])
        if not isinstance(caveats, list) or not all(isinstance(c, str) for c in caveats):
            raise ConfigError(f"{where}: caveats = {caveats!r}; expected a list of strings")
        out.append(
            ReportedNumber(
                method=e["method"], dataset=e["dataset"], source=e["source"], split=e["split"],
                modalities=str(e.get("modalities", "")), protocol=str(e.get("protocol", "")),
                caveats=tuple(caveats), primary=bool(e.get("primary", False)),
                runs=e.get("runs"), **values,
            )
        )
    return out


# ----------------------------------------------------------------------------- sorting


def parse_sort(text: str) -> tuple[str, bool | None]:
    """``"oa"``, ``"params:asc"``, ``"time_train_s:desc"`` -> (name, descending or None for the default)."""
    name, _, direction = text.partition(":")
    if direction not in ("", "asc", "desc"):
        raise ConfigError(f"--sort {text!r}: direction {direction!r}; expected COLUMN, COLUMN:asc or COLUMN:desc")
    if not name:
        raise ConfigError(f"--sort {text!r}: no column; expected one of {', '.join(SORT_COLUMNS)}")
    return name, None if not direction else direction == "desc"
