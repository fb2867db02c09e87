"""The seams of the distribution: layout, entry points, declared dependencies, version, wheel contents."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport pyproject.toml declares for it
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ENTRY_POINTS = PYPROJECT["project"]["entry-points"]["bench"]


def test_top_level_layout() -> None:
    for name in ("pyproject.toml", "README.md", "bench_core", "plugins", "datasets", "leaderboards",
                 "tests", "ci", "benchmarks", "docs", ".ci/run"):
        assert (REPO / name).exists(), name
    # `datasets` and `plugins` must never be import packages (Hugging Face's `datasets`, generic names).
    assert not (REPO / "datasets" / "__init__.py").exists()
    assert not (REPO / "plugins" / "__init__.py").exists()


def _module_path(dotted: str) -> Path | None:
    """The source of a ``bench_plugins.*`` module: a ``.py`` file or a package folder."""
    base = REPO / "plugins" / Path(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def test_every_builtin_plugin_module_has_an_entry_point() -> None:
    root = REPO / "plugins" / "bench_plugins"
    plugins = set()
    for folder in ("methods", "datasets"):
        # a plugin is a module (methods/svm.py) or a package (methods/bdgf/); _private ones are helpers
        for path in (root / folder).iterdir():
            if path.name.startswith("_") or not (path.suffix == ".py" or (path / "__init__.py").is_file()):
                continue
            plugins.add(f"bench_plugins.{folder}.{path.stem}")
    assert "bench_plugins.methods.bdgf" in plugins  # the package-shaped plugin is seen
    unregistered = sorted(plugins - set(ENTRY_POINTS.values()))
    assert not unregistered, (
        f"built-in plugins without an entry point: {unregistered}; add 'NAME = \"MODULE\"' to "
        f"[project.entry-points.bench] in pyproject.toml (or prefix a helper module with _)"
    )
    dangling = sorted(f"{name} = {target}" for name, target in ENTRY_POINTS.items() if _module_path(target) is None)
    assert not dangling, f"entry points naming no module under plugins/: {dangling}"


def test_distribution_name_and_console_script() -> None:
    assert PYPROJECT["project"]["name"] == "rs-fusion-bench"
    assert PYPROJECT["project"]["scripts"]["bench"] == "bench_core.cli:main"
    torch_req = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert "2.13.0" not in torch_req and ">=" in torch_req  # a range the CPU wheel satisfies


def test_version_is_written_once() -> None:
    """bench_core.__version__ is the version (it keys every cell); pyproject reads it, never repeats it."""
    import bench_core

    assert "version" not in PYPROJECT["project"], "pyproject.toml repeats the version: keep it dynamic"
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bench_core._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", bench_core.__version__), bench_core.__version__
    written = [p for p in (REPO / "bench_core").rglob("*.py") if "__version__ = " in p.read_text()]
    assert written == [REPO / "bench_core" / "_version.py"], written


# Import name -> distribution for modules that are optional here (not installed, so importlib
# cannot map them) or installed only on some Pythons.
_NOT_INSTALLED_HERE = {"mamba_ssm": "mamba-ssm", "DCNv4": "dcnv4", "tomli": "tomli"}
# Our own top-level names, and the fixture packages' (including the broken one's missing import).
_OURS = {"bench_core", "bench_plugins", "tests", "benchmarks", "bench_example", "bench_broken",
         "a_dependency_that_is_not_installed"}
# Standard library on the newer Pythons only; imported under a version check (tomli on 3.10).
_STDLIB_SINCE_311 = {"tomllib"}


def _module_distributions() -> dict[str, set[str]]:
    """Top-level import name -> installed distributions providing it.

    ``importlib.metadata.packages_distributions`` reads only ``top_level.txt`` on Python 3.10,
    which wheels built without setuptools (numpy, scipy) lack; their RECORD has the names too.
    """
    found: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        if not dist.metadata["Name"]:  # a broken leftover of an uninstall
            continue
        names = (dist.read_text("top_level.txt") or "").split()
        if not names:  # the first path component of each installed file (RECORD: "path,hash,size")
            tops = {line.split(",", 1)[0].split("/", 1)[0] for line in (dist.read_text("RECORD") or "").splitlines()}
            names = [top.removesuffix(".py") for top in tops
                     if top and not top.startswith(("..", "__")) and not top.endswith((".dist-info", ".data", ".pth"))]
        for name in names:
            found.setdefault(name, set()).add(_normalise(dist.metadata["Name"]))
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in requirements}


def _third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level module -> files importing it, for absolute imports of non-stdlib, non-project modules."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} - _OURS - _STDLIB_SINCE_311 - set(sys.stdlib_module_names):
                found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


@pytest.mark.slow
def test_every_imported_distribution_is_declared() -> None:
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    runtime = _requirement_names(project["dependencies"])
    optional = set().union(*(_requirement_names(reqs) for name, reqs in extras.items() if name != "test"))
    test = _requirement_names(extras["test"])
    # bench_core.testing.parametrize_with_method_checks builds pytest marks: it runs inside a plugin
    # author's pytest session, so pytest is theirs to have, not a dependency of the harness.
    library = runtime | optional | {"pytest"}
    by_module = _module_distributions()
    for folder, allowed, where in (
        ("bench_core", library, "dependencies (or an extra, for an optional import)"),
        ("plugins", library, "dependencies (or an extra, for an optional import)"),
        ("tests", runtime | optional | test, "the test extra"),
        ("benchmarks", runtime | optional | test, "the test extra"),
    ):
        undeclared = {}
        for module, files in _third_party_imports(REPO / folder).items():
            # a module some installed distributions share (mlflow: mlflow, mlflow-skinny) needs one declared
            dists = by_module.get(module) or {_NOT_INSTALLED_HERE.get(module, "?")}
            if not dists & allowed:
                undeclared[module] = (sorted(dists), sorted(files)[:3])
        assert not undeclared, (
            f"{folder}/ imports modules whose distribution pyproject.toml does not declare "
            f"(module: (distributions, files)): {undeclared}; add one to {where}"
        )


@pytest.mark.slow
def test_wheel_contains_packages_and_entry_points(tmp_path: Path) -> None:
    import bench_core

    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
           "--wheel-dir", str(tmp_path), str(REPO)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = tmp_path.glob("rs_fusion_bench-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        ep_file = next(n for n in names if n.endswith("entry_points.txt"))
        entry_points = zf.read(ep_file).decode()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    tops = {n.split("/")[0] for n in names if "dist-info" not in n}
    assert tops == {"bench_core", "bench_plugins"}
    assert "bench_plugins/methods/svm.py" in names
    assert "bench_plugins/methods/two_branch_cnn/model.py" in names
    assert "bench_plugins/datasets/synthetic/generator.py" in names
    assert "bench_core/cli/run.py" in names
    # every package of the source tree is in the wheel (a new subpackage needs no list to be edited)
    source = {str(p.parent.relative_to(REPO)) for p in (REPO / "bench_core").rglob("__init__.py")}
    source |= {str(p.parent.relative_to(REPO / "plugins")) for p in (REPO / "plugins").rglob("__init__.py")}
    packaged = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    assert packaged == source, f"missing from the wheel: {sorted(source - packaged)}"
    # PEP 561: type checkers use the annotations of an installed harness
    assert {"bench_core/py.typed", "bench_plugins/py.typed"} <= set(names)
    assert f"\nVersion: {bench_core.__version__}\n" in metadata
    for name, target in ENTRY_POINTS.items():
        assert f"{name} = {target}" in entry_points
    assert "bench = bench_core.cli:main" in entry_points


@pytest.mark.slow
def test_wheel_ships_the_leaderboard_data_and_bench_leaderboard_finds_it(tmp_path: Path) -> None:
    """Board specs, paper_numbers.toml and the HTML template are package data, found without a checkout."""
    # Built from a clean copy: a build/ folder left in the checkout would hide missing package data.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("bench_core", "plugins"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
           "--wheel-dir", str(tmp_path), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = tmp_path.glob("rs_fusion_bench-*.whl")
    shipped = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "bench_core" / "leaderboard").glob("*/*")
                     if p.suffix in (".toml", ".j2", ".css", ".js"))
    assert "bench_core/leaderboard/builtin/paper_numbers.toml" in shipped
    assert "bench_core/leaderboard/templates/leaderboard.html.j2" in shipped
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert not [p for p in shipped if p not in names], "package data missing from the wheel"
        zf.extractall(site, [n for n in names if n.startswith(("bench_core/", "bench_plugins/"))])
    # The installed code alone (no source tree, another working directory) finds its boards.
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = (
        "import sys\n"
        "from bench_core.cli import main\n"
        "from bench_core.leaderboard import default_paper_numbers, find_board_spec\n"
        "from bench_core.tracking import MLflowTracker\n"
        f"site = {str(site)!r}\n"
        "assert find_board_spec('bdgf-protocol').is_relative_to(site), find_board_spec('bdgf-protocol')\n"
        "assert default_paper_numbers().is_relative_to(site), default_paper_numbers()\n"
        "MLflowTracker(None, 'bench')  # the default store under BENCH_HOME\n"
        "sys.exit(main(['leaderboard', '--board', 'synthetic', '--format', 'html', '--output', 'board.html']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(site), BENCH_HOME=str(work))
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    page = (work / "board.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Synthetic scene" in page
