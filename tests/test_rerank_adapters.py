"""BGERerank in LangChain (a document compressor in ContextualCompressionRetriever, LCEL) and in
LlamaIndex (a node postprocessor of a query engine, with the rerank instrumentation events)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from bge_integrations import BGEReranker

QUERY = "what is a panda?"
TEXTS = [
    "Paris is the capital and largest city of France.",
    "The giant panda is a bear native to the mountain forests of central China.",
    "Python is a high-level programming language.",
    "The Pacific Ocean is the largest and deepest ocean on Earth.",
]


def expected(reranker: BGEReranker, texts: list[str], top_n: int | None) -> list[tuple[int, float]]:
    return reranker.rerank(QUERY, texts, top_n=top_n)


# -- LangChain ----------------------------------------------------------------------------------
def test_langchain_compressor_sorts_and_scores(tiny_reranker: str, reranker: BGEReranker
                                               ) -> None:
    from langchain_core.documents import Document

    from bge_integrations.langchain import BGERerank

    docs = [Document(page_content=t, metadata={"i": i}, id=f"d{i}") for i, t in enumerate(TEXTS)]
    rerank = BGERerank(model_name=tiny_reranker, device="cpu", top_n=2)
    out = rerank.compress_documents(docs, QUERY)
    want = expected(reranker, TEXTS, 2)
    assert [d.id for d in out] == [f"d{i}" for i, _ in want]
    assert [d.metadata["relevance_score"] for d in out] == pytest.approx([s for _, s in want],
                                                                         abs=1e-6)
    assert [d.metadata["i"] for d in out] == [i for i, _ in want]
    assert "relevance_score" not in docs[0].metadata  # the inputs are not modified
    again = asyncio.run(rerank.acompress_documents(docs, QUERY))
    assert [d.id for d in again] == [d.id for d in out]
    assert BGERerank(model=tiny_reranker, device="cpu", top_n=None).compress_documents(
        docs, QUERY)[-1].id == f"d{expected(reranker, TEXTS, None)[-1][0]}"


def test_langchain_options_are_validated(tiny_reranker: str) -> None:
    from bge_integrations.langchain import BGERerank

    with pytest.raises(ValidationError):
        BGERerank(model_name=tiny_reranker, top_n=0)
    with pytest.raises(ValidationError):
        BGERerank(model_name=tiny_reranker, no_such_option=1)
    rerank = BGERerank(model_name=tiny_reranker, device="cpu", normalize=True, max_length=64)
    assert rerank.reranker.normalize and rerank.reranker.max_length == 64


def test_contextual_compression_over_bgem3_retriever(m3: Any, tiny_reranker: str,
                                                     reranker: BGEReranker) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.runnables import RunnableLambda

    from bge_integrations.langchain import BGEM3Retriever, BGERerank
    from bge_integrations.retrieval.index import HybridIndex

    index = HybridIndex(m3)
    index.add(TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))])
    retriever = ContextualCompressionRetriever(
        base_compressor=BGERerank(model_name=tiny_reranker, device="cpu", top_n=2),
        base_retriever=BGEM3Retriever(index=index, k=4))
    docs = retriever.invoke(QUERY)
    assert [d.id for d in docs] == [f"d{i}" for i, _ in expected(reranker, TEXTS, 2)]
    chain = retriever | RunnableLambda(lambda ds: [d.page_content for d in ds])
    assert chain.invoke(QUERY) == [d.page_content for d in docs]


def test_contextual_compression_over_a_vector_store(bert_embedder: Any, tiny_bert: str,
                                                    tiny_reranker: str,
                                                    reranker: BGEReranker) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.vectorstores import InMemoryVectorStore

    from bge_integrations.langchain import BGEEmbeddings, BGERerank

    store = InMemoryVectorStore(embedding=BGEEmbeddings(model_name=tiny_bert, device="cpu"))
    store.add_texts(TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))])
    retriever = ContextualCompressionRetriever(
        base_compressor=BGERerank(model_name=tiny_reranker, device="cpu", top_n=3),
        base_retriever=store.as_retriever(search_kwargs={"k": 4}))
    docs = retriever.invoke(QUERY)
    assert [d.id for d in docs] == [f"d{i}" for i, _ in expected(reranker, TEXTS, 3)]


# -- LlamaIndex ---------------------------------------------------------------------------------
def test_llama_index_postprocessor_scores_and_events(tiny_reranker: str,
                                                     reranker: BGEReranker) -> None:
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.schema import NodeWithScore, TextNode

    from bge_integrations.llama_index import BGERerank

    seen: list[Any] = []

    class Recorder(BaseEventHandler):
        def handle(self, event: Any, **_: Any) -> None:
            seen.append(event)

    root = get_dispatcher()
    handler = Recorder()
    root.add_event_handler(handler)
    try:
        nodes = [NodeWithScore(node=TextNode(text=t, id_=f"d{i}"), score=0.5)
                 for i, t in enumerate(TEXTS)]
        rerank = BGERerank(model_name=tiny_reranker, device="cpu", top_n=2,
                           keep_retrieval_score=True)
        out = rerank.postprocess_nodes(nodes, query_str=QUERY)
    finally:
        root.event_handlers.remove(handler)
    want = expected(reranker, TEXTS, 2)
    assert [n.node.node_id for n in out] == [f"d{i}" for i, _ in want]
    assert [n.score for n in out] == pytest.approx([s for _, s in want], abs=1e-6)
    assert out[0].node.metadata["retrieval_score"] == 0.5
    names = [type(e).__name__ for e in seen]
    assert "ReRankStartEvent" in names and "ReRankEndEvent" in names
    start = next(e for e in seen if type(e).__name__ == "ReRankStartEvent")
    assert start.model_name == tiny_reranker and start.top_n == 2
    with pytest.raises(ValueError, match="query"):
        rerank.postprocess_nodes(nodes)
    assert rerank.postprocess_nodes([], query_str=QUERY) == []


def test_llama_index_query_engine_node_postprocessor(bert_embedder: Any, tiny_bert: str,
                                                     tiny_reranker: str,
                                                     reranker: BGEReranker) -> None:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.llms import MockLLM

    from bge_integrations.llama_index import BGEEmbedding, BGERerank

    index = VectorStoreIndex.from_documents(
        [Document(text=t, id_=f"d{i}") for i, t in enumerate(TEXTS)],
        embed_model=BGEEmbedding(model_name=tiny_bert, device="cpu"))
    engine = index.as_query_engine(
        llm=MockLLM(), similarity_top_k=4,
        node_postprocessors=[BGERerank(model_name=tiny_reranker, device="cpu", top_n=2)])
    response = engine.query(QUERY)
    want = expected(reranker, TEXTS, 2)
    assert [n.node.get_content() for n in response.source_nodes] == [TEXTS[i] for i, _ in want]
    assert [n.score for n in response.source_nodes] == pytest.approx([s for _, s in want],
                                                                     abs=1e-6)
