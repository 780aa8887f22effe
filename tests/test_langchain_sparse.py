"""BGEM3SparseEmbeddings: parity with the core, Qdrant's interface and hybrid search."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from helpers import assert_close, assert_sparse_close

from bge_integrations.langchain import BGEEmbeddings, BGEM3SparseEmbeddings
from bge_integrations.tiny_models import TINY_CORPUS

langchain_qdrant = pytest.importorskip("langchain_qdrant")

QUERY = "sparse lexical keyword matches"


@pytest.fixture(scope="module")
def sparse(tiny_m3: str) -> BGEM3SparseEmbeddings:
    return BGEM3SparseEmbeddings(model_name=tiny_m3, device="cpu")


def _as_dict(vector: Any) -> dict[int, float]:
    return dict(zip(vector.indices, vector.values, strict=True))


def test_implements_qdrant_interface(sparse: BGEM3SparseEmbeddings) -> None:
    assert isinstance(sparse, langchain_qdrant.SparseEmbeddings)
    assert isinstance(sparse.embed_query(QUERY), langchain_qdrant.SparseVector)


def test_vectors_equal_core(sparse: BGEM3SparseEmbeddings, m3: Any) -> None:
    docs = sparse.embed_documents(TINY_CORPUS[:4])
    expected = m3.encode_documents(TINY_CORPUS[:4], dense=False, sparse=True).sparse
    for got, want in zip(docs, expected, strict=True):
        assert got.indices == sorted(want)
        assert_close(got.values, [want[i] for i in got.indices])
        assert all(type(i) is int for i in got.indices)
        assert all(type(v) is float and v > 0 for v in got.values)
    query = m3.encode_queries([QUERY], dense=False, sparse=True).sparse[0]
    assert _as_dict(sparse.embed_query(QUERY)) == pytest.approx(query, abs=1e-6)


async def test_async_and_bad_input(sparse: BGEM3SparseEmbeddings) -> None:
    assert await sparse.aembed_documents(TINY_CORPUS[:2]) == sparse.embed_documents(
        TINY_CORPUS[:2])
    assert await sparse.aembed_query(QUERY) == sparse.embed_query(QUERY)
    assert sparse.embed_documents([]) == []
    with pytest.raises(TypeError, match="must be a str"):
        sparse.embed_documents([b"bytes"])  # type: ignore[list-item]


def test_model_without_sparse_head_names_the_file(tiny_m3_no_heads: str) -> None:
    with pytest.raises(FileNotFoundError, match="sparse_linear.pt"):
        BGEM3SparseEmbeddings(model_name=tiny_m3_no_heads, device="cpu")  # at construction


def test_qdrant_hybrid_search(tiny_m3: str, sparse: BGEM3SparseEmbeddings, m3: Any) -> None:
    from langchain_qdrant import QdrantVectorStore, RetrievalMode

    dense = BGEEmbeddings(model_name=tiny_m3, device="cpu")
    store = QdrantVectorStore.from_texts(
        TINY_CORPUS, dense, metadatas=[{"i": i} for i in range(len(TINY_CORPUS))],
        location=":memory:", collection_name="bge", retrieval_mode=RetrievalMode.HYBRID,
        sparse_embedding=sparse)
    # a corpus text that ranks itself first both densely and lexically must come first
    out = m3.encode_documents(TINY_CORPUS)
    dense_top = (out.dense @ out.dense.T).argmax(axis=1)
    sparse_top = m3.lexical_score(out.sparse, out.sparse).argmax(axis=1)
    target = next(i for i in range(len(TINY_CORPUS)) if dense_top[i] == sparse_top[i] == i)
    hits = store.similarity_search(TINY_CORPUS[target], k=3)
    assert len(hits) == 3
    assert hits[0].page_content == TINY_CORPUS[target]
    assert hits[0].metadata["i"] == target
    point = store.client.retrieve("bge", [hits[0].metadata["_id"]], with_vectors=True)[0]
    stored = point.vector[store.sparse_vector_name]
    assert_sparse_close([dict(zip(stored.indices, stored.values, strict=True))],
                        [out.sparse[target]])
    assert_close(point.vector[store.vector_name], out.dense[target])


def test_works_without_langchain_qdrant(monkeypatch: pytest.MonkeyPatch, tiny_m3: str) -> None:
    package = importlib.import_module("bge_integrations.langchain")
    monkeypatch.setattr(package, "sparse", sys.modules["bge_integrations.langchain.sparse"])
    monkeypatch.delitem(sys.modules, "bge_integrations.langchain.sparse")
    monkeypatch.setitem(sys.modules, "langchain_qdrant", None)
    module = importlib.import_module("bge_integrations.langchain.sparse")
    emb = module.BGEM3SparseEmbeddings(model_name=tiny_m3, device="cpu")
    assert not isinstance(emb, langchain_qdrant.SparseEmbeddings)
    vector = emb.embed_query(QUERY)
    assert type(vector) is module.SparseVector
    assert _as_dict(vector) == pytest.approx(_as_dict(
        BGEM3SparseEmbeddings(model_name=tiny_m3, device="cpu").embed_query(QUERY)))
