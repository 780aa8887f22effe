"""LlamaIndex ``MetadataFilters`` translated into the hybrid index's filter dicts."""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

__all__ = ["to_index_filter", "SUPPORTED_OPERATORS"]

#: LlamaIndex operator -> the index's field operator
_FIELD_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
}
SUPPORTED_OPERATORS = (*_FIELD_OPERATORS, FilterOperator.NIN)
_CONDITIONS = {FilterCondition.AND: "$and", FilterCondition.OR: "$or"}


def to_index_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """The ``HybridIndex`` filter equivalent to ``filters`` (``None`` when nothing filters).

    ``NIN`` becomes an ``$and`` of ``$ne`` conditions (a document without the field passes, as
    for ``NE``). Nested ``MetadataFilters`` keep their own ``AND`` / ``OR`` condition.

    Raises:
        ValueError: an operator or condition the index cannot express (the message lists the
            supported ones), or ``IN`` / ``NIN`` without a non-empty list of values.

    Example:
        >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
        >>> to_index_filter(MetadataFilters(filters=[
        ...     MetadataFilter(key="year", value=2020, operator=">="),
        ...     MetadataFilter(key="lang", value=["en", "de"], operator="in")]))
        {'$and': [{'year': {'$gte': 2020}}, {'lang': {'$in': ['en', 'de']}}]}
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        msg = (f"filters must be a llama_index MetadataFilters (or None), got "
               f"{type(filters).__name__}.")
        raise TypeError(msg)
    return _group(filters)


def _group(filters: MetadataFilters) -> dict[str, Any] | None:
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition not in _CONDITIONS:
        valid = ", ".join(c.name for c in _CONDITIONS)
        msg = (f"FilterCondition.{condition.name} is not supported by the hybrid index; "
               f"supported conditions: {valid}.")
        raise ValueError(msg)
    parts = []
    for item in filters.filters:
        part = _group(item) if isinstance(item, MetadataFilters) else _leaf(item)
        if part is not None:
            parts.append(part)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {_CONDITIONS[condition]: parts}


def _leaf(item: MetadataFilter | ExactMatchFilter) -> dict[str, Any]:
    operator = FilterOperator(getattr(item, "operator", FilterOperator.EQ))
    if operator in _FIELD_OPERATORS:
        return {item.key: {_FIELD_OPERATORS[operator]: item.value}}
    if operator is FilterOperator.NIN:
        values = item.value
        if not isinstance(values, list) or not values:
            msg = (f"FilterOperator.NIN on {item.key!r} needs a non-empty list of values, "
                   f"got {values!r:.60}.")
            raise ValueError(msg)
        conditions = [{item.key: {"$ne": value}} for value in values]
        return conditions[0] if len(conditions) == 1 else {"$and": conditions}
    valid = ", ".join(op.name for op in SUPPORTED_OPERATORS)
    msg = (f"FilterOperator.{operator.name} (on {item.key!r}) is not supported by the hybrid "
           f"index; supported operators: {valid}. Filter on a metadata field with one of those.")
    raise ValueError(msg)
