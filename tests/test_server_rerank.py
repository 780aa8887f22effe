"""POST /v1/rerank (Cohere / Jina shape) and RemoteReranker against the in-process reranker."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from bge_integrations.client import RemoteReranker, ServiceError
from bge_integrations.server import BackgroundServer, ServedModel, create_app

QUERY = "what do pandas eat?"
DOCS = ["Pandas eat bamboo.", "The weather is nice.", "Giant pandas are bears.", "ok"]


@pytest.fixture(scope="module")
def rerank_url(tiny_reranker: str, tiny_bert: str):
    app = create_app([ServedModel(tiny_reranker, {"device": "cpu"}),
                      ServedModel(tiny_bert, {"device": "cpu"})])
    with BackgroundServer(app) as url:
        yield url


def test_rerank_endpoint_gives_the_in_process_scores(rerank_url: str, reranker) -> None:
    want = reranker.compute_score([(QUERY, d) for d in DOCS])
    resp = httpx.post(rerank_url + "/v1/rerank", json={
        "model": "bge-reranker-v2-m3", "query": QUERY, "documents": DOCS, "top_n": 3,
        "return_documents": True}).json()
    order = sorted(range(len(DOCS)), key=lambda i: (-want[i], i))[:3]
    assert [r["index"] for r in resp["results"]] == order
    np.testing.assert_allclose([r["relevance_score"] for r in resp["results"]], want[order],
                               atol=1e-6)
    assert [r["document"]["text"] for r in resp["results"]] == [DOCS[i] for i in order]
    tei = httpx.post(rerank_url + "/v1/rerank", json={
        "query": QUERY, "texts": [{"text": d} for d in DOCS], "normalize": True}).json()
    got = {r["index"]: r["relevance_score"] for r in tei["results"]}
    np.testing.assert_allclose([got[i] for i in range(len(DOCS))],
                               reranker.compute_score([(QUERY, d) for d in DOCS],
                                                      normalize=True), atol=1e-6)
    card = next(c for c in httpx.get(rerank_url + "/v1/models").json()["data"]
                if c["outputs"] == ["rerank"])
    assert card["kind"] == "encoder"


@pytest.mark.parametrize(("body", "param", "fragment"), [
    ({"query": QUERY, "documents": []}, "documents", "must not be empty"),
    ({"documents": DOCS}, "query", "required"),
    ({"query": QUERY, "documents": [DOCS[0], 3]}, "documents[1]", "a number"),
    ({"query": QUERY, "documents": DOCS, "top_n": 0}, "top_n", "greater than 0"),
    ({"model": "bge-small-en-v1.5", "query": QUERY, "documents": DOCS}, "model",
     "no rerank output"),
])
def test_bad_rerank_requests(rerank_url: str, body: dict, param: str, fragment: str) -> None:
    resp = httpx.post(rerank_url + "/v1/rerank", json=body)
    error = resp.json()["error"]
    assert resp.status_code == 400, error
    assert error["param"] == param and fragment in error["message"], error


def test_embeddings_endpoint_refuses_a_reranker(rerank_url: str) -> None:
    resp = httpx.post(rerank_url + "/v1/embeddings",
                      json={"model": "bge-reranker-v2-m3", "input": "x"})
    assert resp.status_code == 400 and "no dense output" in resp.json()["error"]["message"]


def test_remote_reranker_equals_the_core(rerank_url: str, reranker) -> None:
    remote = RemoteReranker(rerank_url, "bge-reranker-v2-m3", batch_size=3)
    pairs = [(QUERY, d) for d in DOCS] + [("bears?", DOCS[2]), ("bears?", DOCS[0])]
    np.testing.assert_allclose(remote.compute_score(pairs), reranker.compute_score(pairs),
                               atol=1e-6)
    np.testing.assert_allclose(remote.compute_score(pairs, normalize=True),
                               reranker.compute_score(pairs, normalize=True), atol=1e-6)
    got, want = remote.rerank(QUERY, DOCS, top_n=2), reranker.rerank(QUERY, DOCS, top_n=2)
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-6)
    assert remote.rerank(QUERY, []) == []
    with pytest.raises(TypeError, match="pairs"):
        remote.compute_score(["not a pair"])
    with pytest.raises(ServiceError, match="not served"):
        RemoteReranker(rerank_url, "nope").rerank(QUERY, DOCS)


def test_rerank_adapters_in_client_mode(rerank_url: str, tiny_reranker: str) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from bge_integrations.langchain import BGERerank as LangChainRerank
    from bge_integrations.llama_index import BGERerank as LlamaIndexRerank

    docs = [Document(page_content=d, metadata={"i": i}) for i, d in enumerate(DOCS)]
    for normalize in (False, True):
        local = LangChainRerank(model_name=tiny_reranker, device="cpu", top_n=2,
                                normalize=normalize)
        remote = LangChainRerank(model_name="bge-reranker-v2-m3", base_url=rerank_url, top_n=2,
                                 normalize=normalize)
        got, want = remote.compress_documents(docs, QUERY), local.compress_documents(docs, QUERY)
        assert [d.metadata["i"] for d in got] == [d.metadata["i"] for d in want]
        np.testing.assert_allclose([d.metadata["relevance_score"] for d in got],
                                   [d.metadata["relevance_score"] for d in want], atol=1e-6)
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(DOCS)]
    local_li = LlamaIndexRerank(model_name=tiny_reranker, device="cpu", top_n=3)
    remote_li = LlamaIndexRerank(model_name="bge-reranker-v2-m3", base_url=rerank_url, top_n=3)
    got = remote_li.postprocess_nodes(nodes, query_str=QUERY)
    want = local_li.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.id_ for n in got] == [n.node.id_ for n in want]
    np.testing.assert_allclose([n.score for n in got], [n.score for n in want], atol=1e-6)
    with pytest.raises(ValueError, match="device cannot be set here"):
        LangChainRerank(model_name="bge-reranker-v2-m3", base_url=rerank_url, device="cpu")
