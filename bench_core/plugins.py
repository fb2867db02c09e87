"""Plugin loading (pluggy) and the registry of methods, datasets and split protocols.

Nothing happens at import time: :func:`load_plugins` builds a fresh plugin manager
each call, loads the ``bench`` entry points one by one (a plugin that fails to import
is recorded with its traceback and the others load), calls each plugin's register
hooks separately so that every spec knows which plugin it came from, and returns a
:class:`PluginHost`.

Every hook goes through pluggy, one plugin at a time: :func:`plugin_caller` asks pluggy for
a hook caller restricted to one plugin (``subset_hook_caller``), so tracing
(``BENCH_TRACE_PLUGINS=1``), hookwrappers and argument selection behave as pluggy
documents them, while an exception stays attributed to the plugin that raised it and
never stops the others.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import logging
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from bench_core import hookspecs
from bench_core.errors import PluginLoadError, RegistryError
from bench_core.specs import DatasetSpec, MethodSpec, SplitProtocol

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "bench"
ENV_ONLY = "BENCH_PLUGINS"
ENV_BLOCKED = "BENCH_DISABLE_PLUGINS"
ENV_TRACE = "BENCH_TRACE_PLUGINS"

T = TypeVar("T", MethodSpec, DatasetSpec, SplitProtocol)


@dataclass
class PluginInfo:
    """What ``bench plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(
        default_factory=lambda: {"methods": [], "datasets": [], "splits": []}
    )
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "registered": {k: list(v) for k, v in self.registered.items()},
            "error": self.error,
        }


@dataclass(frozen=True)
class Registered(Generic[T]):
    """A spec and the plugin that registered it."""

    spec: T
    plugin: str


class Registry(Generic[T]):
    """Name -> spec for one kind; duplicates raise naming both plugins."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Registered[T]] = {}

    def add(self, spec: T, plugin: str) -> None:
        self.check_new(spec, plugin)
        self._items[spec.name] = Registered(spec, plugin)

    def check_new(self, spec: T, plugin: str) -> None:
        """Raise the duplicate error of :meth:`add` if ``spec.name`` is taken, without adding."""
        existing = self._items.get(spec.name)
        if existing is not None:
            raise RegistryError(
                f"{self.kind} {spec.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"and by plugin {plugin!r}; uninstall or disable one of them "
                f"({ENV_BLOCKED}={plugin})"
            )

    def remove_plugin(self, plugin: str) -> list[str]:
        """Drop every spec ``plugin`` registered; returns their names."""
        names = [n for n, item in self._items.items() if item.plugin == plugin]
        for n in names:
            del self._items[n]
        return names

    def get(self, name: str) -> T:
        return self.entry(name).spec

    def entry(self, name: str) -> Registered[T]:
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; registered: {sorted(self._items) or 'none'} "
                f"(`bench plugins` lists what is installed)"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def plugin_of(self, name: str) -> str:
        return self.entry(name).plugin

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._items))


@dataclass
class PluginHost:
    """The loaded plugins, their registries, and typed calls of the lifecycle hooks."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo]
    methods: Registry[MethodSpec]
    datasets: Registry[DatasetSpec]
    splits: Registry[SplitProtocol]

    @property
    def errors(self) -> dict[str, str]:
        return {name: info.error for name, info in self.plugins.items() if info.error}

    def plugin_info(self, name: str) -> PluginInfo:
        return self.plugins[name]

    def cell_started(self, cell: Any) -> None:
        self._observe("bench_cell_started", cell=cell)

    def cell_finished(self, cell: Any, result: Any) -> None:
        self._observe("bench_cell_finished", cell=cell, result=result)

    def _observe(self, hook: str, **kwargs: Any) -> None:
        for plugin, exc in call_each(self.manager, hook, kwargs):
            if exc is not None:  # an observer never fails a cell
                log.warning("plugin %r raised in %s:\n%s", plugin, hook, "".join(traceback.format_exception(exc)))


