"""Config helpers: layering one config on another, and checking a method's ``model`` section.

Layering. A profile's ``model`` section under ``--set`` values
(:meth:`bench_core.specs.MethodSpec.resolve`), a study's fixed overrides under a trial's sampled
values and tuned values under ``--set`` (:mod:`bench_core.tuning`) are all the same operation:
:func:`deep_merge`.

Model options. A method declares its ``model.*`` keys once, as a frozen dataclass whose fields
carry the type and the default; :func:`option` adds bounds, a fixed length and a hint for the
error message. :func:`model_options` turns a resolved ``model`` section into an instance of that
class: unknown keys, values of the wrong type and values out of bounds raise
:class:`~bench_core.errors.ConfigError` naming the method, the key, the value and what was
expected. What one key requires of another (``dim`` divisible by ``heads``) stays in the method's
own ``validate_model``, after this call::

    @dataclass(frozen=True)
    class MyOptions:
        width: int = option(64, ge=1, hint="channels of each conv layer")
        dropout: float = option(0.1, ge=0, lt=1)
        widths: tuple[int, ...] = option((32, 64), ge=1)
        norm: Literal["batch", "layer"] = "batch"

    def validate_model(config: Mapping[str, Any]) -> MyOptions:
        return model_options(MyOptions, config, method="my-method")

Supported field types: ``int``, ``float`` (any finite real number; ints are kept as given),
``bool``, ``str``, ``Literal[...]`` (the value must equal a choice and be of its type),
``tuple[int, ...]`` / ``tuple[float, ...]`` (a non-empty list, or exactly ``length`` items;
bounds apply to each item; returned as a tuple), fixed tuples such as ``tuple[float, float]``,
``Mapping[str, Any]``, ``Any`` (not checked) and unions of these (``int | None``,
``float | Literal["scale"]``: bounds apply to the numeric member). A bool is never taken for an
int or a number. Annotations are evaluated with :func:`typing.get_type_hints`, so the names they
use must be imported at run time, not only under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import math
import numbers
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from bench_core.errors import ConfigError

T = TypeVar("T")
_RULE_KEY = "bench_core.option"
_UNIONS = (Union, types.UnionType)
_NONE = type(None)


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


def is_int(value: object) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float (not a bool, not a string such as ``"abc"`` from ``--set``)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def reject_unknown_keys(where: str, config: Mapping[str, Any], known: Iterable[str]) -> None:
    """Raise :class:`ConfigError` naming the keys of ``config`` outside ``known``, and the known ones.

    ``where`` starts the message, e.g. ``"svm model config"``.
    """
    known = sorted(known)
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {known}")


# --------------------------------------------------------------------------- model options


@dataclass(frozen=True)
class _Rule:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    length: int | None = None
    hint: str = ""
    expect: str = ""


_NO_RULE = _Rule()


def option(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    length: int | None = None,
    hint: str = "",
    expect: str = "",
) -> Any:
    """A field of a model-options dataclass: its default plus what :func:`model_options` checks.

    Args:
        default: the value when the config leaves the key out (use a tuple, not a list).
        ge, gt, le, lt: bounds (>=, >, <=, <) of an ``int`` or ``float`` value, or of each item
            of a tuple value.
        length: the exact number of items of a ``tuple[X, ...]`` value (else at least one).
        hint: added to the error message in parentheses, e.g. ``"token width, 64 in the paper"``.
        expect: replaces the generated "expected ..." text when a domain word says it better
            (``"a probability in [0, 1)"``).
    """
    for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)):
        if bound is not None and not is_number(bound):
            raise TypeError(f"option({default!r}, {name}={bound!r}): expected a finite number or None")
    if (ge is not None and gt is not None) or (le is not None and lt is not None):
        raise TypeError(f"option({default!r}): give one lower bound (ge or gt) and one upper (le or lt)")
    if length is not None and (not is_int(length) or length < 1):
        raise TypeError(f"option({default!r}, length={length!r}): expected a positive integer or None")
    rule = _Rule(ge=ge, gt=gt, le=le, lt=lt, length=length, hint=hint, expect=expect)
    return field(default=default, metadata={_RULE_KEY: rule})


def model_options(
    options: type[T],
    config: Mapping[str, Any],
    *,
    method: str,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> T:
    """``config`` (a resolved ``model`` section) checked against the dataclass ``options``, as an instance.

    Keys left out take the field defaults. Raises :class:`ConfigError` for a key that is not a
    field (naming the fields) or a value that does not fit its field's type and :func:`option`
    bounds; the message names ``method``, the key, the value and what was expected. Sequences
    for tuple fields come back as tuples (items of ``tuple[float, ...]`` as floats); other values
    are kept as given.

    Args:
        options: a dataclass whose fields are the ``model.*`` keys.
        config: the ``model`` section.
        method: the method's name, first word of every message.
        choices: allowed values of ``str`` fields whose list is only known at run time (a list
            that lives in a module importing torch), ``{key: allowed}``.
    """
    if not (isinstance(options, type) and is_dataclass(options)):
        raise TypeError(f"model_options: {options!r} is not a dataclass; declare the model keys as one")
    declared = [f for f in fields(options) if f.init]
    reject_unknown_keys(f"{method} model config", config, [f.name for f in declared])
    hints = _type_hints(options)
    extra = sorted(set(choices or {}) - {f.name for f in declared})
    if extra:
        raise TypeError(f"model_options({options.__name__}): choices for {extra}, which are not fields")
    values: dict[str, Any] = {}
    for f in declared:
        if f.name in config:
            value = config[f.name]
        elif f.default is not MISSING:
            value = f.default
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        else:  # a field without a default is a required key
            raise ConfigError(f"{method} model config: key {f.name!r} is missing; it has no default")
        kind = hints[f.name]
        if choices and f.name in choices:
            kind = Literal[tuple(choices[f.name])]
        rule = f.metadata.get(_RULE_KEY, _NO_RULE)
        ok, checked = _accepts(kind, rule, value)
        if not ok:
            hint = f" ({rule.hint})" if rule.hint else ""
            raise ConfigError(
                f"{method} model.{f.name} = {value!r}: expected {rule.expect or _describe(kind, rule)}{hint}"
            )
        values[f.name] = checked
    return options(**values)


@cache
def _type_hints(options: type) -> dict[str, Any]:
    try:
        return get_type_hints(options)
    except NameError as err:
        raise TypeError(
            f"{options.__name__}: a field annotation names {err.name!r}, which is not defined at run time; "
            f"import it at module level (not only under TYPE_CHECKING)"
        ) from None


def _within(value: float, rule: _Rule) -> bool:
    return not (
        (rule.ge is not None and value < rule.ge)
        or (rule.gt is not None and value <= rule.gt)
        or (rule.le is not None and value > rule.le)
        or (rule.lt is not None and value >= rule.lt)
    )


def _tuple_items(kind: Any, rule: _Rule) -> tuple[Any, int | None]:
    """(item type, exact count or None) of a tuple annotation."""
    args = get_args(kind)
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0], rule.length
    if len(set(args)) != 1:
        raise TypeError(f"model options: {kind} mixes item types; expected tuple[X, ...] or tuple[X, X]")
    return args[0], len(args)


def _accepts(kind: Any, rule: _Rule, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` fits ``kind`` and ``rule``, the value to store)."""
    origin = get_origin(kind)
    if kind is Any:
        return True, value
    if kind is _NONE:
        return value is None, value
    if origin in _UNIONS:
        for member in get_args(kind):
            ok, checked = _accepts(member, rule, value)
            if ok:
                return True, checked
        return False, value
    if origin is Literal:
        return any(type(value) is type(c) and value == c for c in get_args(kind)), value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return is_int(value) and _within(value, rule), value
    if kind is float:
        return is_number(value) and _within(value, rule), value
    if kind is str:
        return isinstance(value, str), value
    if origin is tuple:
        item, count = _tuple_items(kind, rule)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return False, value
        if (count is not None and len(value) != count) or not value:
            return False, value
        checked = [_accepts(item, rule, v) for v in value]
        if not all(ok for ok, _ in checked):
            return False, value
        return True, tuple(float(v) if item is float else v for _, v in checked)
    if kind is Mapping or origin is Mapping or kind is dict or origin is dict:
        return isinstance(value, Mapping), value
    raise TypeError(
        f"model options: field type {kind!r} is not supported; use int, float, bool, str, Literal[...], "
        f"tuple[int, ...], tuple[float, ...], Mapping[str, Any], Any or a union of these"
    )


