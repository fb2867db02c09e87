"""The real-data tests' guard: a missing ../shared skips on a laptop and fails in CI."""

from __future__ import annotations

import pytest

from tests.conftest import skip_or_fail_in_ci


def test_missing_real_data_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="maps not found"):
        skip_or_fail_in_ci("maps not found")


def test_missing_real_data_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="maps not found"):
        skip_or_fail_in_ci("maps not found")