def callees(pm: pluggy.PluginManager, hook: str) -> list[str]:
    """Names of the plugins implementing ``hook``, in pluggy's call order (``tryfirst`` first).

    A plugin whose impls of ``hook`` are all hookwrappers is not a callee: it wraps the others.
    """
    # get_hookimpls() lists impls in reverse call order.
    names: list[str] = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        if not (impl.hookwrapper or impl.wrapper) and impl.plugin_name not in names:
            names.append(impl.plugin_name)
    return names


def plugin_caller(pm: pluggy.PluginManager, hook: str, name: str) -> pluggy.HookCaller:
    """Pluggy's caller of ``hook`` restricted to plugin ``name`` (and every hookwrapper).

    Calls go through the manager, so tracing, wrappers and argument selection apply.
    """
    others = [pm.get_plugin(n) for n in callees(pm, hook) if n != name]
    return pm.subset_hook_caller(hook, remove_plugins=[p for p in others if p is not None])


def call_each(
    pm: pluggy.PluginManager, hook: str, kwargs: Mapping[str, Any]
) -> list[tuple[str, BaseException | None]]:
    """Call ``hook`` through pluggy once per implementing plugin, in pluggy's call order.

    Returns ``(plugin name, exception or None)`` per plugin: one plugin raising never keeps
    the next from being called. An exception raised by a hookwrapper is attributed to the
    plugin it was wrapping.
    """
    outcomes: list[tuple[str, BaseException | None]] = []
    for name in callees(pm, hook):
        try:
            plugin_caller(pm, hook, name)(**kwargs)
        except Exception as exc:
            outcomes.append((name, exc))
        else:
            outcomes.append((name, None))
    return outcomes


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager that knows the ``bench_*`` hook specs (no plugins yet)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get(ENV_TRACE):
        # stderr, not logging: the CLI configures no handler and the trace is asked for explicitly.
        pm.trace.root.setwriter(_write_trace)
        pm.enable_tracing()
    return pm


def _hashable(plugin: object) -> object:
    """``plugin`` itself, or for an unhashable one (a ``SimpleNamespace`` of hookimpls) a module
    holding the same attributes: pluggy's ``subset_hook_caller`` keeps plugins in a set."""
    try:
        hash(plugin)
    except TypeError:
        module = types.ModuleType(getattr(plugin, "__name__", type(plugin).__name__))
        for attr in dir(plugin):
            if not attr.startswith("__"):
                setattr(module, attr, getattr(plugin, attr))
        return module
    return plugin


def _write_trace(message: str) -> None:
    sys.stderr.write(f"[bench trace] {message.rstrip()}\n")


