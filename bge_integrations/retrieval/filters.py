"""Metadata filters: a small Mongo-like language, parsed once and applied before top-k.

Grammar (a filter is a dict; several keys in one dict are AND-ed)::

    {"lang": "en"}                          implicit equality ($eq)
    {"year": {"$gte": 2020, "$lt": 2024}}   operators on one field, AND-ed
    {"lang": {"$in": ["en", "de"]}}         $eq $ne $in $gt $gte $lt $lte
    {"$or": [{"lang": "en"}, {"year": 2024}]}   $and / $or take a non-empty list of filters

Values are str, int (any size), float or bool; ranges take numbers. A filter nests at most
:data:`MAX_FILTER_DEPTH` levels, holds at most :data:`MAX_FILTER_CONDITIONS` conditions and
``$in`` lists at most :data:`MAX_IN_VALUES` values; beyond that it is refused with a
``ValueError`` (as are bytes where a list is expected). Equality is type-aware (``True`` does
not equal ``1``; ``1`` equals ``1.0``). A list-valued metadata field matches when any element
does (Qdrant's rule). A missing field matches only ``$ne``. Field names are top-level metadata
keys; they may not start with ``$`` nor contain ``.``, ``[``, ``]`` or ``"`` (those are Qdrant
key-path syntax).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Condition", "And", "Or", "FilterNode", "parse_filter", "filter_mask",
           "COMPARISONS", "MAX_FILTER_DEPTH", "MAX_FILTER_CONDITIONS", "MAX_IN_VALUES"]

#: deepest nesting of ``$and`` / ``$or`` accepted
MAX_FILTER_DEPTH = 32
#: most conditions (field operators) in one filter
MAX_FILTER_CONDITIONS = 1024
#: most values in one ``$in`` list
MAX_IN_VALUES = 65536
_NOT_LISTS = (str, bytes, bytearray, memoryview)

Scalar = str | int | float | bool
#: range operator -> comparison
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_FIELD_OPS = ("$eq", "$ne", "$in", *COMPARISONS)
_LOGIC_OPS = ("$and", "$or")
_BAD_FIELD_CHARS = frozenset('.[]"')


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite_number(value: object) -> bool:
    """A number usable in a filter: any int (however big), or a finite float."""
    return _is_number(value) and (isinstance(value, int) or math.isfinite(value))


def _value_test(op: str, value: Scalar | tuple[Scalar, ...]) -> Callable[[object], bool]:
    """A fast test of one metadata value: type-aware membership, or a numeric comparison."""
    if op in COMPARISONS:
        compare, bound = COMPARISONS[op], value
        return lambda v: (type(v) is int or type(v) is float) and compare(v, bound)
    wanted = value if isinstance(value, tuple) else (value,)
    strs = frozenset(v for v in wanted if isinstance(v, str))
    bools = frozenset(v for v in wanted if isinstance(v, bool))
    numbers = frozenset(v for v in wanted if _is_number(v))

    def test(v: object) -> bool:
        kind = type(v)
        if kind is str:
            return v in strs
        if kind is bool:
            return v in bools
        return (kind is int or kind is float) and v in numbers

    return test


_MISSING = object()


@dataclass(frozen=True)
class Condition:
    """One operator applied to one metadata field."""

    field: str
    op: str
    value: Scalar | tuple[Scalar, ...]
    _test: Callable[[object], bool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _value_test(self.op, self.value))

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document's metadata satisfies this condition."""
        raw = metadata.get(self.field, _MISSING)
        if raw is _MISSING:
            return self.op == "$ne"
        hit = any(map(self._test, raw)) if type(raw) is list else self._test(raw)
        return not hit if self.op == "$ne" else hit


