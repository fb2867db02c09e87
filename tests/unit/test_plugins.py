"""Plugin loading and the registry (pluggy, entry points, attribution, errors)."""

from __future__ import annotations

import types

import pytest

from bench_core import DatasetSpec, MethodSpec, RegistryError, hookimpl, load_plugins
from bench_core.plugins import Registry, make_plugin_manager

PROFILES = {"paper": {}, "fast": {}}


def method(name: str) -> MethodSpec:
    return MethodSpec(name=name, build=lambda c, i: None, input_kind="patch", patch_size=3,
                      modalities=("hsi",), profiles=PROFILES, description="t")


def plugin_registering(*names: str) -> object:
    @hookimpl
    def bench_register_methods(register):
        for n in names:
            register(method(n))

    return types.SimpleNamespace(bench_register_methods=bench_register_methods)


def test_builtins_come_through_the_entry_point_group() -> None:
    host = load_plugins()
    for name in ("protocols", "synthetic", "svm", "two-branch-cnn", "fusion-fcn"):
        info = host.plugins[name]
        assert info.distribution == "rs-fusion-bench" and info.version and info.error is None
    assert host.methods.plugin_of("two-branch-cnn") == "two-branch-cnn"
    assert host.datasets.plugin_of("synthetic") == "synthetic"
    assert {"official", "per-class", "fraction"} <= set(host.splits.names())
    assert host.plugins["svm"].registered["methods"] == ["svm"]


def test_duplicate_names_are_an_error_naming_both_plugins() -> None:
    host = load_plugins(entry_points=False, extra={"first": plugin_registering("dup"), "second": plugin_registering("dup")})
    assert host.methods.plugin_of("dup") == "first"
    err = host.plugins["second"].error
    assert err and "'dup' is registered twice" in err and "'first'" in err and "'second'" in err


def test_registry_rejects_duplicates_directly() -> None:
    reg: Registry[MethodSpec] = Registry("method")
    reg.add(method("a"), "p1")
    with pytest.raises(RegistryError, match="by plugin 'p1' and by plugin 'p2'"):
        reg.add(method("a"), "p2")
    with pytest.raises(RegistryError, match="unknown method 'b'; registered: \\['a'\\]"):
        reg.get("b")


def test_a_misspelled_hook_is_reported_by_check_pending() -> None:
    @hookimpl
    def bench_register_method(register):  # singular: no such hook
        pass

    typo = types.SimpleNamespace(bench_register_method=bench_register_method)
    host = load_plugins(entry_points=False, extra={"typo": typo, "good": plugin_registering("fine")})
    assert "bench_register_method" in host.plugins["typo"].error
    assert host.methods.names() == ["fine"]


def test_a_plugin_raising_in_register_is_isolated() -> None:
    @hookimpl
    def bench_register_datasets(register):
        raise ValueError("cannot find my data")

    bad = types.SimpleNamespace(bench_register_datasets=bench_register_datasets)
    host = load_plugins(entry_points=False, extra={"bad": bad, "good": plugin_registering("ok")})
    assert "cannot find my data" in host.plugins["bad"].error
    assert host.methods.names() == ["ok"]


def test_bench_plugins_env_restricts_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_PLUGINS", "svm,protocols")
    host = load_plugins()
    assert sorted(host.plugins) == ["protocols", "svm"]
    assert host.methods.names() == ["svm"]
    monkeypatch.setenv("BENCH_PLUGINS", "svm,not-installed")
    host = load_plugins()
    assert "no entry point of that name" in host.plugins["not-installed"].error


def test_disable_plugins_env_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_DISABLE_PLUGINS", "fusion-fcn")
    host = load_plugins()
    assert "fusion-fcn" not in host.plugins and "fusion-fcn" not in host.methods


def test_each_load_builds_a_fresh_manager() -> None:
    a, b = load_plugins(), load_plugins()
    assert a.manager is not b.manager
    assert a.methods.names() == b.methods.names()
    assert make_plugin_manager().get_plugins() == set()


