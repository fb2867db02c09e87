"""The test suite's own rules: reproducible property tests, one copy of each shared fixture."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
from hypothesis import settings

from tests.conftest import REPO

TESTS = REPO / "tests"


@functools.cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call of ``name(...)`` or ``x.name(...)`` in the test files (only files that
    mention ``name`` are parsed)."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if name not in path.read_text():
            continue
        for call in ast.walk(_parsed(path)):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            if (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) == name:
                found.append((path, call))
    return found


@pytest.mark.slow
def test_property_tests_are_derandomized() -> None:
    """tests/conftest.py loads a profile that fixes the examples; no test opts out of it."""
    assert settings.default.derandomize is True, "tests/conftest.py must load the derandomized 'bench' profile"
    assert settings.default.database is None
    calls = _calls("settings")
    assert calls, "no @settings found: has the property-test layout changed?"
    opted_out = [
        f"{path.relative_to(REPO)}:{call.lineno}"
        for path, call in calls
        for kw in call.keywords
        if kw.arg == "derandomize" and not (isinstance(kw.value, ast.Constant) and kw.value.value is True)
        or kw.arg in ("database", "parent")
    ]
    assert not opted_out, f"@settings overriding the derandomized profile (drop the argument): {opted_out}"


def test_torch_thread_pinning_lives_in_one_fixture() -> None:
    """``one_torch_thread`` in tests/conftest.py; a copy elsewhere drifts (and forgets to restore)."""
    copies = [
        f"{path.relative_to(REPO)}:{call.lineno}"
        for path, call in _calls("set_num_threads")
        if path != TESTS / "conftest.py"
    ]
    assert not copies, f"torch.set_num_threads outside tests/conftest.py: use the one_torch_thread fixture: {copies}"
