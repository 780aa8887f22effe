"""ray_app: the same app as a Ray Serve deployment, on a local cluster with 2 replicas."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

serve = pytest.importorskip("ray.serve")

from bge_integrations.server import ServedModel, ray_app  # noqa: E402


@pytest.fixture(scope="module")
def ray_url(tiny_bert: str, ray_cluster):
    """Serve on the session's local Ray cluster (conftest ``ray_cluster``; one per session)."""
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(ray_app([ServedModel(tiny_bert, {"device": "cpu"})], num_replicas=2),
                  name="bge", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.mark.slow
def test_two_replicas_serve_the_in_process_vectors(ray_url: str, bert_embedder) -> None:
    replicas = serve.status().applications["bge"].deployments["bge-integrations"]
    assert replicas.replica_states == {"RUNNING": 2}
    texts = [f"text {i} " + "panda " * i for i in range(8)]

    def one(i: int) -> list[float]:
        resp = httpx.post(ray_url + "/v1/embeddings", json={"input": texts[i]}, timeout=60)
        return resp.json()["data"][0]["embedding"]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, range(8)))
    np.testing.assert_allclose(got, bert_embedder.encode_documents(texts), atol=1e-6)
    assert httpx.get(ray_url + "/health").json()["status"] == "ok"


def test_ray_app_options_are_checked(tiny_bert: str) -> None:
    with pytest.raises(ValueError, match="not both"):
        ray_app([tiny_bert], num_replicas=2, autoscaling_config={"max_replicas": 2})
    with pytest.raises(ValueError, match="num_replicas"):
        ray_app([tiny_bert], num_replicas=0)
    app = ray_app([tiny_bert], num_replicas=None, num_gpus_per_replica=1,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 3})
    deployment = app._bound_deployment  # what serve.run would deploy
    assert deployment.ray_actor_options["num_gpus"] == 1
    assert deployment._deployment_config.autoscaling_config.max_replicas == 3
