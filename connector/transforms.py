"""A closed registry of named value transforms for mapping files (no eval, no templates).

A mapping names a transform as a string (`to_int`) or a one-key mapping with arguments
(`{join: {sep: ";"}}`), or a list of those applied in order. Each transform takes the value
found at the provider path and returns the new value, or None when there is nothing to write.
Arguments are validated when the mapping is loaded, so a typo fails before any vendor call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TransformFailed(ValueError):
    """The value cannot be transformed (for example 'abc' to_int); recorded as bad_value."""


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoArgs(_Args):
    pass


class JoinArgs(_Args):
    sep: str = ";"
    key: str | None = None  # join this key of each entry when the list holds objects


class TruncateArgs(_Args):
    length: int = Field(gt=0)


class MapValuesArgs(_Args):
    values: dict[str, Any]
    default: Any = None
    keep_unmapped: bool = False


class DefaultArgs(_Args):
    value: Any


_NUMBER_JUNK = re.compile(r"[,\s$€£]")


def _number(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TransformFailed(f"{value!r} is a boolean, not a number")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    text = _NUMBER_JUNK.sub("", str(value))
    try:
        return Decimal(text)
    except InvalidOperation:
        raise TransformFailed(f"{str(value)[:40]!r} is not a number") from None


def to_int(value: Any, args: NoArgs) -> int:
    number = _number(value)
    if not number.is_finite():
        raise TransformFailed(f"{value!r} is not a finite number")
    if number.adjusted() > 100:  # int() of '1e10000000' takes minutes; no field holds such a number
        raise TransformFailed(f"{str(value)[:40]!r} is too large a number")
    return int(number.to_integral_value())


def to_float(value: Any, args: NoArgs) -> float:
    number = _number(value)
    if not number.is_finite():
        raise TransformFailed(f"{value!r} is not a finite number")
    return float(number)


def to_string(value: Any, args: NoArgs) -> str:
    if isinstance(value, (dict, list)):
        raise TransformFailed("an object or list cannot become text; use join or a deeper path")
    return str(value)


def join(value: Any, args: JoinArgs) -> str:
    items = value if isinstance(value, list) else [value]
    parts: list[str] = []
    for item in items:
        if isinstance(item, dict):
            if args.key is None:
                raise TransformFailed("the list holds objects: give join a 'key' to join")
            item = item.get(args.key)
        if item is None or str(item).strip() == "":
            continue
        parts.append(str(item))
    return args.sep.join(parts)


def truncate(value: Any, args: TruncateArgs) -> str:
    return str(value)[: args.length]


def lower(value: Any, args: NoArgs) -> str:
    return str(value).lower()


def upper(value: Any, args: NoArgs) -> str:
    return str(value).upper()


def strip(value: Any, args: NoArgs) -> str:
    return str(value).strip()


def first(value: Any, args: NoArgs) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def map_values(value: Any, args: MapValuesArgs) -> Any:
    key = str(value)
    if key in args.values:
        return args.values[key]
    return value if args.keep_unmapped else args.default


def default(value: Any, args: DefaultArgs) -> Any:
    return value


@dataclass(frozen=True)
class TransformSpec:
    function: Callable[[Any, Any], Any]
    args: type[_Args]
    summary: str
    # Most transforms see only non-empty values; `default` is the one that fills an empty one.
    runs_on_empty: bool = False


REGISTRY: dict[str, TransformSpec] = {
    "to_int": TransformSpec(to_int, NoArgs, "a whole number ('1,192' and 1192.0 give 1192)"),
    "to_float": TransformSpec(to_float, NoArgs, "a decimal number ('$104,000,000' gives 104000000.0)"),
    "to_string": TransformSpec(to_string, NoArgs, "text"),
    "join": TransformSpec(join, JoinArgs, "a list joined by `sep` (entries' `key` for objects)"),
    "truncate": TransformSpec(truncate, TruncateArgs, "text cut to `length` characters"),
    "lower": TransformSpec(lower, NoArgs, "lower-case text"),
    "upper": TransformSpec(upper, NoArgs, "upper-case text"),
    "strip": TransformSpec(strip, NoArgs, "text without surrounding spaces"),
    "first": TransformSpec(first, NoArgs, "the first entry of a list"),
    "map_values": TransformSpec(map_values, MapValuesArgs, "a value looked up in `values`"),
    "default": TransformSpec(default, DefaultArgs, "`value` when the provider gave nothing", True),
}


def is_empty(value: Any) -> bool:
    """Empty answers never win a precedence and never clear a field."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, (list, dict)):
        return all(is_empty(v) for v in (value.values() if isinstance(value, dict) else value))
    return False


@dataclass(frozen=True)
class BoundTransform:
    name: str
    spec: TransformSpec
    args: _Args

    def apply(self, value: Any) -> Any:
        if is_empty(value):
            if not self.spec.runs_on_empty:
                return None
            assert isinstance(self.args, DefaultArgs)
            return self.args.value
        return self.spec.function(value, self.args)


def apply_chain(chain: tuple[BoundTransform, ...], value: Any) -> Any:
    for transform in chain:
        value = transform.apply(value)
    return value
