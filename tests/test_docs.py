"""Docs that cannot drift: hooks, environment variables, commands."""

from __future__ import annotations

import inspect
import re

from click.testing import CliRunner

from bench_core import hookspecs
from bench_core.cli import cli
from tests.conftest import REPO

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


def test_readme_commands_are_the_ones_ci_runs() -> None:
    ci = (REPO / "ci" / "run.sh").read_text()
    assert 'pip install torch==2.13.0 && pip install -e ".[test]"' in README
    assert "pip install torch==2.13.0\n" in ci and 'pip install -e ".[test]"' in ci
    assert "```bash\npytest\n```" in README and "\npytest\n" in ci


def test_readme_plugin_example_matches_the_fixture_package() -> None:
    fixture = (REPO / "tests/fixtures/bench-example-plugin/src/bench_example/__init__.py").read_text()
    for line in ('name="spectral-mlp"', 'input_kind="patch"', "def bench_register_methods(register):"):
        assert line in fixture and line.replace("\n", "") in README.replace("\n", "")
    assert 'mymethod = "bench_mymethod"' in README
