"""The one set of display formatters every leaderboard renderer uses (terminal, Markdown, HTML).

One rule for values that are not plain numbers: ``None`` and NaN are *missing* and show as
``-``; ``+inf`` and ``-inf`` are real (if degenerate) measurements, e.g. a throughput over a
zero inference time, and show as ``inf`` and ``-inf``, never as missing. CSV and JSON carry
raw numbers instead (JSON turns every non-finite value into ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MISSING = "-"


def _as_float(value: Any) -> float | None:
    """The value as a float, or None when it is missing (None, NaN or not a number at all)."""
    if value is None or isinstance(value, str):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _inf(v: float) -> str:
    return "inf" if v > 0 else "-inf"


def format_number(value: Any, digits: int = 2) -> str:
    """Fixed point with ``digits`` decimals: ``12.35``; ``-`` when missing, ``inf``/``-inf`` when infinite."""
    v = _as_float(value)
    if v is None:
        return MISSING
    return f"{v:.{digits}f}" if math.isfinite(v) else _inf(v)


def format_count(value: Any) -> str:
    """A rounded integer with thousands separators: ``1,234,567`` (parameters, pixels per second)."""
    v = _as_float(value)
    if v is None:
        return MISSING
    return f"{int(round(v)):,}" if math.isfinite(v) else _inf(v)


def format_sci(value: Any) -> str:
    """Three significant digits, scientific when large: ``5e+04``, ``1.23e+09`` (FLOPs)."""
    v = _as_float(value)
    if v is None:
        return MISSING
    return f"{v:.3g}" if math.isfinite(v) else _inf(v)


def format_mean_std(mean: Any, std: Any, digits: int = 2) -> str:
    """``mean ± std``; the mean alone when the std is missing (one seed); ``-`` when the mean is missing."""
    if _as_float(mean) is None:
        return MISSING
    if _as_float(std) is None:
        return format_number(mean, digits)
    return f"{format_number(mean, digits)} ± {format_number(std, digits)}"


def format_p(value: Any) -> str:
    """A p-value: 3 decimals, scientific below 0.001, ``<1e-16`` below double precision's reach."""
    v = _as_float(value)
    if v is None:
        return MISSING
    if v < 1e-16:
        return "<1e-16"
    return f"{v:.3f}" if v >= 0.001 else f"{v:.1e}"


def sort_value(value: Any) -> str:
    """A raw value for a sortable HTML cell (``data-v``): numbers as JavaScript's ``Number()`` reads
    them (``Infinity`` included), missing as empty, text as is."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if isinstance(value, bool):
        return str(value)
    v = _as_float(value)
    if v is None:
        return ""
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def method_label(row: Mapping[str, Any]) -> str:
    """Row label: the method, its variant when it has several configurations, and its status.

    The status (run tag ``bench.method.status``, from the model's ``bench_tags()``) marks a
    stand-in or an ablation, e.g. ``m3amba {STAND-IN: random CLIP weights}``, so that no
    board shows such a row under the bare name of the paper's method. A row whose runs had
    classes without a training pixel (run tag ``bench.classes_without_training``) is flagged
    ``(!no training pixels: class 3 Ground)``.
    """
    label = str(row["method"]) + (f" [{row['variant']}]" if row.get("variant") else "")
    status = row.get("method_status")
    label += f" {{{status}}}" if isinstance(status, str) and status else ""
    untrained = row.get("classes_without_training")
    return label + (f" (!no training pixels: class {untrained})" if isinstance(untrained, str) and untrained else "")
