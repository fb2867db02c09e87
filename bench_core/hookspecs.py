"""Hook specifications: the plugin author's manual.

A plugin is a module (or object) with functions decorated by ``bench_core.hookimpl``
and named like the hooks below, made known through an entry point in the group
``bench``::

    [project.entry-points.bench]
    mymethod = "bench_mymethod"

An implementation may accept any subset of a hook's arguments, so new arguments can
be added to a hook without breaking existing plugins. Hooks are called with keyword
arguments only. This module imports nothing heavy: it is cheap to import and has no
import-time side effects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from bench_core.cells import Cell, CellResult
    from bench_core.specs import DatasetSpec, MethodSpec, SplitProtocol

PROJECT = "bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ----------------------------------------------------------------------------- registration


@hookspec
def bench_register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register the methods this plugin provides.

    :param register: call ``register(MethodSpec(...))`` once per method. The spec is
        validated at once; a malformed spec or a name another plugin already registered
        raises :class:`bench_core.errors.RegistryError` naming both plugins.

    Called once per plugin manager, when the registry is built (``bench run``,
    ``bench plugins``, ...). Return value is ignored. An exception raised here is
    caught: the plugin is listed with that error by ``bench plugins`` and its cells
    fail, while every other plugin runs.

    .. versionadded:: 0.1
    """


@hookspec
def bench_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register the datasets this plugin provides.

    :param register: call ``register(DatasetSpec(...))`` once per dataset (a dataset read
        from files: ``register(RealDataset(...).spec(...))``). Same validation and
        duplicate rules as :func:`bench_register_methods`.

    ``DatasetSpec.load(context)`` must read local files only (or generate data) and
    return a :class:`bench_core.scene.Scene`; downloading is a separate, explicit step.

    .. versionadded:: 0.1
    """


@hookspec
def bench_register_splits(register: Callable[[SplitProtocol], None]) -> None:
    """Register split protocols (``official``, ``per-class``, ``fraction``, ...).

    :param register: call ``register(SplitProtocol(...))`` once per protocol.

    ``SplitProtocol.make(scene, argument, rng)`` returns ``(train_index, test_index)``
    as flat pixel indices of labelled pixels. The harness carves the validation pixels
    from the training pixels and reports the split's leakage; a protocol never touches
    validation. A protocol declaring ``uses_patch_size=True`` is called as
    ``make(scene, argument, rng, patch_size=p)`` with the cell's patch or crop side.

    .. versionadded:: 0.1
    """


# ----------------------------------------------------------------------------- lifecycle


@hookspec
def bench_cell_started(cell: Cell) -> None:
    """Observe that a benchmark cell is about to run.

    :param cell: the :class:`bench_core.Cell` (method, profile, dataset, split,
        seed, resolved config and its stable key).

    Called before the dataset is loaded. Return value is ignored. An exception raised
    here is logged and ignored: an observer never fails a cell.

    .. versionadded:: 0.1
    """


@hookspec
def bench_cell_finished(cell: Cell, result: CellResult) -> None:
    """Observe that a benchmark cell ended.

    :param cell: the :class:`bench_core.Cell` that ran.
    :param result: its :class:`bench_core.CellResult`; ``result.status`` is
        ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"``, ``result.metrics`` holds what was
        logged and ``result.error`` the reason of a failure.

    Called after the MLflow run is closed. Return value is ignored; exceptions are
    logged and ignored.

    .. versionadded:: 0.1
    """


HOOK_NAMES: tuple[str, ...] = (
    "bench_register_methods",
    "bench_register_datasets",
    "bench_register_splits",
    "bench_cell_started",
    "bench_cell_finished",
)
