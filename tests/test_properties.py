"""Property-based tests: any Unicode input embeds to finite unit vectors, whatever the batching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bge_integrations import BGEEmbedder, BGEM3Embedder

NASTY = [
    "", " ", "\t\n  \r", "\x00", "a\x00b", "😀🐼🇫🇷", "مرحبا بالعالم", "שלום עולם", "\u202eevil",
    "\ufeffBOM", "e\u0301\u0301\u0301", "x" * 100_000, "panda " * 20_000, "\x1b[31mred\x1b[0m",
    "零一二三四五六七八九", "\U0010ffff\ud7ff",
]
texts = st.one_of(st.sampled_from(NASTY), st.text(max_size=300))
batches = st.lists(texts, min_size=1, max_size=12)
SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def dense(tiny_bert: str) -> BGEEmbedder:
    return BGEEmbedder(tiny_bert, device="cpu", max_batch_tokens=256, passage_max_length=64)


@pytest.fixture(scope="module")
def m3_small(tiny_m3: str) -> BGEM3Embedder:
    return BGEM3Embedder(tiny_m3, device="cpu", max_batch_tokens=256, passage_max_length=64)


@SETTINGS
@given(batch=batches)
def test_dense_invariants(dense: BGEEmbedder, batch: list[str]) -> None:
    out = dense.encode_documents(batch)
    assert out.shape == (len(batch), dense.dim) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([dense.encode_documents([t])[0] for t in batch])
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)
    reversed_out = dense.encode_documents(batch[::-1])[::-1]
    np.testing.assert_allclose(out, reversed_out, atol=1e-5)


@SETTINGS
@given(batch=batches)
def test_queries_invariants(dense: BGEEmbedder, batch: list[str]) -> None:
    out = dense.encode_queries(batch)
    assert out.shape == (len(batch), dense.dim) and np.isfinite(out).all()
    np.testing.assert_allclose(out[:1], dense.encode_queries(batch[:1]), atol=1e-5)


@SETTINGS
@given(batch=batches)
def test_m3_invariants(m3_small: BGEM3Embedder, batch: list[str]) -> None:
    out = m3_small.encode(batch, colbert=True)
    assert out.dense.shape == (len(batch), m3_small.dim) and np.isfinite(out.dense).all()
    np.testing.assert_allclose(np.linalg.norm(out.dense, axis=1), 1.0, atol=1e-5)
    for text, sparse, colbert in zip(batch, out.sparse, out.colbert, strict=True):
        assert all(w > 0 and np.isfinite(w) for w in sparse.values())
        n_tokens = len(m3_small.tokenizer(text, truncation=True, max_length=64)["input_ids"])
        assert colbert.shape == (n_tokens - 1, m3_small.dim) and np.isfinite(colbert).all()
    for i, text in enumerate(batch):
        single = m3_small.encode([text], colbert=True)
        np.testing.assert_allclose(out.dense[i], single.dense[0], atol=1e-5)
        np.testing.assert_allclose(out.colbert[i], single.colbert[0], atol=1e-5)
        assert out.sparse[i].keys() == single.sparse[0].keys()
        for k, w in single.sparse[0].items():
            assert out.sparse[i][k] == pytest.approx(w, rel=1e-5, abs=1e-7)
