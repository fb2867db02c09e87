"""Config helpers shared by every place that layers one config on another.

A profile's ``model`` section under ``--set`` values (:meth:`bench_core.specs.MethodSpec.resolve`),
a study's fixed overrides under a trial's sampled values and tuned values under ``--set``
(:mod:`bench_core.tuning`) are all the same operation: :func:`deep_merge`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` on top of ``base``: nested mappings are merged key by key, anything else in ``extra`` wins.

    Neither argument is modified; the result shares the unmerged values (not copies) with them.
    """
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


__all__ = ["deep_merge"]