def _split_env(name: str) -> list[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return [p.strip() for p in value.split(",") if p.strip()]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in eps:  # the same distribution can be seen twice on odd sys.paths
        seen.setdefault(ep.name, ep)
    return [seen[k] for k in sorted(seen)]


def load_plugins(
    only: Iterable[str] | None = None,
    blocked: Iterable[str] = (),
    extra: Mapping[str, object] | None = None,
    entry_points: bool = True,
) -> PluginHost:
    """Load plugins and build the registries.

    Args:
        only: entry-point names to load (default: ``$BENCH_PLUGINS`` if set, else all).
        blocked: entry-point names never to load (plus ``$BENCH_DISABLE_PLUGINS``).
        extra: ``{name: module_or_object}`` registered in-process (tests, notebooks).
        entry_points: set ``False`` to load only ``extra``.
    """
    only_list = list(only) if only is not None else _split_env(ENV_ONLY)
    blocked_set = set(blocked) | set(_split_env(ENV_BLOCKED) or [])
    pm = make_plugin_manager()
    infos: dict[str, PluginInfo] = {}

    if entry_points:
        for ep in _entry_points():
            if ep.name in blocked_set or (only_list is not None and ep.name not in only_list):
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
            infos[ep.name] = info
            try:
                pm.register(_hashable(ep.load()), name=ep.name)
            except Exception as exc:
                info.error = _format_error(exc, f"plugin {ep.name!r} ({ep.value}) failed to load")
        if only_list is not None:
            for name in only_list:
                if name not in infos and name not in (extra or {}):
                    infos[name] = PluginInfo(
                        name=name,
                        module="?",
                        error=(
                            f"plugin {name!r} was asked for ({ENV_ONLY} or --plugins) but no entry "
                            f"point of that name is installed in group {ENTRY_POINT_GROUP!r}"
                        ),
                    )
    for name, plugin in (extra or {}).items():
        info = PluginInfo(name=name, module=getattr(plugin, "__name__", type(plugin).__name__))
        infos[name] = info
        try:
            pm.register(_hashable(plugin), name=name)
        except Exception as exc:
            info.error = _format_error(exc, f"plugin {name!r} failed to register")

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        bad = exc.plugin
        bad_name = pm.get_name(bad) if bad is not None else None
        if bad_name in infos:
            infos[bad_name].error = _format_error(exc, f"plugin {bad_name!r} has an unknown hook")
            pm.unregister(name=bad_name)
        else:
            raise PluginLoadError(str(exc)) from exc

    for name, info in infos.items():
        plugin = pm.get_plugin(name)
        if plugin is not None:
            info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])

    host = PluginHost(
        manager=pm,
        plugins=infos,
        methods=Registry("method"),
        datasets=Registry("dataset"),
        splits=Registry("split"),
    )
    _collect(host, "bench_register_splits", host.splits, "splits")
    _collect(host, "bench_register_datasets", host.datasets, "datasets")
    _collect(host, "bench_register_methods", host.methods, "methods")
    return host


def _collect(host: PluginHost, hook: str, registry: Registry[Any], kind: str) -> None:
    """Call each plugin's impl of a register hook on its own, attributing what it registers.

    A plugin's specs enter the registry only once its hook returned: a plugin that raises
    halfway registers nothing, and what it registered through earlier register hooks is
    withdrawn too, so a failed plugin never leaves half its specs behind.
    """
    pending: dict[str, list[Any]] = {}

    def register_for(plugin: str) -> Callable[[Any], None]:
        def register(spec: Any) -> None:
            registry.check_new(spec, plugin)
            mine = pending.setdefault(plugin, [])
            if any(s.name == spec.name for s in mine):
                raise RegistryError(
                    f"{registry.kind} {spec.name!r} is registered twice by plugin {plugin!r}; "
                    f"call register() once per {registry.kind}"
                )
            mine.append(spec)

        register.__qualname__ = f"register[{plugin}]"  # names the plugin in pluggy's trace
        return register

    # Sorted by name, not pluggy's order (last registered first): a duplicate name is
    # attributed to the same plugin whatever the installation order.
    for name in sorted(callees(host.manager, hook)):
        if host.plugins[name].error:
            continue
        try:
            plugin_caller(host.manager, hook, name)(register=register_for(name))
        except Exception as exc:
            _withdraw(host, name, _format_error(exc, f"plugin {name!r} raised in {hook}"))
            continue
        for spec in pending.get(name, []):
            registry.add(spec, name)
            host.plugins[name].registered[kind].append(spec.name)


def _withdraw(host: PluginHost, name: str, error: str) -> None:
    """Mark plugin ``name`` failed and remove every spec it registered so far."""
    info = host.plugins[name]
    info.error = error
    for registry in (host.methods, host.datasets, host.splits):
        registry.remove_plugin(name)
    for kind in info.registered:
        info.registered[kind] = []


def _format_error(exc: BaseException, headline: str) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{headline}: {type(exc).__name__}: {exc}\n{tb}"


def select(names: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """Names matching any shell-style pattern (``all`` and ``*`` match everything)."""
    names = list(names)
    pats = [p for p in patterns]
    if any(p in ("all", "*") for p in pats):
        return sorted(names)
    return sorted({n for n in names for p in pats if fnmatch.fnmatchcase(n, p)})

