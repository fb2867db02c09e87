"""The seams of the distribution: layout, entry points, wheel contents."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

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


def test_every_builtin_plugin_module_has_an_entry_point() -> None:
    modules = set(ENTRY_POINTS.values())
    root = REPO / "plugins" / "bench_plugins"
    for folder in ("methods", "datasets"):
        for path in (root / folder).glob("*.py"):
            if path.name == "__init__.py" or path.name.startswith("_"):
                continue
            assert f"bench_plugins.{folder}.{path.stem}" in modules, f"{path} is not registered"


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
    assert "bench_plugins/methods/two_branch_cnn.py" in names
    assert "bench_core/cli/run.py" in names
    for name, target in ENTRY_POINTS.items():
        assert f"{name} = {target}" in entry_points
    assert "bench = bench_core.cli:main" in entry_points
