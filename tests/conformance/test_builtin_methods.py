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


# Checked in the full suite only, not in the fast loop (`pytest -m "not slow"`): the dense methods
# with large backbones (each check trains or compares whole models, seconds each on a CPU), and
# the S2Mamba variants, which share the network the fast loop checks as `s2mamba`.
HEAVY_METHODS = ("bdgf", "comix", "m3amba", "m3amba-concat", "s2mamba-fused", "s2mamba-bidir")


def _registered_methods(heavy: bool) -> list[str]:
    return [name for name in load_plugins().methods.names() if (name in HEAVY_METHODS) == heavy]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_builtin_reference_methods_are_registered() -> None:
    host = load_plugins()
    missing = [name for name in BUILTIN_METHODS if name not in host.methods]
    assert not missing, f"built-in methods {missing} are not registered; plugin errors: {host.errors}"
    stale = [name for name in HEAVY_METHODS if name not in host.methods]
    assert not stale, f"HEAVY_METHODS names {stale}, which no plugin registers: update the list"


@parametrize_with_method_checks(_registered_methods(heavy=False))
def test_method_conforms(method: MethodSpec, check: Check) -> None:
    check(method)


@pytest.mark.slow
@parametrize_with_method_checks(_registered_methods(heavy=True))
def test_heavy_method_conforms(method: MethodSpec, check: Check) -> None:
    check(method)
