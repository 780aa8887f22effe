"""The accelerator paths the CPU suite cannot reach; skipped where torch sees no GPU.

They run on CUDA when it is available. ``BGE_TEST_ACCELERATOR`` names another device
(``cuda:1``, ``mps``); ``BGE_TEST_ACCELERATOR=cpu`` dry-runs the float32 checks on the CPU.
Every check compares the accelerator with the CPU on the same checkpoint: float32 within 1e-5
(the parity bar), half precision within what its 10-bit (float16) or 7-bit (bfloat16)
mantissa allows.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers import assert_sparse_close

from bge_integrations import BGEEmbedder, BGEM3Embedder

ACCELERATOR = os.environ.get("BGE_TEST_ACCELERATOR") or (
    "cuda" if torch.cuda.is_available() else None)
pytestmark = pytest.mark.skipif(ACCELERATOR is None,
                                reason="no GPU (BGE_TEST_ACCELERATOR names a device)")
ON_CUDA = ACCELERATOR is not None and ACCELERATOR.startswith("cuda")

#: lengths 1-60 words, so batches hold padding and a small budget gives many batches
TEXTS = [("panda " * (1 + (i * 7) % 60)).strip() + f" {i}" for i in range(40)]
QUERIES = ["what is BGE-M3?", "panda bear", "bamboo"]
#: (dtype, max abs difference of unit vectors allowed against float32 on the CPU)
HALF = [("float16", 1e-2), ("bfloat16", 5e-2)]


def _half_precision_available(dtype: str) -> None:
    if not ON_CUDA:
        pytest.skip("half precision is checked on CUDA only")
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")


@pytest.mark.parametrize(("fixture", "pooling"), [("tiny_bert", "cls"), ("minilm_dir", "mean")])
def test_float32_on_the_accelerator_equals_the_cpu(fixture: str, pooling: str,
                                                  request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    cpu = BGEEmbedder(path, pooling=pooling, device="cpu", max_batch_tokens=256)
    acc = BGEEmbedder(path, pooling=pooling, device=ACCELERATOR, dtype="float32",
                      max_batch_tokens=256)
    assert acc._loaded.device.type == torch.device(ACCELERATOR).type
    np.testing.assert_allclose(acc.encode_documents(TEXTS), cpu.encode_documents(TEXTS),
                               atol=1e-5)
    np.testing.assert_allclose(acc.encode_queries(QUERIES), cpu.encode_queries(QUERIES),
                               atol=1e-5)


def test_m3_float32_on_the_accelerator_equals_the_cpu(tiny_m3: str) -> None:
    cpu = BGEM3Embedder(tiny_m3, device="cpu", max_batch_tokens=256)
    acc = BGEM3Embedder(tiny_m3, device=ACCELERATOR, dtype="float32", max_batch_tokens=256)
    want = cpu.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    got = acc.encode_documents(TEXTS, dense=True, sparse=True, colbert=True)
    np.testing.assert_allclose(got.dense, want.dense, atol=1e-5)
    assert_sparse_close(got.sparse, want.sparse)
    for g, w in zip(got.colbert, want.colbert, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-5)
    pairs = [(q, t) for q in QUERIES for t in TEXTS[:5]]
    got_scores = acc.compute_score(pairs, weights=(0.4, 0.2, 0.4))
    for mode, want_scores in cpu.compute_score(pairs, weights=(0.4, 0.2, 0.4)).items():
        np.testing.assert_allclose(got_scores[mode], want_scores, atol=1e-5)


def test_decoder_float32_on_the_accelerator_equals_the_cpu(tiny_icl: str) -> None:
    """Left padding, last-token pooling and the ICL prompt on the accelerator."""
    cpu = BGEEmbedder(tiny_icl, device="cpu", max_batch_tokens=256)
    acc = BGEEmbedder(tiny_icl, device=ACCELERATOR, dtype="float32", max_batch_tokens=256)
    np.testing.assert_allclose(acc.encode_queries(QUERIES), cpu.encode_queries(QUERIES),
                               atol=1e-5)
    np.testing.assert_allclose(acc.encode_documents(TEXTS[:10]),
                               cpu.encode_documents(TEXTS[:10]), atol=1e-5)


@pytest.mark.parametrize(("dtype", "atol"), HALF)
def test_half_precision_stays_close_to_float32(dtype: str, atol: float, tiny_bert: str,
                                               tiny_m3: str) -> None:
    _half_precision_available(dtype)
    for pooling in ("cls", "mean"):
        cpu = BGEEmbedder(tiny_bert, device="cpu", pooling=pooling)
        half = BGEEmbedder(tiny_bert, device=ACCELERATOR, dtype=dtype, pooling=pooling)
        got = half.encode_documents(TEXTS)
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, cpu.encode_documents(TEXTS), atol=atol)
    m3_cpu = BGEM3Embedder(tiny_m3, device="cpu").encode(TEXTS[:8], colbert=True)
    m3_half = BGEM3Embedder(tiny_m3, device=ACCELERATOR, dtype=dtype).encode(
        TEXTS[:8], colbert=True)
    np.testing.assert_allclose(m3_half.dense, m3_cpu.dense, atol=atol)
    for g, w in zip(m3_half.colbert, m3_cpu.colbert, strict=True):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, atol=atol)


def test_auto_device_is_the_gpu_in_float16(tiny_bert: str) -> None:
    if not ON_CUDA:
        pytest.skip("'auto' picks CUDA only where CUDA is available")
    emb = BGEEmbedder(tiny_bert)
    assert emb._loaded.device.type == "cuda" and emb._loaded.dtype == "float16"


def test_several_gpus_give_the_vectors_of_one(tiny_m3: str) -> None:
    if not ON_CUDA or torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    one = BGEM3Embedder(tiny_m3, device="cuda:0", dtype="float32", max_batch_tokens=128)
    two = BGEM3Embedder(tiny_m3, device=["cuda:0", "cuda:1"], dtype="float32",
                        max_batch_tokens=128)
    assert two._engine.workers() == 2
    a = one.encode_documents(TEXTS, colbert=True)
    b = two.encode_documents(TEXTS, colbert=True)
    np.testing.assert_allclose(b.dense, a.dense, atol=1e-6)
    for x, y in zip(a.colbert, b.colbert, strict=True):
        np.testing.assert_allclose(y, x, atol=1e-6)
