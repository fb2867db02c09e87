"""The seams of the distribution: layout, entry points, wheel contents."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (the test extra)
    import tomli as tomllib

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ENTRY_POINTS = PYPROJECT["project"]["entry-points"]["bench"]


def test_top_level_layout() -> None:
    for name in ("pyproject.toml", "README.md", "bench_core", "plugins", "datasets", "leaderboards",
                 "tests", "ci", "benchmarks", "docs", ".ci/run"):
        assert (REPO / name).exists(), name
    # `datasets` and `plugins` must never be import packages (Hugging Face's `datasets`, generic names).
    assert not (REPO / "datasets" / "__init__.py").exists()
    assert not (REPO / "plugins" / "__init__.py").exists()


def builtin_plugin_modules() -> set[str]:
    """Dotted names of the built-in plugins: modules and packages directly under methods/ and datasets/.

    A package (``methods/mft/__init__.py`` + ``model.py``) is one plugin; its submodules are not.
    Names starting with ``_`` are shared helpers, not plugins.
    """
    root = REPO / "plugins" / "bench_plugins"
    found = set()
    for folder in ("methods", "datasets"):
        for path in (root / folder).iterdir():
            if path.name.startswith("_"):
                continue
            if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
                found.add(f"bench_plugins.{folder}.{path.stem if path.suffix == '.py' else path.name}")
    return found


def test_every_builtin_plugin_module_has_an_entry_point() -> None:
    modules = set(ENTRY_POINTS.values())
    plugins = builtin_plugin_modules()
    # Both shapes are present, so the scan cannot silently miss one of them.
    assert "bench_plugins.methods.svm" in plugins and "bench_plugins.methods.mft" in plugins
    missing = sorted(plugins - modules)
    assert not missing, f"built-in plugins without an entry point in [project.entry-points.bench]: {missing}"


def test_every_entry_point_names_a_builtin_module_or_package() -> None:
    root = REPO / "plugins"
    for name, target in ENTRY_POINTS.items():
        if target == "bench_plugins.protocols":
            continue
        path = root.joinpath(*target.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), (
            f"entry point {name} = {target!r}: neither {path}.py nor {path}/__init__.py exists"
        )
        assert target in builtin_plugin_modules(), f"entry point {name} = {target!r} is not a built-in plugin module"


def test_every_plugin_package_is_in_the_distribution() -> None:
    """setuptools lists packages explicitly: a plugin package missing there is absent from the wheel."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    root = REPO / "plugins" / "bench_plugins"
    packages = {
        "bench_plugins." + ".".join(p.parent.relative_to(root).parts)
        for p in root.rglob("__init__.py")
        if p.parent != root
    }
    assert not packages - listed, f"add to [tool.setuptools] packages: {sorted(packages - listed)}"


def test_distribution_name_and_console_script() -> None:
    assert PYPROJECT["project"]["name"] == "rs-fusion-bench"
    assert PYPROJECT["project"]["scripts"]["bench"] == "bench_core.cli:main"
    torch_req = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert "2.13.0" not in torch_req and ">=" in torch_req  # a range the CPU wheel satisfies


@pytest.mark.slow
def test_wheel_contains_packages_and_entry_points(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
           "--wheel-dir", str(tmp_path), str(REPO)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = tmp_path.glob("rs_fusion_bench-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        ep_file = next(n for n in names if n.endswith("entry_points.txt"))
        entry_points = zf.read(ep_file).decode()
    tops = {n.split("/")[0] for n in names if "dist-info" not in n}
    assert tops == {"bench_core", "bench_plugins"}
    assert "bench_plugins/methods/svm.py" in names
    assert "bench_plugins/methods/two_branch_cnn/model.py" in names
    assert "bench_plugins/datasets/synthetic/generator.py" in names
    assert "bench_core/cli/run.py" in names
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