def _number(value: float) -> str:
    return f"{value:g}"


def _bounds(rule: _Rule) -> str:
    low = ("[", rule.ge) if rule.ge is not None else ("(", rule.gt) if rule.gt is not None else None
    high = (rule.le, "]") if rule.le is not None else (rule.lt, ")") if rule.lt is not None else None
    if low and high:
        return f" in {low[0]}{_number(low[1])}, {_number(high[0])}{high[1]}"
    if low:
        return f" {'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if high:
        return f" {'<=' if high[1] == ']' else '<'} {_number(high[0])}"
    return ""


def _positive(kind: type, rule: _Rule) -> bool:
    """Whether the only bound says "> 0" (for an int, ">= 1" says the same)."""
    if rule.le is not None or rule.lt is not None:
        return False
    return rule.gt == 0 or (kind is int and rule.ge == 1)


def _describe(kind: Any, rule: _Rule) -> str:
    """What a value of ``kind`` under ``rule`` must be, in words: ``"a number in [0, 1)"``."""
    origin = get_origin(kind)
    if kind is _NONE:
        return "null"
    if origin in _UNIONS:
        members = get_args(kind)
        text = " or ".join(_describe(m, rule) for m in members if m is not _NONE)
        return f"null or {text}" if _NONE in members else text
    if origin is Literal:
        allowed = get_args(kind)
        return repr(allowed[0]) if len(allowed) == 1 else f"one of {list(allowed)}"
    if kind is bool:
        return "true or false"
    if kind is int:
        return "a positive integer" if _positive(int, rule) else f"an integer{_bounds(rule)}"
    if kind is float:
        return "a positive number" if _positive(float, rule) else f"a number{_bounds(rule)}"
    if kind is str:
        return "a string"
    if origin is tuple:
        item, count = _tuple_items(kind, rule)
        noun = "integers" if item is int else "numbers"
        return f"{count} {noun}{_bounds(rule)}" if count else f"a non-empty list of {noun}{_bounds(rule)}"
    if kind is Any:
        return "any value"
    return "a mapping"


__all__ = ["deep_merge", "is_int", "is_number", "model_options", "option", "reject_unknown_keys"]