@dataclass(frozen=True)
class And:
    """All children match."""

    children: tuple[FilterNode, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether every child matches."""
        return all(c.matches(metadata) for c in self.children)


@dataclass(frozen=True)
class Or:
    """At least one child matches."""

    children: tuple[FilterNode, ...]

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether any child matches."""
        return any(c.matches(metadata) for c in self.children)


FilterNode = Condition | And | Or


def _scalar(value: object, where: str) -> Scalar:
    if isinstance(value, str | bool) or _finite_number(value):
        return value  # type: ignore[return-value]
    msg = f"{where}: values must be str, int, float or bool, got {value!r:.60}."
    raise ValueError(msg)


def _field_conditions(field: str, spec: object, count: list[int]) -> list[FilterNode]:
    if not field or field[0] == "$" or _BAD_FIELD_CHARS & set(field):
        msg = (f"Invalid filter field {field!r}: use a top-level metadata key without "
               f"'.', '[', ']' or '\"'; the only '$' keys at this level are "
               f"{', '.join(_LOGIC_OPS)}.")
        raise ValueError(msg)
    if not isinstance(spec, Mapping):
        return [Condition(field, "$eq", _scalar(spec, f"filter on {field!r}"))]
    if not spec:
        msg = f"filter on {field!r} is an empty dict; give an operator: {', '.join(_FIELD_OPS)}."
        raise ValueError(msg)
    out: list[FilterNode] = []
    for op, value in spec.items():
        where = f"filter {field!r} {op}"
        count[0] += 1
        if count[0] > MAX_FILTER_CONDITIONS:
            msg = (f"the filter has more than {MAX_FILTER_CONDITIONS} conditions; use $in for "
                   "many values of one field.")
            raise ValueError(msg)
        if op in ("$eq", "$ne"):
            out.append(Condition(field, op, _scalar(value, where)))
        elif op == "$in":
            if isinstance(value, _NOT_LISTS) or not isinstance(value, Sequence) or not value:
                msg = f"{where} needs a non-empty list of values, got {value!r:.60}."
                raise ValueError(msg)
            if len(value) > MAX_IN_VALUES:
                msg = f"{where} has {len(value)} values; at most {MAX_IN_VALUES} are accepted."
                raise ValueError(msg)
            out.append(Condition(field, op, tuple(_scalar(v, where) for v in value)))
        elif op in COMPARISONS:
            if not _finite_number(value):
                msg = f"{where} needs a finite number, got {value!r:.60}."
                raise ValueError(msg)
            out.append(Condition(field, op, value))
        else:
            msg = f"Unknown operator {op!r} on field {field!r}; valid: {', '.join(_FIELD_OPS)}."
            raise ValueError(msg)
    return out


def _parse(spec: object, where: str, depth: int, count: list[int]) -> FilterNode:
    if depth > MAX_FILTER_DEPTH:
        msg = (f"the filter is nested more than {MAX_FILTER_DEPTH} levels deep (at {where}); "
               "flatten it.")
        raise ValueError(msg)
    if not isinstance(spec, Mapping):
        msg = f"{where} must be a dict such as {{'lang': 'en'}}, got {type(spec).__name__}."
        raise ValueError(msg)
    if not spec:
        msg = f"{where} is an empty dict; pass filter=None to match every document."
        raise ValueError(msg)
    parts: list[FilterNode] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            msg = f"{where}: keys must be str, got {key!r}."
            raise ValueError(msg)
        if key in _LOGIC_OPS:
            if not isinstance(value, Sequence) or isinstance(value, _NOT_LISTS) or not value:
                msg = f"{where}: {key} needs a non-empty list of filters, got {value!r:.60}."
                raise ValueError(msg)
            children = tuple(_parse(v, f"{key}[{i}]", depth + 1, count)
                             for i, v in enumerate(value))
            parts.append(And(children) if key == "$and" else Or(children))
        else:
            parts.extend(_field_conditions(key, value, count))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def parse_filter(spec: Mapping[str, Any] | None) -> FilterNode | None:
    """Validate a filter dict and return its tree (``None`` for no filter).

    Example:
        >>> node = parse_filter({"lang": "en", "year": {"$gte": 2020}})
        >>> node.matches({"lang": "en", "year": 2024}), node.matches({"lang": "de"})
        (True, False)
    """
    return None if spec is None else _parse(spec, "filter", 1, [0])


def filter_mask(node: FilterNode | None, metadatas: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Boolean array: which of ``metadatas`` match ``node`` (all when ``node`` is None)."""
    if node is None:
        return np.ones(len(metadatas), dtype=bool)
    return np.fromiter((node.matches(m) for m in metadatas), dtype=bool, count=len(metadatas))
