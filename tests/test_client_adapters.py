"""Our adapters in client mode (``base_url=``) give their in-process outputs through the server."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest

from bge_integrations.langchain import BGEEmbeddings, BGEM3SparseEmbeddings
from bge_integrations.llama_index import BGEEmbedding, BGEM3SparseEmbedding

TEXTS = ["The giant panda is a bear.", "What do pandas eat?", "Bamboo, mostly."]
QUERY = "what do pandas eat?"


def test_dense_adapters(service_url: str, tiny_bert: str) -> None:
    local = BGEEmbeddings(model_name=tiny_bert, device="cpu")
    remote = BGEEmbeddings(model_name="bge-small-en-v1.5", base_url=service_url)
    np.testing.assert_allclose(remote.embed_documents(TEXTS), local.embed_documents(TEXTS),
                               atol=1e-6)
    np.testing.assert_allclose(remote.embed_query(QUERY), local.embed_query(QUERY), atol=1e-6)
    np.testing.assert_allclose(asyncio.run(remote.aembed_query(QUERY)), local.embed_query(QUERY),
                               atol=1e-6)
    local_li = BGEEmbedding(model_name=tiny_bert, device="cpu")
    remote_li = BGEEmbedding(model_name="bge-small-en-v1.5", base_url=service_url + "/v1")
    np.testing.assert_allclose(remote_li.get_text_embedding_batch(TEXTS),
                               local_li.get_text_embedding_batch(TEXTS), atol=1e-6)
    np.testing.assert_allclose(remote_li.get_query_embedding(QUERY),
                               local_li.get_query_embedding(QUERY), atol=1e-6)


def test_sparse_adapters(service_url: str, tiny_m3: str) -> None:
    local = BGEM3SparseEmbeddings(model_name=tiny_m3, device="cpu")
    remote = BGEM3SparseEmbeddings(model_name="bge-m3", base_url=service_url)
    for got, want in zip(remote.embed_documents(TEXTS), local.embed_documents(TEXTS),
                         strict=True):
        assert got.indices == want.indices
        np.testing.assert_allclose(got.values, want.values, atol=1e-6)
    assert remote.embed_query(QUERY).indices == local.embed_query(QUERY).indices
    local_li = BGEM3SparseEmbedding(model_name=tiny_m3, device="cpu")
    remote_li = BGEM3SparseEmbedding(model_name="bge-m3", base_url=service_url)
    got, want = remote_li.get_query_embedding(QUERY), local_li.get_query_embedding(QUERY)
    assert got.keys() == want.keys()
    np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-6)


def test_client_mode_refuses_model_options_and_pickles(service_url: str) -> None:
    with pytest.raises(ValueError, match="dtype, device cannot be set here|device, dtype"):
        BGEEmbeddings(model_name="bge-small-en-v1.5", base_url=service_url, device="cpu",
                      dtype="float32")
    remote = BGEEmbeddings(model_name="bge-small-en-v1.5", base_url=service_url,
                           api_key="s3cr3t-key", timeout=5, max_retries=1)
    assert "s3cr3t-key" not in repr(remote)  # the key is a secret
    copy = pickle.loads(pickle.dumps(remote))
    assert copy.api_key.get_secret_value() == "s3cr3t-key" and copy.timeout == 5
    np.testing.assert_allclose(copy.embed_query(QUERY), remote.embed_query(QUERY), atol=0)
    with pytest.raises(OSError, match="Could not find model 'bge-small-en-v1.5'"):
        remote.base_url = None  # in-process needs the model here: refused, nothing changes
    assert remote.base_url == service_url and len(remote.embed_query(QUERY)) == 32
