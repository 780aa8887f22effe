"""HybridIndex (embedded backend): rankings against brute-force compute_score, upsert, delete,
get, filters, validation, float16 storage and concurrency. Persistence: test_index_persistence.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import (
    CORPUS,
    IDS,
    METADATAS,
    MODES,
    QUERIES,
    SCORE_KEY,
    assert_ranking,
    assert_same_hits,
    check_searches_see_whole_groups,
    reference,
)

from bge_integrations import BGEM3Embedder, HybridIndex
from bge_integrations.retrieval import doc_rows
from bge_integrations.retrieval import index as index_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread is faster

@pytest.mark.parametrize("mode", MODES)
def test_ranking_equals_brute_force_compute_score(index: HybridIndex, m3x: BGEM3Embedder,
                                                  mode: str) -> None:
    k = len(CORPUS)
    for query, hits in zip(QUERIES, index.search_many(QUERIES, k=k, mode=mode), strict=False):
        ref = reference(m3x, query)
        assert_ranking(hits, IDS, ref[SCORE_KEY[mode]], k, positive_only=mode == "sparse")
        by_id = {i: n for n, i in enumerate(IDS)}
        for hit in hits:  # every per-mode score is that pair's compute_score
            assert hit.text == CORPUS[by_id[hit.id]] and hit.metadata == METADATAS[by_id[hit.id]]
            for part, value in hit.scores.items():
                assert value == pytest.approx(ref[part][by_id[hit.id]], rel=1e-5, abs=1e-6)
        assert set(hits[0].scores) == ({"dense", "sparse", "colbert"} if mode == "hybrid"
                                       else {mode})


def test_sparse_mode_returns_only_lexical_matches(index: HybridIndex, m3x: BGEM3Embedder) -> None:
    ref = reference(m3x, QUERIES[0])["sparse"]
    hits = index.search(QUERIES[0], k=len(CORPUS), mode="sparse")
    assert 0 < len(hits) == int((ref > 0).sum()) < len(CORPUS)


def test_custom_weights_match_compute_score(index: HybridIndex, m3x: BGEM3Embedder) -> None:
    weights = (0.1, 0.7, 0.2)
    ref = reference(m3x, QUERIES[1], weights=weights)
    hits = index.search(QUERIES[1], k=5, weights=weights)
    assert_ranking(hits, IDS, ref["colbert+sparse+dense"], 5)


def test_rrf_equals_brute_force_reciprocal_rank_fusion(index: HybridIndex,
                                                       m3x: BGEM3Embedder) -> None:
    weights = (0.4, 0.2, 0.4)
    for query in QUERIES:
        ref = reference(m3x, query)
        fused = np.zeros(len(CORPUS))
        for part, w in zip(("dense", "sparse", "colbert"), weights, strict=False):
            ranks = np.empty(len(CORPUS))
            ranks[np.argsort(-ref[part], kind="stable")] = np.arange(1, len(CORPUS) + 1)
            matched = ref[part] > 0 if part == "sparse" else True  # no shared token: no term
            fused += np.where(matched, w / (60 + ranks), 0)
        hits = index.search(query, k=6, fusion="rrf", weights=weights)
        want = np.lexsort((-ref["dense"], -fused))[:6]  # ties go to the higher dense score
        assert [h.id for h in hits] == [IDS[i] for i in want]
        np.testing.assert_allclose([h.score for h in hits], fused[want], atol=1e-9, rtol=0)


def test_search_many_equals_search(index: HybridIndex) -> None:
    many = index.search_many(QUERIES, k=4, mode="hybrid")
    assert_same_hits(many, [index.search(q, k=4, mode="hybrid") for q in QUERIES])
    assert index.search_many([], k=3) == []


def test_small_candidate_pool_keeps_exact_scores(m3x: BGEM3Embedder) -> None:
    idx = HybridIndex(m3x, candidates=2)
    idx.add(CORPUS, ids=IDS)
    ref = reference(m3x, QUERIES[0])
    hits = idx.search(QUERIES[0], k=3)  # pool: top-3 dense ∪ top-3 sparse (k > candidates)
    pool = set(np.argsort(-ref["dense"])[:3]) | set(np.argsort(-ref["sparse"])[:3])
    assert len(hits) == 3
    for hit in hits:
        n = IDS.index(hit.id)
        assert n in pool
        assert hit.score == pytest.approx(ref["colbert+sparse+dense"][n], rel=1e-5, abs=1e-6)


def test_store_colbert_false_uses_sparse_plus_dense(m3x: BGEM3Embedder) -> None:
    idx = HybridIndex(m3x, store_colbert=False)
    idx.add(CORPUS, ids=IDS)
    ref = reference(m3x, QUERIES[2])
    hits = idx.search(QUERIES[2], k=len(CORPUS))
    assert_ranking(hits, IDS, ref["sparse+dense"], len(CORPUS))
    assert set(hits[0].scores) == {"dense", "sparse"}
    with pytest.raises(ValueError, match="store_colbert=False"):
        idx.search(QUERIES[0], mode="colbert")
    with pytest.raises(ValueError, match="all weight on ColBERT"):
        idx.search(QUERIES[0], weights=(0, 0, 1))


def test_float16_colbert_storage_is_close(m3x: BGEM3Embedder) -> None:
    idx = HybridIndex(m3x, colbert_dtype="float16")
    idx.add(CORPUS, ids=IDS)
    ref = reference(m3x, QUERIES[0])
    hits = idx.search(QUERIES[0], k=len(CORPUS), mode="colbert")
    errors = [abs(h.score - ref["colbert"][IDS.index(h.id)]) for h in hits]
    assert 0 < max(errors) < 2e-3  # rounded, hence not within 1e-5, but close
    with pytest.raises(ValueError, match="colbert_dtype"):
        HybridIndex(m3x, colbert_dtype="int8")


def test_upsert_replaces_text_metadata_and_vectors(m3x: BGEM3Embedder) -> None:
    idx = HybridIndex(m3x)
    assert idx.add(CORPUS[:3], metadatas=METADATAS[:3], ids=IDS[:3]) == IDS[:3]
    idx.add([CORPUS[8]], metadatas=[{"new": True}], ids=[IDS[0]])
    assert len(idx) == 3
    assert idx.get([IDS[0]])[0].text == CORPUS[8]
    assert idx.get([IDS[0]])[0].metadata == {"new": True}
    hits = idx.search(CORPUS[8], k=10, mode="dense")
    assert sorted(h.id for h in hits) == sorted(IDS[:3])  # the old row is gone
    ref = reference(m3x, CORPUS[8], [CORPUS[8], *CORPUS[1:3]])
    assert_ranking(hits, IDS[:3], ref["dense"], 3)


def test_delete_get_and_len(m3x: BGEM3Embedder) -> None:
    idx = HybridIndex(m3x)
    idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    assert idx.delete([IDS[1], IDS[4], "never-added"]) == 2
    assert idx.delete([IDS[1]]) == 0
    assert len(idx) == len(CORPUS) - 2
    got = idx.get([IDS[5], IDS[1], IDS[0]])
    assert [(r.id, r.text, r.metadata) for r in got] == [
        (IDS[5], CORPUS[5], METADATAS[5]), (IDS[0], CORPUS[0], METADATAS[0])]
    got[0].metadata["i"] = -1  # a copy: the index is not changed through it
    assert idx.get([IDS[5]])[0].metadata == METADATAS[5]
    for mode in MODES:
        ids = {h.id for h in idx.search(QUERIES[0], k=len(CORPUS), mode=mode)}
        assert not ids & {IDS[1], IDS[4]}
    assert len(idx.search(QUERIES[0], k=len(CORPUS))) == len(CORPUS) - 2


def test_compaction_after_many_deletes_keeps_results(m3x: BGEM3Embedder,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doc_rows, "COMPACT_MIN_DEAD", 1)
    idx = HybridIndex(m3x)
    for _ in range(3):  # each round upserts everything: dead rows pile up and get purged
        idx.add(CORPUS, metadatas=METADATAS, ids=IDS)
    idx.delete(IDS[:4])
    assert len(idx) == len(CORPUS) - 4 and len(idx._state.ids) < 2 * len(CORPUS)
    fresh = HybridIndex(m3x)
    fresh.add(CORPUS[4:], metadatas=METADATAS[4:], ids=IDS[4:])
    for mode in MODES:
        assert_same_hits(idx.search_many(QUERIES, k=5, mode=mode),
                         fresh.search_many(QUERIES, k=5, mode=mode))


def test_auto_ids_are_fresh_uuid4_hex(m3x: BGEM3Embedder) -> None:
    idx = HybridIndex(m3x, store_colbert=False)
    ids = idx.add(CORPUS[:3])
    assert len(set(ids)) == 3 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert idx.add([]) == []


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"texts": "one string"}, TypeError, "single str"),
    ({"texts": ["ok", 3]}, TypeError, r"texts\[1\]"),
    ({"texts": ["a", "b"], "ids": ["x", "x"]}, ValueError, "appears twice"),
    ({"texts": ["a", "b"], "ids": ["x", 7]}, ValueError, r"ids\[1\]"),
    ({"texts": ["a"], "ids": [""]}, ValueError, "not a valid id"),
    ({"texts": ["a"], "ids": ["bad\nid"]}, ValueError, "printable"),
    ({"texts": ["a", "b"], "ids": ["x"]}, ValueError, "one entry per text"),
    ({"texts": ["a"], "metadatas": [{"s": {1, 2}}]}, ValueError, "JSON-serialisable"),
    ({"texts": ["a"], "metadatas": [{"x": float("nan")}]}, ValueError, "JSON-serialisable"),
    ({"texts": ["a"], "metadatas": [{1: "int key"}]}, ValueError, "str keys"),
    ({"texts": ["a"], "metadatas": {"lang": "en"}}, ValueError, "one entry per text"),
])
def test_invalid_add_leaves_index_unchanged(index: HybridIndex, kwargs: dict, error: type,
                                            match: str) -> None:
    before = index.search_many(QUERIES[:2], k=5)
    with pytest.raises(error, match=match):
        index.add(**kwargs)
    assert len(index) == len(CORPUS)
    assert index.search_many(QUERIES[:2], k=5) == before


def test_encoder_failure_mid_add_leaves_index_unchanged(m3x: BGEM3Embedder,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    idx = HybridIndex(m3x)
    idx.add(CORPUS[:4], ids=IDS[:4])
    before = idx.search(QUERIES[0], k=10)
    monkeypatch.setattr(index_module, "_ENCODE_CHUNK", 2)
    real = m3x.encode_documents
    calls = []

    def flaky(texts: list[str], **kw: bool):  # noqa: ANN202 - fails on the second chunk
        calls.append(texts)
        if len(calls) == 2:
            msg = "out of memory"
            raise RuntimeError(msg)
        return real(texts, **kw)

    monkeypatch.setattr(m3x, "encode_documents", flaky)
    with pytest.raises(RuntimeError, match="out of memory"):
        idx.add(CORPUS[4:10], ids=[IDS[0], *IDS[5:10]])  # an upsert and new documents
    assert len(idx) == 4 and idx.get([IDS[0]])[0].text == CORPUS[0]
    assert idx.search(QUERIES[0], k=10) == before


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "bm25"}, "valid values: 'hybrid', 'dense', 'sparse', 'colbert'"),
    ({"fusion": "max"}, "valid values: 'weighted', 'rrf'"),
    ({"k": 0}, "k must be a positive int"),
    ({"weights": (1, 1)}, "weights must be three"),
    ({"weights": (0, 0, 0)}, "positive sum"),
    ({"filter": {"i": {"$regex": "x"}}}, "Unknown operator '\\$regex'"),
])
def test_invalid_search_arguments_say_what_to_fix(index: HybridIndex, kwargs: dict,
                                                  match: str) -> None:
    with pytest.raises(ValueError, match=match):
        index.search(QUERIES[0], **kwargs)


def test_query_must_be_a_string(index: HybridIndex) -> None:
    with pytest.raises(TypeError, match="search_many"):
        index.search(["a list"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="candidates must be an int in"):
        HybridIndex(index.m3, candidates=0)


def test_empty_index_and_empty_filter_result(m3x: BGEM3Embedder, index: HybridIndex) -> None:
    assert HybridIndex(m3x).search(QUERIES[0]) == []
    assert len(HybridIndex(m3x)) == 0
    assert index.search(QUERIES[0], filter={"i": 999}) == []


def test_concurrent_searches_see_whole_adds_and_deletes(m3x: BGEM3Embedder) -> None:
    """Readers alternate dense and hybrid search (see :func:`check_searches_see_whole_groups`)."""
    idx = HybridIndex(m3x)
    check_searches_see_whole_groups(
        idx, CORPUS, lambda i: idx.search_many(QUERIES[:2], k=100, mode=("dense", "hybrid")[i % 2]))


def test_ids_are_never_paths(m3x: BGEM3Embedder, tmp_path: Path) -> None:
    ids = ["../../escape", "/etc/passwd", "con", "a\\b", "ünï cödé"]
    idx = HybridIndex(m3x, store_colbert=False)
    idx.add(CORPUS[: len(ids)], ids=ids)
    idx.save(tmp_path / "ix")
    files = {p.name for p in (tmp_path / "ix").rglob("*") if p.is_file()}
    assert files == {"manifest.json", ".bge-index.lock", "docs.json", "dense.npy",
                     "sparse_indptr.npy", "sparse_indices.npy", "sparse_values.npy"}
    assert [r.id for r in HybridIndex.load(tmp_path / "ix", m3x).get(ids)] == ids


def test_add_over_the_embedders_per_call_limit_is_refused_whole(m3x: BGEM3Embedder) -> None:
    """The embedder's max_texts_per_call bounds the whole add, though the index encodes 256
    texts per model call (301 texts used to pass as 256 + 45)."""
    limited = BGEM3Embedder(m3x.model_name, device="cpu", max_texts_per_call=300)
    idx = HybridIndex(limited)
    with pytest.raises(ValueError, match="301 texts in one call exceed max_texts_per_call=300"):
        idx.add([f"text {i}" for i in range(301)])
    assert len(idx) == 0
    assert len(idx.add([f"text {i}" for i in range(300)])) == 300
