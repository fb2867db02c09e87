"""Find a dataset's source files on disk, or say exactly what is missing.

Search order (first complete file set wins):

1. ``--data-dir`` (``DatasetContext.data_dir``),
2. ``$BENCH_DATA_DIR`` (when it names another folder),
3. the cache folder (``DatasetContext.cache_dir``, where ``bench datasets fetch`` puts files).

In each of these roots the loader looks at the files directly in the root, then in every
sub-folder (up to :data:`MAX_DEPTH` levels) whose name starts with one of the dataset's
folder names (``augsburg``, ``HS-SAR-DSM Augsburg``, ``2013_DFTC``...). Inside such a
folder the files of one layout may sit in different sub-folders (an unpacked archive
next to separately downloaded files). Only complete file sets are used: a partial set is
reported, never loaded, so nothing trains on partial data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_core.errors import DatasetError
from bench_core.specs import DatasetContext

__all__ = [
    "CACHE_SCENES_DIR", "DATA_DIR_ENV", "MAX_DEPTH", "FileSurvey", "Layout", "Located", "SearchRoot", "locate",
    "search_roots", "survey",
]

DATA_DIR_ENV = "BENCH_DATA_DIR"
MAX_DEPTH = 3
CACHE_SCENES_DIR = "scenes"
"""Sub-folder of the cache holding converted scenes (:mod:`bench_core.data.cache`); never searched."""
_DATA_SUFFIXES = (".mat", ".tif", ".tiff", ".hdr", ".npy", ".h5", ".zip", ".tar", ".gz", ".tgz", ".txt", ".roi")


@dataclass(frozen=True)
class Layout:
    """One distribution of a dataset: the files that make it up and how to read them.

    Attributes:
        name: short id, e.g. ``"ouc"``; part of the cache folder name.
        required: file names that must all be present.
        optional: file names used when present (e.g. a DSM).
        description: where this distribution comes from, shown in errors and cards.
        read: ``read({file name: path}) -> RawScene`` (see :mod:`bench_core.data.loader`).
        keys: ``{file name: (.mat variable names, ...)}``, for cards and messages.
        sha256: ``{file name: sha256}`` as published; checked when the cache is made.
    """

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    description: str = ""
    read: Callable[[Mapping[str, Path]], Any] | None = field(default=None, compare=False)
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    sha256: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def files(self) -> tuple[str, ...]:
        """Required then optional file names."""
        return self.required + self.optional


@dataclass(frozen=True)
class SearchRoot:
    """A folder searched for dataset files and why (``--data-dir``, ``BENCH_DATA_DIR``, ``cache``)."""

    path: Path
    origin: str


@dataclass(frozen=True)
class Located:
    """A complete file set: its layout, ``{file name: path}`` (optional files when found)."""

    layout: Layout
    paths: Mapping[str, Path]
    root: SearchRoot

    @property
    def folder(self) -> Path:
        """The common folder of the files found."""
        return Path(os.path.commonpath([str(p.parent) for p in self.paths.values()]))


def search_roots(context: DatasetContext, env: Mapping[str, str] | None = None) -> list[SearchRoot]:
    """The folders to search, in order, without duplicates."""
    env = os.environ if env is None else env
    roots: list[SearchRoot] = []
    candidates = [
        (context.data_dir, "--data-dir"),
        (env.get(DATA_DIR_ENV) or None, DATA_DIR_ENV),
        (context.cache_dir, "cache"),
    ]
    seen: set[Path] = set()
    for value, origin in candidates:
        if value is None:
            continue
        path = Path(value).expanduser()
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            roots.append(SearchRoot(path=path, origin=origin))
    return roots


def _index(folder: Path, recursive: bool) -> dict[str, Path]:
    """``{file name: first path}`` in ``folder`` (and below it, sorted, when recursive)."""
    found: dict[str, Path] = {}
    base_depth = len(folder.parts)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            found.setdefault(name, Path(dirpath) / name)
        if not recursive or len(Path(dirpath).parts) - base_depth >= MAX_DEPTH:
            dirnames[:] = []
    return found


def _dataset_folders(root: Path, aliases: Sequence[str], skip: Sequence[str] = ()) -> list[Path]:
    """Sub-folders of ``root`` (up to MAX_DEPTH) whose name starts with an alias (any case)."""
    prefixes = tuple(a.lower() for a in aliases)
    out: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, _files in os.walk(root):
        top = dirpath == str(root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not (top and d in skip))
        keep = []
        for d in dirnames:
            if d.lower().startswith(prefixes):
                out.append(Path(dirpath) / d)  # searched recursively below; no need to descend
            else:
                keep.append(d)
        dirnames[:] = keep if len(Path(dirpath).parts) - base_depth < MAX_DEPTH - 1 else []
    return out


def locate(
    dataset: str,
    layouts: Sequence[Layout],
    context: DatasetContext,
    *,
    aliases: Sequence[str] = (),
    url: str = "",
    fetchable: bool = True,
    env: Mapping[str, str] | None = None,
) -> Located:
    """Find the first complete file set of ``layouts`` (in the order given) for ``dataset``.

    Raises :class:`DatasetError` naming the files looked for, the folders searched (and
    what was found there), the download command ``bench datasets fetch <dataset>`` (or,
    when ``fetchable`` is false, that the files must be downloaded by hand) and ``url``,
    where the files come from.
    """
    roots = search_roots(context, env)
    names = (dataset, *aliases)
    notes: list[str] = []
    for root in roots:
        if not root.path.is_dir():
            notes.append(f"{root.path} ({root.origin}): does not exist")
            continue
        subfolders = _subfolders(root, names)
        for folder, recursive in [(root.path, False)] + [(f, True) for f in subfolders]:
            index = _index(folder, recursive)
            for layout in layouts:
                if all(n in index for n in layout.required):
                    paths = {n: index[n] for n in layout.files if n in index}
                    return Located(layout=layout, paths=paths, root=root)
            # The root itself may hold other datasets' files: judge it only when it has no dataset folder.
            notes.extend(_explain(folder, root, index, layouts, recursive or not subfolders))
    raise DatasetError(_missing_message(dataset, layouts, roots, notes, names, url, fetchable))


def _subfolders(root: SearchRoot, names: Sequence[str]) -> list[Path]:
    """The dataset folders under ``root`` (the cache's converted scenes are not source files)."""
    skip = (CACHE_SCENES_DIR,) if root.origin == "cache" else ()
    return _dataset_folders(root.path, names, skip)


@dataclass(frozen=True)
class FileSurvey:
    """Which files of each layout were found where (for ``bench datasets info`` without a complete set).

    Attributes:
        roots: the folders searched, in order (some may not exist).
        folders: every folder looked into: each existing root and its dataset sub-folders.
        found: ``{layout name: {file name: first path found}}``; a file not in it is missing.
    """

    roots: tuple[SearchRoot, ...]
    folders: tuple[Path, ...]
    found: Mapping[str, Mapping[str, Path]]


def survey(
    dataset: str,
    layouts: Sequence[Layout],
    context: DatasetContext,
    *,
    aliases: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> FileSurvey:
    """Every file of ``layouts`` that :func:`locate` would see, found anywhere it searches.

    Unlike :func:`locate` this never fails and never picks a file set: it reports, per
    layout, the first path of each file in search order, so a user sees what is there and
    what is missing. Reads directory listings only.
    """
    roots = search_roots(context, env)
    found: dict[str, dict[str, Path]] = {layout.name: {} for layout in layouts}
    folders: list[Path] = []
    for root in roots:
        if not root.path.is_dir():
            continue
        for folder, recursive in [(root.path, False)] + [(f, True) for f in _subfolders(root, (dataset, *aliases))]:
            folders.append(folder)
            index = _index(folder, recursive)
            for layout in layouts:
                for name in layout.files:
                    if name in index:
                        found[layout.name].setdefault(name, index[name])
    return FileSurvey(roots=tuple(roots), folders=tuple(folders), found=found)


def _explain(
    folder: Path, root: SearchRoot, index: Mapping[str, Path], layouts: Sequence[Layout], recursive: bool
) -> list[str]:
    where = f"{folder} ({root.origin})"
    partial = []
    for layout in layouts:
        have = [n for n in layout.required if n in index]
        if have:
            lacks = [n for n in layout.required if n not in index]
            partial.append(
                f"{where}: incomplete '{layout.name}' file set: has {', '.join(have)} but lacks "
                f"{', '.join(lacks)} (not loaded: a partial dataset is never used)"
            )
    if partial:
        return partial
    data_files = {n: p for n, p in index.items() if n.lower().endswith(_DATA_SUFFIXES)}
    if recursive and data_files:
        index = data_files
        shown = sorted(index)[:8]
        more = f" and {len(index) - len(shown)} more" if len(index) > len(shown) else ""
        archives = [n for n in index if n.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz"))]
        hint = f"; unpack the archive(s) {', '.join(archives)} here" if archives else ""
        return [
            f"{where}: unknown layout: holds {', '.join(shown)}{more}, none of the known "
            f"file sets{hint}"
        ]
    return []


def _missing_message(
    dataset: str, layouts: Sequence[Layout], roots: Sequence[SearchRoot], notes: Sequence[str],
    names: Sequence[str], url: str, fetchable: bool,
) -> str:
    lines = [f"dataset {dataset!r}: no complete set of its files was found."]
    lines.append("Looked for one of these file sets:")
    for layout in layouts:
        optional = f" (optional: {', '.join(layout.optional)})" if layout.optional else ""
        about = f" - {layout.description}" if layout.description else ""
        lines.append(f"  {layout.name}: {', '.join(layout.required)}{optional}{about}")
    if roots:
        folder_names = ", ".join(repr(n) for n in dict.fromkeys(names))
        lines.append(
            "Searched, in order (each folder itself and its sub-folders named like "
            f"{folder_names}):"
        )
        lines.extend(f"  {r.path} ({r.origin})" for r in roots)
    else:
        lines.append(f"Searched no folder: no --data-dir, no {DATA_DIR_ENV} and no cache folder given.")
    lines.extend(f"  note: {n}" for n in notes)
    if fetchable:
        source = f" from {url}" if url else ""
        lines.append(
            f"Fix: run `bench datasets fetch {dataset}` (downloads{source} into the cache), or put "
            f"the files in a folder and pass it with --data-dir or {DATA_DIR_ENV}."
        )
    else:
        lines.append(
            f"Fix: download the files by hand{' from ' + url if url else ''} (no scriptable source, so "
            f"`bench datasets fetch {dataset}` cannot), then pass their folder with --data-dir or {DATA_DIR_ENV}."
        )
    return "\n".join(lines)
