"""BGEM3SparseEmbedding: BGE-M3 lexical weights through LlamaIndex's sparse embedding API."""

from __future__ import annotations

import copy
import pickle

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.instrumentation.events.embedding import (  # noqa: E402
    SparseEmbeddingEndEvent,
    SparseEmbeddingStartEvent,
)
from pydantic import ValidationError  # noqa: E402

from bge_integrations import BGEM3Embedder  # noqa: E402
from bge_integrations.llama_index import BGEEmbedding, BGEM3SparseEmbedding  # noqa: E402
from bge_integrations.tiny_models import TINY_CORPUS  # noqa: E402

TEXTS = TINY_CORPUS[:12]
QUERIES = ["what is BGE?", "capital of France", "sparse keyword matches"]


class _Recorder(BaseEventHandler):
    events: list = []

    @classmethod
    def class_name(cls) -> str:
        return "SparseRecorder"

    def handle(self, event: BaseEvent, **kwargs: object) -> None:
        self.events.append(event)


@pytest.fixture(scope="module")
def sparse(tiny_m3: str) -> BGEM3SparseEmbedding:
    return BGEM3SparseEmbedding(model_name=tiny_m3, device="cpu")


def _assert_same(got: list[dict[int, float]], want: list[dict[int, float]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        assert all(isinstance(k, int) and isinstance(v, float) and v > 0 for k, v in g.items())
        assert all(abs(g[k] - w[k]) <= 1e-6 for k in w)


def test_vectors_equal_the_core(sparse: BGEM3SparseEmbedding, m3: BGEM3Embedder) -> None:
    _assert_same([sparse.get_query_embedding(q) for q in QUERIES],
                 m3.encode_queries(QUERIES, dense=False).sparse)
    _assert_same([sparse.get_text_embedding(TEXTS[0])], m3.encode_documents(TEXTS[:1]).sparse)
    _assert_same(sparse.get_text_embedding_batch(TEXTS), m3.encode_documents(TEXTS).sparse)
    assert sparse.get_text_embedding(TEXTS[0])  # the tiny heads give some positive weights


def test_query_max_length_applies_to_queries_only(tiny_m3: str, m3: BGEM3Embedder) -> None:
    short = BGEM3SparseEmbedding(model_name=tiny_m3, device="cpu", query_max_length=4)
    long_query = TEXTS[5]
    _assert_same([short.get_query_embedding(long_query)],
                 BGEM3Embedder(tiny_m3, device="cpu", query_max_length=4)
                 .encode_queries([long_query]).sparse)
    _assert_same([short.get_text_embedding(long_query)],
                 m3.encode_documents([long_query]).sparse)


@pytest.mark.parametrize("embed_batch_size", [1, 10, len(TEXTS) + 5])
def test_embed_batch_size_chunks_the_calls(tiny_m3: str, m3: BGEM3Embedder,
                                           embed_batch_size: int) -> None:
    sparse = BGEM3SparseEmbedding(model_name=tiny_m3, device="cpu",
                                  embed_batch_size=embed_batch_size)
    recorder = _Recorder(events=[])
    get_dispatcher().add_event_handler(recorder)
    try:
        result = sparse.get_text_embedding_batch(TEXTS)
    finally:
        get_dispatcher().event_handlers.remove(recorder)
    _assert_same(result, m3.encode_documents(TEXTS).sparse)
    chunks = [e.chunks for e in recorder.events if isinstance(e, SparseEmbeddingEndEvent)]
    assert chunks == [TEXTS[i:i + embed_batch_size]
                      for i in range(0, len(TEXTS), embed_batch_size)]
    starts = [e for e in recorder.events if isinstance(e, SparseEmbeddingStartEvent)]
    assert len(starts) == len(chunks)
    assert starts[0].model_dict["class_name"] == "BGEM3SparseEmbedding"


async def test_async_equals_sync(sparse: BGEM3SparseEmbedding) -> None:
    assert await sparse.aget_query_embedding(QUERIES[0]) == \
        sparse.get_query_embedding(QUERIES[0])
    assert await sparse.aget_text_embedding(TEXTS[0]) == sparse.get_text_embedding(TEXTS[0])
    _assert_same(await sparse.aget_text_embedding_batch(TEXTS),
                 sparse.get_text_embedding_batch(TEXTS))
    assert await sparse.aget_text_embedding_batch([]) == []


def test_qdrant_function_format(sparse: BGEM3SparseEmbedding) -> None:
    indices, values = sparse.sparse_doc_fn(TEXTS[:3])
    vectors = sparse.get_text_embedding_batch(TEXTS[:3])
    assert indices == [list(v) for v in vectors]
    assert values == [list(v.values()) for v in vectors]
    q_indices, q_values = sparse.sparse_query_fn(QUERIES[:1])
    query = sparse.get_query_embedding(QUERIES[0])
    assert dict(zip(q_indices[0], q_values[0], strict=True)) == query
    assert sparse.sparse_doc_fn([]) == ([], [])


def test_similarity_and_tokens(sparse: BGEM3SparseEmbedding) -> None:
    vec = sparse.get_text_embedding(TEXTS[0])
    assert sparse.similarity(vec, vec) == pytest.approx(1.0, abs=1e-5)
    tokens = sparse.embedder.convert_to_tokens(vec)
    assert len(tokens) == len(vec)


def test_serialization_round_trip(tiny_m3: str) -> None:
    sparse = BGEM3SparseEmbedding(model_name=tiny_m3, device="cpu", embed_batch_size=3,
                                  passage_max_length=64, batch_size=4)
    data = sparse.model_dump()
    assert data["class_name"] == "BGEM3SparseEmbedding"
    payload = pickle.dumps(sparse)
    assert len(payload) < 4096
    for restored in (pickle.loads(payload), copy.deepcopy(sparse)):
        assert restored is not sparse and restored.model_dump() == data
        assert restored.embedder.tokenizer is sparse.embedder.tokenizer
        assert restored.get_text_embedding(TEXTS[0]) == sparse.get_text_embedding(TEXTS[0])


@pytest.mark.parametrize("call", [
    lambda s: s.get_text_embedding_batch("one string"),
    lambda s: s.get_text_embedding_batch(["ok", 3]),
    lambda s: s.get_query_embedding(None),
    lambda s: s.sparse_query_fn("one string"),
    lambda s: s.sparse_doc_fn(["ok", None]),
])
def test_non_strings_raise_type_error(sparse: BGEM3SparseEmbedding, call) -> None:
    with pytest.raises(TypeError, match="str"):
        call(sparse)


def test_bad_configuration(tiny_m3: str, tiny_m3_no_heads: str) -> None:
    with pytest.raises(ValidationError, match="pooling"):
        BGEM3SparseEmbedding(model_name=tiny_m3, pooling="cls")
    with pytest.raises(ValidationError):
        BGEM3SparseEmbedding(model_name=tiny_m3, query_max_length=0)
    with pytest.raises(FileNotFoundError, match="sparse_linear.pt"):  # at construction
        BGEM3SparseEmbedding(model_name=tiny_m3_no_heads, device="cpu")


def test_qdrant_hybrid_vector_store(tiny_m3: str, sparse: BGEM3SparseEmbedding) -> None:
    qdrant = pytest.importorskip("llama_index.vector_stores.qdrant")
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    store = qdrant.QdrantVectorStore(
        "bge", client=client, enable_hybrid=True, batch_size=4,
        sparse_doc_fn=sparse.sparse_doc_fn, sparse_query_fn=sparse.sparse_query_fn)
    dense = BGEEmbedding(model_name=tiny_m3, device="cpu")
    docs = [Document(text=t, metadata={"i": i}) for i, t in enumerate(TEXTS)]
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=dense)
    points, _ = client.scroll("bge", limit=100, with_vectors=True, with_payload=True)
    assert len(points) == len(TEXTS)
    by_i = {p.payload["i"]: p for p in points}
    for i in (0, 7):
        stored = by_i[i].vector[store.sparse_vector_name]
        content = docs[i].get_content(metadata_mode="embed")
        assert dict(zip(stored.indices, stored.values, strict=False)) == pytest.approx(
            sparse.get_text_embedding(content), rel=1e-5, abs=1e-7)
    retriever = index.as_retriever(vector_store_query_mode="hybrid", similarity_top_k=3,
                                   sparse_top_k=3)
    hits = retriever.retrieve(TEXTS[2])
    assert hits and all(h.score is not None for h in hits)
    assert any(h.node.metadata["i"] == 2 for h in hits)
