"""Import structure: bench_core's modules import each other without cycles."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

BENCH_CORE = REPO / "bench_core"

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
