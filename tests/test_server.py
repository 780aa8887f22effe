"""The service as users call it: openai / langchain-openai / httpx against a loopback server."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from bge_integrations import BGEEmbedder
from bge_integrations.server import BackgroundServer, ServedModel, ServerSettings, create_app

TEXTS = ["The giant panda is a bear.", "What do pandas eat?", "Bamboo, mostly.", "Ok"]


@pytest.fixture(scope="module")
def minilm(minilm_dir: str) -> BGEEmbedder:
    return BGEEmbedder(minilm_dir, device="cpu", pooling="mean")


def post(url: str, path: str, **body) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30)


# -- as users use it ---------------------------------------------------------------------------
def test_openai_client_gives_the_in_process_vectors(service_url: str, bert_embedder) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=service_url + "/v1", api_key="unused", max_retries=0)
    got = client.embeddings.create(model="bge-small-en-v1.5", input=TEXTS)  # base64 by default
    np.testing.assert_allclose([d.embedding for d in got.data],
                               bert_embedder.encode_documents(TEXTS), atol=1e-6)
    floats = client.embeddings.create(model="bge-small-en-v1.5", input=TEXTS[0],
                                      encoding_format="float", extra_body={"input_type": "query"})
    np.testing.assert_allclose(floats.data[0].embedding,
                               bert_embedder.encode_queries(TEXTS[:1])[0], atol=1e-6)
    n_tokens = sum(len(r) for r in bert_embedder.tokenizer(TEXTS)["input_ids"])
    assert got.usage.prompt_tokens == n_tokens == got.usage.total_tokens
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="x")


def test_langchain_openai_embeddings_without_tiktoken(service_url: str, minilm: BGEEmbedder,
                                                      minilm_dir: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    lc_openai = pytest.importorskip("langchain_openai")
    import tiktoken

    def offline(*_a, **_k):
        raise AssertionError("tiktoken was asked for a BPE file (needs the network)")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    monkeypatch.setattr(tiktoken, "encoding_for_model", offline)
    emb = lc_openai.OpenAIEmbeddings(model=Path(minilm_dir).name, base_url=service_url + "/v1",
                                     api_key="unused", check_embedding_ctx_length=False)
    np.testing.assert_allclose(emb.embed_documents(TEXTS), minilm.encode_documents(TEXTS),
                               atol=1e-6)
    np.testing.assert_allclose(emb.embed_query(TEXTS[1]), minilm.encode_documents(TEXTS[1:2])[0],
                               atol=1e-6)
    got = asyncio.run(emb.aembed_documents(TEXTS[:2]))
    np.testing.assert_allclose(got, minilm.encode_documents(TEXTS[:2]), atol=1e-6)


def test_sparse_and_colbert_match_the_core(service_url: str, m3) -> None:
    want = m3.encode_queries(TEXTS, dense=True, sparse=True, colbert=True)
    sparse = post(service_url, "/v1/embeddings/sparse", input=TEXTS, input_type="query",
                  return_dense=True).json()
    colbert = post(service_url, "/v1/embeddings/colbert", model="bge-m3", input=TEXTS,
                   input_type="query", encoding_format="base64", return_sparse=True).json()
    for i, item in enumerate(sparse["data"]):
        assert dict(zip(item["indices"], item["values"], strict=False)) == want.sparse[i]
        np.testing.assert_allclose(item["dense"], want.dense[i], atol=1e-6)
    for i, item in enumerate(colbert["data"]):
        vecs = np.frombuffer(base64.b64decode(item["embedding"]), "<f4").reshape(item["shape"])
        np.testing.assert_allclose(vecs, want.colbert[i], atol=1e-6)
        got = dict(zip(item["sparse"]["indices"], item["sparse"]["values"], strict=True))
        assert got == want.sparse[i]
    dense = post(service_url, "/v1/embeddings", model="bge-m3", input=TEXTS).json()
    np.testing.assert_allclose([d["embedding"] for d in dense["data"]],
                               m3.encode_documents(TEXTS).dense, atol=1e-6)


def test_dimensions_cut_matryoshka_models_only(service_url: str, minilm: BGEEmbedder,
                                               minilm_dir: str) -> None:
    name = Path(minilm_dir).name
    got = post(service_url, "/v1/embeddings", model=name, input=TEXTS, dimensions=64).json()
    full = minilm.encode_documents(TEXTS)[:, :64]
    want = full / np.linalg.norm(full, axis=1, keepdims=True)
    np.testing.assert_allclose([d["embedding"] for d in got["data"]], want, atol=1e-6)
    same = post(service_url, "/v1/embeddings", model="bge-small-en-v1.5", input="x",
                dimensions=32)
    assert same.status_code == 200 and len(same.json()["data"][0]["embedding"]) == 32
    for model, dims, fragment in (("bge-small-en-v1.5", 16, "Matryoshka"), (name, 999, "at most")):
        bad = post(service_url, "/v1/embeddings", model=model, input="x", dimensions=dims)
        assert bad.status_code == 400 and fragment in bad.json()["error"]["message"]
        assert bad.json()["error"]["param"] == "dimensions"


def test_models_health_metrics(service_url: str, minilm_dir: str) -> None:
    cards = httpx.get(service_url + "/v1/models").json()["data"]
    assert [c["outputs"] for c in cards] == [["dense"], ["dense", "sparse", "colbert"],
                                             ["dense"]]
    assert cards[2]["id"] == minilm_dir and cards[2]["dim"] == 384 and cards[2]["matryoshka"]
    assert httpx.get(service_url + "/health").json()["status"] == "ok"
    post(service_url, "/v1/embeddings", model="bge-small-en-v1.5", input=TEXTS)
    metrics = httpx.get(service_url + "/metrics").text
    assert 'bge_requests_total{path="/v1/embeddings",status="200"}' in metrics
    assert 'bge_texts_total{endpoint="embeddings",model="' in metrics
    assert "bge_engine_rounds{" in metrics


# -- bad input -----------------------------------------------------------------------------------
BAD = [
    (b"{", 400, "body", "not valid JSON"),
    (b"[1, 2]", 400, "body", "dictionary"),
    (b'{"model": "bge-small-en-v1.5", "input": []}', 400, "input", "must not be empty"),
    (b'{"model": "bge-small-en-v1.5"}', 400, "input", "input is required"),
    (b'{"model": "bge-small-en-v1.5", "input": [[1, 2]]}', 400, "input", "token ids"),
    (b'{"model": "bge-small-en-v1.5", "input": [1, 2]}', 400, "input", "token ids"),
    (b'{"model": "bge-small-en-v1.5", "input": ["a", null]}', 400, "input[1]", "null"),
    (b'{"model": "bge-small-en-v1.5", "input": 3.5}', 400, "input", "a number"),
    (b'{"model": "nope", "input": "x"}', 404, "model", "not served here"),
    (b'{"input": "x"}', 400, "model", "model is required"),
    (b'{"model": 7, "input": "x"}', 400, "model", "string"),
    (b'{"model": "bge-small-en-v1.5", "input": "x", "encoding_format": "hex"}', 400,
     "encoding_format", "float"),
    (b'{"model": "bge-small-en-v1.5", "input": "x", "input_type": "passage"}', 400,
     "input_type", "query"),
    (b'{"model": "bge-small-en-v1.5", "input": "x", "inputs": "y"}', 400, "inputs",
     "unknown field"),
    (b'{"model": "bge-small-en-v1.5", "input": "x", "dimensions": -1}', 400, "dimensions",
     "greater than 0"),
    (b'{"model": "bge-small-en-v1.5", "input": ["\\ud800"]}', 400, "input", "surrogate"),
]


@pytest.mark.parametrize(("body", "status", "param", "fragment"), BAD,
                         ids=[b[0].decode()[:40] for b in BAD])
def test_bad_requests_get_json_errors_naming_the_field(service_url: str, body: bytes,
                                                       status: int, param: str,
                                                       fragment: str) -> None:
    resp = httpx.post(service_url + "/v1/embeddings", content=body,
                      headers={"content-type": "application/json"})
    error = resp.json()["error"]
    assert resp.status_code == status, error
    assert error["param"] == param and fragment in error["message"], error


def test_wrong_endpoint_for_a_model(service_url: str) -> None:
    resp = post(service_url, "/v1/embeddings/sparse", model="bge-small-en-v1.5", input="x")
    assert resp.status_code == 400 and "no sparse output" in resp.json()["error"]["message"]
    assert httpx.get(service_url + "/v2/nothing").json()["error"]["message"] == "Not Found"


# -- limits, key, shutdown, disconnects ------------------------------------------------------
@pytest.fixture()
def small_server(tiny_bert: str):
    """A server with tight limits and an API key (its service reachable for patching)."""
    settings = ServerSettings(max_inputs=4, max_tokens_per_request=60, max_body_bytes=2000,
                              api_key="s3cret", batch_wait_ms=0)
    app = create_app([ServedModel(tiny_bert, {"device": "cpu"})], settings)
    with BackgroundServer(app) as url:
        yield url, app, httpx.Client(base_url=url, headers={"authorization": "Bearer s3cret"},
                                     timeout=30)


def test_api_key_and_limits(small_server) -> None:
    url, _, client = small_server
    assert httpx.post(url + "/v1/embeddings", json={"input": "x"}).status_code == 401
    wrong = httpx.post(url + "/v1/embeddings", json={"input": "x"},
                       headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]["message"]
    assert httpx.get(url + "/health").status_code == 200  # probes need no key
    assert client.post("/v1/embeddings", json={"input": ["a"] * 4}).status_code == 200
    too_many = client.post("/v1/embeddings", json={"input": ["a"] * 5})
    assert too_many.status_code == 413 and too_many.json()["error"]["param"] == "input"
    too_long = client.post("/v1/embeddings", json={"input": ["word " * 30, "more " * 30]})
    assert too_long.status_code == 413
    assert "max_tokens_per_call=60" in too_long.json()["error"]["message"]
    declared = client.post("/v1/embeddings", content=b"x" * 3000,
                           headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "3000 bytes" in declared.json()["error"]["message"]

    sent = []

    def chunks():  # no Content-Length: refused once 2000 bytes have arrived, the rest unread
        for _ in range(100):
            sent.append(1)
            yield b" " * 65536

    try:
        streamed = client.post("/v1/embeddings", content=chunks(),
                               headers={"content-type": "application/json"})
    except httpx.TransportError:  # the server may close before the client stops sending
        pass
    else:
        assert streamed.status_code == 413
    assert len(sent) < 100


def _gate_engine(app):
    """Make the served model's engine wait for an event before each round; returns the gate,
    an event set once a round waits at the gate, and the texts of every round run."""
    engine = app.state.service.pool.models[0].embedder._engine
    gate, waiting, seen, real = threading.Event(), threading.Event(), [], engine.run

    def gated(ids, head, **kw):
        waiting.set()
        gate.wait(30)
        seen.append(len(ids))
        return real(ids, head, **kw)

    engine.run = gated
    return gate, waiting, seen


def test_disconnected_client_leaves_no_work_queued(small_server) -> None:
    url, app, client = small_server
    gate, waiting, seen = _gate_engine(app)
    first = threading.Thread(target=client.post, args=("/v1/embeddings",),
                             kwargs={"json": {"input": ["a"]}})
    first.start()
    assert waiting.wait(10)  # the first request's round holds the engine
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/embeddings", json={"input": ["b", "c", "d"]}, timeout=0.5)
    deadline = time.monotonic() + 5
    while "bge_requests_cancelled_total 1.0" not in client.get("/metrics").text:
        assert time.monotonic() < deadline, "the server did not see the disconnect"
        time.sleep(0.05)
    gate.set()
    first.join(10)
    assert client.post("/v1/embeddings", json={"input": ["e"]}).status_code == 200
    assert seen == [1, 1]  # the departed client's three texts never ran


def test_graceful_shutdown_finishes_in_flight_requests(tiny_bert: str, bert_embedder) -> None:
    app = create_app([ServedModel(tiny_bert, {"device": "cpu"})])
    answers: list[httpx.Response] = []
    with BackgroundServer(app) as url:
        gate, waiting, _ = _gate_engine(app)
        caller = threading.Thread(target=lambda: answers.append(
            httpx.post(url + "/v1/embeddings", json={"input": TEXTS}, timeout=30)))
        caller.start()
        assert waiting.wait(10)
        threading.Timer(0.5, gate.set).start()  # the answer comes after shutdown began
    caller.join(10)
    assert answers and answers[0].status_code == 200
    np.testing.assert_allclose([d["embedding"] for d in answers[0].json()["data"]],
                               bert_embedder.encode_documents(TEXTS), atol=1e-6)


def test_load_200_concurrent_clients_lose_nothing(service_url: str, bert_embedder) -> None:
    texts = [f"request {i}: " + "panda " * (i % 9) for i in range(400)]
    want = bert_embedder.encode_documents(texts)

    async def main() -> list[list[list[float]]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=service_url, limits=limits, timeout=60) as client:
            queue = list(range(0, 400, 2))

            async def worker() -> list[tuple[int, list]]:
                done = []
                while queue:
                    start = queue.pop()
                    resp = await client.post("/v1/embeddings", json={
                        "model": "bge-small-en-v1.5", "input": texts[start:start + 2]})
                    resp.raise_for_status()
                    done.append((start, [d["embedding"] for d in resp.json()["data"]]))
                return done

            results = await asyncio.gather(*(worker() for _ in range(200)))
        got: list = [None] * 400
        for batch in results:
            for start, vecs in batch:
                got[start:start + 2] = vecs
        return got

    got = asyncio.run(main())
    assert all(v is not None for v in got)
    np.testing.assert_allclose(got, want, atol=1e-6)
