"""Metadata filters of HybridIndex: every operator, applied before top-k, and clear errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from test_index import (  # noqa: F401 - shared data, helpers and fixtures
    CORPUS,
    IDS,
    METADATAS,
    QUERIES,
    assert_ranking,
    index,
    m3x,
    one_torch_thread,
    reference,
)

from bge_integrations import HybridIndex
from bge_integrations.retrieval import parse_filter

#: (filter, the same condition written in Python)
FILTER_CASES: list[tuple[dict, Callable[[dict], bool]]] = [
    ({"parity": "even"}, lambda m: m["i"] % 2 == 0),
    ({"parity": {"$eq": "odd"}}, lambda m: m["i"] % 2 == 1),
    ({"parity": {"$ne": "odd"}}, lambda m: m["i"] % 2 == 0),
    ({"extra": {"$ne": 4}}, lambda m: m["i"] != 4),  # a missing field matches $ne
    ({"extra": {"$gt": 0}}, lambda m: m["i"] in (4, 8, 12)),  # and nothing else
    ({"i": {"$in": [1, 3, 5, 100]}}, lambda m: m["i"] in (1, 3, 5)),
    ({"i": {"$gt": 10}}, lambda m: m["i"] > 10),
    ({"i": {"$gte": 10}}, lambda m: m["i"] >= 10),
    ({"i": {"$lt": 3}}, lambda m: m["i"] < 3),
    ({"i": {"$lte": 3}}, lambda m: m["i"] <= 3),
    ({"score": {"$gte": 1.5, "$lt": 2.5}}, lambda m: 1.5 <= m["i"] / 4 < 2.5),
    ({"score": 0.5}, lambda m: m["i"] == 2),
    ({"flag": True}, lambda m: m["i"] < 5),
    ({"flag": 1}, lambda m: False),  # equality is type-aware: 1 is not True
    ({"tags": "a"}, lambda m: m["i"] % 3 == 0),  # a list field matches when an element does
    ({"tags": {"$in": ["b", "c"]}}, lambda m: True),
    ({"$or": [{"i": {"$lt": 2}}, {"i": {"$gt": 12}}]}, lambda m: m["i"] in (0, 1, 13)),
    ({"$and": [{"parity": "even"}, {"i": {"$gte": 6}}]}, lambda m: m["i"] in (6, 8, 10, 12)),
    ({"parity": "even", "flag": False}, lambda m: m["i"] in (6, 8, 10, 12)),
    ({"$or": [{"$and": [{"parity": "odd"}, {"i": {"$lt": 5}}]}, {"extra": 12}]},
     lambda m: m["i"] in (1, 3, 12)),
]


@pytest.mark.parametrize(("spec", "predicate"), FILTER_CASES,
                         ids=[str(c[0]) for c in FILTER_CASES])
def test_filter_operators_return_k_matching_hits(index: HybridIndex, spec: dict,  # noqa: F811
                                                 predicate: Callable[[dict], bool]) -> None:
    matching = {IDS[n] for n, m in enumerate(METADATAS) if predicate(m)}
    for mode in ("dense", "hybrid", "colbert"):
        for k in {1, len(matching), len(matching) + 3} - {0}:
            hits = index.search(QUERIES[0], k=k, filter=spec, mode=mode)
            assert len(hits) == min(k, len(matching)), (mode, k)
            assert {h.id for h in hits} <= matching
        assert {h.id for h in index.search(QUERIES[0], k=20, filter=spec, mode=mode)} == matching
    sparse_hits = index.search(QUERIES[0], k=20, filter=spec, mode="sparse")
    assert all(h.id in matching and h.score > 0 for h in sparse_hits)


def test_filter_is_applied_before_top_k(index: HybridIndex, m3x) -> None:  # noqa: F811
    """The 3 worst documents by dense score are still found when the filter selects them."""
    dense = reference(m3x, QUERIES[1])["dense"]
    worst = [int(n) for n in np.argsort(dense)[:3]]
    hits = index.search(QUERIES[1], k=3, filter={"i": {"$in": worst}}, mode="dense")
    assert_ranking(hits, IDS, np.where(np.isin(np.arange(len(IDS)), worst), dense, -np.inf), 3)


def test_filtered_hybrid_ranking_equals_brute_force_on_matching_docs(index: HybridIndex,  # noqa: F811
                                                                     m3x) -> None:  # noqa: F811
    ref = reference(m3x, QUERIES[2])["colbert+sparse+dense"]
    odd = np.array([m["parity"] == "odd" for m in METADATAS])
    hits = index.search(QUERIES[2], k=5, filter={"parity": "odd"})
    assert_ranking(hits, IDS, np.where(odd, ref, -np.inf), 5)


def test_parse_filter_semantics() -> None:
    assert parse_filter({"x": 1}).matches({"x": 1.0})  # numbers compare by value
    assert not parse_filter({"x": True}).matches({"x": 1})
    assert not parse_filter({"x": {"$gt": 0}}).matches({"x": "5"})  # ranges need numbers
    assert parse_filter({"x": {"$ne": "a"}}).matches({})
    assert not parse_filter({"x": {"$in": ["a"]}}).matches({})
    assert parse_filter({"x": {"$lte": 2}}).matches({"x": [5, 1]})
    assert parse_filter(None) is None


@pytest.mark.parametrize(("spec", "match"), [
    ("lang", "must be a dict"),
    ({}, "pass filter=None"),
    ({"i": {}}, "empty dict; give an operator"),
    ({"i": {"$in": []}}, r"\$in needs a non-empty list"),
    ({"i": {"$in": "abc"}}, r"\$in needs a non-empty list"),
    ({"i": {"$gt": "5"}}, "needs a finite number"),
    ({"i": {"$lt": float("inf")}}, "needs a finite number"),
    ({"i": None}, "values must be str, int, float or bool"),
    ({"i": [1, 2]}, "values must be str, int, float or bool"),
    ({"a.b": 1}, "Invalid filter field 'a.b'"),
    ({"$nor": [{"i": 1}]}, r"Invalid filter field '\$nor'.*\$and, \$or"),
    ({"$or": []}, r"\$or needs a non-empty list"),
    ({"$and": {"i": 1}}, r"\$and needs a non-empty list"),
    ({"$or": [{"i": {"$exists": True}}]}, r"Unknown operator '\$exists'.*valid: \$eq, \$ne"),
    ({1: 2}, "keys must be str"),
])
def test_invalid_filters_say_what_is_wrong(spec: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_filter(spec)  # type: ignore[arg-type]


def test_cached_filter_masks_follow_changes_and_types(m3x) -> None:  # noqa: F811
    idx = HybridIndex(m3x, store_colbert=False)
    idx.add(CORPUS[:4], metadatas=[{"flag": True}, {"flag": 1}, {"flag": 1.0}, {}],
            ids=IDS[:4])

    def found(spec: dict) -> list[str]:
        return sorted(h.id for h in idx.search(QUERIES[0], k=10, filter=spec))

    assert found({"flag": True}) == [IDS[0]]
    assert found({"flag": 1}) == [IDS[1], IDS[2]]  # equal to {"flag": True} under ==
    assert found({"flag": True}) == [IDS[0]]
    idx.add([CORPUS[5]], metadatas=[{"flag": True}], ids=[IDS[5]])
    idx.delete([IDS[0]])
    assert found({"flag": True}) == [IDS[5]]
