"""``bench datasets list|info``."""

from __future__ import annotations

import json
from typing import Any

import click

from bench_core.cli.options import as_json


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

    table = Table(title="datasets")
    for col in ("name", "modalities", "classes", "shape", "profile", "plugin", "licence"):
        table.add_column(col)
    for r in rows:
        shape = "x".join(map(str, r["shape"])) if r["shape"] else "?"
        table.add_row(r["name"], "+".join(r["modalities"]), str(r["classes"]), shape,
                      r["recommended_profile"], r["plugin"], r["licence"])
    Console().print(table)
    return 0


_INFO_FACTS = ("layout", "source_dir", "normalisation", "verification", "official_split", "orientation",
               "lidar_bands", "labels")
"""Scene metadata shown by ``bench datasets info`` when the dataset records it."""


@datasets.command("info")
@click.argument("name")
@as_json
@click.option("--data-dir", type=click.Path(), envvar="BENCH_DATA_DIR", default=None, show_envvar=True,
              help="Folder with dataset files.")
def info(name: str, as_json: bool, data_dir: str | None) -> int:
    """Load a dataset and show shape, bands, classes and the official split's counts per class."""
    from pathlib import Path

    import numpy as np

    from bench_core.errors import BenchError, DatasetError
    from bench_core.plugins import load_plugins
    from bench_core.specs import DatasetContext
    from bench_core.tracking import bench_home

    host = load_plugins()
    spec = host.datasets.get(name)
    try:
        scene = spec.load(DatasetContext(data_dir=Path(data_dir) if data_dir else None,
                                         cache_dir=bench_home() / "cache"))
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
