"""Every method the installed plugins register passes the conformance suite (timm style:
the registry drives the test list)."""

from __future__ import annotations


import pytest

from bench_core import MethodSpec, load_plugins
from bench_core.testing import Check, parametrize_with_method_checks

BUILTIN_METHODS = (
    "svm", "two-branch-cnn", "fusion-fcn", "mft", "s2mamba", "s2mamba-fused", "s2mamba-bidir", "m3amba",
    "m3amba-concat", "comix",
)


def _registered_methods() -> list[str]:
    return load_plugins().methods.names()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_builtin_reference_methods_are_registered() -> None:
    host = load_plugins()
    missing = [name for name in BUILTIN_METHODS if name not in host.methods]
    assert not missing, f"built-in methods {missing} are not registered; plugin errors: {host.errors}"


@parametrize_with_method_checks(_registered_methods())
def test_method_conforms(method: MethodSpec, check: Check) -> None:
    check(method)
