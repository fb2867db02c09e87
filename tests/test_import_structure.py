"""Import structure: bench_core's modules import each other without cycles; plugins use its public API only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from tests.conftest import REPO

BENCH_CORE = REPO / "bench_core"
PLUGINS = REPO / "plugins" / "bench_plugins"
PUBLIC_MODULES = ("bench_core", "bench_core.ops", "bench_core.data")
"""The modules a plugin may import from; what they export is their ``__all__``."""

KNOWN_CYCLES: dict[tuple[str, ...], str] = {}
"""Cycles that exist today, each with the reason it is tolerated. A listed cycle that is gone fails
the test too, so that this list only ever shrinks."""


def module_name(path: Path, root: Path) -> str:
    """``bench_core.tuning.storage`` for ``<root>/bench_core/tuning/storage.py`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, name: str, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``path`` (module ``name``) imports, wherever the import stands.

    Imports inside functions count (they run, only later); imports under ``if TYPE_CHECKING:``
    do not (they never run). ``from package import sub`` is an import of ``package.sub`` when
    that is a module, else of ``package``. Importing ``a.b`` also runs ``a/__init__``, but
    counting that would make every re-exporting package a cycle with its own submodules.
    """
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_statement(other)
                continue
            visit_statement(child)

    def visit_statement(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif target in modules:
                    found.add(target)
        else:
            visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found.discard(name)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """``{module: modules it imports}`` for every module of ``package``, intra-package edges only."""
    paths = {module_name(p, package.parent): p for p in sorted(package.rglob("*.py"))}
    modules = set(paths)
    return {name: imported_modules(path, name, modules) for name, path in paths.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge found by a depth-first search, each as ``[a, b, ..., a]``.

    Every graph with a cycle has a back edge, so an empty answer means no cycle at all.
    """
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "active" while on the DFS path, "done" afterwards
    path: list[str] = []

    def dfs(node: str) -> None:
        state[node] = "active"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "active":
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                dfs(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    return cycles


def test_bench_core_has_no_import_cycles() -> None:
    graph = import_graph(BENCH_CORE)
    assert len(graph) > 30 and graph["bench_core.tuning.study"], "the walk found too few modules or imports"
    found = {tuple(sorted(set(cycle))): cycle for cycle in find_cycles(graph)}
    new = [" -> ".join(cycle) for key, cycle in found.items() if key not in KNOWN_CYCLES]
    assert not new, (
        "import cycles in bench_core:\n  " + "\n  ".join(new) + "\nbreak each one: move what both modules "
        "need into a lower module, or import from the submodule that defines the name, not its package"
    )
    gone = sorted(set(KNOWN_CYCLES) - set(found))
    assert not gone, f"cycles {gone} no longer exist; remove them from KNOWN_CYCLES"


def test_the_cycle_walk_sees_function_level_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """The check itself can fail: a deferred import closes a cycle, a TYPE_CHECKING one does not."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.c import C\n"
        "def f():\n    from pkg import a\n    return a\n"
    )
    (package / "c.py").write_text("from . import b\n")
    (package / "sub" / "__init__.py").write_text("from ..c import b\n")
    graph = import_graph(package)
    assert graph == {
        "pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.b"}, "pkg.sub": {"pkg.c"},
    }
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


# ----------------------------------------------------------------------------- plugins: public API only


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
