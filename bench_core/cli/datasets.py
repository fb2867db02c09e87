"""``bench datasets list|info``."""

from __future__ import annotations

import json

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


@datasets.command("info")
@click.argument("name")
@as_json
@click.option("--data-dir", type=click.Path(), envvar="BENCH_DATA_DIR", default=None, show_envvar=True,
              help="Folder with dataset files.")
def info(name: str, as_json: bool, data_dir: str | None) -> int:
    """Load a dataset and show shape, bands, classes and the official split's counts per class."""
    from pathlib import Path

    import numpy as np

    from bench_core.plugins import load_plugins
    from bench_core.specs import DatasetContext
    from bench_core.tracking import bench_home

    host = load_plugins()
    spec = host.datasets.get(name)
    scene = spec.load(DatasetContext(data_dir=Path(data_dir) if data_dir else None,
                                     cache_dir=bench_home() / "cache"))
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
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    bands = ", ".join(f"{m} {b}" for m, b in scene.bands.items())
    console.print(f"[bold]{scene.name}[/]  {scene.shape[0]} x {scene.shape[1]} pixels;  bands: {bands}")
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
