"""``bench plugins``: what is installed, from which distribution, and what failed to load."""

from __future__ import annotations

import json

import click

from bench_core.cli.options import as_json


@click.command()
@as_json
def plugins(as_json: bool) -> int:
    """List installed plugins (entry-point group 'bench'), what each registered, and load errors."""
    from bench_core.plugins import load_plugins

    host = load_plugins()
    infos = [host.plugins[name].to_dict() for name in sorted(host.plugins)]
    exit_code = 1 if host.errors else 0  # a plugin that failed to load is an error to see
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return exit_code
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bench plugins")
    for col in ("plugin", "module", "distribution", "methods", "datasets", "splits", "status"):
        table.add_column(col)
    for info in infos:
        reg = info["registered"]
        dist = f"{info['distribution']} {info['version']}" if info["distribution"] else "(in-process)"
        state = "ok" if not info["error"] else "ERROR: " + info["error"].splitlines()[0]
        table.add_row(info["name"], info["module"], dist, ", ".join(reg["methods"]),
                      ", ".join(reg["datasets"]), ", ".join(reg["splits"]), state)
    Console().print(table)
    return exit_code
