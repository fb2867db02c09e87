"""Plugin loading (pluggy) and the registry of methods, datasets and split protocols.

Nothing happens at import time: :func:`load_plugins` builds a fresh plugin manager
each call, loads the ``bench`` entry points one by one (a plugin that fails to import
is recorded with its traceback and the others load), calls each plugin's register
hooks separately so that every spec knows which plugin it came from, and returns a
:class:`PluginHost`.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import logging
import os
import traceback
from collections.abc import Iterable, Mapping
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
        existing = self._items.get(spec.name)
        if existing is not None:
            raise RegistryError(
                f"{self.kind} {spec.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"and by plugin {plugin!r}; uninstall or disable one of them "
                f"({ENV_BLOCKED}={plugin})"
            )
        self._items[spec.name] = Registered(spec, plugin)

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
        # Each observer is called on its own so one raising never hides the others.
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception:  # an observer never fails a cell
                log.warning("plugin %r raised in %s:\n%s", impl.plugin_name, hook, traceback.format_exc())


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager that knows the ``bench_*`` hook specs (no plugins yet)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if os.environ.get(ENV_TRACE):
        pm.trace.root.setwriter(lambda msg: log.warning("%s", msg.rstrip()))
        pm.enable_tracing()
    return pm


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
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
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
            pm.register(plugin, name=name)
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
    """Call each plugin's impl of a register hook separately, attributing what it registers."""
    impls = getattr(host.manager.hook, hook).get_hookimpls()
    for impl in sorted(impls, key=lambda i: i.plugin_name):
        name = impl.plugin_name
        info = host.plugins[name]
        if info.error:
            continue

        def register(spec: Any, _plugin: str = name) -> None:
            registry.add(spec, _plugin)
            host.plugins[_plugin].registered[kind].append(spec.name)

        try:
            impl.function(**({"register": register} if "register" in impl.argnames else {}))
        except Exception as exc:
            info.error = _format_error(exc, f"plugin {name!r} raised in {hook}")


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

