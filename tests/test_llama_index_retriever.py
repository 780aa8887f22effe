"""BGEM3Retriever: LlamaIndex retrieval over the BGE-M3 HybridIndex."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document  # noqa: E402
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.node_parser import SentenceSplitter  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode  # noqa: E402
from llama_index.core.vector_stores import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from bge_integrations import BGEM3Embedder  # noqa: E402
from bge_integrations.llama_index import BGEM3Retriever  # noqa: E402
from bge_integrations.llama_index.filters import to_index_filter  # noqa: E402
from bge_integrations.retrieval import HybridIndex  # noqa: E402
from bge_integrations.tiny_models import TINY_CORPUS  # noqa: E402

LANGS = ("en", "de", "fr")
DOCS = [Document(text=t, id_=f"doc-{i}",
                 metadata={"year": 2015 + i, "lang": LANGS[i % 3], "tags": ["a", f"t{i % 2}"]})
        for i, t in enumerate(TINY_CORPUS[:9])]
ALL = len(DOCS)


def _f(key: str, value: object, op: str = "==") -> MetadataFilter:
    return MetadataFilter(key=key, value=value, operator=op)


@pytest.fixture(scope="module")
def retriever(tiny_m3: str) -> BGEM3Retriever:
    # one node per document: the splitter's chunk is larger than any tiny corpus text
    return BGEM3Retriever.from_documents(
        DOCS, model_name=tiny_m3, device="cpu", similarity_top_k=3,
        node_parser=SentenceSplitter(chunk_size=256, chunk_overlap=0))


def _ids(results: list[NodeWithScore]) -> list[str]:
    return [r.node.ref_doc_id for r in results]


# -- building and retrieving ---------------------------------------------------------------
def test_from_documents_returns_the_original_nodes(retriever: BGEM3Retriever,
                                                   m3: BGEM3Embedder) -> None:
    assert len(retriever.index) == ALL
    assert retriever.index.m3.tokenizer is m3.tokenizer  # the weights are shared
    results = retriever.retrieve(DOCS[4].text)
    assert len(results) == 3
    assert all(isinstance(r, NodeWithScore) and isinstance(r.node, TextNode) for r in results)
    top = next(r.node for r in results if r.node.ref_doc_id == "doc-4")
    assert top.text == DOCS[4].text
    assert top.metadata == DOCS[4].metadata
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


@pytest.mark.parametrize(("mode", "fusion", "weights"), [
    ("hybrid", "weighted", (0.4, 0.2, 0.4)),
    ("hybrid", "rrf", (1.0, 1.0, 0.0)),
    ("hybrid", "weighted", (1.0, 0.3, 0.0)),
    ("dense", "weighted", (0.4, 0.2, 0.4)),
    ("sparse", "weighted", (0.4, 0.2, 0.4)),
    ("colbert", "weighted", (0.4, 0.2, 0.4)),
])
def test_results_equal_the_index_search(retriever: BGEM3Retriever, mode: str, fusion: str,
                                        weights: tuple[float, float, float]) -> None:
    other = BGEM3Retriever(retriever.index, similarity_top_k=4, mode=mode, fusion=fusion,
                           weights=weights)
    query = "capital of France"
    hits = retriever.index.search(query, k=4, mode=mode, fusion=fusion, weights=weights)
    results = other.retrieve(query)
    assert [r.node.node_id for r in results] == [h.id for h in hits]
    assert [r.score for r in results] == [h.score for h in hits]


def test_hybrid_score_equals_the_core(retriever: BGEM3Retriever, m3: BGEM3Embedder) -> None:
    query = "vector search"
    top = retriever.retrieve(query)[0]
    text = top.node.get_content(metadata_mode=MetadataMode.EMBED)
    expected = m3.compute_score((query, text))["colbert+sparse+dense"]
    assert top.score == pytest.approx(expected, abs=1e-5)


async def test_async_equals_sync(retriever: BGEM3Retriever) -> None:
    sync = retriever.retrieve("the lazy dog")
    result = await retriever.aretrieve("the lazy dog")
    assert [(r.node.node_id, r.score) for r in result] == [(r.node.node_id, r.score)
                                                           for r in sync]


def test_retrieve_fires_callback_events(retriever: BGEM3Retriever) -> None:
    handler = LlamaDebugHandler()
    traced = BGEM3Retriever(retriever.index, callback_manager=CallbackManager([handler]))
    traced.retrieve("panda")
    (start, end), = handler.get_event_pairs(CBEventType.RETRIEVE)
    assert len(end.payload["nodes"]) == 4


def test_query_engine_over_the_retriever(retriever: BGEM3Retriever) -> None:
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("Which city is the capital of France?")
    assert isinstance(str(response), str)
    assert _ids(response.source_nodes) == _ids(retriever.retrieve(
        "Which city is the capital of France?"))


def test_plain_index_documents_come_back_as_text_nodes(m3: BGEM3Embedder) -> None:
    index = HybridIndex(m3)
    index.add(TINY_CORPUS[:3], metadatas=[{"n": i} for i in range(3)], ids=["a", "b", "c"])
    results = BGEM3Retriever(index, similarity_top_k=3).retrieve(TINY_CORPUS[1])
    by_id = {r.node.node_id: r.node for r in results}
    assert set(by_id) == {"a", "b", "c"}
    assert by_id["b"].text == TINY_CORPUS[1] and by_id["b"].metadata == {"n": 1}


def test_saved_and_loaded_index(retriever: BGEM3Retriever, m3: BGEM3Embedder, tmp_path) -> None:
    retriever.index.save(tmp_path / "idx")
    loaded = BGEM3Retriever(HybridIndex.load(tmp_path / "idx", m3), similarity_top_k=3)
    query = "programming languages"
    assert [(r.node.node_id, r.node.text, r.score) for r in loaded.retrieve(query)] == [
        (r.node.node_id, r.node.text, r.score) for r in retriever.retrieve(query)]


# -- insert / delete -----------------------------------------------------------------------
def test_insert_and_delete(tiny_m3: str) -> None:
    retriever = BGEM3Retriever.from_nodes(
        [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TINY_CORPUS[:4])],
        model_name=tiny_m3, device="cpu", mode="sparse", similarity_top_k=10,
        index_kwargs={"store_colbert": False})
    assert len(retriever.index) == 4
    doc = Document(text="Zebras graze on the savanna. " * 3, id_="zebra-doc",
                   metadata={"kind": "animal"})
    ids = retriever.insert(doc)
    assert len(ids) == 1 and len(retriever.index) == 5
    node = next(r.node for r in retriever.retrieve("zebras savanna") if r.node.node_id == ids[0])
    assert node.ref_doc_id == "zebra-doc" and node.metadata == {"kind": "animal"}
    # re-inserting a node id replaces it
    retriever.insert_nodes([TextNode(text="Penguins swim.", id_="n0")])
    assert len(retriever.index) == 5
    assert retriever.index.get(["n0"])[0].text == "Penguins swim."
    assert retriever.delete_nodes([ids[0], "n1", "unknown"]) == 2
    assert len(retriever.index) == 3
    assert all(r.node.node_id not in (ids[0], "n1") for r in retriever.retrieve("zebras"))


def test_from_documents_splits_with_the_node_parser(tiny_m3: str) -> None:
    # paragraphs shorter than a chunk: the splitter never needs its (slow to load) sentence model
    long_doc = Document(text="\n\n\n".join(TINY_CORPUS), id_="long")
    parser = SentenceSplitter(chunk_size=48, chunk_overlap=0)
    retriever = BGEM3Retriever.from_documents([long_doc], model_name=tiny_m3, device="cpu",
                                              node_parser=parser, similarity_top_k=50)
    expected = parser.get_nodes_from_documents([long_doc])
    assert len(expected) > 2 and len(retriever.index) == len(expected)
    assert retriever.node_parser is parser
    assert {r.node.ref_doc_id for r in retriever.retrieve("panda")} == {"long"}
    assert sorted(r.node.text for r in retriever.retrieve("panda")) == sorted(
        n.text for n in expected)


def test_default_node_parser_is_a_sentence_splitter(tiny_m3: str) -> None:
    retriever = BGEM3Retriever.from_documents(DOCS[:2], model_name=tiny_m3, device="cpu")
    assert isinstance(retriever.node_parser, SentenceSplitter)
    assert len(retriever.index) == 2


# -- filters -------------------------------------------------------------------------------
def _expected(pred) -> set[str]:
    return {d.doc_id for d in DOCS if pred(d.metadata)}


@pytest.mark.parametrize(("filters", "pred"), [
    ([_f("lang", "de")], lambda m: m["lang"] == "de"),
    ([_f("lang", "de", "!=")], lambda m: m["lang"] != "de"),
    ([_f("year", 2019, ">")], lambda m: m["year"] > 2019),
    ([_f("year", 2019, ">=")], lambda m: m["year"] >= 2019),
    ([_f("year", 2019, "<")], lambda m: m["year"] < 2019),
    ([_f("year", 2019, "<=")], lambda m: m["year"] <= 2019),
    ([_f("lang", ["en", "fr"], "in")], lambda m: m["lang"] in ("en", "fr")),
    ([_f("lang", ["en", "fr"], "nin")], lambda m: m["lang"] not in ("en", "fr")),
    ([_f("lang", ["fr"], "nin")], lambda m: m["lang"] != "fr"),
    ([_f("tags", "t1")], lambda m: "t1" in m["tags"]),
    ([_f("lang", "en"), _f("year", 2016, ">")], lambda m: m["lang"] == "en" and m["year"] > 2016),
    ([_f("missing", "x", "!=")], lambda m: True),
    ([_f("missing", "x")], lambda m: False),
])
def test_and_filters(retriever: BGEM3Retriever, filters, pred) -> None:
    filtered = BGEM3Retriever(retriever.index, similarity_top_k=ALL, mode="dense",
                              filters=MetadataFilters(filters=filters))
    assert set(_ids(filtered.retrieve("anything"))) == _expected(pred)


def test_or_and_nested_filters(retriever: BGEM3Retriever) -> None:
    filters = MetadataFilters(condition=FilterCondition.OR, filters=[
        _f("lang", "de"),
        MetadataFilters(filters=[_f("lang", "en"), _f("year", 2020, ">=")]),
    ])
    filtered = BGEM3Retriever(retriever.index, similarity_top_k=ALL, mode="dense",
                              filters=filters)
    assert set(_ids(filtered.retrieve("anything"))) == _expected(
        lambda m: m["lang"] == "de" or (m["lang"] == "en" and m["year"] >= 2020))
    assert filtered.filters is filters
    filtered.filters = MetadataFilters(filters=[_f("year", 2016, "<=")])
    assert set(_ids(filtered.retrieve("anything"))) == _expected(lambda m: m["year"] <= 2016)
    with pytest.raises(ValueError, match="supported operators"):
        filtered.filters = MetadataFilters(filters=[_f("lang", "e", "text_match")])
    filtered.filters = None
    assert len(filtered.retrieve("anything")) == ALL


def test_filter_translation() -> None:
    assert to_index_filter(None) is None
    assert to_index_filter(MetadataFilters(filters=[])) is None
    assert to_index_filter(MetadataFilters(filters=[_f("a", 1)])) == {"a": {"$eq": 1}}
    assert to_index_filter(MetadataFilters(filters=[_f("a", [1, 2], "nin")])) == {
        "$and": [{"a": {"$ne": 1}}, {"a": {"$ne": 2}}]}
    assert to_index_filter(MetadataFilters(condition="or", filters=[
        _f("a", 1, ">"), MetadataFilters(filters=[])])) == {"a": {"$gt": 1}}


@pytest.mark.parametrize("operator", [FilterOperator.TEXT_MATCH, FilterOperator.CONTAINS,
                                      FilterOperator.ANY, FilterOperator.ALL,
                                      FilterOperator.IS_EMPTY,
                                      FilterOperator.TEXT_MATCH_INSENSITIVE])
def test_unsupported_operators_raise(retriever: BGEM3Retriever, operator) -> None:
    filters = MetadataFilters(filters=[MetadataFilter(key="lang", value="en",
                                                      operator=operator)])
    with pytest.raises(ValueError, match="supported operators: EQ, NE, GT, GTE, LT, LTE, IN, NIN"):
        BGEM3Retriever(retriever.index, filters=filters)


def test_bad_filters_raise(retriever: BGEM3Retriever) -> None:
    with pytest.raises(ValueError, match="FilterCondition.NOT"):
        BGEM3Retriever(retriever.index, filters=MetadataFilters(
            condition=FilterCondition.NOT, filters=[_f("lang", "en")]))
    with pytest.raises(ValueError, match="NIN on 'lang' needs a non-empty list"):
        BGEM3Retriever(retriever.index, filters=MetadataFilters(filters=[_f("lang", "en", "nin")]))
    with pytest.raises(ValueError, match="finite number"):
        BGEM3Retriever(retriever.index, filters=MetadataFilters(filters=[_f("lang", "en", ">")]))
    with pytest.raises(TypeError, match="MetadataFilters"):
        BGEM3Retriever(retriever.index, filters={"lang": "en"})


# -- bad arguments -------------------------------------------------------------------------
def test_bad_arguments(retriever: BGEM3Retriever, m3: BGEM3Embedder, tiny_m3: str) -> None:
    with pytest.raises(ValueError, match="valid values"):
        BGEM3Retriever(retriever.index, mode="lexical")
    with pytest.raises(ValueError, match="valid values"):
        BGEM3Retriever(retriever.index, fusion="max")
    with pytest.raises(ValueError, match="k must be a positive int"):
        BGEM3Retriever(retriever.index, similarity_top_k=0)
    with pytest.raises(ValueError):
        BGEM3Retriever(retriever.index, weights=(1.0, -1.0, 0.0))
    with pytest.raises(ValueError, match="store_colbert=False"):
        BGEM3Retriever(HybridIndex(m3, store_colbert=False), mode="colbert")
    with pytest.raises(TypeError, match="similarity_topk"):
        BGEM3Retriever.from_nodes([], model_name=tiny_m3, similarity_topk=3)
    with pytest.raises(TypeError, match=r"nodes\[1\]"):
        retriever.insert_nodes([TextNode(text="ok"), "not a node"])
