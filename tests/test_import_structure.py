"""Import structure: plugins use bench_core's public API only."""

from __future__ import annotations

import ast
import importlib

from tests.conftest import REPO

PLUGINS = REPO / "plugins" / "bench_plugins"
PUBLIC_MODULES = ("bench_core", "bench_core.ops", "bench_core.data")
"""The modules a plugin may import from; what they export is their ``__all__``."""


def bench_core_imports(source: str) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import of bench_core in ``source`` (name None: ``import m``).

    Imports under ``if TYPE_CHECKING:`` and inside functions count too: they are API use all the same.
    """
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "bench_core" or node.module.startswith("bench_core."):
                found += [(node.lineno, node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "bench_core"]
    return found


def violations(where: str, source: str, exports: dict[str, set[str]]) -> list[str]:
    problems = []
    for line, module, name in bench_core_imports(source):
        if module not in exports:
            problems.append(
                f"{where}:{line} imports {module}{'.' + name if name else ''}: only "
                f"{', '.join(PUBLIC_MODULES)} are public; import the name from one of them "
                f"(export it there if it is missing)"
            )
        elif name is not None and name not in exports[module]:
            problems.append(
                f"{where}:{line} imports {name!r} from {module}, which is not in {module}.__all__; "
                f"export it (and document it) or keep the helper inside the plugin"
            )
    return problems


def test_plugins_import_only_public_api() -> None:
    exports = {m: set(importlib.import_module(m).__all__) for m in PUBLIC_MODULES}
    files = sorted(PLUGINS.rglob("*.py"))
    assert len(files) > 10, f"found only {len(files)} plugin modules under {PLUGINS}"
    problems = [p for f in files for p in violations(str(f.relative_to(REPO)), f.read_text(), exports)]
    assert not problems, "plugins import private bench_core API:\n" + "\n".join(problems)


def test_the_walk_sees_private_imports() -> None:
    """The check itself can fail: a private helper, a private module and a TYPE_CHECKING import are caught."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from bench_core import hookimpl\n"
        "from bench_core.splits import window_cover\n"
        "import bench_core.training\n"
        "if TYPE_CHECKING:\n"
        "    from bench_core.ops import not_exported\n"
    )
    exports = {m: set(importlib.import_module(m).__all__) for m in PUBLIC_MODULES}
    found = violations("probe.py", source, exports)
    assert [p.split(" ")[0] for p in found] == ["probe.py:3", "probe.py:4", "probe.py:6"], found
    assert "imports bench_core.splits.window_cover" in found[0]
    assert "'not_exported' from bench_core.ops" in found[2]
