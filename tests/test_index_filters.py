"""Metadata filters of HybridIndex: every operator, applied before top-k, and clear errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from helpers import CORPUS, FILTER_CASES, IDS, METADATAS, QUERIES, assert_ranking, reference

from bge_integrations import HybridIndex
from bge_integrations.retrieval import parse_filter

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster

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
