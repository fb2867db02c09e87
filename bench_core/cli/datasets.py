"""``bench datasets list|info``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bench_core.cli.options import as_json

if TYPE_CHECKING:
    from bench_core.data.loader import RealDataset
    from bench_core.specs import DatasetContext, DatasetSpec


@click.group()
def datasets() -> None:
    """Registered datasets."""


@datasets.command("list")
@as_json
def list_(as_json: bool) -> int:
    """List registered datasets with modalities, classes and provenance."""
    from bench_core.plugins import load_plugins

    host = load_plugins()
    rows = []
    for name in host.datasets.names():
        spec = host.datasets.get(name)
        rows.append({
            "name": name, "plugin": host.datasets.plugin_of(name), "modalities": list(spec.modalities),
            "classes": spec.num_classes, "shape": list(spec.shape) if spec.shape else None,
            "recommended_profile": spec.recommended_profile, "url": spec.url, "licence": spec.licence,
            "description": spec.description,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    # One line per dataset: cells are cut with an ellipsis, never wrapped; `info` has the full texts.
    cells = [
        [r["name"], "+".join(r["modalities"]), str(r["classes"]),
         "x".join(map(str, r["shape"])) if r["shape"] else "?", r["recommended_profile"], r["plugin"],
         _short_licence(r["licence"])]
        for r in rows
    ]
    console = Console()
    table = Table(title="datasets", caption="full licence, citation and files: bench datasets info NAME")
    facts = ("name", "modalities", "classes", "shape", "profile", "plugin")
    widths = [max([len(col)] + [len(c[i]) for c in cells]) for i, col in enumerate(facts)]
    for col, width in zip(facts, widths):
        table.add_column(col, no_wrap=True, overflow="ellipsis", min_width=width)
    # Short facts keep their width; the licence gets the rest (3 characters of border and padding per
    # column), cut with an ellipsis rather than wrapped, so each dataset stays one line.
    spare = console.width - sum(widths) - 3 * (len(facts) + 1) - 1
    table.add_column("licence", no_wrap=True, overflow="ellipsis", width=min(max(spare, 12), 60))
    for c in cells:
        table.add_row(*c)
    console.print(table)
    return 0


def _short_licence(text: str) -> str:
    """The licence itself, without the conditions after the first ``;`` (marked ``…`` when cut)."""
    head, sep, _rest = text.partition(";")
    return head.strip() + (" …" if sep else "")


_INFO_FACTS = ("layout", "source_dir", "normalisation", "verification", "official_split", "orientation",
               "lidar_bands", "labels")
"""Scene metadata shown by ``bench datasets info`` when the dataset records it."""

_CARD_TEXTS = ("description", "licence", "citation", "paper", "url", "obtain")
"""Card texts shown in full by ``bench datasets info`` (``list`` shortens the licence)."""


@datasets.command("info")
@click.argument("name")
@as_json
@click.option("--data-dir", type=click.Path(), envvar="BENCH_DATA_DIR", default=None, show_envvar=True,
              help="Folder with dataset files.")
def info(name: str, as_json: bool, data_dir: str | None) -> int:
    """Show a dataset's card and files; when its files are there, load it and count the official split.

    Without a complete set of files this is not an error: it prints the card (shape, bands,
    classes with the published split counts, licence, citation, sources), each file found or
    missing, the folders searched and the command that gets the files.
    """
    import numpy as np

    from bench_core.data.loader import RealDataset
    from bench_core.errors import BenchError, DatasetError
    from bench_core.plugins import load_plugins
    from bench_core.specs import DatasetContext
    from bench_core.tracking import bench_home

    host = load_plugins()
    spec = host.datasets.get(name)
    context = DatasetContext(data_dir=Path(data_dir) if data_dir else None, cache_dir=bench_home() / "cache")
    if isinstance(spec.load, RealDataset):
        try:  # finds the files (and hashes them once; the load below reuses the hashes)
            spec.load.fingerprint(context)
        except DatasetError as exc:
            _show_absent(spec, spec.load, host.datasets.plugin_of(name), context, data_dir, str(exc), as_json)
            return 0
    try:
        scene = spec.load(context)
    except DatasetError:
        _print_card(spec, as_json)  # what the files should be, then why they were not loaded (exit 2)
        raise
    except BenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's bug: one line naming it, not a traceback
        plugin = host.datasets.plugin_of(name)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise DatasetError(
            f"dataset {name!r}: the loader of plugin {plugin!r} raised {type(exc).__name__}: {first}; expected a "
            f"Scene or a DatasetError naming what is missing: report it to the plugin's authors (or reinstall it)"
        ) from None
    labels = np.asarray(scene.labels)
    k = scene.num_classes
    counts = {"labelled": np.bincount(labels.ravel(), minlength=k + 1)[1:]}
    for split_name, m in (("train", scene.official_train), ("test", scene.official_test)):
        if m is not None:
            sel = np.asarray(m) > 0
            counts[split_name] = np.bincount(labels[sel].ravel(), minlength=k + 1)[1:]
    classes = [
        {"label": i + 1, "name": n, **{key: int(v[i]) for key, v in counts.items()}}
        for i, n in enumerate(scene.class_names)
    ]
    data = {
        "name": scene.name, "shape": list(scene.shape), "bands": scene.bands, "classes": classes,
        "totals": {key: int(v.sum()) for key, v in counts.items()},
        "metadata": {k2: v for k2, v in scene.metadata.items() if isinstance(v, (str, int, float))},
        "sha256": dict(scene.metadata.get("sha256") or {}),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    bands = ", ".join(f"{m} {b}" for m, b in scene.bands.items())
    console.print(f"[bold]{scene.name}[/]  {scene.shape[0]} x {scene.shape[1]} pixels;  bands: {bands}")
    for key in _INFO_FACTS:
        if isinstance(scene.metadata.get(key), str):
            console.print(f"  {key}: {scene.metadata[key]}", highlight=False)
    if scene.official_train is None:
        console.print("  no official train/test maps: use per-class:N or fraction:p splits", highlight=False)
    table = Table(title="classes (official split)")
    table.add_column("label", justify="right")
    table.add_column("class")
    for key in counts:
        table.add_column(key, justify="right")
    for c in classes:
        table.add_row(str(c["label"]), c["name"], *[str(c[key]) for key in counts])
    table.add_row("", "total", *[str(data["totals"][key]) for key in counts])
    console.print(table)
    return 0


def _fetch_hint(spec: DatasetSpec, loader: RealDataset, data_dir: str | None, cache_dir: Path) -> str:
    """The command (or the manual step) that puts the files where ``info`` and ``run`` look."""
    from bench_core.data.fetch import dataset_folder

    if spec.files and loader.fetchable:
        option = f" --data-dir {shlex.quote(data_dir)}" if data_dir else ""
        folder = dataset_folder(spec.name, Path(data_dir) if data_dir else None, cache_dir)
        return (f"run `bench datasets fetch {spec.name}{option}` (downloads {', '.join(f.name for f in spec.files)} "
                f"into {folder})")
    source = f" from {loader.download_url}" if loader.download_url else ""
    return (f"no public download (`bench datasets fetch {spec.name}` cannot get it): obtain the files{source}, "
            f"put them in a folder named {spec.name!r} and pass its parent with --data-dir or BENCH_DATA_DIR")


def _show_absent(spec: DatasetSpec, loader: RealDataset, plugin: str, context: DatasetContext,
                 data_dir: str | None, reason: str, as_json: bool) -> None:
    """``info`` without a complete file set: the card, each file found or missing, where, and the fix."""
    from bench_core.data.cards import card_for
    from bench_core.data.locate import survey

    card = card_for(spec)
    found = survey(spec.name, loader.layouts, context, aliases=loader.aliases)
    fix = _fetch_hint(spec, loader, data_dir, Path(context.cache_dir))
    files = [
        {"layout": layout.name, "name": f, "required": f in layout.required,
         "path": str(found.found[layout.name][f]) if f in found.found[layout.name] else None}
        for layout in loader.layouts for f in layout.files
    ]
    searched = [{"path": str(r.path), "origin": r.origin, "exists": r.path.is_dir()} for r in found.roots]
    if as_json:
        click.echo(json.dumps({"name": spec.name, "loaded": False, "reason": reason, "card": card, "files": files,
                               "searched": searched, "fix": fix}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)  # long URLs and paths stay whole for copying
    shape = " x ".join(map(str, card["shape"])) + " pixels" if "shape" in card else "shape read from the files"
    bands = card.get("bands") or {m: "?" for m in card["modalities"]}
    modalities = ", ".join(f"{m} ({b} bands)" for m, b in bands.items())
    console.print(f"[bold]{escape(spec.name)}[/] (plugin {escape(plugin)}): {shape};  modalities: "
                  f"{escape(modalities)};  {card['num_classes']} classes")
    for key in _CARD_TEXTS:
        if isinstance(card.get(key), str):
            console.print(f"  {key}: {escape(card[key])}")
    split = card.get("official_split") or {}
    if split:
        sizes = " / ".join(f"{split[k]} {k}" for k in ("train", "test") if k in split)
        console.print(f"  official split: {sizes}" + (f" ({escape(split['source'])})" if "source" in split else ""))
    for note in card.get("notes", []):
        console.print(f"  note: {escape(note)}")
    for setting, meaning in (card.get("settings") or {}).items():
        console.print(f"  setting {escape(setting)}: {escape(str(meaning))}")
    columns = [c for c in ("official_train", "official_test", "labelled") if any(c in row for row in card["classes"])]
    table = Table(title="classes (published counts)")
    table.add_column("label", justify="right")
    table.add_column("class")
    for col in columns:
        table.add_column(col.replace("_", " "), justify="right")
    for row in card["classes"]:
        table.add_row(str(row["label"]), escape(row["name"]), *[str(row.get(col, "")) for col in columns])
    console.print(table)
    for f in card["files"]:
        console.print(f"  download: {escape(f['name'])}  sha256 {f['sha256']}  from {escape(', '.join(f['urls']))}")
    console.print("[bold]files[/]: no complete file set was found, so nothing was loaded")
    table = Table(show_header=True, box=None, padding=(0, 2))
    for col in ("layout", "file", "status"):
        table.add_column(col, no_wrap=col != "status")
    for f in files:
        status = f"found: {f['path']}" if f["path"] else ("missing" if f["required"] else "missing (optional)")
        table.add_row(f["layout"], escape(f["name"]), escape(status))
    console.print(table)
    console.print("  searched, in order:")
    for r in searched:
        console.print(f"    {escape(r['path'])} ({r['origin']})" + ("" if r["exists"] else ": does not exist"))
    console.print(f"  fix: {escape(fix)}")


def _print_card(spec: Any, as_json: bool) -> None:
    """The dataset card of a file-based dataset (stdout), for ``info`` when its files cannot be loaded."""
    from bench_core.data.cards import card_for, card_toml

    if not (spec.files or callable(getattr(spec.load, "card_info", None))):
        return
    if as_json:
        click.echo(json.dumps({"card": card_for(spec)}, indent=2))
    else:
        click.echo(f"# dataset card of {spec.name!r} (its files were not loaded: see the error below)")
        click.echo(card_toml(spec))


@datasets.command("fetch")
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="BENCH_DATA_DIR", default=None,
              show_envvar=True, help="Download into DIR/NAME instead of the cache ($BENCH_HOME/cache/NAME).")
@click.option("--mirror", "mirrors", multiple=True, metavar="URL",
              help="Base URL serving the files by name; replaces the known mirrors (repeat for fallbacks).")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Extra attempts per mirror after a network failure (partial downloads resume).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds without an answer or data before a request is given up.")
@as_json
def fetch(name: str, data_dir: str | None, mirrors: tuple[str, ...], retries: int, timeout: float,
          as_json: bool) -> int:
    """Download a dataset's files from its mirrors, verify their sha256 and unpack archives."""
    from pathlib import Path

    from bench_core.data.fetch import DownloadError, dataset_folder, fetch_dataset, summary
    from bench_core.plugins import load_plugins
    from bench_core.tracking import bench_home

    spec = load_plugins().datasets.get(name)
    if not spec.files:
        click.echo(f"dataset {spec.name!r} has no source files to download (it is generated on load)")
        return 0
    folder = dataset_folder(spec.name, Path(data_dir) if data_dir else None, bench_home() / "cache")
    try:
        report = fetch_dataset(spec, folder, mirrors=mirrors, retries=retries, timeout=timeout,
                               note=lambda message: click.echo(message, err=True))
    except DownloadError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    if as_json:
        click.echo(json.dumps(summary(report), indent=2))
        return 0
    for f in report.files:
        check = "sha256 ok" if f.verified else f"sha256 {f.sha256} (not pinned: unverified)"
        unpacked = f", unpacked {len(f.unpacked)} file(s)" if f.unpacked else ""
        click.echo(f"{f.name}: {f.action}, {check}{unpacked}")
    click.echo(f"dataset {report.dataset!r} is in {report.folder}")
    return 0


@datasets.command("export-cards")
@click.argument("names", nargs=-1)
@click.option("--dir", "folder", type=click.Path(file_okay=False), default="datasets", show_default=True,
              help="Folder of the cards (datasets/ of the repository).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 if a card is missing or differs from what the specs say.")
def export_cards(names: tuple[str, ...], folder: str, check: bool) -> int:
    """Write datasets/<name>.toml from the registered specs (default: every file-based dataset)."""
    from pathlib import Path

    from bench_core.data.cards import export_cards as write_cards
    from bench_core.plugins import load_plugins

    host = load_plugins()
    if names:
        specs = [host.datasets.get(n) for n in names]
    else:  # generated datasets (no files, no card facts) need no card
        specs = [host.datasets.get(n) for n in host.datasets.names()]
        specs = [s for s in specs if s.files or callable(getattr(s.load, "card_info", None))]
    results = write_cards(specs, Path(folder), check=check)
    for r in results:
        click.echo(f"{r.status:9}  {r.path}")
    stale = [r for r in results if r.status in ("missing", "differs")]
    if stale:
        click.echo(
            f"{len(stale)} card(s) out of date: run `bench datasets export-cards` and commit the result",
            err=True,
        )
        return 1
    return 0