def test_an_observer_that_raises_does_not_stop_the_others() -> None:
    seen: list[str] = []

    @hookimpl
    def bench_cell_started(cell):
        raise RuntimeError("observer bug")

    @hookimpl
    def bench_cell_finished(cell, result):
        seen.append(result)

    host = load_plugins(
        entry_points=False,
        extra={
            "bad": types.SimpleNamespace(bench_cell_started=bench_cell_started),
            "good": types.SimpleNamespace(bench_cell_finished=bench_cell_finished),
        },
    )
    host.cell_started(cell="c")
    host.cell_finished(cell="c", result="done")
    assert seen == ["done"]


@pytest.mark.parametrize("bad", ["Upper", "has space", "", "-lead", "dot.name"])
def test_names_are_validated_on_register(bad: str) -> None:
    with pytest.raises(RegistryError, match="name"):
        method(bad)


def test_specs_need_paper_and_fast_profiles() -> None:
    with pytest.raises(RegistryError, match=r"profiles \['fast'\] missing"):
        MethodSpec(name="x", build=lambda c, i: None, input_kind="patch", patch_size=3,
                   modalities=("hsi",), profiles={"paper": {}})


def test_dataset_spec_validation() -> None:
    with pytest.raises(RegistryError, match="load must be callable"):
        DatasetSpec(name="d", load=None, modalities=("hsi",), class_names=("a",))  # type: ignore[arg-type]


def test_a_plugin_raising_halfway_keeps_none_of_its_specs() -> None:
    @hookimpl
    def bench_register_datasets(register):
        register(DatasetSpec(name="half-ds", load=lambda c: None, modalities=("hsi",), class_names=("a",)))

    @hookimpl
    def bench_register_methods(register):
        register(method("half-a"))
        raise ValueError("second method is broken")

    half = types.SimpleNamespace(bench_register_datasets=bench_register_datasets,
                                 bench_register_methods=bench_register_methods)
    host = load_plugins(entry_points=False, extra={"half": half, "good": plugin_registering("ok")})
    assert "second method is broken" in host.plugins["half"].error
    assert host.methods.names() == ["ok"]
    assert "half-ds" not in host.datasets
    assert host.plugins["half"].registered == {"methods": [], "datasets": [], "splits": []}


def test_hooks_go_through_pluggy_wrappers_and_tryfirst_apply() -> None:
    order: list[str] = []

    def observer(label: str, **marks: bool) -> object:
        @hookimpl(**marks)
        def bench_cell_started(cell):
            order.append(label)
            if label == "late":
                raise RuntimeError("late observer bug")

        return types.SimpleNamespace(bench_cell_started=bench_cell_started)

    @hookimpl(wrapper=True)
    def bench_cell_started(cell):
        order.append("wrap>")
        try:
            return (yield)
        finally:
            order.append("<wrap")

    wrapper = types.SimpleNamespace(bench_cell_started=bench_cell_started)
    host = load_plugins(
        entry_points=False,
        extra={"late": observer("late", trylast=True), "early": observer("early", tryfirst=True), "wrapper": wrapper},
    )
    host.cell_started(cell="c")
    # the wrapper wraps each plugin's own call; the raising observer does not stop the wrapper's exit
    assert order == ["wrap>", "early", "<wrap", "wrap>", "late", "<wrap"]


@pytest.mark.slow
def test_trace_env_prints_hook_calls_of_bench_plugins() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "BENCH_TRACE_PLUGINS": "1", "BENCH_PLUGINS": "svm,protocols"}
    code = "import sys; from bench_core.cli import main; sys.exit(main(['plugins']))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[bench trace]" in proc.stderr and "bench_register_methods [hook]" in proc.stderr
    quiet = subprocess.run([sys.executable, "-c", code], env={**env, "BENCH_TRACE_PLUGINS": ""},
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "[bench trace]" not in quiet.stderr


def test_loading_every_builtin_plugin_imports_no_torch() -> None:
    """Registration is cheap: method plugins import their torch models only in build()."""
    import subprocess
    import sys

    code = (
        "import sys; from bench_core import load_plugins; host = load_plugins(); "
        "assert not host.errors, host.errors; "
        "print(len(host.methods), sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    count, modules = proc.stdout.split(" ", 1)
    assert int(count) >= 10 and modules.strip() == "[]", proc.stdout
