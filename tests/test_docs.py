"""Docs that cannot drift: hooks, environment variables, commands."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bench_core import hookspecs
from bench_core.cli import cli
from tests.conftest import COLLECTED, REPO

README = (REPO / "README.md").read_text()


def test_every_hook_and_argument_is_documented() -> None:
    text = (REPO / "docs" / "hooks.md").read_text()
    for name in hookspecs.HOOK_NAMES:
        spec = getattr(hookspecs, name)
        args = ", ".join(inspect.signature(spec).parameters)
        assert f"### {name}({args})" in text, f"docs/hooks.md lacks the heading '{name}({args})'"
        assert spec.__doc__ and ":param" in spec.__doc__


def test_hook_names_list_matches_the_module() -> None:
    defined = {n for n, f in vars(hookspecs).items() if n.startswith("bench_") and callable(f)}
    assert defined == set(hookspecs.HOOK_NAMES)


def test_environment_variables_are_in_help_and_readme() -> None:
    help_text = CliRunner().invoke(cli, ["--help"]).output
    source = "\n".join(p.read_text() for p in (REPO / "bench_core").rglob("*.py"))
    used = set(re.findall(r"\"(BENCH_[A-Z_]+)\"", source))
    assert used, "no BENCH_* variables found in the source"
    for var in used | {"MLFLOW_TRACKING_URI"}:
        assert var in help_text, f"{var} is read by the code but not listed in `bench --help`"
        assert var in README, f"{var} is not mentioned in README.md"


def test_every_command_is_in_the_readme() -> None:
    for name in cli.commands:
        assert f"bench {name}" in README, f"`bench {name}` is not documented in README.md"


def _commands(block: str) -> list[str]:
    """The commands of a shell block, comments dropped."""
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_readme_quick_start_is_the_scripts_ci_runs() -> None:
    """Two commands at the top of the README; CI runs the second, so the two cannot drift."""
    first = re.search(r"```bash\n(.*?)```", README, re.S)
    assert first and first.start() < README.index("\n## "), "the README must open with its quick-start block"
    assert _commands(first.group(1)) == ["bash ci/quickstart.sh", "bash ci/test.sh"]
    assert "exec bash ci/run.sh" in (REPO / ".ci" / "run").read_text()
    run = (REPO / "ci" / "run.sh").read_text()
    assert "\nbash ci/test.sh" in run and "bash ci/quickstart.sh &&" in run and "ci/check_quickstart.py" in run
    quickstart = (REPO / "ci" / "quickstart.sh").read_text()
    test = (REPO / "ci" / "test.sh").read_text()
    # the README's install line, as the scripts run it: torch's CPU wheel first, then the harness
    assert 'pip install torch==2.13.0 && pip install -e ".[test]"' in README
    assert '\npip install torch==2.13.0\npip install -e ".[test]"\n' in test
    assert "\npip install torch==2.13.0\npip install -e .\n" in quickstart
    assert "\nbench run\n" in quickstart
    assert "\nruff check . " in test and '\npytest "${xdist[@]}" "$@"\n' in test
    # ... on every core, as the README says CI runs it
    assert 'xdist=(-n "$workers" --dist loadfile)' in test and "pytest -n auto --dist loadfile" in README
    assert "`ruff check .`" in README and 'pytest -m "not slow"' in README


def test_readme_plugin_example_matches_the_fixture_package() -> None:
    fixture = (REPO / "tests/fixtures/bench-example-plugin/src/bench_example/__init__.py").read_text()
    for line in ('name="spectral-mlp"', 'input_kind="patch"', "def bench_register_methods(register):"):
        assert line in fixture and line.replace("\n", "") in README.replace("\n", "")
    assert 'mymethod = "bench_mymethod"' in README


_TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)(\[[^\]]*\])?")
# Every case of issue 14 (Reliability, round 2) has a row: these words are in the case column.
_RELIABILITY_CASES = (
    "--data-dir", "shape", "artifacts", "NaN", "no training pixel", "SIGTERM", "SIGKILL", "bench ui",
    "new store", "tracking server", "train.lr=abc", "train.milestones=5", "model.", "per-class:-3",
    "fraction:1.5", "spatial-blocks:0", "--seeds -1", "--seeds 0,1.5", "--device cuda", "--config-from-study",
    "foo://bar", "--experiment ''", "BENCH_HOME", "read-only", "corrupt", "--output", "--port",
    "datasets info", "wrong-width",
)


def _reliability_rows() -> list[list[str]]:
    """Rows of the ``| case | behaviour | test |`` tables of docs/reliability.md."""
    rows: list[list[str]] = []
    in_table = False
    for line in (REPO / "docs" / "reliability.md").read_text().splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells == ["case", "behaviour", "test"]:
            in_table = True
        elif in_table and not set("".join(cells)) <= set("-: "):
            rows.append(cells)
    return rows


def _collected_node_ids(files: list[str], session: pytest.Session) -> set[str]:
    """The node ids pytest collects from ``files``: this session's own collection when it
    covered every one of them (the whole suite: no second collection of the e2e modules, 12 s
    on a 2-core machine), else a ``pytest --collect-only`` of just those files."""
    ours = session.stash.get(COLLECTED, frozenset())
    if all(any(n.startswith(f"{f}::") for n in ours) for f in files):
        return {n for n in ours if n.split("::", 1)[0] in files}
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *files],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    return {line.strip() for line in collected.stdout.splitlines() if "::" in line}


@pytest.mark.slow
def test_reliability_catalogue_names_existing_tests(request: pytest.FixtureRequest) -> None:
    """docs/reliability.md names only tests pytest collects, and every fault test is in it."""
    rows = _reliability_rows()
    assert rows, "docs/reliability.md has no | case | behaviour | test | table"
    assert all(len(r) == 3 for r in rows), [r for r in rows if len(r) != 3]
    cases = " ".join(r[0] for r in rows)
    assert not [c for c in _RELIABILITY_CASES if c not in cases], "cases of issue 14 without a row"
    refs = [m.groups() for r in rows for m in _TEST_REF.finditer(r[2])]
    fault_files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "e2e").glob("test_faults_*.py"))
    files = sorted({f for f, _, _ in refs} | set(fault_files))
    assert not [f for f in files if not (REPO / f).is_file()], "docs/reliability.md names missing test files"
    node_ids = _collected_node_ids(files, request.session)
    functions = {n.split("[", 1)[0] for n in node_ids}
    unknown = [f"{f}::{name}{param or ''}" for f, name, param in refs
               if f"{f}::{name}{param or ''}" not in (node_ids if param else functions)]
    assert not unknown, f"docs/reliability.md names tests pytest does not collect: {unknown}"
    named = {f"{f}::{name}" for f, name, _ in refs}
    missing = sorted(fn for fn in functions if fn.split("::")[0] in fault_files and fn not in named)
    assert not missing, f"fault tests missing from docs/reliability.md: {missing}"
