"""Two-stage search: the index's candidates reranked by a BGEReranker, in every index and in
both frameworks' retrievers."""

from __future__ import annotations

from typing import Any

import pytest

from bge_integrations import BGEReranker, DenseIndex, HybridIndex
from bge_integrations.tiny_models import TINY_CORPUS

QUERY = "hybrid search with sparse lexical weights"
IDS = [f"doc-{i}" for i in range(len(TINY_CORPUS))]


@pytest.fixture(scope="module")
def hybrid(m3: Any) -> HybridIndex:
    index = HybridIndex(m3)
    index.add(TINY_CORPUS, ids=IDS)
    return index


def check_reranked(index: Any, reranker: BGEReranker, k: int, candidates: int, **kw: Any
                   ) -> list[Any]:
    first = index.search(QUERY, k=max(k, candidates), **kw)
    hits = index.search(QUERY, k=k, rerank=reranker, candidates=candidates, **kw)
    want = reranker.rerank(QUERY, [h.text for h in first], top_n=k)
    assert [h.id for h in hits] == [first[i].id for i, _ in want]
    for hit, (i, score) in zip(hits, want, strict=True):
        assert hit.score == pytest.approx(score, abs=1e-6)
        assert hit.scores == {**first[i].scores, "rerank": hit.score}
    return hits


def test_hybrid_index_reranks_its_candidates(hybrid: HybridIndex, reranker: BGEReranker
                                             ) -> None:
    assert len(check_reranked(hybrid, reranker, k=3, candidates=6)) == 3
    check_reranked(hybrid, reranker, k=5, candidates=2, mode="sparse")  # k > candidates
    check_reranked(hybrid, reranker, k=2, candidates=50)  # more candidates than documents


def test_dense_index_reranks_its_candidates(bert_embedder: Any, reranker: BGEReranker) -> None:
    index = DenseIndex(bert_embedder)
    index.add(TINY_CORPUS, ids=IDS)
    check_reranked(index, reranker, k=3, candidates=8)


def test_qdrant_index_reranks_its_candidates(m3: Any, reranker: BGEReranker) -> None:
    pytest.importorskip("qdrant_client")
    from bge_integrations.retrieval import QdrantHybridIndex

    index = QdrantHybridIndex(m3, location=":memory:", collection_name="rerank")
    index.add(TINY_CORPUS, ids=IDS)
    check_reranked(index, reranker, k=3, candidates=8)


def test_bad_rerank_arguments(hybrid: HybridIndex, reranker: BGEReranker) -> None:
    with pytest.raises(TypeError, match="rerank must be a BGEReranker"):
        hybrid.search(QUERY, rerank="BAAI/bge-reranker-v2-m3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="candidates"):
        hybrid.search(QUERY, rerank=reranker, candidates=0)


def test_langchain_retriever_reranks(hybrid: HybridIndex, reranker: BGEReranker) -> None:
    from bge_integrations.langchain import BGEM3Retriever

    docs = BGEM3Retriever(index=hybrid, k=2, rerank=reranker, candidates=6).invoke(QUERY)
    hits = hybrid.search(QUERY, k=2, rerank=reranker, candidates=6)
    assert [d.id for d in docs] == [h.id for h in hits]
    assert docs[0].metadata["scores"]["rerank"] == pytest.approx(hits[0].score)
    with pytest.raises(ValueError, match="candidates"):
        BGEM3Retriever(index=hybrid, rerank=reranker, candidates=0)


def test_llama_index_retriever_reranks(hybrid: HybridIndex, reranker: BGEReranker) -> None:
    from bge_integrations.llama_index import BGEM3Retriever

    nodes = BGEM3Retriever(hybrid, similarity_top_k=2, rerank=reranker,
                           candidates=6).retrieve(QUERY)
    hits = hybrid.search(QUERY, k=2, rerank=reranker, candidates=6)
    assert [n.node.node_id for n in nodes] == [h.id for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits])
    with pytest.raises(TypeError, match="rerank must be"):
        BGEM3Retriever(hybrid, rerank=object())  # type: ignore[arg-type]
