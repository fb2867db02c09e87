"""Running the conformance checks: on one method (:func:`check_method`) or as pytest items.

scikit-learn's ``check_estimator`` / ``parametrize_with_checks`` pattern: a check is a plain
function of the spec, known failures are declared with a reason, and a declared failure
that passes is reported, so that the list cannot go stale.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bench_core.errors import ConfigError
from bench_core.specs import MethodSpec
from bench_core.testing.checks import ALL_CHECKS, Check

# ----------------------------------------------------------------------------- running them

ExpectedFailures = Mapping[str, str] | Callable[[MethodSpec], Mapping[str, str]] | None


def check_name(check: Check) -> str:
    """``check_<property>`` of a check function (or of the function a partial wraps)."""
    return getattr(check, "__name__", None) or getattr(getattr(check, "func", None), "__name__", repr(check))


def method_checks(spec: MethodSpec) -> Iterator[tuple[MethodSpec, Check]]:
    """Yield ``(spec, check)`` for every conformance check, in a fixed order."""
    for check in ALL_CHECKS:
        yield spec, check


def _resolve_spec(spec_or_name: MethodSpec | str, host: Any = None) -> MethodSpec:
    if isinstance(spec_or_name, MethodSpec):
        return spec_or_name
    if host is None:
        from bench_core.plugins import load_plugins

        host = load_plugins()
    return host.methods.get(spec_or_name)


def _expected_for(spec: MethodSpec, expected_failed_checks: ExpectedFailures) -> dict[str, str]:
    if expected_failed_checks is None:
        return {}
    table = expected_failed_checks(spec) if callable(expected_failed_checks) else expected_failed_checks
    known = {check_name(c) for c in ALL_CHECKS}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"expected_failed_checks for method {spec.name!r} names unknown check(s) {unknown}; "
            f"expected some of {sorted(known)}"
        )
    for name, reason in table.items():
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(
                f"expected_failed_checks[{name!r}] for method {spec.name!r} = {reason!r}; "
                f"expected a non-empty reason"
            )
    return dict(table)


def check_method(
    spec_or_name: MethodSpec | str,
    host: Any = None,
    expected_failed_checks: ExpectedFailures = None,
) -> dict[str, str]:
    """Run every check on one method and report each outcome.

    Args:
        spec_or_name: a :class:`MethodSpec`, or a registered method name (looked up in
            ``host.methods``, or in a fresh :func:`bench_core.load_plugins` host).
        host: a :class:`bench_core.PluginHost` to resolve names with.
        expected_failed_checks: ``{check_name: reason}`` (or ``spec -> {...}``) of
            known failures.

    Returns:
        ``{check_name: "passed" | "failed: <msg>" | "skipped: <reason>" | "xfail: <reason>"}``.
        A check listed as expected to fail that passes is reported as failed, so the
        list cannot go stale.
    """
    spec = _resolve_spec(spec_or_name, host)
    expected = _expected_for(spec, expected_failed_checks)
    report: dict[str, str] = {}
    for _, check in method_checks(spec):
        name = check_name(check)
        try:
            check(spec)
        except unittest.SkipTest as skip:
            report[name] = f"skipped: {skip}"
            continue
        except Exception as exc:  # a check's failure is data here, not a crash
            msg = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            report[name] = f"xfail: {expected[name]}" if name in expected else f"failed: {msg}"
            continue
        if name in expected:
            report[name] = (
                f"failed: expected to fail ({expected[name]}) but passed; "
                f"remove it from expected_failed_checks"
            )
        else:
            report[name] = "passed"
    return report


def parametrize_with_method_checks(
    names_or_specs: Any,
    expected_failed_checks: ExpectedFailures = None,
) -> Any:
    """A ``pytest.mark.parametrize("method, check", ...)`` with one item per (method, check).

    Item ids are ``<method>-check_<property>``, so ``pytest -k check_forward_shapes``
    selects one property across methods. Names are resolved through
    :func:`bench_core.load_plugins` at collection time. Checks in
    ``expected_failed_checks`` (``{check_name: reason}`` for every method, or
    ``spec -> {check_name: reason}``) are marked ``xfail(strict=True)`` with the reason.

    Use it as::

        @parametrize_with_method_checks(["my-method"])
        def test_conformance(method, check):
            check(method)
    """
    import pytest

    if isinstance(names_or_specs, (str, MethodSpec)):  # one method given bare, not its characters
        names_or_specs = [names_or_specs]
    host = None
    specs: list[MethodSpec] = []
    for item in names_or_specs:
        if not isinstance(item, MethodSpec) and host is None:
            from bench_core.plugins import load_plugins

            host = load_plugins()
        specs.append(_resolve_spec(item, host))
    params = []
    for spec in specs:
        expected = _expected_for(spec, expected_failed_checks)
        for _, check in method_checks(spec):
            name = check_name(check)
            marks = [pytest.mark.xfail(reason=expected[name], strict=True)] if name in expected else []
            params.append(pytest.param(spec, check, id=f"{spec.name}-{name}", marks=marks))
    return pytest.mark.parametrize("method, check", params)


__all__ = ["ExpectedFailures", "check_method", "check_name", "method_checks", "parametrize_with_method_checks"]
