"""BGEM3Retriever: the standard suite, per-call settings, index updates and an LCEL RAG chain."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_tests.integration_tests import RetrieversIntegrationTests
from loop_ticks import ticks_during
from pydantic import ValidationError

from bge_integrations.langchain import BGEM3Retriever
from bge_integrations.retrieval.index import HybridIndex
from bge_integrations.tiny_models import TINY_CORPUS

QUERY = "hybrid search with sparse lexical weights"
METAS = [{"i": i, "even": i % 2 == 0} for i in range(len(TINY_CORPUS))]
IDS = [f"doc-{i}" for i in range(len(TINY_CORPUS))]


@pytest.fixture(scope="module")
def index(m3: Any) -> HybridIndex:
    idx = HybridIndex(m3)
    idx.add(TINY_CORPUS, metadatas=METAS, ids=IDS)
    return idx


class TestBGEM3RetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _index(self, index: HybridIndex) -> None:
        self.shared_index = index

    @property
    def retriever_constructor(self) -> type[BGEM3Retriever]:
        return BGEM3Retriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": self.shared_index}

    @property
    def retriever_query_example(self) -> str:
        return QUERY


def test_documents_carry_id_metadata_and_scores(index: HybridIndex) -> None:
    docs = BGEM3Retriever(index=index, k=3).invoke(QUERY)
    hits = index.search(QUERY, k=3)
    assert [d.id for d in docs] == [h.id for h in hits]
    assert [d.page_content for d in docs] == [h.text for h in hits]
    for doc, hit in zip(docs, hits, strict=True):
        assert doc.metadata == {**hit.metadata, "bge_m3_score": hit.score,
                                "bge_m3_scores": hit.scores}
        assert set(doc.metadata["bge_m3_scores"]) == {"dense", "sparse", "colbert"}


def test_hybrid_score_is_flagembedding_score(index: HybridIndex, m3: Any) -> None:
    doc = BGEM3Retriever(index=index, k=1).invoke(QUERY)[0]
    expected = m3.compute_score((QUERY, doc.page_content))
    assert doc.metadata["bge_m3_score"] == pytest.approx(expected["colbert+sparse+dense"], abs=1e-5)
    for mode in ("dense", "sparse", "colbert"):
        assert doc.metadata["bge_m3_scores"][mode] == pytest.approx(expected[mode], abs=1e-5)


def test_per_call_settings_override_fields(index: HybridIndex) -> None:
    retriever = BGEM3Retriever(index=index, k=4, filter={"even": True})
    assert len(retriever.invoke(QUERY)) == 4
    assert all(d.metadata["even"] for d in retriever.invoke(QUERY))
    assert len(retriever.invoke(QUERY, k=2)) == 2
    odd = retriever.invoke(QUERY, k=3, filter={"even": False})
    assert odd and all(not d.metadata["even"] for d in odd)
    sparse = retriever.invoke(QUERY, mode="sparse")
    assert sparse and all(set(d.metadata["bge_m3_scores"]) == {"sparse"} for d in sparse)
    assert [d.id for d in sparse] == [h.id for h in index.search(
        QUERY, k=4, mode="sparse", filter={"even": True})]
    rrf = retriever.invoke(QUERY, fusion="rrf", weights=(1.0, 1.0, 0.0))
    assert [d.id for d in rrf] == [h.id for h in index.search(
        QUERY, k=4, fusion="rrf", weights=(1.0, 1.0, 0.0), filter={"even": True})]
    assert retriever.k == 4 and retriever.filter == {"even": True}


def test_fields_configure_search(index: HybridIndex) -> None:
    retriever = BGEM3Retriever(index=index, k=2, mode="dense")
    docs = retriever.invoke(QUERY)
    assert [d.id for d in docs] == [h.id for h in index.search(QUERY, k=2, mode="dense")]
    assert all(set(d.metadata["bge_m3_scores"]) == {"dense"} for d in docs)


async def test_async_matches_sync(index: HybridIndex) -> None:
    retriever = BGEM3Retriever(index=index, k=3)
    assert await retriever.ainvoke(QUERY, k=2) == retriever.invoke(QUERY, k=2)


async def test_async_does_not_block_the_event_loop(index: HybridIndex,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    retriever = BGEM3Retriever(index=index)
    real = index.search
    worker: list[threading.Thread] = []

    def slow_search(*args: Any, **kwargs: Any) -> Any:
        worker.append(threading.current_thread())
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(index, "search", slow_search)
    docs, ticks = await ticks_during(retriever.ainvoke(QUERY))
    assert len(docs) == 4
    assert worker[0] is not threading.main_thread()
    assert ticks >= 10, f"event loop ran only {ticks} ticks during a 0.5 s search"


def test_settings_are_checked_at_construction(index: HybridIndex, m3: Any) -> None:
    for bad, match in [({"mode": "bm25"}, "hybrid"), ({"fusion": "max"}, "rrf"),
                       ({"weights": (0, 0, 0)}, "positive sum"), ({"k": 0}, "greater than 0"),
                       ({"filter": {"i": {"$near": 1}}}, r"\$near"), ({"top_k": 3}, "top_k")]:
        with pytest.raises(ValidationError, match=match):
            BGEM3Retriever(index=index, **bad)
    no_colbert = HybridIndex(m3, store_colbert=False)
    with pytest.raises(ValidationError, match="store_colbert"):
        BGEM3Retriever(index=no_colbert, mode="colbert")


def test_bad_queries(index: HybridIndex) -> None:
    retriever = BGEM3Retriever(index=index)
    with pytest.raises(TypeError, match="query must be a str"):
        retriever.invoke(["a list"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be a positive int"):
        retriever.invoke(QUERY, k=-1)


def test_from_texts_add_delete(tiny_m3: str) -> None:
    retriever = BGEM3Retriever.from_texts(TINY_CORPUS[:4], model_name=tiny_m3,
                                          metadatas=METAS[:4], ids=IDS[:4], device="cpu", k=10)
    assert len(retriever.index) == 4
    assert {d.id for d in retriever.invoke(QUERY)} == set(IDS[:4])
    added = retriever.add_documents([Document("Pandas eat bamboo.", metadata={"new": True},
                                              id="panda"),
                                     Document("An unnamed document.")])
    assert added[0] == "panda" and len(added[1]) == 32
    assert retriever.add_texts(["Replaced text."], ids=["doc-0"]) == ["doc-0"]
    assert len(retriever.index) == 6
    assert retriever.index.get(["doc-0"])[0].text == "Replaced text."
    assert retriever.delete(["panda", "unknown"]) == 1
    assert "panda" not in {d.id for d in retriever.invoke(QUERY)}
    assert retriever.add_texts([]) == []


def test_from_documents_keeps_ids_and_metadata(tiny_m3: str) -> None:
    docs = [Document(t, metadata=m, id=i) for t, m, i in zip(TINY_CORPUS, METAS, IDS, strict=True)]
    retriever = BGEM3Retriever.from_documents(docs, model_name=tiny_m3, device="cpu",
                                              mode="sparse", k=2)
    assert retriever.mode == "sparse" and retriever.k == 2
    found = retriever.invoke(TINY_CORPUS[8])
    assert found[0].id == "doc-8"
    assert found[0].metadata["i"] == 8
    explicit = BGEM3Retriever.from_documents(docs[:2], model_name=tiny_m3, ids=["x", "y"],
                                             device="cpu")
    assert explicit.index.get(["x", "y"])[1].text == TINY_CORPUS[1]


def test_failing_add_leaves_index_unchanged(tiny_m3: str, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    retriever = BGEM3Retriever.from_texts(TINY_CORPUS[:3], model_name=tiny_m3, ids=IDS[:3],
                                          device="cpu")
    before = retriever.invoke(QUERY)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        retriever.add_texts(["fine", 3], ids=["a", "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="JSON"):
        retriever.add_texts(["fine"], metadatas=[{"bad": object()}])
    with pytest.raises(ValueError, match="appears twice"):
        retriever.add_documents([Document("a", id="same"), Document("b", id="same")])
    with pytest.raises(TypeError, match=r"documents\[1\] must be a langchain_core Document"):
        retriever.add_documents([Document("ok"), "text"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="wrap it in a list"):
        retriever.add_documents(Document("alone"))  # type: ignore[arg-type]

    def broken_encoder(*args: Any, **kwargs: Any) -> Any:
        msg = "device lost"
        raise RuntimeError(msg)

    monkeypatch.setattr(retriever.index.m3, "encode_documents", broken_encoder)
    with pytest.raises(RuntimeError, match="device lost"):
        retriever.add_texts(["new", "texts"], ids=["doc-0", "new"])
    monkeypatch.undo()
    assert len(retriever.index) == 3
    assert retriever.invoke(QUERY) == before


def test_bad_model_or_options(tmp_path: Path, tiny_m3: str) -> None:
    missing = str(tmp_path / "no-such" / "bge-m3")
    with pytest.raises(OSError, match="does not exist") as info:
        BGEM3Retriever.from_texts(["a"], model_name=missing, device="cpu")
    assert missing in str(info.value)
    with pytest.raises(ValidationError, match="devices"):
        BGEM3Retriever.from_texts(["a"], model_name=tiny_m3, devices="cpu")
    with pytest.raises(ValidationError, match="dtype"):
        BGEM3Retriever.from_texts(["a"], model_name=tiny_m3, dtype=16)


def _format_docs(docs: list[Document]) -> str:
    return "\n\n".join(f"[{d.id}] {d.page_content}" for d in docs)


def test_lcel_rag_chain(index: HybridIndex) -> None:
    retriever = BGEM3Retriever(index=index, k=2)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer from the context only."),
        ("human", "Context:\n{context}\n\nQuestion: {question}"),
    ])
    chain = ({"context": retriever | _format_docs, "question": RunnablePassthrough()}
             | prompt | ParrotFakeChatModel() | StrOutputParser())
    answer = chain.invoke(QUERY)
    expected = retriever.invoke(QUERY)
    assert answer == f"Context:\n{_format_docs(expected)}\n\nQuestion: {QUERY}"
    assert chain.batch([QUERY, TINY_CORPUS[0]])[0] == answer


def test_qdrant_index_gives_the_same_ranking(index: HybridIndex, m3: Any) -> None:
    from bge_integrations.retrieval import QdrantHybridIndex

    qdrant = QdrantHybridIndex(m3, location=":memory:")
    qdrant.add(TINY_CORPUS, metadatas=METAS, ids=IDS)
    embedded = BGEM3Retriever(index=index, k=3).invoke(QUERY)
    remote = BGEM3Retriever(index=qdrant, k=3).invoke(QUERY)
    assert [d.id for d in remote] == [d.id for d in embedded]
    for a, b in zip(remote, embedded, strict=True):
        assert a.metadata["bge_m3_score"] == pytest.approx(b.metadata["bge_m3_score"], abs=1e-4)
        assert a.metadata["i"] == b.metadata["i"]
