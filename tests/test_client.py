"""Client mode: RemoteEmbedder / RemoteM3Embedder give the core's outputs through the server."""

from __future__ import annotations

import socket
import threading

import httpx
import numpy as np
import pytest

from bge_integrations.client import RemoteEmbedder, RemoteM3Embedder, ServiceError

TEXTS = ["The giant panda is a bear.", "What do pandas eat?", "Bamboo, mostly.", "Ok", ""]


def test_dense_client_equals_the_core(service_url: str, bert_embedder) -> None:
    remote = RemoteEmbedder(service_url + "/v1", "bge-small-en-v1.5", batch_size=2)
    assert remote.dim == bert_embedder.dim
    for method in ("encode_queries", "encode_documents", "encode"):
        got = getattr(remote, method)(TEXTS)
        assert got.dtype == np.float32 and got.shape == (len(TEXTS), bert_embedder.dim)
        np.testing.assert_allclose(got, getattr(bert_embedder, method)(TEXTS), atol=1e-6)
    assert remote.encode_documents([]).shape == (0, bert_embedder.dim)
    assert remote.encode_queries(TEXTS[:1], output_dtype="float16").dtype == np.float16
    with pytest.raises(TypeError, match="wrap it in a list"):
        remote.encode_documents("one string")
    remote.close()


def test_m3_client_equals_the_core(service_url: str, m3) -> None:
    remote = RemoteM3Embedder(service_url, "bge-m3")
    for kwargs in ({"dense": True, "sparse": True, "colbert": True},
                   {"dense": False, "sparse": True}, {"dense": True, "sparse": False},
                   {"dense": False, "sparse": False, "colbert": True}):
        got = remote.encode_queries(TEXTS, **kwargs)
        want = m3.encode_queries(TEXTS, **kwargs)
        for part in ("dense", "sparse", "colbert"):
            assert (getattr(got, part) is None) == (getattr(want, part) is None), part
        if want.dense is not None:
            np.testing.assert_allclose(got.dense, want.dense, atol=1e-6)
        if want.sparse is not None:
            assert got.sparse == want.sparse
        for a, b in zip(got.colbert or [], want.colbert or [], strict=False):
            np.testing.assert_allclose(a, b, atol=1e-6)
    pairs = [(TEXTS[1], TEXTS[2]), (TEXTS[0], TEXTS[2])]
    got_scores, want_scores = remote.compute_score(pairs), m3.compute_score(pairs)
    for key, values in want_scores.items():
        np.testing.assert_allclose(got_scores[key], values, atol=1e-6)
    with pytest.raises(ValueError, match="at least one output"):
        remote.encode_documents(TEXTS, dense=False, sparse=False)


def test_server_refusals_raise_service_error(service_url: str) -> None:
    with pytest.raises(ServiceError, match="not served") as info:
        RemoteEmbedder(service_url, "no-such-model").encode_documents(["x"])
    assert info.value.status == 404 and info.value.param == "model"
    with pytest.raises(ServiceError, match="no sparse output") as info:
        RemoteM3Embedder(service_url, "bge-small-en-v1.5").encode_documents(["x"])
    assert info.value.status == 400
    with pytest.raises(ValueError, match="http"):
        RemoteEmbedder("localhost:8080")


def test_connection_errors_are_retried_and_read_timeouts_are_not() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        RemoteEmbedder(f"http://127.0.0.1:{port}", max_retries=1).encode_documents(["x"])

    accepted: list[socket.socket] = []
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        stop = threading.Event()

        def accept() -> None:
            silent.settimeout(0.1)
            while not stop.is_set():
                try:
                    accepted.append(silent.accept()[0])
                except TimeoutError:
                    pass

        thread = threading.Thread(target=accept)
        thread.start()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        try:
            with pytest.raises(httpx.ReadTimeout):
                RemoteEmbedder(url, "m", timeout=0.3, max_retries=3).client.models()
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()
    assert len(accepted) == 1  # the request reached a server: not sent again
